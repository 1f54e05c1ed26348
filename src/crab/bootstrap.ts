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

/** One (seed, client): its units' numerators and denominators, arm-major (arm k of unit i at k·n + i). */
interface Stratum {
  readonly seed: number;
  readonly n: number;
  readonly num: Float64Array;
  readonly den: Float64Array;
}

function strata(units: readonly BootstrapUnit[], arms: number): Stratum[] {
  const byKey = new Map<string, { seed: number; units: Array<ReadonlyArray<readonly [number, number]>> }>();
  for (const u of units) {
    if (u.arms.length !== arms) throw new Error(`bootstrap: a unit has ${u.arms.length} arms, expected ${arms}`);
    const key = `${u.seed}/${u.client}`;
    let s = byKey.get(key);
    if (!s) byKey.set(key, (s = { seed: u.seed, units: [] }));
    s.units.push(u.arms);
  }
  return [...byKey.values()].map(({ seed, units: list }) => {
    const n = list.length;
    const num = new Float64Array(arms * n);
    const den = new Float64Array(arms * n);
    list.forEach((u, i) => {
      for (let k = 0; k < arms; k++) {
        num[k * n + i] = u[k][0];
        den[k * n + i] = u[k][1];
      }
    });
    return { seed, n, num, den };
  });
}

/**
 * The contrast of one draw: `draw(n, out)` fills `out[0..n)` with the unit indices of a stratum
 * (0..n-1 in order for the observed value).
 */
function contrast(
  all: readonly Stratum[],
  weights: readonly number[],
  aggregation: Aggregation,
  draw: (n: number, out: Int32Array) => void,
  scratch: Int32Array,
): number {
  const arms = weights.length;
  const seedIndex = new Map<number, number>();
  for (const s of all) if (!seedIndex.has(s.seed)) seedIndex.set(s.seed, seedIndex.size);
  const seeds = seedIndex.size;
  // Per seed and arm: macro: sum of client ratios and client count; micro: numerator and denominator sums.
  const a = new Float64Array(seeds * arms);
  const b = new Float64Array(seeds * arms);
  for (const s of all) {
    draw(s.n, scratch);
    const row = seedIndex.get(s.seed)! * arms;
    for (let k = 0; k < arms; k++) {
      let num = 0;
      let den = 0;
      const base = k * s.n;
      for (let i = 0; i < s.n; i++) {
        const j = base + scratch[i];
        num += s.num[j];
        den += s.den[j];
      }
      if (aggregation === 'macro') {
        a[row + k] += num / den;
        b[row + k] += 1;
      } else {
        a[row + k] += num;
        b[row + k] += den;
      }
    }
  }
  let total = 0;
  for (let r = 0; r < seeds; r++) for (let k = 0; k < arms; k++) total += weights[k] * (a[r * arms + k] / b[r * arms + k]);
  return total / seeds;
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
  const scratch = new Int32Array(Math.max(...all.map((s) => s.n)));
  const identity = (n: number, out: Int32Array) => {
    for (let i = 0; i < n; i++) out[i] = i;
  };
  const estimate = contrast(all, weights, aggregation, identity, scratch);
  const random = seededRandom(options.seed ?? 0);
  const resample = (n: number, out: Int32Array) => {
    for (let i = 0; i < n; i++) out[i] = Math.floor(random() * n);
  };
  const values = new Float64Array(replicates);
  for (let r = 0; r < replicates; r++) values[r] = contrast(all, weights, aggregation, resample, scratch);
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
