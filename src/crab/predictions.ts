/**
 * CRAB's per-question predictions (issue 18): one row per (method, shots, store, seed, round,
 * split, client, question), so every table can be re-scored from `predictions.jsonl` alone
 * (scripts/crab-rescore.ts). No passages and no question text: the SQuAD id names the question.
 */
import { METHODS, type Method } from './runner-config';
import { TRAINING_STORES, type TrainingStoreName } from './stores';

export type EvalSplit = 'dev' | 'test';

export interface PredictionRow {
  readonly method: Method;
  readonly shots: number;
  readonly store: TrainingStoreName;
  readonly seed: number;
  /** 0 = the initial model; r = after FedAvg / local round r. */
  readonly round: number;
  readonly split: EvalSplit;
  readonly client: number;
  readonly question_id: string;
  readonly prediction: string;
  readonly em: 0 | 1;
  readonly f1: number;
  /** Summed token NLL (nats) of the first gold answer's target given the same passages, and its token count. */
  readonly nll_sum: number;
  readonly nll_tokens: number;
}

/** One JSON object per line, keys in the documented order. */
export function predictionsJsonl(rows: readonly PredictionRow[]): string {
  return (
    rows
      .map((r) =>
        JSON.stringify({
          method: r.method,
          shots: r.shots,
          store: r.store,
          seed: r.seed,
          round: r.round,
          split: r.split,
          client: r.client,
          question_id: r.question_id,
          prediction: r.prediction,
          em: r.em,
          f1: r.f1,
          nll_sum: r.nll_sum,
          nll_tokens: r.nll_tokens,
        }),
      )
      .join('\n') + (rows.length ? '\n' : '')
  );
}

/** Parses predictions.jsonl; a malformed line throws with its line number. */
export function parsePredictionsJsonl(text: string): PredictionRow[] {
  const rows: PredictionRow[] = [];
  text.split('\n').forEach((line, i) => {
    if (line.trim() === '') return;
    const where = `predictions.jsonl:${i + 1}`;
    let v: Record<string, unknown>;
    try {
      v = JSON.parse(line) as Record<string, unknown>;
    } catch (e) {
      throw new Error(`${where}: not JSON (${(e as Error).message})`);
    }
    const int = (k: string) => {
      if (typeof v[k] !== 'number' || !Number.isInteger(v[k])) throw new Error(`${where}: ${k} must be an integer`);
      return v[k] as number;
    };
    const num = (k: string) => {
      if (typeof v[k] !== 'number' || !Number.isFinite(v[k])) throw new Error(`${where}: ${k} must be a number`);
      return v[k] as number;
    };
    if (!METHODS.includes(v.method as Method)) throw new Error(`${where}: unknown method ${JSON.stringify(v.method)}`);
    if (!TRAINING_STORES.includes(v.store as TrainingStoreName)) throw new Error(`${where}: unknown store ${JSON.stringify(v.store)}`);
    if (v.split !== 'dev' && v.split !== 'test') throw new Error(`${where}: split must be dev or test`);
    if (typeof v.question_id !== 'string' || typeof v.prediction !== 'string') throw new Error(`${where}: question_id and prediction must be strings`);
    const em = int('em');
    if (em !== 0 && em !== 1) throw new Error(`${where}: em must be 0 or 1`);
    rows.push({
      method: v.method as Method,
      shots: int('shots'),
      store: v.store as TrainingStoreName,
      seed: int('seed'),
      round: int('round'),
      split: v.split,
      client: int('client'),
      question_id: v.question_id,
      prediction: v.prediction,
      em,
      f1: num('f1'),
      nll_sum: num('nll_sum'),
      nll_tokens: int('nll_tokens'),
    });
  });
  return rows;
}
