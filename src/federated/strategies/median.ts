/**
 * Coordinate-wise median (Yin et al. 2018): each coordinate of the aggregate is the median of the
 * clients' values for it (unweighted: a weight would be a lever for the client that reports it).
 * Robust to fewer than half of the updates being arbitrary. Needs all clients' values per
 * coordinate: stored deltas, one chunked pass.
 */
import type { StrategyDefinition } from './definition';
import { uniformSelection } from './common';
import { zeroDelta } from './delta-chunks';

/** sqrt(Σ_i ‖Δ_i‖²): no coordinate-wise order statistic of the deltas can have a larger L2 norm. */
export function orderStatisticBound(norms: readonly number[]): number {
  return Math.sqrt(norms.reduce((a, n) => a + n * n, 0));
}

export const coordinateMedian: StrategyDefinition = {
  name: 'median',
  storage: 'stored-deltas',
  description: 'coordinate-wise median of the deltas (unweighted)',
  params: {},
  create(params) {
    return {
      name: 'median',
      storage: 'stored-deltas',
      params,
      ...uniformSelection,
      aggregate(deltas, updates) {
        const out = zeroDelta(deltas.tensors);
        const n = deltas.count;
        const column = new Float64Array(n);
        const m = n >> 1;
        deltas.forEachChunk((name, start, rows) => {
          const o = out.get(name)!;
          const len = rows[0]?.length ?? 0;
          for (let j = 0; j < len; j++) {
            // n rows of len values each (the chunk reader's contract): no `?? NaN` applies, and one
            // would make the aggregate non-finite, which is refused before publishing.
            for (let c = 0; c < n; c++) column[c] = rows[c]?.[j] ?? NaN;
            column.sort();
            const upper = column[m] ?? NaN;
            o[start + j] = n % 2 ? upper : ((column[m - 1] ?? NaN) + upper) / 2;
          }
        });
        return { delta: out, normBound: orderStatisticBound(updates.map((u) => u.norm)), details: {} };
      },
    };
  },
};
