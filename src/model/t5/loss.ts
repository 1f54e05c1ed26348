/** Teacher forcing inputs and the token cross-entropy loss, as Hugging Face's T5ForConditionalGeneration computes them. */
import * as tf from '@tensorflow/tfjs-core';
import { lastDim } from '../shape';

/** Label value ignored by the loss (PyTorch CrossEntropyLoss's default ignore_index). */
export const IGNORE_INDEX = -100;

/**
 * Decoder inputs for teacher forcing: labels [B, T] shifted one position right, starting with
 * `decoderStartTokenId`, ignored labels (-100) replaced by `padTokenId`.
 */
export function shiftRight(labels: tf.Tensor, decoderStartTokenId: number, padTokenId: number): tf.Tensor2D {
  return tf.tidy(() => {
    const [b, t] = labels.shape as [number, number];
    const ids = tf.cast(labels, 'int32');
    const start = tf.fill([b, 1], decoderStartTokenId, 'int32');
    const shifted = tf.concat([start, tf.slice(ids, [0, 0], [b, t - 1])], 1);
    return tf.where(tf.equal(shifted, IGNORE_INDEX), tf.fill([b, t], padTokenId, 'int32'), shifted) as tf.Tensor2D;
  });
}

/**
 * Per-token negative log-likelihood [B, T] of `labels` under `logits` [B, T, V], 0 at ignored
 * positions, together with the float mask [B, T] of positions that count.
 */
export function tokenNll(logits: tf.Tensor, labels: tf.Tensor): { nll: tf.Tensor2D; mask: tf.Tensor2D } {
  return tf.tidy(() => {
    const vocab = lastDim(logits.shape, 'tokenNll');
    const ids = tf.cast(labels, 'int32');
    const counted = tf.notEqual(ids, IGNORE_INDEX);
    const mask = tf.cast(counted, 'float32') as tf.Tensor2D;
    // Ignored positions pick token 0 and are then zeroed by the mask.
    const target = tf.oneHot(tf.where(counted, ids, tf.zerosLike(ids)), vocab);
    const logProbs = tf.logSoftmax(logits);
    const nll = tf.mul(tf.neg(tf.sum(tf.mul(logProbs, target), -1)), mask) as tf.Tensor2D;
    return { nll, mask };
  });
}

/** Mean cross-entropy over every label != -100 in the batch (HF's `loss`). */
export function meanTokenCrossEntropy(logits: tf.Tensor, labels: tf.Tensor): tf.Scalar {
  return tf.tidy(() => {
    const { nll, mask } = tokenNll(logits, labels);
    return tf.div(tf.sum(nll), tf.sum(mask)) as tf.Scalar;
  });
}

/**
 * Mean cross-entropy of each sequence over its own labels != -100: [B] (e.g. per-passage scores
 * for PDist).
 *
 * The same numbers as tokenNll's (tf.logSoftmax's own ops: shift by the row maximum, subtract
 * log Σ exp), but the label's entry is gathered instead of picked by a one-hot product: two
 * vocab-sized temporaries (the shifted logits and their exponentials) instead of four (one-hot,
 * log-softmax with its shifted logits and exponentials, product), which is what PDist's scoring
 * pass over B·k rows peaked on.
 */
export function sequenceCrossEntropy(logits: tf.Tensor, labels: tf.Tensor): tf.Tensor1D {
  return tf.tidy(() => {
    const [b, t, vocab] = logits.shape as [number, number, number];
    const ids = tf.cast(labels, 'int32');
    const counted = tf.notEqual(ids, IGNORE_INDEX);
    const mask = tf.cast(counted, 'float32');
    const shifted = tf.sub(logits, tf.max(logits, -1, true));
    const logSumExp = tf.reshape(tf.log(tf.sum(tf.exp(shifted), -1, true)), [b, t]);
    // Ignored positions pick token 0 and are then zeroed by the mask.
    const flatIndex = tf.add(tf.mul(tf.range(0, b * t, 1, 'int32'), tf.scalar(vocab, 'int32')), tf.reshape(tf.where(counted, ids, tf.zerosLike(ids)), [-1]));
    const picked = tf.reshape(tf.gather(tf.reshape(shifted, [-1]), flatIndex), [b, t]);
    const nll = tf.mul(tf.neg(tf.sub(picked, logSumExp)), mask);
    return tf.div(tf.sum(nll, 1), tf.maximum(tf.sum(mask, 1), 1)) as tf.Tensor1D;
  });
}
