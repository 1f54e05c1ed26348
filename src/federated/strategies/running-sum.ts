/**
 * The streaming aggregation state FedAvg needs: Σ weight·delta per trained tensor in float64 (so a
 * thousand fp32 deltas add up without drift) and Σ weight. One model's worth of memory, whatever
 * the number of clients.
 */
import type { NamedTensors } from '../codec';

/** Σ weight_i · delta_i per trained tensor, and Σ weight_i. */
export interface RunningSum {
  readonly sums: Map<string, { readonly shape: readonly number[]; readonly data: Float64Array }>;
  weightTotal: number;
}

export function emptyRunningSum(shapes: ReadonlyMap<string, readonly number[]>): RunningSum {
  const sums = new Map<string, { shape: readonly number[]; data: Float64Array }>();
  for (const [name, shape] of shapes) sums.set(name, { shape, data: new Float64Array(shape.reduce((a, b) => a * b, 1)) });
  return { sums, weightTotal: 0 };
}

/** sum += weight · delta, for every tensor of the delta (names/shapes already validated). */
export function addWeighted(sum: RunningSum, deltas: NamedTensors, weight: number): void {
  for (const [name, delta] of deltas) {
    const acc = sum.sums.get(name);
    if (!acc || acc.data.length !== delta.data.length) throw new Error(`running sum has no tensor "${name}" of ${delta.data.length} elements`);
  }
  for (const [name, delta] of deltas) {
    const a = sum.sums.get(name)!.data;
    const d = delta.data;
    // Same length (checked above): `?? NaN` never applies (and would poison the sum, not hide).
    for (let i = 0; i < a.length; i++) a[i] = (a[i] ?? NaN) + weight * (d[i] ?? NaN);
  }
  sum.weightTotal += weight;
}
