/**
 * T5 multi-head attention over [batch, heads, length, d_kv] tensors, so every head is one batched
 * matMul. Unlike most transformers T5 does NOT scale scores by 1/sqrt(d_kv) (the scale is folded
 * into the initialisation). Masks are additive biases: 0 where attending is allowed, the most
 * negative float32 (as Hugging Face uses) where it is not.
 */
import * as tf from '@tensorflow/tfjs-core';
import { dimsOf } from '../shape';
import { fusedBiasedSoftmax } from '../webgpu/biased-softmax';
import { projection } from './layers';
import type { WeightGetter } from './weights';

/** float32's lowest value (torch.finfo(float32).min), the value HF adds at masked positions. */
export const MASK_BIAS = -3.4028234663852886e38;

/** Keys and values of one attention layer, split into heads: [batch, heads, keyLength, d_kv]. */
export type KeyValue = {
  readonly keys: tf.Tensor4D;
  readonly values: tf.Tensor4D;
};

/** [B, L, heads*d_kv] -> [B, heads, L, d_kv] */
export function splitHeads(x: tf.Tensor, numHeads: number): tf.Tensor4D {
  const [b, l, inner] = dimsOf(x.shape, 3, 'splitHeads');
  // One position (a decoding step): moving a length-1 axis is a free reshape, not a transpose kernel.
  if (l === 1) return tf.reshape(x, [b, numHeads, 1, inner / numHeads]);
  return tf.transpose(tf.reshape(x, [b, l, numHeads, inner / numHeads]), [0, 2, 1, 3]);
}

/** [B, heads, L, d_kv] -> [B, L, heads*d_kv] */
export function mergeHeads(x: tf.Tensor4D): tf.Tensor3D {
  const [b, h, l, dk] = x.shape;
  if (l === 1) return tf.reshape(x, [b, 1, h * dk]);
  return tf.reshape(tf.transpose(x, [0, 2, 1, 3]), [b, l, h * dk]);
}

/** Padding mask [B, S] (1 = token, 0 = pad) -> additive bias [B, 1, 1, S]. */
export function paddingMaskBias(mask: tf.Tensor): tf.Tensor4D {
  return tf.tidy(() => {
    const [b, s] = dimsOf(mask.shape, 2, 'paddingMaskBias');
    const blocked = tf.sub(1, tf.cast(mask, 'float32'));
    return tf.reshape(tf.mul(blocked, MASK_BIAS), [b, 1, 1, s]);
  });
}

/** Causal bias [1, 1, T, T]: query i may see keys 0..i. */
export function causalMaskBias(length: number): tf.Tensor4D {
  const bias = new Float32Array(length * length);
  for (let q = 0; q < length; q++) bias.fill(MASK_BIAS, q * length + q + 1, (q + 1) * length);
  return tf.tensor4d(bias, [1, 1, length, length]);
}

/** Projects `source` [B, S, d] to the keys and values of the attention at `prefix`. */
export function projectKeyValue(w: WeightGetter, prefix: string, source: tf.Tensor, numHeads: number): KeyValue {
  return {
    keys: splitHeads(projection(w, `${prefix}.k.weight`, source), numHeads),
    values: splitHeads(projection(w, `${prefix}.v.weight`, source), numHeads),
  };
}

/** Appends one decoding step's keys/values to the cached ones along the length axis. */
export function appendKeyValue(past: KeyValue | null, step: KeyValue): KeyValue {
  if (!past) return step;
  return { keys: tf.concat([past.keys, step.keys], 2), values: tf.concat([past.values, step.values], 2) };
}

export interface AttentionResult {
  /** [B, T, d_model], after the output projection. */
  readonly output: tf.Tensor3D;
  /** Attention probabilities [B, heads, T, S]. */
  readonly probs: tf.Tensor4D;
}

/**
 * Attention of `hidden` [B, T, d] (queries) over `kv`, with additive biases each broadcastable
 * to [B, heads, T, S] (position bias, masks), softmax in float32, then the `o` projection.
 * On webgpu the last bias add and the softmax run as one fused program (and their gradient as
 * one; src/model/webgpu/biased-softmax.ts).
 */
export function attend(w: WeightGetter, prefix: string, hidden: tf.Tensor, kv: KeyValue, biases: readonly tf.Tensor[], numHeads: number): AttentionResult {
  const queries = splitHeads(projection(w, `${prefix}.q.weight`, hidden), numHeads);
  let scores = tf.matMul(queries, kv.keys, false, true) as tf.Tensor4D;
  let probs: tf.Tensor4D;
  if (tf.getBackend() === 'webgpu' && biases.length > 0) {
    for (const bias of biases.slice(0, -1)) scores = tf.add(scores, bias);
    probs = fusedBiasedSoftmax(scores, biases[biases.length - 1] as tf.Tensor4D);
  } else {
    for (const bias of biases) scores = tf.add(scores, bias);
    probs = tf.softmax(scores) as tf.Tensor4D;
  }
  const context = tf.matMul(probs, kv.values) as tf.Tensor4D;
  return { output: projection(w, `${prefix}.o.weight`, mergeHeads(context)) as tf.Tensor3D, probs };
}
