/**
 * The model benchmark's measurements, on whichever TF.js backend is active: a plain matmul
 * baseline (GFLOPS), T5 encoder forward tokens/s, Fusion-in-Decoder train step time, greedy
 * generation tokens/s, peak memory, and the achieved FLOP rate of each workload as a fraction of
 * the matmul baseline measured in the same run. Pure TF.js (no Node APIs): the Node CLI
 * (model.bench.ts) and the packed GPU entry (model.gpu.ts) share it.
 *
 * Timing: every measurement is preceded by a warm-up run (WebGPU compiles its shaders then) and
 * ends by reading a scalar back, which waits for the GPU; the median of `reps` runs is reported.
 */
import * as tf from '@tensorflow/tfjs-core';
import { parseT5Config, t5ParameterShapes, type T5Config } from '../src/model/t5/config';
import { fidEncode, fidLoss } from '../src/model/t5/fid';
import { greedyGenerate } from '../src/model/t5/generate';
import { T5Model } from '../src/model/t5/model';
import { matMulWeightTransposed } from '../src/model/matmul';
import { AdamW } from '../src/model/optimizer';
import { namedGradients } from '../src/model/trainable';

/** The FiD workload: k passages of `passageLength` tokens, `targetLength` answer tokens. */
export interface Workload {
  readonly model: string;
  readonly config: T5Config;
  readonly passages: number;
  readonly passageLength: number;
  readonly targetLength: number;
  readonly newTokens: number;
}

/** t5-small (HF defaults: d_model 512, 6+6 layers, 8 heads, d_ff 2048, vocab 32128), FiD k=10 × 256 tokens. */
export function t5SmallWorkload(): Workload {
  return { model: 't5-small (random)', config: parseT5Config({ model_type: 't5' }), passages: 10, passageLength: 256, targetLength: 32, newTokens: 32 };
}

/** A small model for machines where t5-small would take minutes per step (CPU, SwiftShader). */
export function tinyWorkload(): Workload {
  const config = parseT5Config({ model_type: 't5', d_model: 128, d_kv: 32, d_ff: 512, num_layers: 2, num_heads: 4, vocab_size: 4096 });
  return { model: 't5-tiny (d128, 2+2 layers, vocab 4096)', config, passages: 4, passageLength: 64, targetLength: 16, newTokens: 16 };
}

/**
 * t5-small's structure (6+6 layers, 8 heads, 131 parameters) at narrow widths, FiD k=2 × 16
 * tokens: kernel and dispatch counts do not depend on widths or lengths, so this measures
 * t5-small's counts in seconds on SwiftShader (timings from it mean nothing).
 */
export function t5SmallStructureWorkload(): Workload {
  const config = parseT5Config({ model_type: 't5', d_model: 32, d_kv: 4, d_ff: 64, num_layers: 6, num_heads: 8, vocab_size: 256 });
  return { model: 't5-small structure (d32, 6+6 layers, 8 heads, vocab 256)', config, passages: 2, passageLength: 16, targetLength: 16, newTokens: 2 };
}

/** Floating-point operations (multiply-add = 2) of the workload's matmuls; norms and softmax are ignored. */
export function workloadFlops(w: Workload): { encoder: number; fidForward: number; trainStep: number; generation: number } {
  const c = w.config;
  const inner = c.num_heads * c.d_kv;
  const ffnMatrices = c.feed_forward_proj === 'gated-gelu' ? 3 : 2;
  const ffn = 2 * ffnMatrices * c.d_model * c.d_ff;
  const L = w.passageLength;
  const S = w.passages * L; // fused encoder length the decoder attends over
  const T = w.targetLength;
  // Encoder, per token: q/k/v/o projections, scores and context over its own passage, FFN.
  const encoderPerToken = 2 * 4 * c.d_model * inner + 2 * 2 * L * inner + ffn;
  const encoder = c.num_layers * encoderPerToken * S;
  // Decoder, per target token: self-attention, cross-attention q/o and scores over S, FFN, LM head.
  const crossKv = c.num_decoder_layers * 2 * 2 * c.d_model * inner * S;
  const decoderPerToken = (t: number) =>
    c.num_decoder_layers * (2 * 4 * c.d_model * inner + 2 * 2 * t * inner + 2 * 2 * c.d_model * inner + 2 * 2 * S * inner + ffn) + 2 * c.d_model * c.vocab_size;
  const fidForward = encoder + crossKv + T * decoderPerToken(T);
  let generation = encoder + crossKv;
  for (let t = 1; t <= w.newTokens; t++) generation += decoderPerToken(t);
  // Backward costs about twice the forward (gradients with respect to inputs and weights).
  return { encoder, fidForward, trainStep: 3 * fidForward, generation };
}

export interface BenchRow {
  readonly backend: string;
  readonly adapter: string;
  readonly model: string;
  readonly shape: string;
  /** Questions per step: FiD encodes batch·k passages and decodes batch targets at once. */
  readonly batch: number;
  readonly matmulSize: number;
  readonly matmulGflops: number;
  /** Measured at batch 1 only (the encoder batch is already k passages). */
  readonly encoderTokensPerS?: number;
  readonly encoderFraction?: number;
  readonly trainStepMs: number;
  readonly trainFraction: number;
  /** Generated tokens per second over the whole batch. */
  readonly generationTokensPerS: number;
  readonly generationFraction: number;
  /** Kernels of one train step (forward + backward + AdamW with clipping). */
  readonly trainKernels: KernelCount;
  /** Kernels of the forward + backward alone (the model's share of the step). */
  readonly gradientKernels: KernelCount;
  /** Kernels of one cached decoding step (one new token for every row). */
  readonly tokenKernels: KernelCount;
  /** Largest bytes held by live tensors during one train step (tf.profile). */
  readonly peakTrainBytes: number;
  /** tf.memory() after the run: GPU bytes the webgpu backend holds incl. its buffer pool (webgpu only). */
  readonly gpuBytesAllocated?: number;
}

async function median(reps: number, run: () => Promise<void>): Promise<number> {
  await run(); // warm-up: shader compilation, buffer pool growth
  const times: number[] = [];
  for (let i = 0; i < reps; i++) {
    const start = performance.now();
    await run();
    times.push(performance.now() - start);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}

/** Kernels one run launches: engine-level TF.js kernels, and the GPU programs behind them on webgpu. */
export interface KernelCount {
  /** Kernels run through the engine (ops and their gradients), including free ones such as Reshape. */
  readonly kernels: number;
  /** Kernels that are neither Reshape nor Identity (views / reference counts on webgpu, no GPU work). */
  readonly computeKernels: number;
  /** GPU programs dispatched (webgpu only): the number that pays the per-dispatch overhead. */
  readonly gpuDispatches?: number;
}

const FREE_KERNELS = new Set(['Reshape', 'Identity']);

interface CountableEngine {
  runKernel(name: string, ...rest: unknown[]): unknown;
}
interface CountableWebGpuBackend {
  runWebGPUProgram(...args: unknown[]): unknown;
}

/**
 * Counts the kernels `run` launches by wrapping the engine's kernel entry point (every op and
 * gradient goes through it) and, on webgpu, the backend's program dispatch (kernels built from
 * several programs count each). Device-independent except for `gpuDispatches`.
 */
export async function countKernels(run: () => Promise<void> | void): Promise<KernelCount> {
  const engine = tf.engine() as unknown as CountableEngine;
  const backend = tf.backend() as unknown as Partial<CountableWebGpuBackend>;
  const runKernel = engine.runKernel;
  const dispatch = backend.runWebGPUProgram;
  let kernels = 0;
  let computeKernels = 0;
  let gpuDispatches = 0;
  engine.runKernel = function (this: CountableEngine, name: string, ...rest: unknown[]) {
    kernels++;
    if (!FREE_KERNELS.has(name)) computeKernels++;
    return runKernel.call(this, name, ...rest);
  };
  if (dispatch) {
    backend.runWebGPUProgram = function (this: CountableWebGpuBackend, ...args: unknown[]) {
      gpuDispatches++;
      return dispatch.apply(this, args);
    };
  }
  try {
    await run();
  } finally {
    engine.runKernel = runKernel;
    if (dispatch) backend.runWebGPUProgram = dispatch;
  }
  return dispatch ? { kernels, computeKernels, gpuDispatches } : { kernels, computeKernels };
}

/** GFLOPS of `chain` back-to-back n×n float32 matmuls (one readback at the end). */
export async function matmulGflops(n: number, reps: number, chain = 4): Promise<number> {
  const a = tf.randomNormal([n, n], 0, 1 / Math.sqrt(n), 'float32', 1);
  const b = tf.randomNormal([n, n], 0, 1 / Math.sqrt(n), 'float32', 2);
  try {
    const ms = await median(reps, async () => {
      const s = tf.tidy(() => {
        let c: tf.Tensor2D = a as tf.Tensor2D;
        for (let i = 0; i < chain; i++) c = tf.matMul(c, b);
        return tf.sum(tf.slice(c, [0, 0], [1, 1]));
      });
      await s.data();
      s.dispose();
    });
    return (chain * 2 * n ** 3) / (ms / 1000) / 1e9;
  } finally {
    tf.dispose([a, b]);
  }
}

/** Random trainable parameters for every tensor of `config`, created on the active backend. */
function randomParameters(config: T5Config): Map<string, tf.Variable> {
  const params = new Map<string, tf.Variable>();
  let seed = 1;
  for (const [name, shape] of t5ParameterShapes(config)) {
    const init = name.includes('layer_norm') ? tf.ones(shape) : tf.randomNormal(shape, 0, 0.05, 'float32', seed++);
    params.set(name, tf.variable(init, true, `bench/${name}`));
    init.dispose();
  }
  return params;
}

function randomIds(shape: [number, number], vocab: number, seed: number): tf.Tensor2D {
  return tf.tidy(() => tf.cast(tf.randomUniform(shape, 2, vocab, 'float32', seed), 'int32') as tf.Tensor2D);
}

export interface BenchOptions {
  readonly backend: string;
  readonly adapter: string;
  readonly matmulSize: number;
  /** The matmul baseline of this run (matmulGflops), shared by every batch size. */
  readonly matmulGflops: number;
  readonly reps: number;
  /** Questions per step (default 1). */
  readonly batch?: number;
}

/** Runs every measurement of `w` on the active backend for one batch size. */
export async function benchModel(w: Workload, options: BenchOptions): Promise<BenchRow> {
  const { reps, matmulGflops: gflops, batch = 1 } = options;
  const flops = workloadFlops(w);
  const params = randomParameters(w.config);
  const model = new T5Model(w.config, (name) => {
    const p = params.get(name);
    if (!p) throw new Error(`bench: no parameter ${name}`);
    return p;
  });
  const rows = batch * w.passages;
  const ids = randomIds([rows, w.passageLength], w.config.vocab_size, 3);
  const mask = tf.onesLike(ids);
  const labels = randomIds([batch, w.targetLength], w.config.vocab_size, 4);
  // The project's own optimizer (flat AdamW with clipping), as local training uses it.
  const optimizer = new AdamW({ lr: 1e-4, clipNorm: 1 });
  const variables = [...params.values()];
  const loss = () => fidLoss(model, ids, mask, w.passages, labels);
  const trainStep = async () => {
    const { loss: value, grads } = namedGradients(loss, params);
    await optimizer.apply(params, grads, { consumeGradients: true });
    await value.data();
    tf.dispose([value, ...grads.values()]);
  };
  const gradientsOnly = async () => {
    const { value, grads } = tf.variableGrads(loss, variables);
    await value.data();
    tf.dispose([value, ...Object.values(grads)]);
  };
  const fraction = (flopCount: number, ms: number) => flopCount / (ms / 1000) / 1e9 / gflops;
  try {
    let encoder: Pick<BenchRow, 'encoderTokensPerS' | 'encoderFraction'> = {};
    if (batch === 1) {
      const encoderMs = await median(reps, async () => {
        const s = tf.tidy(() => {
          const fused = fidEncode(model, ids, mask, w.passages);
          return tf.sum(tf.slice(fused.hidden, [0, 0, 0], [1, 1, -1]));
        });
        await s.data();
        s.dispose();
      });
      encoder = { encoderTokensPerS: (rows * w.passageLength) / (encoderMs / 1000), encoderFraction: fraction(flops.encoder, encoderMs) };
    }
    const trainMs = await median(reps, trainStep);
    const trainKernels = await countKernels(trainStep);
    const gradientKernels = await countKernels(gradientsOnly);
    const generationMs = await median(reps, async () => {
      const fused = fidEncode(model, ids, mask, w.passages);
      await greedyGenerate(model, fused.hidden, fused.mask, { maxNewTokens: w.newTokens, minNewTokens: w.newTokens });
      tf.dispose([fused.hidden, fused.mask]);
    });
    const tokenKernels = await countDecodingStep(model, ids, mask, w.passages);
    const profile = await tf.profile(trainStep);
    const memory = tf.memory() as tf.MemoryInfo & { numBytesAllocatedInGPU?: number };
    return {
      backend: options.backend,
      adapter: options.adapter,
      model: w.model,
      shape: `FiD k=${w.passages} × ${w.passageLength} tok, target ${w.targetLength}, generate ${w.newTokens}`,
      batch,
      matmulSize: options.matmulSize,
      matmulGflops: gflops,
      ...encoder,
      trainStepMs: trainMs,
      trainFraction: fraction(batch * flops.trainStep, trainMs),
      generationTokensPerS: (batch * w.newTokens) / (generationMs / 1000),
      generationFraction: fraction(batch * flops.generation, generationMs),
      trainKernels,
      gradientKernels,
      tokenKernels,
      peakTrainBytes: profile.peakBytes,
      ...(memory.numBytesAllocatedInGPU !== undefined && { gpuBytesAllocated: memory.numBytesAllocatedInGPU }),
    };
  } finally {
    optimizer.dispose();
    tf.dispose([ids, mask, labels, ...variables]);
  }
}

/** Kernels of one cached greedy decoding step (the second one, so the cache is non-empty). */
async function countDecodingStep(model: T5Model, ids: tf.Tensor, mask: tf.Tensor, passages: number): Promise<KernelCount> {
  const fused = fidEncode(model, ids, mask, passages);
  const cache = model.createDecoderCache(fused.hidden, fused.mask);
  tf.dispose([fused.hidden, fused.mask]);
  const start = tf.fill([cache.batchSize, 1], model.config.decoder_start_token_id, 'int32');
  const step = async () => {
    const logits = model.stepLogits(start, cache);
    const best = tf.argMax(logits, 1);
    await best.data();
    tf.dispose([logits, best]);
  };
  try {
    await step();
    return await countKernels(step);
  } finally {
    start.dispose();
    cache.dispose();
  }
}

const MiB = 1024 * 1024;

/** The results as a markdown table (one row per backend and batch size). */
export function markdownTable(rows: readonly BenchRow[]): string {
  const header = [
    'backend',
    'adapter',
    'model / shape',
    'batch',
    'matmul GFLOPS (n)',
    'encoder tok/s (of matmul)',
    'FiD train step ms (of matmul)',
    'generate tok/s (of matmul)',
    'kernels / train step: all, fwd+bwd (GPU dispatches)',
    'kernels / token (GPU dispatches)',
    'peak train MiB',
    'GPU MiB allocated',
  ];
  const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
  const dispatches = (k: KernelCount) => `${k.computeKernels}${k.gpuDispatches === undefined ? '' : ` (${k.gpuDispatches})`}`;
  const lines = rows.map((r) => [
    r.backend,
    r.adapter,
    `${r.model}; ${r.shape}`,
    String(r.batch),
    `${r.matmulGflops.toFixed(1)} (${r.matmulSize})`,
    r.encoderTokensPerS === undefined ? '–' : `${r.encoderTokensPerS.toFixed(0)} (${pct(r.encoderFraction!)})`,
    `${r.trainStepMs.toFixed(0)} (${pct(r.trainFraction)})`,
    `${r.generationTokensPerS.toFixed(1)} (${pct(r.generationFraction)})`,
    `${dispatches(r.trainKernels)}, ${dispatches(r.gradientKernels)}`,
    dispatches(r.tokenKernels),
    (r.peakTrainBytes / MiB).toFixed(0),
    r.gpuBytesAllocated === undefined ? '–' : (r.gpuBytesAllocated / MiB).toFixed(0),
  ]);
  return [header, header.map(() => '---'), ...lines].map((cells) => `| ${cells.join(' | ')} |`).join('\n');
}

/** Forward + backward GFLOPS of one Linear layer x·Wᵀ in two formulations (same run, same shapes). */
export interface LinearLayoutRow {
  readonly backend: string;
  /** [rows, in] · [out, in]ᵀ */
  readonly shape: string;
  /** tf.matMul(x, W, false, true) and its autodiff gradient. */
  readonly transposeBGflops: number;
  /** matMulWeightTransposed (src/model/matmul.ts), what the models use. */
  readonly modelOpGflops: number;
}

/** Times x·Wᵀ with its gradient w.r.t. x and W (3 matmuls) both ways, e.g. rows 4096, in 128, out 512. */
export async function linearLayoutBench(backend: string, rows: number, inDim: number, outDim: number, reps: number): Promise<LinearLayoutRow> {
  const x = tf.randomNormal([rows, inDim]) as tf.Tensor2D;
  const w = tf.randomNormal([outDim, inDim]) as tf.Tensor2D;
  const flops = 3 * 2 * rows * inDim * outDim;
  const rate = async (product: (a: tf.Tensor2D, b: tf.Tensor2D) => tf.Tensor2D) => {
    const ms = await median(reps, async () => {
      const grads = tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(product(a as tf.Tensor2D, b as tf.Tensor2D)))([x, w]);
      await Promise.all(grads.map((g) => g.data()));
      tf.dispose(grads);
    });
    return flops / ms / 1e6;
  };
  const row = {
    backend,
    shape: `[${rows},${inDim}]·[${outDim},${inDim}]ᵀ`,
    transposeBGflops: await rate((a, b) => tf.matMul(a, b, false, true)),
    modelOpGflops: await rate(matMulWeightTransposed),
  };
  tf.dispose([x, w]);
  return row;
}

export function linearLayoutTable(rows: readonly LinearLayoutRow[]): string {
  const header = ['backend', 'Linear x·Wᵀ, forward + backward', 'tf.matMul transposeB GFLOPS', 'matMulWeightTransposed GFLOPS', 'speed-up'];
  const lines = rows.map((r) => [
    r.backend,
    r.shape,
    r.transposeBGflops.toFixed(1),
    r.modelOpGflops.toFixed(1),
    `${(r.modelOpGflops / r.transposeBGflops).toFixed(2)}×`,
  ]);
  return [header, header.map(() => '---'), ...lines].map((cells) => `| ${cells.join(' | ')} |`).join('\n');
}
