/**
 * Aggregation strategies, after Flower's Strategy: configure a round, aggregate its results,
 * evaluate. Aggregation is split so it can stream: the round loop keeps ONE running sum of
 * weight·delta (Float64, see RunningSum) and hands it to `aggregate` when the round closes, so
 * memory and disk never grow with the number of clients. A FedProx-style strategy changes
 * `configureRound` (the proximal μ clients use); a server-optimizer strategy (FedAdam...) changes
 * `aggregate` — neither touches the round loop.
 */
import type { NamedTensor, NamedTensors, UpdateMeta } from './codec';

export interface RoundPlanInput {
  readonly round: number;
  /** Ids of all joined clients, in join order. */
  readonly candidates: readonly string[];
  readonly fraction: number;
  readonly minClients: number;
  readonly training: Readonly<Record<string, string | number | boolean>>;
  /** Uniform [0,1) source, injected so selection is reproducible in tests. */
  readonly random: () => number;
}

export interface RoundPlan {
  readonly participants: string[];
  readonly config: Record<string, string | number | boolean>;
}

/** Σ weight_i · delta_i per trained tensor, and Σ weight_i. */
export interface RunningSum {
  readonly sums: Map<string, { readonly shape: readonly number[]; readonly data: Float64Array }>;
  weightTotal: number;
}

export interface Strategy {
  readonly name: string;
  configureRound(input: RoundPlanInput): RoundPlan;
  /** How much one update counts in the sum (FedAvg: its number of training examples). */
  weightOf(update: UpdateMeta): number;
  /** New global tensors (trained ones only) from the old global and the round's running sum. */
  aggregate(global: NamedTensors, sum: RunningSum): Map<string, NamedTensor>;
  /** Round-level metrics from the weighted sums of client-reported metrics. */
  evaluate(metricSums: Readonly<Record<string, number>>, weightTotal: number): Record<string, number>;
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
    const a = acc.data;
    const d = delta.data;
    for (let i = 0; i < a.length; i++) a[i] += weight * d[i];
  }
  sum.weightTotal += weight;
}

/** Selects max(minClients, ceil(fraction·n)) candidates uniformly without replacement (partial Fisher–Yates). */
export function selectClients(candidates: readonly string[], fraction: number, minClients: number, random: () => number): string[] {
  const want = Math.min(candidates.length, Math.max(minClients, Math.ceil(fraction * candidates.length)));
  const pool = [...candidates];
  for (let i = 0; i < want; i++) {
    const j = i + Math.floor(random() * (pool.length - i));
    [pool[i], pool[j]] = [pool[j], pool[i]];
  }
  return pool.slice(0, want);
}

/** FedAvg (McMahan et al. 2017): global + Σ n_i·Δ_i / Σ n_i, weighted by training examples. */
export const fedAvg: Strategy = {
  name: 'fedavg',
  configureRound(input) {
    return {
      participants: selectClients(input.candidates, input.fraction, input.minClients, input.random),
      config: { ...input.training },
    };
  },
  weightOf(update) {
    return update.numExamples;
  },
  aggregate(global, sum) {
    if (!(sum.weightTotal > 0)) throw new Error('cannot aggregate a round without updates');
    const out = new Map<string, NamedTensor>();
    for (const [name, acc] of sum.sums) {
      const g = global.get(name);
      if (!g || g.data.length !== acc.data.length) throw new Error(`global model has no tensor "${name}" of ${acc.data.length} elements`);
      const next = new Float32Array(g.data.length);
      const inv = 1 / sum.weightTotal;
      for (let i = 0; i < next.length; i++) next[i] = g.data[i] + acc.data[i] * inv;
      out.set(name, { shape: g.shape, data: next });
    }
    return out;
  },
  evaluate(metricSums, weightTotal) {
    const out: Record<string, number> = {};
    if (weightTotal > 0) for (const [k, v] of Object.entries(metricSums)) out[k] = v / weightTotal;
    return out;
  },
};

const STRATEGIES: ReadonlyMap<string, Strategy> = new Map([[fedAvg.name, fedAvg]]);

export function strategyNamed(name: string): Strategy | undefined {
  return STRATEGIES.get(name);
}

export function strategyNames(): string[] {
  return [...STRATEGIES.keys()];
}
