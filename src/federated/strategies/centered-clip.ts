/**
 * Centered clipping (Karimireddy, He & Jaggi 2021): starting from v = 0, repeat
 * v ← v + Σ s_i · min(1, τ/‖Δ_i − v‖) · (Δ_i − v), so every update pulls the center by at most τ.
 * τ is fixed (`clipRadius`) or adaptive: `radiusMultiplier` × the (lower) median distance of the updates
 * to the current center. Each iteration takes two chunked passes over the stored deltas (distances,
 * then the step); memory is one float64 model (v) plus O(clients × chunk).
 */
import { paramWithDefault, type StrategyDefinition } from './definition';
import { lowerMedianOf, uniformSelection } from './common';
import { addScaledChunk, zeroDelta, type DeltaChunks, type DeltaVector } from './delta-chunks';
import { robustShares } from './weights';

/** ‖Δ_i − v‖ for every delta, in one chunked pass. */
export function distancesTo(deltas: DeltaChunks, v: DeltaVector): number[] {
  const s = new Float64Array(deltas.count);
  deltas.forEachChunk((name, start, rows) => {
    const c = v.get(name)!;
    rows.forEach((r, i) => {
      if (start + r.length > c.length) throw new RangeError(`centered-clip: delta chunk [${start}, ${start + r.length}) is outside "${name}"`);
      let acc = 0;
      for (let j = 0; j < r.length; j++) {
        const x = (r[j] ?? NaN) - (c[start + j] ?? NaN); // in range (checked above)
        acc += x * x;
      }
      s[i] = (s[i] ?? NaN) + acc; // one distance per delta: i < deltas.count
    });
  });
  return Array.from(s, Math.sqrt);
}

export const centeredClip: StrategyDefinition = {
  name: 'centered-clip',
  storage: 'stored-deltas',
  description: 'iterated clipping of the deltas around a moving center (radius fixed or a multiple of the median distance)',
  params: {
    iterations: { min: 1, max: 20, integer: true, default: 3, description: 'L: clipping iterations' },
    clipRadius: { min: 0, max: 1e12, description: 'fixed τ; when absent τ is adaptive' },
    radiusMultiplier: { min: 0.1, max: 100, default: 1, description: 'adaptive τ = this × the median distance of the updates to the center' },
  },
  create(params) {
    return {
      name: 'centered-clip',
      storage: 'stored-deltas',
      params,
      ...uniformSelection,
      aggregate(deltas, updates, maxWeightShare) {
        const shares = robustShares(
          updates.map((u) => u.weight),
          maxWeightShare,
        );
        const v = zeroDelta(deltas.tensors);
        let moved = 0;
        let lastRadius = 0;
        const iterations = paramWithDefault(params, 'iterations');
        for (let it = 0; it < iterations; it++) {
          const dist = it === 0 ? updates.map((u) => u.norm) : distancesTo(deltas, v);
          const tau = params.clipRadius ?? paramWithDefault(params, 'radiusMultiplier') * lowerMedianOf(dist);
          const coef = dist.map((d, i) => (shares[i] ?? NaN) * (d > tau ? tau / d : 1)); // a share per update
          const coefSum = coef.reduce((a, b) => a + b, 0);
          // v ← v + Σ coef_i (Δ_i − v) = (1 − Σ coef) v + Σ coef_i Δ_i, coordinate by coordinate.
          const keep = 1 - coefSum;
          const next = zeroDelta(deltas.tensors);
          deltas.forEachChunk((name, start, rows) => {
            const o = next.get(name)!;
            const c = v.get(name)!;
            const len = rows[0]?.length ?? 0;
            if (start + len > c.length) throw new RangeError(`centered-clip: delta chunk [${start}, ${start + len}) is outside "${name}"`);
            for (let j = 0; j < len; j++) o[start + j] = keep * (c[start + j] ?? NaN); // in range (checked above)
            rows.forEach((r, i) => {
              const k = coef[i] ?? NaN; // a coefficient per row (one row per update)
              if (k !== 0) addScaledChunk(o, start, k, r);
            });
          });
          for (const [name, o] of next) v.set(name, o);
          moved += tau;
          lastRadius = tau;
        }
        // Each iteration moves the center by a convex combination of vectors no longer than τ.
        return { delta: v, normBound: moved, details: { iterations, lastRadius } };
      },
    };
  },
};
