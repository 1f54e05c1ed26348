/**
 * Reciprocal rank fusion (Cormack, Clarke & Büttcher, SIGIR 2009): several rankings of the same
 * items become one by summing 1 / (k + rank) over the rankings an item appears in (rank from 1).
 * It needs no score calibration between the rankers (BM25 and inner products live on unrelated
 * scales), which is why hybrid keyword + dense search commonly uses it; k = 60 is the paper's.
 */

export interface FusedItem {
  readonly key: string;
  readonly score: number;
}

/**
 * Fuses rankings of item keys (best first; ranks are list positions; a key repeated within one ranking counts at its first
 * place). Ties keep the order in which the keys were first met, ranking by ranking, so the result
 * is a pure function of the input. `weights` (one per ranking, default all 1) scale each
 * ranking's share — weighted RRF, for when one ranker is known to be the stronger.
 */
export function reciprocalRankFusion(rankings: readonly (readonly string[])[], k = 60, weights?: readonly number[]): FusedItem[] {
  if (!(k >= 0) || !Number.isFinite(k)) throw new RangeError(`reciprocalRankFusion: k must be a finite number >= 0, got ${k}`);
  if (weights && (weights.length !== rankings.length || weights.some((w) => !(w >= 0) || !Number.isFinite(w)))) {
    throw new RangeError(`reciprocalRankFusion: weights must be ${rankings.length} finite numbers >= 0, got ${JSON.stringify(weights)}`);
  }
  const scores = new Map<string, number>();
  rankings.forEach((ranking, r) => {
    const weight = weights?.[r] ?? 1;
    const seen = new Set<string>();
    ranking.forEach((key, i) => {
      if (seen.has(key)) return;
      seen.add(key);
      scores.set(key, (scores.get(key) ?? 0) + weight / (k + i + 1));
    });
  });
  // Map iteration follows insertion order and Array.prototype.sort is stable: ties stay in it.
  return [...scores].map(([key, score]) => ({ key, score })).sort((a, b) => b.score - a.score);
}
