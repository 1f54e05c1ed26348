/**
 * FedAvg (McMahan et al. 2017): global + Σ w_i·Δ_i / Σ w_i with w_i the (capped) number of
 * training examples. Exact and streaming (one float64 running sum); no defence against a hostile
 * participant beyond the sample-count cap: any update moves the result in proportion to its size.
 * Kept as the baseline the robust strategies are measured against.
 */
import type { StrategyDefinition } from './definition';
import { uniformSelection } from './common';

export const fedAvg: StrategyDefinition = {
  name: 'fedavg',
  storage: 'running-sum',
  description: 'example-weighted mean of the deltas (exact, streaming; not robust)',
  params: {},
  create(params) {
    return {
      name: 'fedavg',
      storage: 'running-sum',
      params,
      ...uniformSelection,
      aggregate(sum, updates) {
        if (!(sum.weightTotal > 0)) throw new Error('cannot aggregate a round without updates');
        const inv = 1 / sum.weightTotal;
        const delta = new Map<string, Float64Array>();
        for (const [name, acc] of sum.sums) {
          const d = new Float64Array(acc.data.length);
          for (let i = 0; i < d.length; i++) d[i] = (acc.data[i] ?? NaN) * inv; // same length: never NaN
          delta.set(name, d);
        }
        // A weighted mean is a convex combination: its norm is at most the largest input norm.
        return { delta, normBound: Math.max(...updates.map((u) => u.norm)), details: {} };
      },
    };
  },
};
