/**
 * Extractive answers: decoding constrained to spans of the passages the reader was given.
 *
 * The reader's target format is `<extra_id_0> answer</s>`. With this constraint the first token
 * is the sentinel, and the answer must then be a run of whole words copied from one passage's
 * text: a span starts at a word-initial piece (SentencePiece's "▁") and may end (EOS) only where
 * the passage's next piece does not continue the same word, and not on bare punctuation. Among
 * those spans the reader's own scores pick one (greedily or by beam search). Why: an answer
 * quoted from the user's passages cannot be invented, and a reader that has not learned to copy
 * reliably (the small demo checkpoint) is held to text that is really there.
 */
import type { DecodingConstraint } from '../model/t5/generate';
import type { TextTokenizer } from '../model/tokenizer';

/** How a vocabulary's pieces relate to words. */
export interface WordPieces {
  /** The piece opens a word (SentencePiece: starts with "▁") with a letter or digit in it. */
  startsWord(id: number): boolean;
  /** The piece carries on the word before it (no "▁" and a letter or digit in it). */
  continuesWord(id: number): boolean;
  /** The piece has a letter or digit (an answer does not end on bare punctuation). */
  hasWordCharacters(id: number): boolean;
}

/** Word classes of a SentencePiece vocabulary (T5), cached per id. */
export function sentencePieceWords(tokenizer: Pick<TextTokenizer, 'idToToken'>): WordPieces {
  const cache = new Map<number, { starts: boolean; continues: boolean; word: boolean }>();
  const classify = (id: number) => {
    let c = cache.get(id);
    if (!c) {
      const piece = tokenizer.idToToken(id) ?? '';
      const word = /[\p{L}\p{N}]/u.test(piece);
      const opens = piece.startsWith('\u2581');
      c = { starts: opens && word, continues: !opens && word, word };
      cache.set(id, c);
    }
    return c;
  };
  return { startsWord: (id) => classify(id).starts, continuesWord: (id) => classify(id).continues, hasWordCharacters: (id) => classify(id).word };
}

export interface PassageSpanOptions {
  /** Forced first token (T5: `<extra_id_0>`); omitted: the answer starts at once. */
  readonly sentinelId?: number;
  readonly eosId: number;
  readonly words: WordPieces;
  /**
   * Per example, the pieces of its question: a span whose word pieces all occur there may not
   * end, since an answer that only repeats words of the question ("Super Bowl" for "Who was the
   * Super Bowl MVP?") is never the answer sought. Omitted: no such rule.
   */
  readonly questionPieces?: readonly ReadonlySet<number>[];
}

/** Allows exactly the whole-word spans of each example's passages (token ids, no special tokens). */
export class PassageSpanConstraint implements DecodingConstraint {
  constructor(
    /** Per example (encoder batch row), the token ids of each of its passages. */
    private readonly passages: readonly (readonly (readonly number[])[])[],
    private readonly options: PassageSpanOptions,
  ) {}

  allowedNext(example: number, generated: readonly number[]): readonly number[] {
    const { sentinelId, eosId, words } = this.options;
    const offset = sentinelId === undefined ? 0 : 1;
    if (generated.length < offset) return [sentinelId!];
    const answer = generated.slice(offset);
    const question = this.options.questionPieces?.[example];
    const repeatsQuestion = question !== undefined && answer.every((id) => !words.hasWordCharacters(id) || question.has(id));
    const next = new Set<number>();
    let mayEnd = false;
    for (const ids of this.passages[example] ?? []) {
      // A continuation must still be able to end on a word: never step into trailing punctuation.
      let lastWord = ids.length - 1;
      while (lastWord >= 0 && !words.hasWordCharacters(ids[lastWord])) lastWord--;
      for (let start = 0; start + answer.length <= ids.length; start++) {
        if (!words.startsWord(ids[start]) || !matchesAt(ids, start, answer)) continue;
        const after = start + answer.length;
        if (after <= lastWord) next.add(ids[after]);
        const wholeWord = after === ids.length || !words.continuesWord(ids[after]);
        if (answer.length > 0 && wholeWord && words.hasWordCharacters(answer[answer.length - 1]) && !repeatsQuestion) mayEnd = true;
      }
    }
    if (mayEnd) next.add(eosId);
    return [...next];
  }
}

/**
 * The constraint for a batch of questions, each with its passages' texts, for a T5 tokenizer
 * (answers open with `<extra_id_0>`). A question without any passage text (closed book) decodes
 * freely; undefined when no question has one. With `questions`, a span that only repeats words
 * of its question may not be the answer (PassageSpanOptions.questionPieces).
 */
export function passageSpanConstraint(
  tokenizer: TextTokenizer,
  eosId: number,
  passageTexts: readonly (readonly string[])[],
  questions?: readonly string[],
): DecodingConstraint | undefined {
  const ids = passageTexts.map((texts) => texts.filter((t) => t.trim() !== '').map((t) => tokenizer.encode(t, { addSpecialTokens: false })));
  if (ids.every((p) => p.length === 0)) return undefined;
  if (questions && questions.length !== passageTexts.length)
    throw new Error(`passageSpanConstraint: ${questions.length} questions for ${passageTexts.length} passage lists`);
  const questionPieces = questions?.map((q) => new Set(tokenizer.encode(q, { addSpecialTokens: false })));
  const spans = new PassageSpanConstraint(ids, {
    sentinelId: tokenizer.tokenToId('<extra_id_0>'),
    eosId,
    words: sentencePieceWords(tokenizer),
    questionPieces,
  });
  return { allowedNext: (example, generated) => (ids[example].length === 0 ? null : spans.allowedNext(example, generated)) };
}

/** Additive logit mask value for tokens a constraint rules out (finite, so 0 · mask stays 0 in gradients). */
export const RULED_OUT = -1e4;

/**
 * The constraint applied under teacher forcing, for training with the softmax restricted to what
 * extractive decoding could choose: an additive mask [B, T, vocab] (row-major) with 0 for allowed
 * tokens and RULED_OUT elsewhere. Position t of example b allows what the constraint allows after
 * labels[b][0..t); the label itself is always allowed (a target that is not a passage span keeps
 * a finite loss), and ignored positions (label < 0) are left unrestricted.
 */
export function teacherForcedMask(constraint: DecodingConstraint, labels: ArrayLike<number>, batch: number, targetLength: number, vocab: number): Float32Array {
  const mask = new Float32Array(batch * targetLength * vocab);
  for (let b = 0; b < batch; b++) {
    const row = Array.from({ length: targetLength }, (_, t) => labels[b * targetLength + t]);
    for (let t = 0; t < targetLength; t++) {
      if (row[t] < 0) continue;
      const allowed = constraint.allowedNext(b, row.slice(0, t));
      if (allowed === null) continue;
      const base = (b * targetLength + t) * vocab;
      mask.fill(RULED_OUT, base, base + vocab);
      for (const id of allowed) mask[base + id] = 0;
      mask[base + row[t]] = 0;
    }
  }
  return mask;
}

function matchesAt(ids: readonly number[], start: number, span: readonly number[]): boolean {
  for (let j = 0; j < span.length; j++) if (ids[start + j] !== span[j]) return false;
  return true;
}
