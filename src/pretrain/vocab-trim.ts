/**
 * Vocabulary trimming: a Hugging Face `tokenizer.json` cut down to the pieces a corpus actually
 * uses, re-indexed densely, so a from-scratch model's embedding (and LM head) has only those rows
 * and the shipped checkpoints stay small.
 *
 * Why the trimmed tokenizer splits the corpus exactly as the full one does:
 * - Unigram (T5): Viterbi picks the highest-scoring segmentation. Every piece of the optimal
 *   segmentation of each corpus text is kept, and removing other pieces only removes candidate
 *   paths, so the optimum is unchanged. Single-character pieces of every character seen are kept
 *   too, so no position of a corpus text loses its one-character node (which would make the
 *   lattice insert an <unk> node that the full tokenizer never considers).
 * - WordPiece (BERT): greedy longest-match-first. The piece matched at each position is kept and
 *   any longer match would have been chosen by the full tokenizer, so the matches are unchanged.
 * Special tokens and T5's <extra_id_*> sentinels are always kept; `test/pretrain/vocab-trim.test.ts`
 * checks the equivalence on corpus samples.
 */
import { TextTokenizer } from '../model/tokenizer';

type Json = Record<string, unknown>;

export interface TrimmedTokenizer {
  /** The new tokenizer.json content. */
  readonly tokenizerJson: Json;
  /** The new tokenizer_config.json content (added-token ids rewritten when present). */
  readonly tokenizerConfig: Json;
  /** Size of the new vocabulary (= the embedding rows the model needs). */
  readonly vocabSize: number;
  /** newId -> id in the full tokenizer. */
  readonly oldIds: number[];
}

function clone<T>(x: T): T {
  return JSON.parse(JSON.stringify(x)) as T;
}

/** Ids of every token the full tokenizer produces on `texts` (without special tokens). */
function usedIds(full: TextTokenizer, texts: Iterable<string>): Set<number> {
  const used = new Set<number>();
  for (const t of texts) for (const id of full.encode(t, { addSpecialTokens: false })) used.add(id);
  return used;
}

function charactersOf(texts: Iterable<string>, extra: string): Set<string> {
  const chars = new Set<string>();
  for (const t of texts) for (const ch of t) chars.add(ch);
  for (const ch of extra) chars.add(ch);
  return chars;
}

/** Printable ASCII: always representable, so short user questions rarely hit <unk>. */
const ASCII = Array.from({ length: 95 }, (_, i) => String.fromCharCode(32 + i)).join('');

/** Rewrites `id` fields of added_tokens and a TemplateProcessing post-processor through `remap`. */
function remapSpecials(json: Json, remap: (oldId: number) => number): void {
  const added = json.added_tokens as { id: number }[] | undefined;
  if (added) for (const t of added) t.id = remap(t.id);
  const post = json.post_processor as { special_tokens?: Record<string, { ids: number[] }> } | null | undefined;
  if (post?.special_tokens) for (const s of Object.values(post.special_tokens)) s.ids = s.ids.map(remap);
}

function remapConfig(config: Json, remap: (oldId: number) => number): Json {
  const out = clone(config);
  const decoderTable = out.added_tokens_decoder as Record<string, unknown> | undefined;
  if (decoderTable) {
    out.added_tokens_decoder = Object.fromEntries(Object.entries(decoderTable).map(([id, v]) => [String(remap(Number(id))), v]));
  }
  return out;
}

function mapping(oldIds: number[]): (oldId: number) => number {
  const index = new Map(oldIds.map((old, i) => [old, i]));
  return (old) => {
    const id = index.get(old);
    if (id === undefined) throw new Error(`vocabulary trimming: special token id ${old} was not kept`);
    return id;
  };
}

/**
 * Trims a SentencePiece Unigram tokenizer.json (T5) to the pieces `texts` need, every special
 * token and sentinel, and the single characters of `texts` plus printable ASCII. Pieces keep their
 * scores and their relative order; `<pad>`, `</s>`, `<unk>` keep ids 0, 1, 2 when they had them.
 */
export function trimUnigramTokenizer(tokenizerJson: Json, tokenizerConfig: Json, texts: readonly string[]): TrimmedTokenizer {
  const full = TextTokenizer.fromJson(tokenizerJson, tokenizerConfig, 'full T5 tokenizer');
  const model = tokenizerJson.model as { vocab: [string, number][]; unk_id?: number; type?: string };
  if (!Array.isArray(model?.vocab) || (model.type !== undefined && model.type !== 'Unigram')) {
    throw new Error('trimUnigramTokenizer: tokenizer.json does not hold a Unigram model');
  }
  const keep = usedIds(full, texts);
  const specials = new Set(((tokenizerJson.added_tokens as { id: number }[]) ?? []).map((t) => t.id));
  const chars = charactersOf(texts, ASCII);
  model.vocab.forEach(([piece], id) => {
    const bare = piece.startsWith('\u2581') ? piece.slice(1) : piece;
    if (specials.has(id) || model.unk_id === id) keep.add(id);
    else if ([...bare].length === 1 && chars.has(bare)) keep.add(id);
    else if (piece === '\u2581') keep.add(id);
  });
  const oldIds = [...keep].sort((a, b) => a - b);
  const remap = mapping(oldIds);
  const out = clone(tokenizerJson);
  const outModel = out.model as { vocab: [string, number][]; unk_id?: number };
  outModel.vocab = oldIds.map((id) => model.vocab[id]);
  if (model.unk_id !== undefined) outModel.unk_id = remap(model.unk_id);
  remapSpecials(out, remap);
  return { tokenizerJson: out, tokenizerConfig: remapConfig(tokenizerConfig, remap), vocabSize: oldIds.length, oldIds };
}

/**
 * Trims a WordPiece tokenizer.json (BERT) to the pieces `texts` need, the special tokens, and
 * every single character of `texts` plus printable ASCII (lower-cased when the normalizer
 * lower-cases), both as word start and as `##` continuation. Order of the kept ids is preserved,
 * so `[PAD]` stays 0.
 */
export function trimWordPieceTokenizer(tokenizerJson: Json, tokenizerConfig: Json, texts: readonly string[]): TrimmedTokenizer {
  const full = TextTokenizer.fromJson(tokenizerJson, tokenizerConfig, 'full BERT tokenizer');
  const model = tokenizerJson.model as { type?: string; vocab: Record<string, number>; continuing_subword_prefix?: string };
  if (model?.type !== 'WordPiece' || typeof model.vocab !== 'object') throw new Error('trimWordPieceTokenizer: tokenizer.json does not hold a WordPiece model');
  const prefix = model.continuing_subword_prefix ?? '##';
  const keep = usedIds(full, texts);
  for (const t of (tokenizerJson.added_tokens as { id: number }[]) ?? []) keep.add(t.id);
  const lower = (tokenizerJson.normalizer as { lowercase?: boolean } | null)?.lowercase === true;
  for (const ch of charactersOf(texts, ASCII)) {
    const c = lower ? ch.toLowerCase() : ch;
    for (const piece of [c, prefix + c]) {
      const id = model.vocab[piece];
      if (id !== undefined) keep.add(id);
    }
  }
  const byId = new Map(Object.entries(model.vocab).map(([piece, id]) => [id, piece]));
  const oldIds = [...keep].sort((a, b) => a - b);
  const remap = mapping(oldIds);
  const out = clone(tokenizerJson);
  (out.model as { vocab: Record<string, number> }).vocab = Object.fromEntries(oldIds.map((old, i) => [byId.get(old)!, i]));
  remapSpecials(out, remap);
  return { tokenizerJson: out, tokenizerConfig: remapConfig(tokenizerConfig, remap), vocabSize: oldIds.length, oldIds };
}
