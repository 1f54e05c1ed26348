/**
 * Multi-Krum (Blanchard et al. 2017): score each delta by the sum of its squared distances to its
 * n − f − 2 nearest other deltas, keep the m = n − f best scored, and take their share-capped
 * weighted mean. Outliers (scaled, flipped, replaced models) sit far from the honest cluster and
 * are dropped. Two chunked passes over the stored deltas (pairwise distances, then the mean);
 * memory O(clients² + clients × chunk).
 */
import type { StrategyDefinition } from './definition';
import { uniformSelection } from './common';
import { zeroDelta, type DeltaChunks } from './delta-chunks';
import { robustShares } from './weights';

/** Σ over coordinates of (Δ_a − Δ_b)² for every pair, in one chunked pass. */
export function pairwiseSquaredDistances(deltas: DeltaChunks): Float64Array[] {
  const n = deltas.count;
  const d2 = Array.from({ length: n }, () => new Float64Array(n));
  deltas.forEachChunk((_name, _start, rows) => {
    for (let a = 0; a < n; a++) {
      for (let b = a + 1; b < n; b++) {
        const ra = rows[a];
        const rb = rows[b];
        let s = 0;
        for (let j = 0; j < ra.length; j++) {
          const x = ra[j] - rb[j];
          s += x * x;
        }
        d2[a][b] += s;
        d2[b][a] += s;
      }
    }
  });
  return d2;
}

/** Indices of the m deltas with the lowest Krum scores, for f assumed Byzantine ones. */
export function krumSelect(d2: readonly Float64Array[], f: number, m: number): number[] {
  const n = d2.length;
  const neighbours = Math.max(1, Math.min(n - 1, n - f - 2));
  const scores = d2.map((row, i) => {
    const others = [...row].filter((_, j) => j !== i).sort((a, b) => a - b);
    return others.slice(0, neighbours).reduce((a, b) => a + b, 0);
  });
  return scores
    .map((s, i) => [s, i] as const)
    .sort((a, b) => a[0] - b[0] || a[1] - b[1])
    .slice(0, m)
    .map(([, i]) => i);
}

/**
 * f = ⌊fraction·n⌋, at most n − 3 so every score has at least one neighbour. Krum's guarantee needs
 * n > 2f + 2 (n ≥ 5 for f = 1); below that it still drops the f farthest-scored deltas, which
 * removes an outlier but proves nothing.
 */
export function assumedByzantine(n: number, fraction: number): number {
  return Math.max(0, Math.min(Math.floor(fraction * n), n - 3));
}

export const multiKrum: StrategyDefinition = {
  name: 'multi-krum',
  storage: 'stored-deltas',
  description: 'share-capped mean of the n − f deltas with the lowest Krum scores',
  params: {
    byzantineFraction: { min: 0, max: 0.49, default: 0.25, description: 'f / n: fraction of participants assumed hostile' },
  },
  create(params) {
    return {
      name: 'multi-krum',
      storage: 'stored-deltas',
      params,
      ...uniformSelection,
      aggregate(deltas, updates, maxWeightShare) {
        const n = deltas.count;
        const f = assumedByzantine(n, params.byzantineFraction);
        const selected = n === 1 ? [0] : krumSelect(pairwiseSquaredDistances(deltas), f, n - f);
        const shares = robustShares(
          selected.map((i) => updates[i].weight),
          maxWeightShare,
        );
        const coef = new Float64Array(n);
        selected.forEach((i, k) => (coef[i] = shares[k]));
        const out = zeroDelta(deltas.tensors);
        deltas.forEachChunk((name, start, rows) => {
          const o = out.get(name)!;
          for (let c = 0; c < n; c++) {
            const k = coef[c];
            if (k === 0) continue;
            const r = rows[c];
            for (let j = 0; j < r.length; j++) o[start + j] += k * r[j];
          }
        });
        return { delta: out, normBound: Math.max(...selected.map((i) => updates[i].norm)), details: { assumedByzantine: f, selected: selected.length } };
      },
    };
  },
};
