/**
 * Evaluation of a client's model on QA pairs: retrieve top-k with the query encoder, generate
 * with the FiD reader, score with SQuAD's EM/F1 (src/text/answer-metrics). `k: 0` evaluates the
 * closed-book reader (the question alone, the paper's no-retrieval baseline).
 *
 * Beside EM/F1, the gold-answer negative log-likelihood: the reader's token cross-entropy of the
 * training target `<extra_id_0> {first gold answer}</s>` given the question and the SAME passages
 * the answer was generated from (teacher forced, no gradient). EM of a small or barely trained
 * model is often 0 everywhere; the NLL still moves when the model learns anything about the
 * answers, so it is the standard secondary signal (lower is better; exp(NLL) = perplexity).
 */
import * as tf from '@tensorflow/tfjs-core';
import { exactMatch, f1Score } from '../text/answer-metrics';
import { fidForward } from '../model/t5/fid';
import { tokenNll } from '../model/t5/loss';
import type { QAPair } from './local-training';
import type { ModelBundle } from './model-bundle';
import { buildFidBatch, disposeFidBatch, generateAnswers, type GenerateAnswerOptions } from './reader';
import type { PassageText } from './retrieve';
import { retrieve, type PassageSource, type RetrievedPassage } from './retrieve';

export interface EvaluateOptions extends GenerateAnswerOptions {
  /** Passages per question; 0 = closed book. */
  readonly k: number;
  /** Questions per generation batch (default 8). */
  readonly batchSize?: number;
  readonly onProgress?: (done: number, total: number) => void;
  readonly signal?: AbortSignal;
}

export interface Prediction {
  readonly question: string;
  readonly answers: readonly string[];
  readonly prediction: string;
  readonly exactMatch: number;
  readonly f1: number;
  readonly passages: readonly RetrievedPassage[];
  /** The reader's cross-attention share per passage. */
  readonly passageScores: readonly number[];
  /** Summed token NLL (nats) of the first gold answer's target given the same passages. */
  readonly answerNllSum: number;
  /** Target tokens that NLL is summed over (the sentinel, the answer's tokens, `</s>`). */
  readonly answerTokens: number;
}

export interface EvaluationResult {
  /** Means in [0, 1]. */
  readonly exactMatch: number;
  readonly f1: number;
  /**
   * Mean token NLL (nats) of the gold answers: every target token of every question counted
   * once (as the training loss averages a batch). Lower is better.
   */
  readonly answerNll: number;
  /** Target tokens behind `answerNll` (to pool several evaluations token-weighted). */
  readonly answerTokens: number;
  readonly count: number;
  readonly predictions: Prediction[];
}

/** The closed-book "passage": nothing but the question reaches the reader. */
const NO_PASSAGE = { title: '', text: '' } as const;

export async function evaluate(
  bundle: ModelBundle,
  qaPairs: readonly QAPair[],
  source: PassageSource | null,
  options: EvaluateOptions,
): Promise<EvaluationResult> {
  if (options.k > 0 && !source) throw new Error('evaluate: k > 0 needs a passage source');
  const batchSize = options.batchSize ?? 8;
  const predictions: Prediction[] = [];
  for (let start = 0; start < qaPairs.length; start += batchSize) {
    options.signal?.throwIfAborted();
    const pairs = qaPairs.slice(start, start + batchSize);
    const questions = pairs.map((p) => p.question);
    let retrieved: RetrievedPassage[][] = questions.map(() => []);
    if (options.k > 0) {
      retrieved = await retrieve(bundle, source!, questions, { k: options.k });
      const k = Math.min(...retrieved.map((r) => r.length));
      retrieved = retrieved.map((r) => r.slice(0, k));
    }
    const readerPassages = retrieved.map((r) => (r.length ? r : [NO_PASSAGE]));
    const generated = await generateAnswers(bundle, questions, readerPassages, options);
    const nll = await goldAnswerNll(
      bundle,
      questions,
      readerPassages,
      pairs.map((p) => p.answers[0]),
      options,
    );
    pairs.forEach((qa, i) => {
      const prediction = generated[i].answer;
      predictions.push({
        question: qa.question,
        answers: qa.answers,
        prediction,
        exactMatch: exactMatch(prediction, qa.answers),
        f1: f1Score(prediction, qa.answers),
        passages: retrieved[i],
        passageScores: retrieved[i].length ? generated[i].passageScores : [],
        answerNllSum: nll[i].sum,
        answerTokens: nll[i].tokens,
      });
    });
    options.onProgress?.(predictions.length, qaPairs.length);
  }
  const count = predictions.length;
  const mean = (f: (p: Prediction) => number) => (count ? predictions.reduce((a, p) => a + f(p), 0) / count : 0);
  const tokens = predictions.reduce((a, p) => a + p.answerTokens, 0);
  const answerNll = tokens ? predictions.reduce((a, p) => a + p.answerNllSum, 0) / tokens : NaN;
  return { exactMatch: mean((p) => p.exactMatch), f1: mean((p) => p.f1), answerNll, answerTokens: tokens, count, predictions };
}

/**
 * Summed token NLL and token count of each question's answer target, teacher forced through the
 * FiD reader with all of the question's passages fused (the reader's training loss, per question,
 * outside any gradient tape).
 */
export async function goldAnswerNll(
  bundle: ModelBundle,
  questions: readonly string[],
  passages: readonly (readonly PassageText[])[],
  answers: readonly string[],
  options: GenerateAnswerOptions = {},
): Promise<Array<{ sum: number; tokens: number }>> {
  const batch = buildFidBatch(bundle, questions, passages, answers, options);
  try {
    const perQuestion = tf.tidy(() => {
      const { logits } = fidForward(bundle.inferenceReader, batch.inputIds, batch.attentionMask, batch.numPassages, batch.labels!);
      const { nll, mask } = tokenNll(logits, batch.labels!);
      return tf.stack([tf.sum(nll, 1), tf.sum(mask, 1)], 1) as tf.Tensor2D; // [B, 2]
    });
    const rows = (await perQuestion.array()) as number[][];
    perQuestion.dispose();
    return rows.map(([sum, tokens]) => ({ sum, tokens }));
  } finally {
    disposeFidBatch(batch);
  }
}
