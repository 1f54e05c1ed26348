/**
 * Multi-Krum (Blanchard et al. 2017): score each delta by the sum of its squared distances to its
 * n − f − 2 nearest other deltas, keep the m = n − f best scored, and take their share-capped
 * weighted mean. Outliers (scaled, flipped, replaced models) sit far from the honest cluster and
 * are dropped. Two chunked passes over the stored deltas (pairwise distances, then the mean);
 * memory O(clients² + clients × chunk).
 */
import { paramWithDefault, type StrategyDefinition } from './definition';
import { uniformSelection } from './common';
import { addScaledChunk, zeroDelta, type DeltaChunks } from './delta-chunks';
import { robustShares } from './weights';

/** Σ over coordinates of (Δ_a − Δ_b)² for every pair, in one chunked pass. */
export function pairwiseSquaredDistances(deltas: DeltaChunks): Float64Array[] {
  const n = deltas.count;
  const d2 = Array.from({ length: n }, () => new Float64Array(n));
  deltas.forEachChunk((_name, _start, rows) => {
    if (rows.length !== n) throw new Error(`multi-krum: a chunk has ${rows.length} rows for ${n} deltas`);
    rows.forEach((ra, a) => {
      rows.forEach((rb, b) => {
        if (b <= a) return;
        let s = 0;
        // Chunks of one tensor range: every row has the same length, so no `?? NaN` applies.
        for (let j = 0; j < ra.length; j++) {
          const x = (ra[j] ?? NaN) - (rb[j] ?? NaN);
          s += x * x;
        }
        const da = d2[a];
        const db = d2[b];
        if (!da || !db) throw new Error(`multi-krum: no distance row for delta ${a} or ${b}`);
        da[b] = (da[b] ?? NaN) + s;
        db[a] = (db[a] ?? NaN) + s;
      });
    });
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
        const f = assumedByzantine(n, paramWithDefault(params, 'byzantineFraction'));
        const selected = n === 1 ? [0] : krumSelect(pairwiseSquaredDistances(deltas), f, n - f);
        const chosen = selected.map((i) => {
          const update = updates[i];
          if (!update) throw new Error(`multi-krum: delta ${i} has no update record (${updates.length} given)`);
          return update;
        });
        const shares = robustShares(
          chosen.map((u) => u.weight),
          maxWeightShare,
        );
        const coef = new Float64Array(n);
        selected.forEach((i, k) => (coef[i] = shares[k] ?? NaN)); // a share per selected delta
        const out = zeroDelta(deltas.tensors);
        deltas.forEachChunk((name, start, rows) => {
          const o = out.get(name)!;
          rows.forEach((r, c) => {
            const k = coef[c] ?? NaN; // a coefficient per row (one row per delta)
            if (k !== 0) addScaledChunk(o, start, k, r);
          });
        });
        return { delta: out, normBound: Math.max(...chosen.map((u) => u.norm)), details: { assumedByzantine: f, selected: selected.length } };
      },
    };
  },
};
