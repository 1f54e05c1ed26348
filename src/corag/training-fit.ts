/**
 * Does a training step fit this tab, and if not, what does? The step's estimated footprint
 * (src/corag/training-footprint.ts) is held against two limits:
 *   - a memory budget: what the tab may use in all (the participant's setting, `?memoryBudget=`,
 *     a Node caller's option, or by default half the device memory the browser reports);
 *   - on WebGPU, the largest buffer the device binds (min(maxBufferSize,
 *     maxStorageBufferBindingSize)): the largest single tensor must fit in one.
 * When the requested step does not fit, a session that allows it ('adapt') trains with the
 * largest batch that fits, then with the FiD encoder checkpointed; otherwise ('refuse', or when
 * nothing fits) the client refuses before training with a TrainingMemoryError that says what
 * would fit. Pure: no tensors, no browser APIs (the edges pass what they read in).
 */
import { TrainingMemoryError, type StepConfig } from './errors';
import type { FootprintEstimate } from './training-footprint';

export type { StepConfig } from './errors';

export interface MemoryLimits {
  /** Bytes the training step may use in all; absent: no budget. */
  readonly budgetBytes?: number;
  /** Where the budget comes from, in words ("this tab's memory setting"), for messages. */
  readonly budgetSource?: string;
  /** WebGPU: the largest single buffer the device allows; absent: no such limit. */
  readonly maxBufferBytes?: number;
}

/** 'adapt': train a smaller batch (then with encoder checkpointing) when the requested one does not fit; 'refuse': refuse instead. */
export type MemoryFitPolicy = 'adapt' | 'refuse';

export type FitPlan =
  | { readonly kind: 'fits'; readonly config: StepConfig; readonly estimate: FootprintEstimate }
  | {
      readonly kind: 'adapted';
      readonly requested: StepConfig;
      readonly requestedEstimate: FootprintEstimate;
      readonly config: StepConfig;
      readonly estimate: FootprintEstimate;
    };

/** Whether `estimate` is within `limits`. */
export function fitsLimits(estimate: FootprintEstimate, limits: MemoryLimits): boolean {
  if (limits.budgetBytes !== undefined && estimate.peakBytes > limits.budgetBytes) return false;
  if (limits.maxBufferBytes !== undefined && estimate.largestTensor.bytes > limits.maxBufferBytes) return false;
  return true;
}

/** Configs to try, closest to the request first: the batch lowered, then also the encoder checkpointed per passage. */
function smallerSteps(requested: StepConfig): StepConfig[] {
  const out: StepConfig[] = [];
  for (let batchSize = requested.batchSize - 1; batchSize >= 1; batchSize--) out.push({ ...requested, batchSize });
  if (requested.encoderCheckpointRows === undefined) {
    for (let batchSize = requested.batchSize; batchSize >= 1; batchSize--) out.push({ ...requested, batchSize, encoderCheckpointRows: 1 });
  }
  return out;
}

/** What to suggest when the step does not fit: the smaller steps, then also fewer passages per question. */
function suggestions(requested: StepConfig): StepConfig[] {
  const out = smallerSteps(requested);
  for (let k = requested.k - 1; k >= 1; k--) {
    const withK = { ...requested, k };
    out.push(withK, ...smallerSteps(withK));
  }
  return out;
}

/**
 * The step to train: the requested one when it fits, else (policy 'adapt') the largest batch that
 * fits, then with encoder checkpointing. Throws a TrainingMemoryError naming what would fit (a
 * smaller batch, checkpointing or fewer passages) when the policy is 'refuse' or nothing at the
 * requested k fits.
 */
export function planStepToFit(
  requested: StepConfig,
  estimate: (config: StepConfig) => FootprintEstimate,
  limits: MemoryLimits,
  policy: MemoryFitPolicy = 'adapt',
): FitPlan {
  const requestedEstimate = estimate(requested);
  if (fitsLimits(requestedEstimate, limits)) return { kind: 'fits', config: requested, estimate: requestedEstimate };
  if (policy === 'adapt') {
    for (const config of smallerSteps(requested)) {
      const e = estimate(config);
      if (fitsLimits(e, limits)) return { kind: 'adapted', requested, requestedEstimate, config, estimate: e };
    }
  }
  let suggestion: { config: StepConfig; peakBytes: number } | undefined;
  for (const config of suggestions(requested)) {
    const e = estimate(config);
    if (fitsLimits(e, limits)) {
      suggestion = { config, peakBytes: e.peakBytes };
      break;
    }
  }
  throw new TrainingMemoryError({
    requested,
    peakBytes: requestedEstimate.peakBytes,
    largestTensorBytes: requestedEstimate.largestTensor.bytes,
    largestTensor: requestedEstimate.largestTensor.what,
    budgetBytes: limits.budgetBytes,
    budgetSource: limits.budgetSource,
    maxBufferBytes: limits.maxBufferBytes,
    weightBytes: requestedEstimate.parts.weights + requestedEstimate.parts.optimizerState,
    suggestion,
    policy,
  });
}

const GiB = 2 ** 30;

/** The largest heap tfjs-backend-wasm can grow to (wasm32, its build's maximum memory). */
export const WASM_HEAP_LIMIT_BYTES = 4 * GiB;

/**
 * The budget when the participant set none: half the device memory the browser reports
 * (navigator.deviceMemory, GiB, rounded and capped at 8 by browsers), and never more than wasm's
 * heap on the wasm backend. Without either (Node, or a browser that does not report it) there is
 * no budget: a Node caller passes one.
 */
export function defaultMemoryLimits(backend: string, deviceMemoryGiB?: number): MemoryLimits {
  if (deviceMemoryGiB !== undefined && Number.isFinite(deviceMemoryGiB) && deviceMemoryGiB > 0) {
    const half = (deviceMemoryGiB * GiB) / 2;
    if (backend === 'wasm' && half > WASM_HEAP_LIMIT_BYTES) return { budgetBytes: WASM_HEAP_LIMIT_BYTES, budgetSource: 'the WebAssembly heap limit (4 GB)' };
    return { budgetBytes: half, budgetSource: `half of this device’s ${deviceMemoryGiB} GB` };
  }
  if (backend === 'wasm') return { budgetBytes: WASM_HEAP_LIMIT_BYTES, budgetSource: 'the WebAssembly heap limit (4 GB)' };
  return {};
}

/**
 * A budget as people write it: "512MB", "1.5 GB", "2g", "800m", or a plain number of MB. Throws
 * on anything else.
 */
export function parseMemoryBudget(text: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*(k|kb|kib|m|mb|mib|g|gb|gib)?\s*$/i.exec(text);
  if (!match) throw new Error(`memory budget "${text}" is not a size such as 512MB or 2GB`);
  const unit = (match[2] ?? 'mb').toLowerCase()[0];
  const bytes = Number(match[1]) * (unit === 'k' ? 2 ** 10 : unit === 'g' ? GiB : 2 ** 20);
  if (!(bytes > 0)) throw new Error(`memory budget "${text}" must be more than zero`);
  return Math.round(bytes);
}

/** Bytes for people: "~71 MB", "~1.3 GB". */
export function formatBytes(bytes: number): string {
  return bytes >= GiB ? `${(bytes / GiB).toFixed(1)} GB` : `${Math.max(1, Math.round(bytes / 2 ** 20))} MB`;
}

function stepText(c: StepConfig): string {
  return `batch ${c.batchSize} with k ${c.k}${c.encoderCheckpointRows ? ' and encoder checkpointing' : ''}`;
}

/** What the page says when the step was made smaller to fit ("Round 1: … training with batch 2 with k 4 instead"). */
export function describeAdaptedStep(plan: Extract<FitPlan, { kind: 'adapted' }>, round?: number): string {
  return (
    `${round !== undefined ? `Round ${round}: ` : ''}the session’s training step (${stepText(plan.requested)}, ~${formatBytes(plan.requestedEstimate.peakBytes)}) ` +
    `does not fit this tab’s memory; training with ${stepText(plan.config)} (~${formatBytes(plan.estimate.peakBytes)}) instead.`
  );
}
