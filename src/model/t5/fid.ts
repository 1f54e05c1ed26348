/**
 * Fusion-in-Decoder (Izacard & Grave 2021) over a T5 model: each of the k (question, passage)
 * inputs of an example is encoded on its own (one [B·k, L] encoder batch), the k encoder outputs
 * are concatenated along the sequence into [B, k·L, d], and the decoder attends over all of them.
 * Also the Atlas input format and the per-passage cross-attention scores used to train the
 * retriever by attention distillation.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { T5Model } from './model';
import { IGNORE_INDEX, meanTokenCrossEntropy } from './loss';
import { sumTensors } from '../ops';
import { dimsOf } from '../shape';

export type FusedEncoding = {
  /** [B, k·L, d_model]: passage j of example b occupies positions j·L .. (j+1)·L − 1. */
  readonly hidden: tf.Tensor3D;
  /** [B, k·L] float, 1 = token, 0 = pad. */
  readonly mask: tf.Tensor2D;
};

export interface FidEncodeOptions {
  /**
   * Gradient checkpointing of the encoder: keep none of its activations for the backward pass and
   * recompute them this many passages (encoder rows) at a time (fewer: lower peak memory, same
   * extra compute). Undefined: keep them (no recomputation).
   */
  readonly checkpointRows?: number;
}

/**
 * Encodes `inputIds` / `attentionMask` [B·k, L] (rows b·k .. b·k+k−1 are example b's passages)
 * and fuses them per example. The caller owns the result.
 */
export function fidEncode(model: T5Model, inputIds: tf.Tensor, attentionMask: tf.Tensor, numPassages: number, options: FidEncodeOptions = {}): FusedEncoding {
  const [rows, length] = inputIds.shape as [number, number];
  if (!Number.isInteger(numPassages) || numPassages <= 0 || rows % numPassages !== 0) {
    throw new Error(`FiD: ${rows} encoder rows are not a whole number of examples of ${numPassages} passages`);
  }
  const batch = rows / numPassages;
  return tf.tidy(() => {
    const encoded = model.encode(inputIds, attentionMask, options);
    return {
      hidden: tf.reshape(encoded, [batch, numPassages * length, model.config.d_model]) as tf.Tensor3D,
      mask: tf.reshape(tf.cast(attentionMask, 'float32'), [batch, numPassages * length]) as tf.Tensor2D,
    };
  });
}

export type FidOutput = {
  readonly encoder: FusedEncoding;
  /** Teacher-forced logits [B, T, vocab]. */
  readonly logits: tf.Tensor3D;
  /** Mean token cross-entropy over labels != -100. */
  readonly loss: tf.Scalar;
  /** Per decoder layer, cross-attention probabilities [B, heads, T, k·L]; only when requested. */
  readonly crossAttentions?: tf.Tensor4D[];
};

/** Encode, fuse, and decode `labels` [B, T] with teacher forcing. The caller owns the result. */
export function fidForward(
  model: T5Model,
  inputIds: tf.Tensor,
  attentionMask: tf.Tensor,
  numPassages: number,
  labels: tf.Tensor,
  options: { crossAttentions?: boolean } & FidEncodeOptions = {},
): FidOutput {
  return tf.tidy(() => {
    const encoder = fidEncode(model, inputIds, attentionMask, numPassages, { checkpointRows: options.checkpointRows });
    const { hidden, crossAttentions } = model.decode(model.decoderInputs(labels), encoder.hidden, encoder.mask, { crossAttentions: options.crossAttentions });
    const logits = model.logits(hidden) as tf.Tensor3D;
    const loss = meanTokenCrossEntropy(logits, labels);
    return crossAttentions ? { encoder, logits, loss, crossAttentions } : { encoder, logits, loss };
  });
}

/**
 * The FiD loss alone (for tf.variableGrads / tf.grads). `logitMask` [B, T, vocab], added to the
 * logits before the softmax, restricts it (e.g. to passage spans: src/corag/extractive.ts).
 */
export function fidLoss(
  model: T5Model,
  inputIds: tf.Tensor,
  attentionMask: tf.Tensor,
  numPassages: number,
  labels: tf.Tensor,
  logitMask?: tf.Tensor,
  options: FidEncodeOptions = {},
): tf.Scalar {
  return tf.tidy(() => {
    const encoder = fidEncode(model, inputIds, attentionMask, numPassages, options);
    const { hidden } = model.decode(model.decoderInputs(labels), encoder.hidden, encoder.mask);
    const logits = model.logits(hidden);
    return meanTokenCrossEntropy(logitMask ? tf.add(logits, logitMask) : logits, labels);
  });
}

/**
 * Per-passage relevance [B, k] read from the reader's cross-attention (Atlas "ADist" / FiD-light
 * style): the attention probability mass on each passage's tokens, averaged over layers, heads
 * and target tokens. With `labels` [B, T], target positions labelled -100 are left out of the
 * average. Each row sums to 1 over passages.
 */
export function passageAttentionScores(crossAttentions: readonly tf.Tensor[], numPassages: number, labels?: tf.Tensor): tf.Tensor2D {
  const [first] = crossAttentions;
  if (!first) throw new Error('passageAttentionScores: no cross-attention layers given');
  return tf.tidy(() => {
    const [batch, heads, targets, keys] = dimsOf(first.shape, 4, 'passageAttentionScores');
    if (keys % numPassages !== 0) throw new Error(`passageAttentionScores: ${keys} encoder positions are not ${numPassages} equal passages`);
    // Sum over layers first: one [B, H, T, k, L] view, then the passage tokens and heads.
    const summed = sumTensors(crossAttentions.map((a) => a as tf.Tensor4D));
    const perPassage = tf.sum(tf.reshape(summed, [batch, heads, targets, numPassages, keys / numPassages]), [1, 4]); // [B, T, k]
    const tokenWeight = labels ? tf.cast(tf.notEqual(tf.cast(labels, 'int32'), IGNORE_INDEX), 'float32') : tf.ones([batch, targets]);
    const weighted = tf.sum(tf.mul(perPassage, tf.expandDims(tokenWeight, 2)), 1); // [B, k]
    const norm = tf.mul(tf.maximum(tf.sum(tokenWeight, 1, true), 1), crossAttentions.length * heads);
    return tf.div(weighted, norm) as tf.Tensor2D;
  });
}

/** Atlas's reader input for one retrieved passage. */
export function fidInputText(question: string, passage: { readonly title: string; readonly text: string }): string {
  return `question: ${question} answer: <extra_id_0> title: ${passage.title} context: ${passage.text}`;
}

/** Atlas's reader target for an answer. */
export function fidTargetText(answer: string): string {
  return `<extra_id_0> ${answer}`;
}

/** Paper default for the per-passage input length. */
export const FID_MAX_LENGTH = 384;

/**
 * Cuts token ids to at most `maxLength`. When the ids end in `eosTokenId` (as the tokenizer
 * appends it), the cut keeps that final EOS, like Hugging Face's tokenizer truncation.
 */
export function truncateIds(ids: readonly number[], maxLength: number, eosTokenId: number): number[] {
  if (!Number.isInteger(maxLength) || maxLength <= 0) throw new Error(`truncateIds: maxLength must be a positive integer, got ${maxLength}`);
  if (ids.length <= maxLength) return [...ids];
  const endsInEos = ids[ids.length - 1] === eosTokenId;
  return endsInEos ? [...ids.slice(0, maxLength - 1), eosTokenId] : ids.slice(0, maxLength);
}

export interface PaddedIds {
  /** Row-major [rows, length] ids. */
  readonly ids: Int32Array;
  /** Row-major [rows, length], 1 = token, 0 = pad. */
  readonly mask: Int32Array;
  readonly shape: [number, number];
}

/**
 * Truncates each row (keeping a final EOS) and pads it with `padTokenId` to a common length:
 * `maxLength` when `padTo` is 'max' (a fixed shape, as Atlas uses), else the longest row.
 */
export function padIdRows(
  rows: readonly (readonly number[])[],
  options: { maxLength: number; padTokenId: number; eosTokenId: number; padTo?: 'max' | 'longest' },
): PaddedIds {
  const cut = rows.map((r) => truncateIds(r, options.maxLength, options.eosTokenId));
  const length = options.padTo === 'max' ? options.maxLength : Math.max(1, ...cut.map((r) => r.length));
  const ids = new Int32Array(cut.length * length).fill(options.padTokenId);
  const mask = new Int32Array(cut.length * length);
  cut.forEach((r, i) => {
    ids.set(r, i * length);
    mask.fill(1, i * length, i * length + r.length);
  });
  return { ids, mask, shape: [cut.length, length] };
}
