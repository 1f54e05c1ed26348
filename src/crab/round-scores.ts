/**
 * A CRAB experiment's scores: per client and round (EM, F1, gold-answer NLL), aggregated the same
 * way for every method (client-averaged, and micro beside it), the rounds selected on dev, and the
 * experiment's result record (every prediction, the per-round scores, the training losses).
 */
import type { PredictionRow } from './predictions';
import type { ExperimentSpec } from './runner-config';
import { selectRounds, type SeedSelection } from './scoring';

export interface ClientScore {
  readonly exactMatch: number;
  readonly f1: number;
  /** Mean token NLL (nats) of the client's gold answers (src/corag/evaluate). */
  readonly answerNll: number;
  /** Target tokens behind `answerNll`. */
  readonly answerTokens: number;
  readonly count: number;
}

/** Scores of one split and aggregation: EM/F1 in [0, 1], NLL in nats per answer token. */
export interface SplitScores {
  readonly exactMatch: number;
  readonly f1: number;
  readonly answerNll: number;
}

export interface RoundScore {
  readonly round: number;
  /** Client-averaged test scores in [0, 1] (every method: the mean over clients). */
  readonly exactMatch: number;
  readonly f1: number;
  /** Client-averaged test gold-answer NLL; lower is better. */
  readonly answerNll: number;
  /** exp(answerNll). */
  readonly perplexity: number;
  /** Test scores with every question (NLL: every answer token) counted once. */
  readonly micro: SplitScores;
  /** Client-averaged dev scores: what round selection looks at. */
  readonly dev: SplitScores;
  readonly perClient: readonly ClientScore[];
  readonly perClientDev: readonly ClientScore[];
  /** Mean training loss of the round, reader + retriever (null for round 0). */
  readonly trainLoss: number | null;
  /** Its reader part: the FiD token cross-entropy of the training answers (null for round 0). */
  readonly trainReaderLoss: number | null;
}

/** One answered question, before the experiment's method/shots/store/seed/round are attached. */
type AnsweredQuestion = Pick<PredictionRow, 'split' | 'client' | 'question_id' | 'prediction' | 'em' | 'f1' | 'nll_sum' | 'nll_tokens'>;

export interface ClientEvaluation {
  readonly score: ClientScore;
  readonly questions: readonly AnsweredQuestion[];
}

/** Every client's test and dev evaluation of one round (indexed by client). */
export interface RoundEvaluation {
  readonly test: ClientEvaluation[];
  readonly dev: ClientEvaluation[];
}

export interface ExperimentResult extends ExperimentSpec {
  /** Round 0 (initial model) to config.rounds. */
  readonly rounds: readonly RoundScore[];
  /** Trained rounds selected on dev (EM/F1: best dev EM; NLL: lowest dev NLL) and the last round. */
  readonly selected: Omit<SeedSelection, 'seed'>;
  /** One row per (round, split, client, question): the source of every table (predictions.jsonl). */
  readonly predictions: readonly PredictionRow[];
  /** Federated methods: the coordinator's global version after each round (0 = initial). */
  readonly globalVersions: readonly number[] | null;
  /** Passages each client could retrieve from while training (0 for closed-book). */
  readonly trainingStoreSizes: readonly number[];
  /** What the final model answered to the first test questions of client 0 (to read, not to score). */
  readonly samples?: readonly { readonly question: string; readonly answers: readonly string[]; readonly prediction: string }[];
  readonly seconds: number;
}

function mean(xs: readonly number[]): number {
  return xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : 0;
}

/** A round's mean training loss (reader + retriever) and its reader part. */
export interface RoundLoss {
  readonly loss: number;
  readonly readerLoss: number;
}

export function meanLoss(xs: readonly RoundLoss[]): RoundLoss {
  return { loss: mean(xs.map((x) => x.loss)), readerLoss: mean(xs.map((x) => x.readerLoss)) };
}

/**
 * Client-averaged scores, or (micro) every answer counted once; the micro NLL counts every
 * answer token once, as one evaluation of the pooled test set would. Every method is reported
 * both ways (client-averaged first).
 */
export function aggregateScores(
  perClient: readonly ClientScore[],
  aggregation: 'client-average' | 'micro',
): { exactMatch: number; f1: number; answerNll: number; perplexity: number } {
  const withPerplexity = (s: { exactMatch: number; f1: number; answerNll: number }) => ({ ...s, perplexity: Math.exp(s.answerNll) });
  if (aggregation === 'client-average') {
    return withPerplexity({
      exactMatch: mean(perClient.map((c) => c.exactMatch)),
      f1: mean(perClient.map((c) => c.f1)),
      answerNll: mean(perClient.map((c) => c.answerNll)),
    });
  }
  const n = perClient.reduce((a, c) => a + c.count, 0);
  const sum = (f: (c: ClientScore) => number) => perClient.reduce((a, c) => a + f(c) * c.count, 0) / Math.max(n, 1);
  const tokens = perClient.reduce((a, c) => a + c.answerTokens, 0);
  const answerNll = perClient.reduce((a, c) => a + c.answerNll * c.answerTokens, 0) / Math.max(tokens, 1);
  return withPerplexity({ exactMatch: sum((c) => c.exactMatch), f1: sum((c) => c.f1), answerNll });
}

/** The trained rounds selected on dev scores (never on test); see src/crab/scoring.ts selectRounds. */
export function devSelectedRounds(rounds: readonly RoundScore[]): ExperimentResult['selected'] {
  return selectRounds(new Map(rounds.map((r) => [r.round, { em: r.dev.exactMatch, f1: r.dev.f1, nll: r.dev.answerNll }] as const)));
}
