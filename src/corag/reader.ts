/**
 * The Fusion-in-Decoder reader as CoRAG uses it: tokenised FiD batches in Atlas's format, the
 * batch FiD loss (reader training), each passage's CE scored alone (Perplexity Distillation's
 * target, no gradient), and answer generation with per-passage cross-attention scores.
 */
import * as tf from '@tensorflow/tfjs-core';
import { beamSearch, greedyGenerate, type BeamHypothesis } from '../model/t5/generate';
import type { AnswerRerankConfig } from './checkpoint-policy';
import { rerankAnswers } from './answer-rerank';
import { fidCopyDecoding } from './copy-answers';
import { passageSpanConstraint } from './extractive';
import { fidEncode, fidForward, fidInputText, fidTargetText, FID_MAX_LENGTH, padIdRows, passageAttentionScores, type FidEncodeOptions } from '../model/t5/fid';
import { IGNORE_INDEX } from '../model/t5/loss';
import { rowSequenceLosses } from '../model/t5/row-scores';
import type { ModelBundle } from './model-bundle';
import type { PassageText } from './retrieve';

/** Tensors of one FiD batch; the caller disposes them (disposeFidBatch). */
export interface FidBatch {
  /** [B·k, L] int32: row b·k + j is question b with passage j. */
  readonly inputIds: tf.Tensor2D;
  readonly attentionMask: tf.Tensor2D;
  /** [B, T] int32 target ids, -100 past each target's end; absent without answers. */
  readonly labels?: tf.Tensor2D;
  readonly numPassages: number;
  readonly batchSize: number;
}

export function disposeFidBatch(batch: FidBatch): void {
  tf.dispose([batch.inputIds, batch.attentionMask, ...(batch.labels ? [batch.labels] : [])]);
}

export interface FidBatchOptions {
  /** Token limit of each (question, passage) input (paper: 384). */
  readonly maxLength?: number;
  /** Token limit of the target (default 32). */
  readonly maxTargetLength?: number;
}

/**
 * Atlas's input for one passage; an empty passage (closed book) gives the bare
 * `question: {q} answer: <extra_id_0>` of the no-retrieval baseline.
 */
export function readerInputText(question: string, passage: PassageText): string {
  return passage.title === '' && passage.text === '' ? `question: ${question} answer: <extra_id_0>` : fidInputText(question, passage);
}

function eosId(bundle: ModelBundle): number {
  return bundle.readerTokenizer.eosId ?? bundle.readerConfig.eos_token_id;
}

/** Target ids [B, T] of `<extra_id_0> {answer}</s>`, padded with -100. */
function labelRows(bundle: ModelBundle, answers: readonly string[], maxTargetLength: number): tf.Tensor2D {
  const rows = answers.map((a) => bundle.readerTokenizer.encode(fidTargetText(a), { maxLength: maxTargetLength }));
  const length = Math.max(...rows.map((r) => r.length));
  const data = new Int32Array(rows.length * length).fill(IGNORE_INDEX);
  rows.forEach((r, i) => data.set(r, i * length));
  return tf.tensor2d(data, [rows.length, length], 'int32');
}

/**
 * Tokenises questions with their passages (every question the same number k of passages) in
 * Atlas's input format, padded to the longest row; with `answers`, also the labels.
 */
export function buildFidBatch(
  bundle: ModelBundle,
  questions: readonly string[],
  passages: readonly (readonly PassageText[])[],
  answers?: readonly string[],
  options: FidBatchOptions = {},
): FidBatch {
  const k = passages[0]?.length ?? 0;
  if (questions.length === 0) throw new Error('buildFidBatch: no questions');
  if (passages.length !== questions.length || k === 0 || passages.some((p) => p.length !== k)) {
    throw new Error(`buildFidBatch: each of the ${questions.length} questions needs the same, non-zero number of passages`);
  }
  if (answers && answers.length !== questions.length) throw new Error(`buildFidBatch: ${answers.length} answers for ${questions.length} questions`);
  const maxLength = options.maxLength ?? FID_MAX_LENGTH;
  const texts = questions.flatMap((q, b) => passages[b].map((p) => readerInputText(q, p)));
  const rows = texts.map((t) => bundle.readerTokenizer.encode(t));
  const padded = padIdRows(rows, { maxLength, padTokenId: bundle.readerTokenizer.padId, eosTokenId: eosId(bundle) });
  return {
    inputIds: tf.tensor2d(padded.ids, padded.shape, 'int32'),
    attentionMask: tf.tensor2d(padded.mask, padded.shape, 'int32'),
    labels: answers ? labelRows(bundle, answers, options.maxTargetLength ?? 32) : undefined,
    numPassages: k,
    batchSize: questions.length,
  };
}

/** Mean token CE of the batch's answers given all their passages fused (differentiable). */
export function fidBatchLoss(bundle: ModelBundle, batch: FidBatch, options: FidEncodeOptions = {}): tf.Scalar {
  if (!batch.labels) throw new Error('fidBatchLoss: the batch has no answers');
  return tf.tidy(() => fidForward(bundle.reader, batch.inputIds, batch.attentionMask, batch.numPassages, batch.labels!, options).loss);
}

/**
 * The reader loss and its per-passage cross-attention scores [B, k] from the same forward pass
 * (for attention distillation); the scores carry no gradient meaning of their own.
 */
export function fidLossWithAttention(bundle: ModelBundle, batch: FidBatch, options: FidEncodeOptions = {}): { loss: tf.Scalar; attention: tf.Tensor2D } {
  if (!batch.labels) throw new Error('fidLossWithAttention: the batch has no answers');
  return tf.tidy(() => {
    const out = fidForward(bundle.reader, batch.inputIds, batch.attentionMask, batch.numPassages, batch.labels!, { ...options, crossAttentions: true });
    return { loss: out.loss, attention: passageAttentionScores(out.crossAttentions!, batch.numPassages, batch.labels) };
  });
}

/**
 * Atlas's perplexity score: the reader's mean token CE of each answer given each passage ALONE,
 * [B, k], no gradient (computed outside any tape; the caller disposes it). The B·k rows are
 * scored `chunkRows` at a time (default B: the scoring's vocab-sized tensors are then no larger
 * than the training loss's own [B, T, vocab]); the result does not depend on the chunk size.
 */
export function perPassageLoss(bundle: ModelBundle, batch: FidBatch, options: { chunkRows?: number } = {}): tf.Tensor2D {
  if (!batch.labels) throw new Error('perPassageLoss: the batch has no answers');
  const { batchSize: b, numPassages: k } = batch;
  return tf.tidy(() => {
    // Each encoder row becomes its own example: labels repeated k times per question.
    const repeat = tf.tensor1d(
      Int32Array.from({ length: b * k }, (_, r) => Math.floor(r / k)),
      'int32',
    );
    const labels = tf.gather(batch.labels!, repeat);
    return tf.reshape(rowSequenceLosses(bundle.reader, batch.inputIds, batch.attentionMask, labels, options.chunkRows ?? b), [b, k]) as tf.Tensor2D;
  });
}

export interface GenerateAnswerOptions extends FidBatchOptions {
  /** Most answer tokens (default 32). */
  readonly maxNewTokens?: number;
  /** 1 (default): greedy; more: beam search, best hypothesis. */
  readonly numBeams?: number;
  /** Answer only with a span of whole words of the passages' texts (src/corag/extractive.ts). */
  readonly extractive?: boolean;
  /**
   * Copy-decoding weight (src/model/t5/copy-decoding.ts): 0 turns it off; absent: the reader's
   * own `corag.copy_decoding_weight` (config.json, src/corag/checkpoint-policy.ts), else off.
   */
  readonly copyWeight?: number;
  /**
   * With `extractive`: choose among the reader's best spans by answer type and closeness to the
   * question's words too (src/corag/answer-rerank.ts). Absent: the reader's own `answer_rerank`
   * (config.json), else none; null: none.
   */
  readonly rerank?: AnswerRerankConfig | null;
}

export interface GeneratedAnswer {
  readonly answer: string;
  /** Generated ids, start token first. */
  readonly tokens: number[];
  /** Share of the reader's cross-attention on each passage while producing the answer (sums to 1). */
  readonly passageScores: number[];
}

/** A FiD batch encoded for decoding, with the decoding constraint and copy pointer of the options. */
interface EncodedQuestions {
  readonly batch: FidBatch;
  readonly encoded: { hidden: tf.Tensor3D; mask: tf.Tensor2D };
  readonly constraint: ReturnType<typeof passageSpanConstraint>;
  readonly copy: ReturnType<typeof fidCopyDecoding> | undefined;
}

async function encodeQuestions(
  bundle: ModelBundle,
  questions: readonly string[],
  passages: readonly (readonly PassageText[])[],
  options: GenerateAnswerOptions,
): Promise<EncodedQuestions> {
  const batch = buildFidBatch(bundle, questions, passages, undefined, options);
  const constraint = options.extractive
    ? passageSpanConstraint(
        bundle.readerTokenizer,
        eosId(bundle),
        passages.map((ps) => ps.map((p) => p.text)),
        questions,
      )
    : undefined;
  const copyWeight = options.copyWeight ?? bundle.policy.reader.copyDecodingWeight ?? 0;
  const copy =
    copyWeight > 0
      ? fidCopyDecoding(bundle.readerTokenizer, (await batch.inputIds.data()) as Int32Array, batch.batchSize, batch.numPassages, copyWeight)
      : undefined;
  return { batch, constraint, copy, encoded: fidEncode(bundle.inferenceReader, batch.inputIds, batch.attentionMask, batch.numPassages) };
}

function disposeEncoded(e: EncodedQuestions): void {
  tf.dispose([e.encoded.hidden, e.encoded.mask]);
  disposeFidBatch(e.batch);
}

/** Generates an answer for each question from its passages (FiD), with per-passage attention. */
export async function generateAnswers(
  bundle: ModelBundle,
  questions: readonly string[],
  passages: readonly (readonly PassageText[])[],
  options: GenerateAnswerOptions = {},
): Promise<GeneratedAnswer[]> {
  const maxNewTokens = options.maxNewTokens ?? 32;
  const numBeams = options.numBeams ?? 1;
  const e = await encodeQuestions(bundle, questions, passages, options);
  const { encoded, constraint, copy } = e;
  const rerank =
    options.extractive && constraint ? (options.rerank === undefined ? bundle.policy.reader.answerRerank : (options.rerank ?? undefined)) : undefined;
  try {
    const sequences = rerank
      ? rerankedSequences(
          bundle,
          await beamSearch(bundle.inferenceReader, encoded.hidden, encoded.mask, {
            maxNewTokens,
            numBeams: Math.max(rerank.beams, numBeams),
            constraint,
            copy,
          }),
          questions,
          passages,
          rerank,
        )
      : numBeams > 1
        ? (await beamSearch(bundle.inferenceReader, encoded.hidden, encoded.mask, { maxNewTokens, numBeams, constraint, copy })).map((h) => h[0].tokens)
        : await greedyGenerate(bundle.inferenceReader, encoded.hidden, encoded.mask, { maxNewTokens, constraint, copy });
    const scores = await attentionOverPassages(bundle, encoded, sequences, e.batch.numPassages);
    return sequences.map((tokens, i) => ({
      answer: cleanAnswer(bundle.readerTokenizer.decode(tokens)),
      tokens,
      passageScores: scores[i],
    }));
  } finally {
    disposeEncoded(e);
  }
}

/** One of the reader's candidate answers: its text and length-normalised log-probability. */
export interface CandidateAnswer {
  readonly text: string;
  readonly score: number;
  readonly tokens: number[];
}

/**
 * The reader's `beams` best answers to each question by beam search, best first (extractive
 * when `options.extractive`): what answer reranking chooses from, for fitting its weights.
 */
export async function candidateAnswers(
  bundle: ModelBundle,
  questions: readonly string[],
  passages: readonly (readonly PassageText[])[],
  beams: number,
  options: GenerateAnswerOptions = {},
): Promise<CandidateAnswer[][]> {
  const e = await encodeQuestions(bundle, questions, passages, options);
  try {
    const hypotheses = await beamSearch(bundle.inferenceReader, e.encoded.hidden, e.encoded.mask, {
      maxNewTokens: options.maxNewTokens ?? 32,
      numBeams: beams,
      constraint: e.constraint,
      copy: e.copy,
    });
    return hypotheses.map((hyps) => asCandidates(bundle, hyps));
  } finally {
    disposeEncoded(e);
  }
}

function asCandidates(bundle: ModelBundle, hypotheses: readonly BeamHypothesis[]): CandidateAnswer[] {
  return hypotheses.map((h) => ({ text: cleanAnswer(bundle.readerTokenizer.decode(h.tokens)), score: h.score, tokens: h.tokens }));
}

/** Per question, the tokens of the hypothesis answer reranking puts first (the reader's first when it proposed none). */
function rerankedSequences(
  bundle: ModelBundle,
  hypotheses: readonly (readonly BeamHypothesis[])[],
  questions: readonly string[],
  passages: readonly (readonly PassageText[])[],
  rerank: AnswerRerankConfig,
): number[][] {
  return hypotheses.map((hyps, i) => {
    return (
      rerankAnswers(
        asCandidates(bundle, hyps),
        questions[i],
        passages[i].map((p) => p.text),
        rerank,
      )[0]?.candidate.tokens ?? []
    );
  });
}

/** Re-reads the generated tokens with teacher forcing to get the cross-attention per passage. */
async function attentionOverPassages(
  bundle: ModelBundle,
  encoded: { hidden: tf.Tensor3D; mask: tf.Tensor2D },
  sequences: number[][],
  k: number,
): Promise<number[][]> {
  const length = Math.max(2, ...sequences.map((s) => s.length));
  // Decoder inputs are the sequences themselves (they start with the start token); positions past
  // a sequence's end are ignored through -100 "labels" in the weighting.
  const inputs = new Int32Array(sequences.length * (length - 1)).fill(bundle.readerConfig.pad_token_id);
  const weights = new Int32Array(sequences.length * (length - 1)).fill(IGNORE_INDEX);
  sequences.forEach((s, i) => {
    const row = s.slice(0, length - 1);
    inputs.set(row, i * (length - 1));
    weights.fill(0, i * (length - 1), i * (length - 1) + Math.max(1, s.length - 1));
  });
  const scores = tf.tidy(() => {
    const ids = tf.tensor2d(inputs, [sequences.length, length - 1], 'int32');
    const { crossAttentions } = bundle.inferenceReader.decode(ids, encoded.hidden, encoded.mask, { crossAttentions: true });
    return passageAttentionScores(crossAttentions!, k, tf.tensor2d(weights, [sequences.length, length - 1], 'int32'));
  });
  const values = (await scores.array()) as number[][];
  scores.dispose();
  return values;
}

/** Drops the sentinel the target format starts with (`<extra_id_0> answer`). */
export function cleanAnswer(decoded: string): string {
  return decoded
    .replace(/<extra_id_\d+>/g, ' ')
    .replace(/\s+/g, ' ')
    .trim();
}
