/**
 * How much each accepted update counts. num_examples is self-reported, so it is capped (a count
 * above the cap counts as the cap: an honest client with more data than one round can use is not
 * refused), and robust strategies additionally cap every update's share of the round's total
 * weight, so no single participant dominates however many examples it claims.
 */
import { parseTrainingConfig, type TrainingRecord } from '../protocol';

/** The weight of an update reporting `numExamples`, at most `maxExamples`. */
export function cappedWeight(numExamples: number, maxExamples: number): number {
  return Math.min(numExamples, maxExamples);
}

/**
 * The robust strategies' shares: weights above the round's median weight count as the median (so
 * colluders claiming many examples weigh no more than a typical participant), then no share above
 * `maxShare` (cappedShares).
 */
export function robustShares(weights: readonly number[], maxShare: number): number[] {
  const sorted = [...weights].sort((a, b) => a - b);
  const m = sorted.length >> 1;
  // NaN only for no weights, where no share is computed.
  const upper = sorted[m] ?? NaN;
  const median = sorted.length % 2 ? upper : ((sorted[m - 1] ?? NaN) + upper) / 2;
  return cappedShares(
    weights.map((w) => Math.min(w, median)),
    maxShare,
  );
}

/**
 * Normalised shares (summing to 1) proportional to `weights`, with no share above `maxShare`
 * (water-filling: capped updates get exactly the cap, the rest share what remains in proportion to
 * their weights). With fewer than 1/maxShare updates the cap cannot hold; the bound used is then
 * 1/n, i.e. equal shares.
 */
export function cappedShares(weights: readonly number[], maxShare: number): number[] {
  const n = weights.length;
  if (n === 0) return [];
  if (weights.some((w) => !(w >= 0) || !Number.isFinite(w))) throw new Error('weights must be finite and non-negative');
  const cap = Math.max(maxShare, 1 / n);
  // Largest weight first (a stable sort: equal weights keep their order).
  const order = weights.map((weight, index) => ({ weight, index })).sort((a, b) => b.weight - a.weight);
  const shares = new Array<number>(n).fill(0);
  let capped = 0;
  let rest = weights.reduce((a, b) => a + b, 0);
  // Cap the largest weights one by one while the largest uncapped one would exceed the cap.
  for (const { weight } of order) {
    const remaining = 1 - capped * cap;
    if (rest > 0 && (weight / rest) * remaining <= cap * (1 + 1e-12)) break;
    if (rest <= 0) break;
    rest -= weight;
    capped++;
  }
  const remaining = 1 - capped * cap;
  const uncapped = n - capped;
  order.forEach(({ weight, index }, k) => {
    // All remaining weights zero: split what is left equally.
    shares[index] = k < capped ? cap : rest > 0 ? (weight / rest) * remaining : remaining / uncapped;
  });
  return shares;
}

/**
 * The default cap on num_examples: the examples one round of the session's training processes
 * (localSteps × batchSize, as the protocol's parseTrainingConfig reads them) when the training config
 * names both, else `fallback`. Clients report their number of local QA pairs; more than one round
 * can use does not make an update more informative.
 */
export function defaultMaxExamples(training: TrainingRecord, fallback: number): number {
  const { localSteps: steps, batchSize: batch } = parseTrainingConfig(training);
  return steps !== undefined && steps > 0 && batch !== undefined && batch > 0 ? Math.max(1, Math.ceil(steps * batch)) : fallback;
}
