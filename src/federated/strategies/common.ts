/** The parts every strategy shares: uniform client selection and example-weighted metrics. */
import type { RoundPlan, RoundPlanInput } from '../strategy';
import { weightedMetrics } from '../strategy';
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

/** Median of a list of numbers (mean of the two middle ones for an even count); NaN when empty. */
export function medianOf(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}
