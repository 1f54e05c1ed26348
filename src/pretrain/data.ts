/**
 * The prepared pretraining data: passages and self-supervised examples as token ids of both
 * (trimmed) tokenizers. Tokenizing once, ahead of training, keeps the training loop free of
 * tokenizer code (the GPU bundle carries only ids) and makes every run see identical inputs.
 */
import type { TextTokenizer } from '../model/tokenizer';
import type { CorpusPassage } from './corpus';
import { clozeExamples, maskedSpanExample, questionStyleCloze, type ClozeExample } from './examples';
import { Rng } from './rng';
import { PersonLexicon } from '../text/answer-types';
import { typedClozeExamples } from './typed-questions';

export type ExampleKind = 'mlm' | 'cloze';

export interface PreparedPassage {
  readonly id: string;
  /** T5 ids of `title: {title} context: {text}` (no EOS). */
  readonly readerIds: number[];
  /** BERT ids of `{title} {text}` (no [CLS]/[SEP]). */
  readonly retrieverIds: number[];
}

export interface PreparedExample {
  readonly kind: ExampleKind;
  /** Index of the passage it was made from. */
  readonly passage: number;
  /** T5 ids of the reader's question part (no EOS). */
  readonly readerQuery: number[];
  /** BERT ids of the retrieval query (no specials). */
  readonly retrieverQuery: number[];
  /** T5 ids of the target, ending in EOS. */
  readonly target: number[];
  /**
   * Masked spans only: T5 ids of the first hidden span, to find the masked window in the source
   * passage (`mlmWithSource`). Absent in data prepared before it existed.
   */
  readonly anchor?: number[];
}

export interface SpecialIds {
  readonly readerPad: number;
  readonly readerEos: number;
  readonly retrieverPad: number;
  readonly retrieverCls: number;
  readonly retrieverSep: number;
}

export interface PretrainData {
  readonly format: 'corag-pretrain-data/1';
  readonly special: SpecialIds;
  /** Vocabulary sizes of the (trimmed) tokenizers the ids come from: the embedding rows. */
  readonly readerVocabSize: number;
  readonly retrieverVocabSize: number;
  readonly passages: PreparedPassage[];
  readonly examples: PreparedExample[];
}

export interface PrepareOptions {
  readonly seed: number;
  /** Masked-span variants per passage. */
  readonly mlmPerPassage: number;
  /** Most cloze questions kept per passage (chosen at random among its candidates). */
  readonly clozePerPassage: number;
  /**
   * 0: a cloze target is `<extra_id_0> {answer}`. N > 0: `<extra_id_0> {last N words before the
   * answer} {answer}` — the decoder then holds the answer's left context and copying becomes a
   * lookup it learns quickly (scripts/copy-task.ts, `prefix`); an experiment, not for shipped readers.
   */
  readonly clozeContextWords?: number;
  /**
   * Share of the cloze questions rewritten question-style (examples.ts questionStyleCloze: question
   * word first, a clause around the answer, some words dropped); 0 (default): all verbatim.
   */
  readonly questionStyleShare?: number;
  /**
   * 'cloze' (default): clozeExamples' names, numbers and dates, "what"/"when"/"how many" in
   * their place, questionStyleCloze for the rewritten share. 'typed': typed-questions.ts — more
   * answer kinds (noun phrases, money, percentages, counts with their noun), question words that
   * fit the answer's type (who / where / in what year …), rewrites closer to real questions.
   */
  readonly questionGenerator?: 'cloze' | 'typed';
}

function idOf(tok: TextTokenizer, token: string): number {
  const id = tok.tokenToId(token);
  if (id === undefined) throw new Error(`tokenizer has no "${token}" token`);
  return id;
}

function lastWords(text: string, n: number): string[] {
  return n > 0 ? text.split(/\s+/).filter(Boolean).slice(-n) : [];
}

/** Tokenizes passages and builds the masked-span and cloze examples (seeded). */
/** The plain generator's cloze questions of a passage (examples.ts), as data prepared before 'typed' existed. */
function plainCloze(text: string, rng: Rng, options: PrepareOptions): ClozeExample[] {
  const cloze = clozeExamples(text);
  const order = rng.permutation(cloze.length).slice(0, options.clozePerPassage);
  // No draw at share 0, so data prepared before questionStyleShare existed comes out the same.
  const share = options.questionStyleShare ?? 0;
  return order.map((i) => (share > 0 && rng.next() < share ? questionStyleCloze(cloze[i], rng) : cloze[i]));
}

export function preparePretrainData(
  passages: readonly CorpusPassage[],
  reader: TextTokenizer,
  retriever: TextTokenizer,
  options: PrepareOptions,
): PretrainData {
  const rng = new Rng(options.seed);
  const t5 = (s: string) => reader.encode(s, { addSpecialTokens: false });
  const bert = (s: string) => retriever.encode(s, { addSpecialTokens: false });
  const prepared: PreparedPassage[] = passages.map((p) => ({
    id: p.id,
    readerIds: t5(`title: ${p.title} context: ${p.text}`),
    retrieverIds: bert(`${p.title} ${p.text}`),
  }));
  const examples: PreparedExample[] = [];
  const typed = options.questionGenerator === 'typed';
  const people = typed ? PersonLexicon.fromTexts(passages.map((p) => p.text)) : undefined;
  passages.forEach((p, index) => {
    for (let i = 0; i < options.mlmPerPassage; i++) {
      const ex = maskedSpanExample(p.text, rng);
      if (!ex) continue;
      // The retriever sees the window without the sentinels (BERT has no use for them).
      const visible = ex.query.replace(/<extra_id_\d+>/g, ' ').replace(/\s+/g, ' ');
      const firstSpan = ex.target.split('<extra_id_1>')[0].replace('<extra_id_0>', '').trim();
      examples.push({
        kind: 'mlm',
        passage: index,
        readerQuery: t5(`question: ${ex.query}`),
        retrieverQuery: bert(visible),
        target: reader.encode(ex.target),
        anchor: t5(firstSpan),
      });
    }
    for (const c of typed
      ? typedClozeExamples(p.text, rng, options.clozePerPassage, options.questionStyleShare ?? 0, { people })
      : plainCloze(p.text, rng, options)) {
      examples.push({
        kind: 'cloze',
        passage: index,
        readerQuery: t5(`question: ${c.question} answer: <extra_id_0>`),
        retrieverQuery: bert(c.question),
        target: reader.encode(`<extra_id_0> ${[...lastWords(c.before, options.clozeContextWords ?? 0), c.answer].join(' ')}`),
      });
    }
  });
  return {
    format: 'corag-pretrain-data/1',
    special: {
      readerPad: reader.padId,
      readerEos: reader.eosId ?? idOf(reader, '</s>'),
      retrieverPad: retriever.padId,
      retrieverCls: idOf(retriever, '[CLS]'),
      retrieverSep: idOf(retriever, '[SEP]'),
    },
    readerVocabSize: reader.vocabSize,
    retrieverVocabSize: retriever.vocabSize,
    passages: prepared,
    examples,
  };
}

/** Checks the shape of a parsed data file (the edge where a file becomes a PretrainData). */
export function parsePretrainData(json: unknown): PretrainData {
  const d = json as PretrainData;
  if (d?.format !== 'corag-pretrain-data/1') throw new Error('pretrain data: not a corag-pretrain-data/1 file');
  if (!Array.isArray(d.passages) || d.passages.length < 2) throw new Error('pretrain data: needs at least 2 passages');
  if (!Array.isArray(d.examples) || d.examples.length === 0) throw new Error('pretrain data: has no examples');
  for (const e of d.examples) {
    if (!(e.passage >= 0 && e.passage < d.passages.length))
      throw new Error(`pretrain data: example refers to passage ${e.passage} outside [0, ${d.passages.length})`);
  }
  return d;
}
