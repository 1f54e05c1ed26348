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
 * is a pure function of the input.
 */
export function reciprocalRankFusion(rankings: readonly (readonly string[])[], k = 60): FusedItem[] {
  if (!(k >= 0) || !Number.isFinite(k)) throw new RangeError(`reciprocalRankFusion: k must be a finite number >= 0, got ${k}`);
  const scores = new Map<string, number>();
  for (const ranking of rankings) {
    const seen = new Set<string>();
    ranking.forEach((key, i) => {
      if (seen.has(key)) return;
      seen.add(key);
      scores.set(key, (scores.get(key) ?? 0) + 1 / (k + i + 1));
    });
  }
  // Map iteration follows insertion order and Array.prototype.sort is stable: ties stay in it.
  return [...scores].map(([key, score]) => ({ key, score })).sort((a, b) => b.score - a.score);
}
