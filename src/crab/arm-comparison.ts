/**
 * Two runs of the same questions compared round by round: "is training B's dev EM at round r
 * lower than training A's?" (e.g. LoRA sessions vs full fine-tuning at equal rounds, issue 20).
 * A run's summary (src/crab/scoring.ts) compares rounds and methods WITHIN one run; this pairs the
 * predictions of two runs question by question — the same (seed, client, question) answered by
 * each at round r — and gives the paired, client-stratified bootstrap interval of B − A
 * (src/crab/bootstrap.ts), client-averaged as every CRAB score is.
 */
import { pairedBootstrap, verdict, type ConfidenceInterval, type Verdict } from './bootstrap';
import type { EvalSplit, PredictionRow } from './predictions';
import type { Metric } from './scoring';

export interface ArmContrast {
  readonly round: number;
  readonly metric: Metric;
  /** Questions answered by both runs at this round. */
  readonly questions: number;
  /** Client-averaged scores of A and B (EM, F1 as fractions; NLL in nats per token). */
  readonly a: number;
  readonly b: number;
  /** B − A with its interval; the verdict is for "B ≥ A is kept", i.e. B − A > 0 when higher is better. */
  readonly difference: ConfidenceInterval;
  /** 'contradicted' when B is worse than A with the interval wholly on the worse side, 'supported' when wholly better. */
  readonly verdict: Verdict;
}

const key = (r: PredictionRow) => `${r.seed}/${r.client}/${r.question_id}`;

function unitOf(r: PredictionRow, metric: Metric): readonly [number, number] {
  if (metric === 'em') return [r.em, 1];
  if (metric === 'f1') return [r.f1, 1];
  return [r.nll_sum, r.nll_tokens];
}

/**
 * B − A on `split` at `round` for `metric`, over the questions both runs answered there. Throws
 * when the runs share no question (different splits or round counts), or when a run answered a
 * question twice at that round (two experiments in one file: filter first).
 */
export function compareArms(
  a: readonly PredictionRow[],
  b: readonly PredictionRow[],
  options: { readonly split: EvalSplit; readonly round: number; readonly metric: Metric; readonly replicates?: number; readonly seed?: number },
): ArmContrast {
  const pick = (rows: readonly PredictionRow[], which: string) => {
    const out = new Map<string, PredictionRow>();
    for (const r of rows) {
      if (r.split !== options.split || r.round !== options.round) continue;
      if (out.has(key(r))) throw new Error(`run ${which} answered ${key(r)} twice at round ${options.round} (${options.split}); pass one experiment's rows`);
      out.set(key(r), r);
    }
    return out;
  };
  const ra = pick(a, 'A');
  const rb = pick(b, 'B');
  const shared = [...ra.keys()].filter((k) => rb.has(k));
  if (shared.length === 0) throw new Error(`the two runs share no ${options.split} question at round ${options.round}`);
  const units = shared.map((k) => {
    const x = ra.get(k)!;
    const y = rb.get(k)!;
    return { seed: x.seed, client: x.client, arms: [unitOf(x, options.metric), unitOf(y, options.metric)] as const };
  });
  const armScore = (arm: 0 | 1) => pairedBootstrap(units, { weights: arm === 0 ? [1, 0] : [0, 1], replicates: 1 }).estimate;
  const difference = pairedBootstrap(units, { weights: [-1, 1], replicates: options.replicates ?? 2000, seed: options.seed ?? 0 });
  return {
    round: options.round,
    metric: options.metric,
    questions: shared.length,
    a: armScore(0),
    b: armScore(1),
    difference,
    // Lower NLL is better: B keeps up when B − A < 0.
    verdict: verdict(difference, options.metric === 'nll' ? -1 : 1),
  };
}
