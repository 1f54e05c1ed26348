/**
 * LoRA (Hu et al. 2021, "Low-Rank Adaptation of Large Language Models") on the T5 reader's
 * attention projections, and optionally on the Contriever query encoder's (BERT self-attention
 * query/key/value and its output dense): a frozen projection weight W [out, in] gets a trained
 * low-rank update,
 *
 *   y = x Wᵀ + s · (x Aᵀ) Bᵀ,   A [r, in], B [out, r], s = alpha / r,
 *
 * applied at run time while training (`loraUpdate`, called by src/model/t5/layers.ts `projection`
 * and src/model/bert/model.ts `projection`: only x Aᵀ [.., r] is an extra activation, and no gradient or optimizer state of W's size exists), and merged for
 * inference: W' = W + s · B A (`mergeLoraWeight`), which gives the same outputs up to rounding.
 *
 * Adapters live in the reader's ParameterStore beside the weights they adapt, under names that
 * mirror PEFT's (`base_model.model.<module>.lora_A.weight`) with our own prefix instead:
 * `lora.<module>.lora_A.weight` and `lora.<module>.lora_B.weight`, `<module>` being e.g.
 * `encoder.block.0.layer.0.SelfAttention.q`. On the wire they are `reader.lora.*`, so a session
 * that trains only them names them by one trained prefix (src/federated/protocol.ts). The query
 * encoder's adapters follow the same rule inside its side of the Contriever store:
 * `query.lora.encoder.layer.0.attention.self.query.lora_A.weight`, on the wire
 * `query_encoder.lora.*`. The passage encoder never gets adapters: the store's embeddings were
 * made with its weights.
 *
 * Initialisation: B = 0, so the adapted model starts equal to the base model exactly; A is drawn
 * from N(0, 1/in) by a generator seeded with (seed, tensor name), so every client that builds the
 * adapters with the same config gets the same A bit for bit, whatever order it builds them in.
 */
import * as tf from '@tensorflow/tfjs-core';
import { seededRandom } from '../util/random';
import { dimsOf, lastDim } from './shape';
import { LORA_TARGETS as ALL_TARGETS, type LoraTarget } from './lora-targets';
import { bertParameterShapes, type BertConfig } from './bert/config';
import { matMulWeightTransposed } from './matmul';
import { t5ParameterShapes, type T5Config } from './t5/config';

export type { LoraTarget } from './lora-targets';

export interface LoraConfig {
  /** The adapters' rank r. */
  readonly rank: number;
  /** Scale numerator: the adapter's output is multiplied by alpha / r. */
  readonly alpha: number;
  readonly targets: readonly LoraTarget[];
  /** Seeds A (B starts at zero). */
  readonly seed: number;
  /**
   * The Contriever query encoder's projections that get adapters too (q, k, v, o: BERT's
   * self-attention query, key, value and attention.output.dense), with the same rank, alpha and
   * seed (src/corag/model-bundle.ts enableLora, src/model/contriever.ts enableQueryLora). Absent
   * or empty: the reader alone, as before this option existed.
   */
  readonly queryTargets?: readonly LoraTarget[];
}

/** Where the adapter tensors' local (store) names start. */
export const LORA_PREFIX = 'lora.';

/** The factor alpha / r the adapter's output is scaled by. */
export function loraScale(config: LoraConfig): number {
  return config.alpha / config.rank;
}

/** Checks a config; returns it with targets deduplicated in q, k, v, o order. */
export function validLoraConfig(config: LoraConfig): LoraConfig {
  if (!Number.isInteger(config.rank) || config.rank < 1) throw new Error(`LoRA rank must be a positive integer, got ${config.rank}`);
  if (!Number.isFinite(config.alpha) || config.alpha <= 0) throw new Error(`LoRA alpha must be a positive number, got ${config.alpha}`);
  if (!Number.isInteger(config.seed)) throw new Error(`LoRA seed must be an integer, got ${config.seed}`);
  for (const t of config.targets) {
    if (!ALL_TARGETS.includes(t)) throw new Error(`LoRA target "${t}" is not one of ${ALL_TARGETS.join(', ')}`);
  }
  for (const t of config.queryTargets ?? []) {
    if (!ALL_TARGETS.includes(t)) throw new Error(`LoRA query-encoder target "${t}" is not one of ${ALL_TARGETS.join(', ')}`);
  }
  const targets = ALL_TARGETS.filter((t) => config.targets.includes(t));
  if (targets.length === 0) throw new Error('LoRA needs at least one target projection (q, k, v or o)');
  // queryTargets only when it names some, so a reader-only config reads (and compares) as it did before it existed.
  const { queryTargets: query, ...rest } = config;
  const queryTargets = ALL_TARGETS.filter((t) => query?.includes(t));
  return { ...rest, targets, ...(queryTargets.length > 0 ? { queryTargets } : {}) };
}

/** Whether a local (store) name is an adapter tensor. */
export function isLoraName(name: string): boolean {
  return name.startsWith(LORA_PREFIX);
}

/** The adapter tensors' names for the projection weight `weightName` (`<module>.weight`). */
export function loraAdapterNames(weightName: string): { readonly a: string; readonly b: string } {
  if (!weightName.endsWith('.weight')) throw new Error(`LoRA adapts weights named "<module>.weight", not "${weightName}"`);
  const module = weightName.slice(0, -'.weight'.length);
  return { a: `${LORA_PREFIX}${module}.lora_A.weight`, b: `${LORA_PREFIX}${module}.lora_B.weight` };
}

const ATTENTION_PROJECTION = /\.(SelfAttention|EncDecAttention)\.([qkvo])\.weight$/;

/**
 * The projection weights LoRA adapts in a T5 model, in t5ParameterShapes order: the `targets` of
 * every attention layer (encoder self-attention, decoder self- and cross-attention), with shapes.
 */
export function t5LoraTargetWeights(config: T5Config, targets: readonly LoraTarget[]): Map<string, readonly [number, number]> {
  const out = new Map<string, readonly [number, number]>();
  for (const [name, shape] of t5ParameterShapes(config)) {
    const m = ATTENTION_PROJECTION.exec(name);
    if (m && targets.includes(m[2] as LoraTarget)) out.set(name, dimsOf(shape, 2, `LoRA target "${name}"`));
  }
  return out;
}

/**
 * The adapter tensors a LoRA config adds to a T5 reader, by local name, with their shapes: A
 * [r, in] and B [out, r] per adapted projection. These are all the parameters LoRA training
 * updates, uploads and averages (a training-footprint estimate counts these; the frozen weights
 * are t5ParameterShapes).
 */
export function t5LoraShapes(config: T5Config, lora: LoraConfig): Map<string, number[]> {
  const shapes = new Map<string, number[]>();
  for (const [name, [out, inDim]] of t5LoraTargetWeights(config, validLoraConfig(lora).targets)) {
    const { a, b } = loraAdapterNames(name);
    shapes.set(a, [lora.rank, inDim]);
    shapes.set(b, [out, lora.rank]);
  }
  return shapes;
}

/** The BERT module each LoRA target names: self-attention query, key, value and its output dense. */
const BERT_PROJECTIONS: Readonly<Record<LoraTarget, string>> = {
  q: 'attention.self.query',
  k: 'attention.self.key',
  v: 'attention.self.value',
  o: 'attention.output.dense',
};

/**
 * The projection weights LoRA adapts in a BERT encoder, by canonical HF name (no side prefix), in
 * bertParameterShapes order: the `targets` of every layer's self-attention, with shapes.
 */
export function bertLoraTargetWeights(config: BertConfig, targets: readonly LoraTarget[]): Map<string, readonly [number, number]> {
  const wanted = new Set(targets.map((t) => `${BERT_PROJECTIONS[t]}.weight`));
  const out = new Map<string, readonly [number, number]>();
  for (const [name, shape] of bertParameterShapes(config)) {
    const module = /^encoder\.layer\.\d+\.(.+)$/.exec(name)?.[1];
    if (module !== undefined && wanted.has(module)) out.set(name, dimsOf(shape, 2, `LoRA target "${name}"`));
  }
  return out;
}

/**
 * The adapter tensors a LoRA config adds to one BERT encoder, by name relative to its side (the
 * Contriever store holds them under `query.`), with shapes: A [r, in] and B [out, r] per adapted
 * projection.
 */
export function bertLoraShapes(config: BertConfig, lora: LoraConfig): Map<string, number[]> {
  const shapes = new Map<string, number[]>();
  for (const [name, [out, inDim]] of bertLoraTargetWeights(config, validLoraConfig(lora).targets)) {
    const { a, b } = loraAdapterNames(name);
    shapes.set(a, [lora.rank, inDim]);
    shapes.set(b, [out, lora.rank]);
  }
  return shapes;
}

/**
 * The adapter's output scale · (x Aᵀ) Bᵀ for inputs x [..., in] (A [r, in], B [out, r]): two thin
 * products, never a weight-sized tensor, so a frozen W gets neither a gradient nor a merged copy.
 */
export function loraUpdate(x: tf.Tensor, a: tf.Tensor, b: tf.Tensor, scale: number): tf.Tensor {
  return tf.tidy(() => {
    const flat = tf.reshape(x, [-1, lastDim(x.shape, 'LoRA input')]) as tf.Tensor2D;
    const down = matMulWeightTransposed(flat, a as tf.Tensor2D);
    const up = matMulWeightTransposed(down, b as tf.Tensor2D);
    return tf.reshape(tf.mul(up, scale), [...x.shape.slice(0, -1), dimsOf(b.shape, 2, 'LoRA B')[0]]);
  });
}

/** FNV-1a over the name's UTF-16 code units, mixed with the seed: a per-tensor 32-bit seed. */
function tensorSeed(seed: number, name: string): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

/** n standard-normal float32 values (Box–Muller over mulberry32), fully determined by `seed`. */
function seededNormal(n: number, seed: number, std: number): Float32Array {
  const random = seededRandom(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    const u1 = 1 - random(); // (0, 1]: log(u1) is finite
    const u2 = random();
    const r = Math.sqrt(-2 * Math.log(u1)) * std;
    out[i] = r * Math.cos(2 * Math.PI * u2);
    if (i + 1 < n) out[i + 1] = r * Math.sin(2 * Math.PI * u2);
  }
  return out;
}

/**
 * Initial adapter values for `shapes` (from t5LoraShapes): every `lora_A` from N(0, 1/in) seeded by
 * (config.seed, name), every `lora_B` zero. The caller owns the tensors.
 */
export function initialLoraTensors(shapes: ReadonlyMap<string, readonly number[]>, config: LoraConfig): Map<string, tf.Tensor> {
  const out = new Map<string, tf.Tensor>();
  for (const [name, shape] of shapes) {
    if (name.endsWith('.lora_A.weight')) {
      const [rank, inDim] = dimsOf(shape, 2, `LoRA tensor "${name}"`);
      out.set(name, tf.tensor2d(seededNormal(rank * inDim, tensorSeed(config.seed, name), 1 / Math.sqrt(inDim)), [rank, inDim]));
    } else out.set(name, tf.zeros([...shape]));
  }
  return out;
}

/** W + scale · B A: a projection weight with its adapter merged in (inference). The caller owns it. */
export function mergeLoraWeight(weight: tf.Tensor, a: tf.Tensor, b: tf.Tensor, scale: number): tf.Tensor2D {
  return tf.tidy(() => tf.add(weight, tf.mul(tf.matMul(b as tf.Tensor2D, a as tf.Tensor2D), scale)) as tf.Tensor2D);
}
