/** The parts every strategy shares: uniform client selection and example-weighted metrics. */
import type { RoundPlan, RoundPlanInput } from './definition';
import { weightedMetrics } from './definition';
import { selectClients } from './selection';

export const uniformSelection = {
  configureRound(input: RoundPlanInput): RoundPlan {
    return {
      participants: selectClients(input.candidates, input.fraction, input.minClients, input.random),
      config: { ...input.training },
    };
  },
  evaluate: weightedMetrics,
};

/**
 * Lower median: the middle value, or the SMALLER of the two middle ones for an even count; NaN when
 * empty. Used for adaptive bounds: with two participants the mean of the middle pair would be
 * half of whatever the larger one claims, while the lower median stays at the honest one's size
 * as long as hostile participants are at most half.
 */
export function lowerMedianOf(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s[(s.length - 1) >> 1] ?? NaN; // only an empty list has no middle
}
