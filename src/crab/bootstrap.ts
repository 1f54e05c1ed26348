/**
 * Paired bootstrap confidence intervals for CRAB's comparisons (issue 18): "is CoRAG's test EM
 * really above RAG-Local's, or is it one question of 256?". Pure and seeded, so a re-score of the
 * same predictions gives the same interval on any machine.
 *
 * A unit is one test question of one (seed, client): it carries, for every arm being compared,
 * a ratio's numerator and denominator (EM: em / 1; NLL: summed token NLL / answer tokens). An
 * arm's score is the client-averaged (macro) ratio — within a client Σ numerator / Σ denominator,
 * then the mean over clients — or the micro ratio over all its units, and the mean of that over
 * seeds. The contrast is Σ_k weight_k · score_k (e.g. [1, -1] for "a minus b").
 *
 * Resampling: within every (seed, client) stratum, the stratum's question indices are drawn with
 * replacement, the SAME indices for every arm (paired), independently per stratum. So seeds are
 * pooled by resampling questions within each seed (not over (seed, question) pairs), and every
 * client keeps its question count, which the macro average needs. The interval is the percentile
 * interval of the replicated contrast.
 */
import { seededRandom } from '../util/random';

/** One question of one (seed, client): per arm, [numerator, denominator]. */
export interface BootstrapUnit {
  readonly seed: number;
  readonly client: number;
  readonly arms: ReadonlyArray<readonly [number, number]>;
}

export type Aggregation = 'macro' | 'micro';

export interface BootstrapOptions {
  /** One weight per arm; the contrast is Σ weight · arm score. */
  readonly weights: readonly number[];
  readonly aggregation?: Aggregation;
  /** Bootstrap replicates (default 2000). */
  readonly replicates?: number;
  /** Coverage of the interval (default 0.95). */
  readonly confidence?: number;
  /** Seed of the resampling (default 0). */
  readonly seed?: number;
}

export interface ConfidenceInterval {
  /** The contrast on the data as observed. */
  readonly estimate: number;
  readonly low: number;
  readonly high: number;
  readonly replicates: number;
  readonly confidence: number;
  /** Units (questions × seeds) behind it. */
  readonly units: number;
}

interface Stratum {
  readonly seed: number;
  readonly client: number;
  readonly units: ReadonlyArray<ReadonlyArray<readonly [number, number]>>;
}

function strata(units: readonly BootstrapUnit[], arms: number): Stratum[] {
  const byKey = new Map<string, { seed: number; client: number; units: Array<ReadonlyArray<readonly [number, number]>> }>();
  for (const u of units) {
    if (u.arms.length !== arms) throw new Error(`bootstrap: a unit has ${u.arms.length} arms, expected ${arms}`);
    const key = `${u.seed}/${u.client}`;
    let s = byKey.get(key);
    if (!s) byKey.set(key, (s = { seed: u.seed, client: u.client, units: [] }));
    s.units.push(u.arms);
  }
  return [...byKey.values()];
}

/**
 * The contrast of the units picked by `pick(stratumIndex, unitCount)` (which yields the indices
 * of one stratum's draw); `pick` returning 0..n-1 gives the observed value.
 */
function contrast(all: readonly Stratum[], weights: readonly number[], aggregation: Aggregation, pick: (n: number) => Iterable<number>): number {
  const arms = weights.length;
  // seed -> per arm: macro: sum of client ratios and client count; micro: numerator and denominator sums.
  const bySeed = new Map<number, { a: Float64Array; b: Float64Array }>();
  for (const s of all) {
    let acc = bySeed.get(s.seed);
    if (!acc) bySeed.set(s.seed, (acc = { a: new Float64Array(arms), b: new Float64Array(arms) }));
    const num = new Float64Array(arms);
    const den = new Float64Array(arms);
    for (const i of pick(s.units.length)) {
      const u = s.units[i];
      for (let k = 0; k < arms; k++) {
        num[k] += u[k][0];
        den[k] += u[k][1];
      }
    }
    for (let k = 0; k < arms; k++) {
      if (aggregation === 'macro') {
        acc.a[k] += num[k] / den[k];
        acc.b[k] += 1;
      } else {
        acc.a[k] += num[k];
        acc.b[k] += den[k];
      }
    }
  }
  let total = 0;
  for (const acc of bySeed.values()) for (let k = 0; k < arms; k++) total += weights[k] * (acc.a[k] / acc.b[k]);
  return total / bySeed.size;
}

/** The `q`-quantile of sorted values by the nearest-rank rule (q in [0, 1]). */
export function quantile(sorted: ArrayLike<number>, q: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil(q * sorted.length)));
  return sorted[rank - 1];
}

/** Paired, stratified (seed × client) percentile bootstrap of a contrast between arms. */
export function pairedBootstrap(units: readonly BootstrapUnit[], options: BootstrapOptions): ConfidenceInterval {
  const { weights } = options;
  const aggregation = options.aggregation ?? 'macro';
  const replicates = options.replicates ?? 2000;
  const confidence = options.confidence ?? 0.95;
  if (units.length === 0) throw new Error('bootstrap: no units');
  if (!Number.isInteger(replicates) || replicates < 1) throw new RangeError(`bootstrap: replicates must be a positive integer, got ${replicates}`);
  if (!(confidence > 0 && confidence < 1)) throw new RangeError(`bootstrap: confidence must be in (0, 1), got ${confidence}`);
  const all = strata(units, weights.length);
  const identity = function* (n: number) {
    for (let i = 0; i < n; i++) yield i;
  };
  const estimate = contrast(all, weights, aggregation, identity);
  const random = seededRandom(options.seed ?? 0);
  const draw = function* (n: number) {
    for (let i = 0; i < n; i++) yield Math.floor(random() * n);
  };
  const values = new Float64Array(replicates);
  for (let r = 0; r < replicates; r++) values[r] = contrast(all, weights, aggregation, draw);
  values.sort();
  const alpha = 1 - confidence;
  return { estimate, low: quantile(values, alpha / 2), high: quantile(values, 1 - alpha / 2), replicates, confidence, units: units.length };
}

export type Verdict = 'supported' | 'contradicted' | 'undecided';

/**
 * The word for a claim "the contrast is > 0" (or "< 0" with direction -1): supported when the
 * interval lies wholly on the claimed side of 0, contradicted when wholly on the other side,
 * undecided when it contains 0.
 */
export function verdict(ci: Pick<ConfidenceInterval, 'low' | 'high'>, direction: 1 | -1 = 1): Verdict {
  const low = direction === 1 ? ci.low : -ci.high;
  const high = direction === 1 ? ci.high : -ci.low;
  if (low > 0) return 'supported';
  if (high < 0) return 'contradicted';
  return 'undecided';
}

/** Several sub-claims that must all hold: supported if all are, contradicted if any is, else undecided. */
export function combineVerdicts(verdicts: readonly Verdict[]): Verdict {
  if (verdicts.some((v) => v === 'contradicted')) return 'contradicted';
  if (verdicts.length > 0 && verdicts.every((v) => v === 'supported')) return 'supported';
  return 'undecided';
}
