/**
 * Peak memory of one FiD training step (forward + backward + AdamW with clipping), on whichever
 * backend is active, for the training paths side by side in the same run:
 *   - `tfjs`: tf.variableGrads (tfjs-core's tape walk, which keeps every saved activation and every
 *     intermediate gradient to the end of the backward pass) — the code path before issue 20;
 *   - `lean`: namedGradients' default, src/model/gradients.ts (frees them as it goes);
 *   - `lean+ckpt`: lean plus the FiD encoder checkpointed per chunk of passages
 *     (src/model/t5/fid.ts, `checkpointRows`).
 *
 * Two peaks per step:
 *   - **buffers**: the largest sum of bytes of distinct live tensor buffers (a reshape view or a
 *     saved clone that shares its buffer counts once), sampled at every buffer allocation. This is
 *     what a PyTorch allocator-level peak counts (torch.profiler's "Total Allocated").
 *   - **tf.profile**: tf.profile()'s peakBytes, the engine's numBytes after each kernel, which
 *     counts every tensor object, views and shared clones included (the bench's older column).
 * Both include the parameters, the optimizer's moments and the gradients.
 */
import * as tf from '@tensorflow/tfjs-core';
import { t5ParameterShapes } from '../src/model/t5/config';
import { fidLoss } from '../src/model/t5/fid';
import { T5Model } from '../src/model/t5/model';
import { AdamW } from '../src/model/optimizer';
import { namedGradients } from '../src/model/trainable';
import type { Workload } from './model-bench';

interface EngineMemoryApi {
  readonly state: { tensorInfo: WeakMap<object, { bytes: number; backend: unknown }> };
  trackTensor(a: tf.Tensor, backend: unknown): void;
  removeDataId(dataId: object, backend: unknown): void;
}

export interface PeakMemory {
  /** Peak of distinct live buffer bytes during `run`. */
  readonly peakBytes: number;
  /** Live buffer bytes when `run` started. */
  readonly startBytes: number;
}

/** Peak bytes of distinct live tensor buffers while `run` runs (the engine's buffer table, hooked). */
export async function peakBufferBytes(run: () => Promise<void> | void): Promise<PeakMemory> {
  const engine = tf.engine() as unknown as EngineMemoryApi;
  const { trackTensor, removeDataId } = engine;
  const info = engine.state.tensorInfo;
  // The buffer table is a WeakMap (not iterable): start from the engine's byte count, which
  // equals the buffers' bytes when no two live tensors share a buffer (true between steps).
  let current = tf.memory().numBytes;
  const startBytes = current;
  let peak = current;
  engine.trackTensor = function (this: EngineMemoryApi, a: tf.Tensor, backend: unknown) {
    const fresh = !info.has(a.dataId);
    trackTensor.call(this, a, backend);
    if (fresh) {
      current += info.get(a.dataId)?.bytes ?? 0;
      if (current > peak) peak = current;
    }
  };
  engine.removeDataId = function (this: EngineMemoryApi, dataId: object, backend: unknown) {
    const entry = info.get(dataId);
    removeDataId.call(this, dataId, backend);
    if (entry && !info.has(dataId)) current -= entry.bytes;
  };
  try {
    await run();
  } finally {
    engine.trackTensor = trackTensor;
    engine.removeDataId = removeDataId;
  }
  return { peakBytes: peak, startBytes };
}

export type TrainPath = 'tfjs' | 'lean' | 'lean+ckpt';
export const TRAIN_PATHS: readonly TrainPath[] = ['tfjs', 'lean', 'lean+ckpt'];

export interface TrainMemoryRow {
  readonly backend: string;
  readonly model: string;
  readonly passages: number;
  readonly passageLength: number;
  readonly targetLength: number;
  readonly batch: number;
  readonly path: TrainPath;
  /** Passage rows recomputed at a time by the checkpointed encoder (lean+ckpt only). */
  readonly checkpointRows?: number;
  readonly peakBytes: number;
  readonly profilePeakBytes: number;
  /** Parameters + AdamW moments (live before the step), included in the peaks. */
  readonly staticBytes: number;
  readonly stepMs: number;
  readonly loss: number;
}

async function median(reps: number, run: () => Promise<void>): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    await run();
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}

/**
 * One row per path: a warm-up step (creates the AdamW moments), a step measured for peak bytes,
 * a tf.profile'd step, then `reps` timed steps. Every path starts from the same random weights and
 * inputs, so the first-step losses must agree.
 */
export async function trainMemoryBench(
  w: Workload,
  options: { backend: string; batch: number; reps: number; paths?: readonly TrainPath[]; checkpointRows?: number },
): Promise<TrainMemoryRow[]> {
  const { batch, reps } = options;
  const rows: TrainMemoryRow[] = [];
  for (const path of options.paths ?? TRAIN_PATHS) {
    const params = new Map<string, tf.Variable>();
    let seed = 1;
    for (const [name, shape] of t5ParameterShapes(w.config)) {
      const init = name.includes('layer_norm') ? tf.ones(shape) : tf.randomNormal(shape, 0, 0.05, 'float32', seed++);
      params.set(name, tf.variable(init, true, `train-memory/${path}/${name}`));
      init.dispose();
    }
    const model = new T5Model(w.config, (name) => params.get(name)!);
    const ids = tf.tidy(() => tf.cast(tf.randomUniform([batch * w.passages, w.passageLength], 2, w.config.vocab_size, 'float32', 3), 'int32'));
    const mask = tf.onesLike(ids);
    const labels = tf.tidy(() => tf.cast(tf.randomUniform([batch, w.targetLength], 2, w.config.vocab_size, 'float32', 4), 'int32'));
    const optimizer = new AdamW({ lr: 1e-4, clipNorm: 1 });
    const checkpointRows = path === 'lean+ckpt' ? (options.checkpointRows ?? 1) : undefined;
    const loss = () => fidLoss(model, ids, mask, w.passages, labels, undefined, { checkpointRows });
    let lastLoss = NaN;
    const step = async () => {
      const { loss: value, grads } = namedGradients(loss, params, { lowMemory: path !== 'tfjs' });
      await optimizer.apply(params, grads, { consumeGradients: true });
      lastLoss = (await value.data())[0];
      tf.dispose([value, ...grads.values()]);
    };
    try {
      await step();
      const firstLoss = lastLoss;
      const staticBytes = [...params.values()].reduce((n, p) => n + 3 * p.size * 4, 0);
      const { peakBytes } = await peakBufferBytes(step);
      const profile = await tf.profile(step);
      const stepMs = await median(reps, step);
      rows.push({
        backend: options.backend,
        model: w.model,
        passages: w.passages,
        passageLength: w.passageLength,
        targetLength: w.targetLength,
        batch,
        path,
        ...(checkpointRows !== undefined && { checkpointRows }),
        peakBytes,
        profilePeakBytes: profile.peakBytes,
        staticBytes,
        stepMs,
        loss: firstLoss,
      });
    } finally {
      optimizer.dispose();
      tf.dispose([ids, mask, labels, ...params.values()]);
    }
  }
  return rows;
}

const MiB = 1024 * 1024;

/** The rows as a markdown table, each path's peak as a multiple of the `tfjs` row of the same shape. */
export function trainMemoryTable(rows: readonly TrainMemoryRow[]): string {
  const header = [
    'backend',
    'model',
    'FiD shape',
    'batch',
    'path',
    'peak MiB (buffers)',
    'vs tfjs',
    'peak MiB (tf.profile)',
    'params+moments MiB',
    'step ms',
    'step vs tfjs',
    'loss (step 1)',
  ];
  const key = (r: TrainMemoryRow) => `${r.backend}|${r.model}|${r.passages}|${r.passageLength}|${r.targetLength}|${r.batch}`;
  const base = new Map(rows.filter((r) => r.path === 'tfjs').map((r) => [key(r), r]));
  const lines = rows.map((r) => {
    const b = base.get(key(r));
    return [
      r.backend,
      r.model,
      `k=${r.passages} × ${r.passageLength} tok, target ${r.targetLength}`,
      String(r.batch),
      r.path + (r.checkpointRows !== undefined ? ` (${r.checkpointRows} row${r.checkpointRows === 1 ? '' : 's'}/chunk)` : ''),
      (r.peakBytes / MiB).toFixed(1),
      b ? `${(r.peakBytes / b.peakBytes).toFixed(2)}×` : '–',
      (r.profilePeakBytes / MiB).toFixed(1),
      (r.staticBytes / MiB).toFixed(1),
      r.stepMs.toFixed(0),
      b ? `${(r.stepMs / b.stepMs).toFixed(2)}×` : '–',
      r.loss.toFixed(6),
    ];
  });
  return [header, header.map(() => '---'), ...lines].map((cells) => `| ${cells.join(' | ')} |`).join('\n');
}
