/**
 * What a strategy is (src/federated/strategy.ts keeps the registry and `createStrategy`): the
 * round plan, the accepted updates it aggregates, its result, and the definition each strategy
 * module exports. A module of its own so the strategies and the registry do not import each other.
 */
import type { DeltaChunks, DeltaVector } from './delta-chunks';
import type { RunningSum } from './running-sum';

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

/** What the coordinator knows of each accepted update besides its delta. */
export interface AcceptedUpdate {
  /** num_examples after the session's cap. */
  readonly weight: number;
  /** L2 norm of the delta (float64 over all trained tensors), computed when it was accepted. */
  readonly norm: number;
}

export interface AggregateResult {
  /** The aggregated delta per trained tensor; new global = global + delta. */
  readonly delta: DeltaVector;
  /** An L2 norm the aggregate cannot exceed by construction (checked before publishing). */
  readonly normBound: number;
  /** Numbers worth keeping with the round (clip bound used, updates selected...). */
  readonly details: Readonly<Record<string, number>>;
}

interface StrategyCommon {
  readonly name: string;
  /** The parameters in effect (defaults filled in). */
  readonly params: Readonly<Record<string, number>>;
  configureRound(input: RoundPlanInput): RoundPlan;
  /** Round-level metrics from the weighted sums of client-reported metrics. */
  evaluate(metricSums: Readonly<Record<string, number>>, weightTotal: number): Record<string, number>;
}

export interface StreamingStrategy extends StrategyCommon {
  readonly storage: 'running-sum';
  aggregate(sum: RunningSum, updates: readonly AcceptedUpdate[]): AggregateResult;
}

export interface StoredDeltaStrategy extends StrategyCommon {
  readonly storage: 'stored-deltas';
  /** `deltas` in the same order as `updates`; no update's share of the weight may exceed `maxWeightShare`. */
  aggregate(deltas: DeltaChunks, updates: readonly AcceptedUpdate[], maxWeightShare: number): AggregateResult;
}

export type Strategy = StreamingStrategy | StoredDeltaStrategy;

export interface ParamSpec {
  readonly min: number;
  readonly max: number;
  readonly integer?: boolean;
  /** Absent: the parameter is optional and has no default (e.g. a fixed bound vs an adaptive one). */
  readonly default?: number;
  readonly description: string;
}

export interface StrategyDefinition {
  readonly name: string;
  readonly storage: Strategy['storage'];
  readonly description: string;
  readonly params: Readonly<Record<string, ParamSpec>>;
  create(params: Readonly<Record<string, number>>): Strategy;
}

/**
 * A parameter that has a default: `create` gets the params checked and completed (createStrategy),
 * so a missing one means a definition called without them.
 */
export function paramWithDefault(params: Readonly<Record<string, number>>, name: string): number {
  const value = params[name];
  if (value === undefined) throw new Error(`strategy parameter "${name}" is missing: create() takes the params createStrategy checked and completed`);
  return value;
}

/** Example-weighted means of the client metrics (every strategy reports them the same way). */
export function weightedMetrics(metricSums: Readonly<Record<string, number>>, weightTotal: number): Record<string, number> {
  const out: Record<string, number> = {};
  if (weightTotal > 0) {
    for (const [k, v] of Object.entries(metricSums)) {
      const mean = v / weightTotal;
      if (Number.isFinite(mean)) out[k] = mean;
    }
  }
  return out;
}
