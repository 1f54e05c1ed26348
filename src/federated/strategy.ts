/**
 * Aggregation strategies, after Flower's Strategy: configure a round, aggregate its results,
 * evaluate. A session names one (SessionConfig.strategy) with numeric parameters
 * (SessionConfig.strategyParams); `createStrategy` checks both.
 *
 * Two kinds, by what aggregation needs to see:
 * - `running-sum` (fedavg): each accepted update is added as weight·delta into ONE float64
 *   running sum; memory and disk are one model's worth whatever the number of clients.
 * - `stored-deltas` (norm-clip, median, trimmed-mean, multi-krum, centered-clip): the result
 *   depends on every update at once (a median, the round's median norm, pairwise distances), so the
 *   coordinator keeps each accepted delta as a file until the round closes — O(clients × model)
 *   DISK — and the strategy reads them in coordinate chunks (DeltaChunks), so MEMORY stays
 *   O(clients × chunk) plus one model.
 * Both return the aggregated delta and the L2 norm it cannot exceed by construction; the
 * coordinator checks the result against that bound and for finiteness before publishing it.
 */
import type { NamedTensors } from './codec';
import { centeredClip } from './strategies/centered-clip';
import type { DeltaVector } from './strategies/delta-chunks';
import type { Strategy, StrategyDefinition } from './strategies/definition';
import { fedAvg } from './strategies/fedavg';
import { multiKrum } from './strategies/multi-krum';
import { coordinateMedian } from './strategies/median';
import { normClip } from './strategies/norm-clip';
import { trimmedMean } from './strategies/trimmed-mean';

export { addWeighted, emptyRunningSum, type RunningSum } from './strategies/running-sum';
export { selectClients } from './strategies/selection';

export type {
  AcceptedUpdate,
  AggregateResult,
  ParamSpec,
  RoundPlan,
  RoundPlanInput,
  Strategy,
  StrategyDefinition,
  StoredDeltaStrategy,
  StreamingStrategy,
} from './strategies/definition';
export { weightedMetrics } from './strategies/definition';

export class StrategyConfigError extends Error {
  constructor(
    readonly code: 'unknown_strategy' | 'invalid_strategy_params',
    message: string,
  ) {
    super(message);
    this.name = 'StrategyConfigError';
  }
}

const DEFINITIONS: readonly StrategyDefinition[] = [fedAvg, normClip, coordinateMedian, trimmedMean, multiKrum, centeredClip];

export function strategyDefinition(name: string): StrategyDefinition | undefined {
  return DEFINITIONS.find((d) => d.name === name);
}

export function strategyNames(): string[] {
  return DEFINITIONS.map((d) => d.name);
}

/** The strategy `name` with `params` checked against its specification and defaults filled in. */
export function createStrategy(name: string, params: Readonly<Record<string, number>> = {}): Strategy {
  const def = strategyDefinition(name);
  if (!def) throw new StrategyConfigError('unknown_strategy', `strategy "${name}" is not one of: ${strategyNames().join(', ')}`);
  const filled: Record<string, number> = {};
  for (const [key, value] of Object.entries(params)) {
    const spec = def.params[key];
    if (!spec) {
      const known = Object.keys(def.params);
      throw new StrategyConfigError(
        'invalid_strategy_params',
        `strategy "${name}" has no parameter "${key}"${known.length ? ` (it takes: ${known.join(', ')})` : ' (it takes none)'}`,
      );
    }
    if (typeof value !== 'number' || !Number.isFinite(value) || value < spec.min || value > spec.max || (spec.integer && !Number.isInteger(value))) {
      throw new StrategyConfigError(
        'invalid_strategy_params',
        `strategy "${name}" parameter "${key}" must be ${spec.integer ? 'an integer' : 'a number'} in [${spec.min}, ${spec.max}], got ${JSON.stringify(value)}`,
      );
    }
    filled[key] = value;
  }
  for (const [key, spec] of Object.entries(def.params)) if (!(key in filled) && spec.default !== undefined) filled[key] = spec.default;
  return def.create(filled);
}

/** New global tensors = global + delta, rounded to float32 (trained tensors only). */
export function applyDelta(global: NamedTensors, delta: DeltaVector): Map<string, { shape: readonly number[]; data: Float32Array }> {
  const out = new Map<string, { shape: readonly number[]; data: Float32Array }>();
  for (const [name, d] of delta) {
    const g = global.get(name);
    if (!g || g.data.length !== d.length) throw new Error(`global model has no tensor "${name}" of ${d.length} elements`);
    const next = new Float32Array(d.length);
    // Same length (checked above): `?? NaN` never applies.
    for (let i = 0; i < next.length; i++) next[i] = (g.data[i] ?? NaN) + (d[i] ?? NaN);
    out.set(name, { shape: g.shape, data: next });
  }
  return out;
}
