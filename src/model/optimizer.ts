/**
 * AdamW over NAMED parameters and gradients (Hugging Face names), with a linear warmup + linear
 * decay learning-rate schedule and global-norm gradient clipping, as Atlas trains both reader and
 * retriever. The state (first/second moments per parameter and the step count) serialises to
 * named tensors / safetensors, so a training run can stop and resume bit-exactly, and a client
 * can carry its optimizer across federated rounds.
 *
 * Update (Loshchilov & Hutter; torch.optim.AdamW):
 *   m ← β1 m + (1-β1) g;  v ← β2 v + (1-β2) g²
 *   m̂ = m / (1-β1^t);     v̂ = v / (1-β2^t)
 *   θ ← θ - lr_t (m̂ / (√v̂ + ε) + λ θ)      (decoupled weight decay, also scaled by lr_t)
 */
import * as tf from '@tensorflow/tfjs-core';
import { sumTensors } from './ops';
import { parseSafetensors, readTensor, writeSafetensors, type TensorToWrite } from './safetensors';

export interface LinearScheduleOptions {
  /** Peak learning rate, reached at the end of warmup. */
  readonly lr: number;
  /** Steps of linear increase from 0 to `lr` (0: start at `lr`). */
  readonly warmupSteps?: number;
  /** Step at which the rate reaches `lr * finalRatio`; it stays there afterwards. Omit for no decay. */
  readonly totalSteps?: number;
  /** Fraction of `lr` left at `totalSteps` (Atlas's linear scheduler: 0 by default). */
  readonly finalRatio?: number;
}

/**
 * The learning rate of update number `step` (1-based): rising linearly to `lr` over the warmup
 * (lr·step/warmup, so the first update is not a no-op), then falling linearly towards
 * lr·finalRatio, which holds after `totalSteps`. The decay counts the updates done BEFORE this one
 * (as Hugging Face's linear scheduler does), so every one of `totalSteps` updates moves the weights:
 * with no warmup and T steps the rates are lr, lr·(T−1)/T, …, lr/T. (Until session 9 the last
 * update of a run got rate 0, which wasted one step of every few-step federated round.)
 */
export function linearScheduleLr(options: LinearScheduleOptions, step: number): number {
  const { lr, warmupSteps = 0, totalSteps, finalRatio = 0 } = options;
  if (warmupSteps > 0 && step <= warmupSteps) return (lr * step) / warmupSteps;
  if (totalSteps === undefined) return lr;
  if (step > totalSteps) return lr * finalRatio;
  const progress = Math.max(0, step - 1 - warmupSteps) / Math.max(1, totalSteps - warmupSteps);
  return lr * (1 - (1 - finalRatio) * progress);
}

export interface AdamWOptions extends LinearScheduleOptions {
  readonly beta1?: number;
  readonly beta2?: number;
  readonly eps?: number;
  /** Decoupled weight decay λ (torch's AdamW default is 0.01). */
  readonly weightDecay?: number;
  /** Clip the global L2 norm of all gradients of a step to this value (0 / undefined: no clipping). */
  readonly clipNorm?: number;
  /** Parameters excluded from weight decay (commonly biases and LayerNorm weights). */
  readonly noDecay?: (name: string) => boolean;
  /**
   * Update all parameters as one flat vector (true) or tensor by tensor (false). Default: flat on
   * webgpu, where it saves ~1,800 dispatches per t5-small step; per tensor elsewhere. Both give
   * the same result (test/model/optimizer.test.ts).
   */
  readonly flat?: boolean;
}

export interface StepReport {
  readonly step: number;
  readonly lr: number;
  /** Global gradient norm before clipping. */
  readonly gradNorm: number;
}

/** A parameter the optimizer can update in place. */
export type UpdatableParameter = tf.Variable;

const STATE_STEP = '__step__';

export class AdamW {
  private readonly m = new Map<string, tf.Variable>();
  private readonly v = new Map<string, tf.Variable>();
  private stepCount = 0;
  private decayMask?: { key: string; tensor: tf.Tensor1D };
  readonly options: Required<Omit<AdamWOptions, 'totalSteps' | 'noDecay' | 'flat'>> & Pick<AdamWOptions, 'totalSteps' | 'noDecay' | 'flat'>;

  constructor(options: AdamWOptions) {
    this.options = {
      warmupSteps: 0,
      finalRatio: 0,
      beta1: 0.9,
      beta2: 0.999,
      eps: 1e-8,
      weightDecay: 0.01,
      clipNorm: 0,
      ...options,
    };
    if (!(this.options.lr > 0)) throw new Error(`AdamW: lr must be positive, got ${this.options.lr}`);
  }

  /** Number of updates applied so far. */
  get step(): number {
    return this.stepCount;
  }

  /**
   * Applies one update to each named parameter that has a gradient. Returns the step number,
   * learning rate and pre-clipping norm. `gradients` stay the caller's unless
   * `consumeGradients`: then each is disposed as soon as its update has read it, and the updates
   * go smallest first, so the largest parameter (t5's 63 MiB embedding) is updated when every
   * other gradient is already gone; without it the update's temporaries come on top of all the
   * step's gradients. Same arithmetic either way (each element's update is independent).
   */
  async apply(
    params: ReadonlyMap<string, UpdatableParameter> | ((name: string) => UpdatableParameter),
    gradients: ReadonlyMap<string, tf.Tensor>,
    options: { readonly consumeGradients?: boolean } = {},
  ): Promise<StepReport> {
    try {
      return await this.update(params, gradients, options.consumeGradients === true);
    } finally {
      // Also on a refused update (non-finite norm): the caller handed them over.
      if (options.consumeGradients) for (const g of gradients.values()) g.dispose();
    }
  }

  private async update(
    params: ReadonlyMap<string, UpdatableParameter> | ((name: string) => UpdatableParameter),
    gradients: ReadonlyMap<string, tf.Tensor>,
    consume: boolean,
  ): Promise<StepReport> {
    const get =
      typeof params === 'function'
        ? params
        : (name: string) => {
            const p = params.get(name);
            if (!p) throw new Error(`AdamW: gradient for unknown parameter "${name}"`);
            return p;
          };
    for (const [name, g] of gradients) {
      const p = get(name);
      if (!tf.util.arraysEqual(p.shape, g.shape)) throw new Error(`AdamW: gradient "${name}" has shape [${g.shape}] but the parameter is [${p.shape}]`);
    }

    const names = [...gradients.keys()];
    if (names.length === 0) return { step: this.stepCount, lr: linearScheduleLr(this.options, this.stepCount), gradNorm: 0 };
    const variables = names.map(get);
    const moments1 = names.map((name, i) => this.moment(this.m, name, variables[i].shape));
    const moments2 = names.map((name, i) => this.moment(this.v, name, variables[i].shape));

    // On webgpu the update runs over parameters concatenated into flat vectors: per-parameter
    // elementwise maths costs ~14 GPU dispatches per tensor (1,800 per step for t5-small), the
    // flat form a few dozen per group plus one slice per tensor to write the results back.
    // On wasm and cpu a kernel call is cheap but splitting the flat vector copies element by
    // element (~0.3 s per split of the demo retriever's 3.5M parameters), so they go per tensor.
    // Memory: the update frees every temporary as soon as it is consumed and writes each new
    // moment back before computing the next (a Variable's assign releases the old buffer), so it
    // holds about three temporaries of the size of what it updates at a time; the flat form goes
    // in groups of at most FLAT_GROUP_ELEMENTS (a larger tensor alone), not all parameters at once
    // (which held ~16 copies of every parameter: 3.9 GB for t5-small, most of a webgpu step's peak).
    const flat = this.options.flat ?? tf.getBackend() === 'webgpu';
    const groups = flat ? flatGroups(variables.map((p) => p.size)) : names.map((_, i) => [i]);
    const groupSize = (group: readonly number[]) => group.reduce((n, i) => n + variables[i].size, 0);
    const gradientOf = (group: readonly number[]) => flattenGroup(group.map((i) => gradients.get(names[i])!));
    const normTensor = tf.tidy(() => tf.sqrt(sumTensors(groups.map((group) => tf.tidy(() => tf.sum(tf.square(gradientOf(group))))))));
    const gradNorm = (await normTensor.data())[0];
    normTensor.dispose();
    if (!Number.isFinite(gradNorm)) throw new Error(`AdamW: gradient norm is ${gradNorm}; refusing to update`);
    const { clipNorm, beta1, beta2, eps } = this.options;
    // torch.nn.utils.clip_grad_norm_: scale by max_norm / (norm + 1e-6) when above max_norm.
    const clipScale = clipNorm > 0 && gradNorm > clipNorm ? clipNorm / (gradNorm + 1e-6) : 1;

    const step = this.stepCount + 1;
    const lr = linearScheduleLr(this.options, step);
    const bias1 = 1 - beta1 ** step;
    const bias2 = 1 - beta2 ** step;
    const { weightDecay, noDecay } = this.options;
    const decayMask = flat ? this.decayFor(names, variables) : 0;
    // Each group's offset into the flat decay mask, before any reordering.
    const offsets: number[] = [];
    let offset = 0;
    for (const group of groups) {
      offsets.push(offset);
      offset += groupSize(group);
    }
    const order = groups.map((_, i) => i);
    if (consume) order.sort((a, b) => groupSize(groups[a]) - groupSize(groups[b]));
    for (const index of order) {
      const group = groups[index];
      const size = groupSize(group);
      const groupParams = group.map((i) => variables[i]);
      let decay: number | tf.Tensor;
      if (!flat) decay = noDecay?.(names[group[0]]) ? 0 : weightDecay;
      else decay = typeof decayMask === 'number' ? decayMask : tf.slice(decayMask, offsets[index], size);
      // Every temporary is disposed as soon as it is consumed (`take`); the tidy only collects
      // the scalar constants tf makes of the numbers.
      tf.tidy(() => {
        const gradient = gradientOf(group);
        // The group's view (or concatenation) holds what it needs: a consumed gradient's buffer
        // goes with the view's last use below.
        if (consume) for (const i of group) gradients.get(names[i])!.dispose();
        const g = clipScale === 1 ? gradient : take(tf.mul(gradient, clipScale), gradient);
        const m = flattenGroup(group.map((i) => moments1[i]));
        const mDecayed = take(tf.mul(m, beta1), m);
        const gScaled = tf.mul(g, 1 - beta1);
        const mNew = take(tf.add(mDecayed, gScaled), mDecayed, gScaled);
        writeBack(
          mNew,
          group.map((i) => moments1[i]),
        );
        const v = flattenGroup(group.map((i) => moments2[i]));
        const vDecayed = take(tf.mul(v, beta2), v);
        const gSquared = take(tf.square(g), g);
        const gSquaredScaled = take(tf.mul(gSquared, 1 - beta2), gSquared);
        const vNew = take(tf.add(vDecayed, gSquaredScaled), vDecayed, gSquaredScaled);
        writeBack(
          vNew,
          group.map((i) => moments2[i]),
        );
        const vHat = take(tf.div(vNew, bias2), vNew);
        const root = take(tf.sqrt(vHat), vHat);
        const denominator = take(tf.add(root, eps), root);
        const mHat = take(tf.div(mNew, bias1), mNew);
        let direction = take(tf.div(mHat, denominator), mHat, denominator);
        const param = flattenGroup(groupParams);
        if (decay !== 0) {
          const decayTerm = tf.mul(param, decay);
          if (typeof decay !== 'number' && decay !== decayMask) decay.dispose();
          direction = take(tf.add(direction, decayTerm), direction, decayTerm);
        }
        const scaled = take(tf.mul(direction, lr), direction);
        const paramNew = take(tf.sub(param, scaled), param, scaled);
        writeBack(paramNew, groupParams);
        paramNew.dispose();
      });
    }
    this.stepCount = step;
    return { step, lr, gradNorm };
  }

  /**
   * Weight decay per element of the flat parameter vector: a number when every parameter decays
   * alike, else a constant vector (cached for the current set of names).
   */
  private decayFor(names: readonly string[], params: readonly tf.Variable[]): number | tf.Tensor1D {
    const { weightDecay, noDecay } = this.options;
    if (weightDecay === 0 || !noDecay) return weightDecay;
    const excluded = names.map((n) => noDecay(n));
    if (!excluded.some(Boolean)) return weightDecay;
    const key = names.join('\n');
    if (this.decayMask?.key !== key) {
      this.decayMask?.tensor.dispose();
      const values = new Float32Array(params.reduce((n, p) => n + p.size, 0));
      let offset = 0;
      params.forEach((p, i) => {
        if (!excluded[i]) values.fill(weightDecay, offset, offset + p.size);
        offset += p.size;
      });
      this.decayMask = { key, tensor: tf.tensor1d(values) };
    }
    return this.decayMask.tensor;
  }

  private moment(store: Map<string, tf.Variable>, name: string, shape: number[]): tf.Variable {
    let t = store.get(name);
    if (!t) {
      const zeros = tf.zeros(shape);
      t = tf.variable(zeros, false, uniqueName(name));
      zeros.dispose();
      store.set(name, t);
    } else if (!tf.util.arraysEqual(t.shape, shape)) {
      throw new Error(`AdamW: state for "${name}" has shape [${t.shape}] but the parameter is [${shape}]`);
    }
    return t;
  }

  /**
   * The state as named float32 arrays: `m.<name>`, `v.<name>` and `__step__` ([1]). Hyper-
   * parameters are not part of it: they come from the training configuration.
   */
  async stateTensors(): Promise<Map<string, TensorToWrite>> {
    const out = new Map<string, TensorToWrite>();
    for (const [kind, store] of [
      ['m', this.m],
      ['v', this.v],
    ] as const) {
      for (const [name, t] of store) out.set(`${kind}.${name}`, { dtype: 'F32', shape: t.shape, data: (await t.data()) as Float32Array });
    }
    out.set(STATE_STEP, { dtype: 'F32', shape: [1], data: new Float32Array([this.stepCount]) });
    return out;
  }

  async saveState(): Promise<Uint8Array> {
    return writeSafetensors(await this.stateTensors(), { format: 'corag-adamw', step: String(this.stepCount) });
  }

  /** Replaces the state with one written by saveState (exact resume). */
  loadState(bytes: Uint8Array | ArrayBuffer): void {
    const file = parseSafetensors(bytes, 'AdamW state');
    if (!file.tensors.has(STATE_STEP)) throw new Error(`AdamW state: "${STATE_STEP}" is missing`);
    const step = readTensor(file, STATE_STEP).data[0] as number;
    if (!Number.isInteger(step) || step < 0) throw new Error(`AdamW state: invalid step ${step}`);
    const m = new Map<string, tf.Variable>();
    const v = new Map<string, tf.Variable>();
    for (const key of file.tensors.keys()) {
      if (key === STATE_STEP) continue;
      const match = /^([mv])\.(.+)$/.exec(key);
      if (!match) throw new Error(`AdamW state: unexpected tensor "${key}"`);
      const { shape, data } = readTensor(file, key);
      const values = data instanceof Float32Array ? Float32Array.from(data) : Float32Array.from(data as ArrayLike<number>);
      const initial = tf.tensor(values, shape, 'float32');
      (match[1] === 'm' ? m : v).set(match[2], tf.variable(initial, false, uniqueName(match[2])));
      initial.dispose();
    }
    for (const name of m.keys()) if (!v.has(name)) throw new Error(`AdamW state: "m.${name}" has no matching "v.${name}"`);
    this.disposeState();
    for (const [k, t] of m) this.m.set(k, t);
    for (const [k, t] of v) this.v.set(k, t);
    this.stepCount = step;
  }

  private disposeState(): void {
    for (const t of this.m.values()) t.dispose();
    for (const t of this.v.values()) t.dispose();
    this.m.clear();
    this.v.clear();
  }

  dispose(): void {
    this.disposeState();
    this.decayMask?.tensor.dispose();
    this.decayMask = undefined;
  }
}

/**
 * Elements per group of the flat update: large enough that t5-small's 131 tensors go in a handful
 * of groups (few dispatches), small enough that a group's temporaries stay a small fraction of the
 * model (16M float32 = 64 MiB; t5-small's tied embedding alone is 16.4M).
 */
export const FLAT_GROUP_ELEMENTS = 1 << 24;

/** Consecutive parameter indices in groups of at most FLAT_GROUP_ELEMENTS elements (a larger tensor goes alone). */
function flatGroups(sizes: readonly number[]): number[][] {
  const groups: number[][] = [];
  let current: number[] = [];
  let total = 0;
  sizes.forEach((size, i) => {
    if (current.length > 0 && total + size > FLAT_GROUP_ELEMENTS) {
      groups.push(current);
      current = [];
      total = 0;
    }
    current.push(i);
    total += size;
  });
  if (current.length > 0) groups.push(current);
  return groups;
}

/**
 * The tensors as one 1-D vector the caller owns: a reshape view (no copy) of a lone tensor,
 * else a concatenation.
 */
function flattenGroup(tensors: readonly tf.Tensor[]): tf.Tensor1D {
  if (tensors.length === 1) return tf.reshape(tensors[0], [-1]);
  return tf.tidy(() => tf.concat1d(tensors.map((t) => tf.reshape(t, [-1]) as tf.Tensor1D)));
}

/** Returns `result` after disposing `used` (temporaries consumed by the op that made `result`). */
function take<T extends tf.Tensor>(result: T, ...used: Array<tf.Tensor | undefined>): T {
  for (const t of used) t?.dispose();
  return result;
}

/**
 * Writes consecutive pieces of `flat` into the variables, each reshaped to its variable's shape
 * (assign releases the variable's old buffer; a lone variable then shares `flat`'s buffer, no
 * copy). `flat` stays the caller's.
 */
function writeBack(flat: tf.Tensor, targets: readonly tf.Variable[]): void {
  const pieces =
    targets.length === 1
      ? [flat]
      : tf.split(
          flat,
          targets.map((t) => t.size),
        );
  pieces.forEach((piece, i) => {
    const shaped = tf.reshape(piece, targets[i].shape);
    targets[i].assign(shaped);
    shaped.dispose();
    if (piece !== flat) piece.dispose();
  });
}

/** √(Σ‖g‖²) over all tensors, read back as a number. */
export async function globalNorm(tensors: readonly tf.Tensor[]): Promise<number> {
  if (tensors.length === 0) return 0;
  const total = tf.tidy(() => tf.sqrt(sumTensors(tensors.map((t) => tf.sum(tf.square(t))))));
  const [value] = await total.data();
  total.dispose();
  return value;
}

let stateCounter = 0;
function uniqueName(name: string): string {
  return `adamw/${name}#${stateCounter++}`;
}
