/**
 * Coordinate-wise trimmed mean (Yin et al. 2018): per coordinate, drop the ⌊β·n⌋ largest and
 * ⌊β·n⌋ smallest client values and average the rest (unweighted). Robust to fewer than β·n
 * arbitrary updates; closer to the mean than the median when everyone is honest. Stored deltas,
 * one chunked pass.
 */
import { paramWithDefault, type StrategyDefinition } from './definition';
import { uniformSelection } from './common';
import { zeroDelta } from './delta-chunks';
import { orderStatisticBound } from './median';

/** How many values to drop at each end for n clients: ⌊β·n⌋, leaving at least one. */
export function trimCount(n: number, beta: number): number {
  return Math.min(Math.floor(beta * n), Math.floor((n - 1) / 2));
}

export const trimmedMean: StrategyDefinition = {
  name: 'trimmed-mean',
  storage: 'stored-deltas',
  description: 'coordinate-wise mean after dropping the β·n largest and smallest values',
  params: {
    trimFraction: { min: 0, max: 0.49, default: 0.25, description: 'β: fraction of clients dropped at EACH end, per coordinate' },
  },
  create(params) {
    return {
      name: 'trimmed-mean',
      storage: 'stored-deltas',
      params,
      ...uniformSelection,
      aggregate(deltas, updates) {
        const out = zeroDelta(deltas.tensors);
        const n = deltas.count;
        const k = trimCount(n, paramWithDefault(params, 'trimFraction'));
        const column = new Float64Array(n);
        const kept = n - 2 * k;
        deltas.forEachChunk((name, start, rows) => {
          const o = out.get(name)!;
          const len = rows[0]?.length ?? 0;
          for (let j = 0; j < len; j++) {
            // n rows of len values each (the chunk reader's contract): no `?? NaN` applies, and one
            // would make the aggregate non-finite, which is refused before publishing.
            for (let c = 0; c < n; c++) column[c] = rows[c]?.[j] ?? NaN;
            column.sort();
            let s = 0;
            for (let c = k; c < n - k; c++) s += column[c] ?? NaN;
            o[start + j] = s / kept;
          }
        });
        return { delta: out, normBound: orderStatisticBound(updates.map((u) => u.norm)), details: { trimmedEachEnd: k } };
      },
    };
  },
};
