/**
 * The app's policy that travels with a checkpoint: the `corag` object of the reader's and the
 * retriever's config.json. The model layer (src/model/t5/config.ts, src/model/bert/config.ts)
 * parses Hugging Face's keys only and carries this object uninterpreted; here it is validated
 * and typed, once, when a bundle is built, and written back (snake case, as Hugging Face configs
 * are) by the exporters.
 *
 * Reader: `copy_decoding_weight` (src/model/t5/copy-decoding.ts) and `answer_rerank`
 * (src/corag/answer-rerank.ts, fitted by scripts/fit-answer-rerank.ts). Retriever:
 * `hybrid_keyword_weight` (src/corag/hybrid-retrieval.ts). Unknown keys are refused rather than
 * ignored: a misspelt setting would otherwise silently change how the app answers.
 */
import type { CoragSection } from '../model/hf-config-json';

export interface AnswerRerankWeights {
  /** Weight of the reader's length-normalised log-probability. */
  readonly reader: number;
  /** Bonus for a candidate whose type is one the question asks for. */
  readonly type: number;
  /** Weight of the share of question content words near the candidate. */
  readonly proximity: number;
  /** Penalty weight of the share of the candidate's content words the question has. */
  readonly questionOverlap: number;
}

export interface AnswerRerankConfig extends AnswerRerankWeights {
  /** Beam width: how many candidate spans the reader proposes. */
  readonly beams: number;
}

export interface ReaderPolicy {
  /** The copy-decoding weight this reader was trained for; absent: plain decoding. */
  readonly copyDecodingWeight?: number;
  /** How to choose among this reader's extractive candidates; absent: the reader's first choice. */
  readonly answerRerank?: AnswerRerankConfig;
}

export interface RetrieverPolicy {
  /**
   * The weight of a BM25 ranking fused with this retriever's in hybrid search, measured when the
   * checkpoint was made (above 1 for a retriever weaker than keywords); absent: 1.
   */
  readonly hybridKeywordWeight?: number;
}

export interface CheckpointPolicy {
  readonly reader: ReaderPolicy;
  readonly retriever: RetrieverPolicy;
}

export class CheckpointPolicyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CheckpointPolicyError';
  }
}

const READER_KEYS = ['copy_decoding_weight', 'answer_rerank'] as const;
const RETRIEVER_KEYS = ['hybrid_keyword_weight'] as const;
const RERANK_KEYS = ['beams', 'reader', 'type', 'proximity', 'question_overlap'] as const;

function fail(side: string, field: string, must: string, got: unknown): never {
  throw new CheckpointPolicyError(`${side} config field "corag.${field}" must be ${must}, got ${JSON.stringify(got)}`);
}

function refuseUnknown(side: string, field: string, obj: Readonly<Record<string, unknown>>, known: readonly string[]): void {
  const unknown = Object.keys(obj).filter((k) => !known.includes(k));
  if (unknown.length > 0) {
    const where = field ? `"corag.${field}"` : '"corag"';
    throw new CheckpointPolicyError(`${side} config field ${where} has unknown key(s) ${unknown.map((k) => `"${k}"`).join(', ')} (known: ${known.join(', ')})`);
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** A null value counts as absent, as in the config parsers (Python writes None as null). */
const present = (v: unknown): boolean => v !== undefined && v !== null;

function parseAnswerRerank(v: unknown): AnswerRerankConfig {
  if (!isObject(v)) fail('reader', 'answer_rerank', 'an object', v);
  refuseUnknown('reader', 'answer_rerank', v, RERANK_KEYS);
  const beams = v.beams;
  if (typeof beams !== 'number' || !Number.isInteger(beams) || beams < 1 || beams > 64) fail('reader', 'answer_rerank.beams', 'an integer in 1 … 64', beams);
  const weight = (key: (typeof RERANK_KEYS)[number]): number => {
    const w = v[key];
    if (typeof w !== 'number' || !Number.isFinite(w) || w < 0) fail('reader', `answer_rerank.${key}`, 'a finite number >= 0', w);
    return w;
  };
  return { beams, reader: weight('reader'), type: weight('type'), proximity: weight('proximity'), questionOverlap: weight('question_overlap') };
}

/** The reader's policy from its config's `corag` object (undefined: none). */
export function parseReaderPolicy(corag: CoragSection | undefined): ReaderPolicy {
  if (corag === undefined) return {};
  if (!isObject(corag)) fail('reader', '', 'an object', corag);
  refuseUnknown('reader', '', corag, READER_KEYS);
  const copy = corag.copy_decoding_weight;
  if (present(copy) && (typeof copy !== 'number' || !(copy >= 0 && copy <= 1))) fail('reader', 'copy_decoding_weight', 'a number in [0, 1]', copy);
  return {
    ...(present(copy) ? { copyDecodingWeight: copy as number } : {}),
    ...(present(corag.answer_rerank) ? { answerRerank: parseAnswerRerank(corag.answer_rerank) } : {}),
  };
}

/** The retriever's policy from its config's `corag` object (undefined: none). */
export function parseRetrieverPolicy(corag: CoragSection | undefined): RetrieverPolicy {
  if (corag === undefined) return {};
  if (!isObject(corag)) fail('retriever', '', 'an object', corag);
  refuseUnknown('retriever', '', corag, RETRIEVER_KEYS);
  const w = corag.hybrid_keyword_weight;
  if (present(w) && (typeof w !== 'number' || !Number.isFinite(w) || w < 0)) fail('retriever', 'hybrid_keyword_weight', 'a finite number >= 0', w);
  return present(w) ? { hybridKeywordWeight: w as number } : {};
}

/** Both sides' policy, from the configs a bundle was built with. */
export function parseCheckpointPolicy(reader: CoragSection | undefined, retriever: CoragSection | undefined): CheckpointPolicy {
  return { reader: parseReaderPolicy(reader), retriever: parseRetrieverPolicy(retriever) };
}

/** The reader's `corag` object for config.json (undefined when the policy sets nothing). */
export function readerPolicyToJson(p: ReaderPolicy): CoragSection | undefined {
  const out: Record<string, unknown> = {};
  if (p.copyDecodingWeight !== undefined) out.copy_decoding_weight = p.copyDecodingWeight;
  if (p.answerRerank !== undefined) {
    const r = p.answerRerank;
    out.answer_rerank = { beams: r.beams, reader: r.reader, type: r.type, proximity: r.proximity, question_overlap: r.questionOverlap };
  }
  return Object.keys(out).length > 0 ? out : undefined;
}

/** The retriever's `corag` object for config.json (undefined when the policy sets nothing). */
export function retrieverPolicyToJson(p: RetrieverPolicy): CoragSection | undefined {
  return p.hybridKeywordWeight === undefined ? undefined : { hybrid_keyword_weight: p.hybridKeywordWeight };
}
