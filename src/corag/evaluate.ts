/**
 * Evaluation of a client's model on QA pairs: retrieve top-k with the query encoder, generate
 * with the FiD reader, score with SQuAD's EM/F1 (src/crab/metrics). `k: 0` evaluates the
 * closed-book reader (the question alone, the paper's no-retrieval baseline).
 */
import { exactMatch, f1Score } from '../crab/metrics';
import type { QAPair } from './local-training';
import type { ModelBundle } from './model-bundle';
import { generateAnswers, type GenerateAnswerOptions } from './reader';
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
}

export interface EvaluationResult {
  /** Means in [0, 1]. */
  readonly exactMatch: number;
  readonly f1: number;
  readonly count: number;
  readonly predictions: Prediction[];
}

/** The closed-book "passage": nothing but the question reaches the reader. */
const NO_PASSAGE = { title: '', text: '' } as const;

export async function evaluate(bundle: ModelBundle, qaPairs: readonly QAPair[], source: PassageSource | null, options: EvaluateOptions): Promise<EvaluationResult> {
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
      });
    });
    options.onProgress?.(predictions.length, qaPairs.length);
  }
  const count = predictions.length;
  const mean = (f: (p: Prediction) => number) => (count ? predictions.reduce((a, p) => a + f(p), 0) / count : 0);
  return { exactMatch: mean((p) => p.exactMatch), f1: mean((p) => p.f1), count, predictions };
}
