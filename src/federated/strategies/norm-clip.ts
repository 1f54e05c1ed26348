/**
 * Norm clipping (as in "Can You Really Backdoor Federated Learning?", Sun et al. 2019): every
 * delta is scaled down to an L2 bound B before a share-capped weighted mean. B is fixed
 * (`clipNorm`) or adaptive: `clipMultiplier` × the round's (lower) median update norm, so fewer than half
 * of the participants cannot raise it. Bounds what any one update can do to ‖aggregate‖ ≤ B; it
 * does not stop a bounded update pointing the wrong way (sign flip, ALIE) — see ROBUSTNESS.md.
 * Needs every norm before the first delta is scaled: stored deltas, one pass.
 */
import { paramWithDefault, type StrategyDefinition } from './definition';
import { robustShares } from './weights';
import { lowerMedianOf, uniformSelection } from './common';
import { addScaledChunk, zeroDelta } from './delta-chunks';

export const normClip: StrategyDefinition = {
  name: 'norm-clip',
  storage: 'stored-deltas',
  description: 'share-capped weighted mean of deltas clipped to an L2 bound (fixed, or a multiple of the round median norm)',
  params: {
    clipNorm: { min: 0, max: 1e12, description: 'fixed L2 bound; when absent the bound is adaptive' },
    clipMultiplier: { min: 0.1, max: 100, default: 1, description: "adaptive bound = this × the median norm of the round's updates" },
  },
  create(params) {
    return {
      name: 'norm-clip',
      storage: 'stored-deltas',
      params,
      ...uniformSelection,
      aggregate(deltas, updates, maxWeightShare) {
        const bound = params.clipNorm ?? paramWithDefault(params, 'clipMultiplier') * lowerMedianOf(updates.map((u) => u.norm));
        const shares = robustShares(
          updates.map((u) => u.weight),
          maxWeightShare,
        );
        const coef = updates.map((u, i) => (shares[i] ?? NaN) * (u.norm > bound ? bound / u.norm : 1)); // a share per update
        const out = zeroDelta(deltas.tensors);
        deltas.forEachChunk((name, start, rows) => {
          const o = out.get(name)!;
          rows.forEach((r, c) => {
            const k = coef[c] ?? NaN; // a coefficient per row (one row per update)
            if (k !== 0) addScaledChunk(o, start, k, r);
          });
        });
        const clipped = updates.filter((u) => u.norm > bound).length;
        return { delta: out, normBound: bound, details: { clipBound: bound, clipped } };
      },
    };
  },
};
