/**
 * The teacher signal of Perplexity Distillation (Atlas): how well the reader predicts an example's
 * target from each retrieved passage alone. The retriever's query embedding is then pulled towards
 * the softmax of these scores over the k passages (perplexityDistillationLoss in
 * src/model/losses.ts), so it learns to rank first the passages the reader finds most useful.
 */
import * as tf from '@tensorflow/tfjs-core';
import { rowSequenceLosses } from '../model/t5/row-scores';
import type { T5Model } from '../model/t5/model';

/** Reader CE of each example's target given each of its k passages alone: [B, k], no gradient. */
export function perPassageLoss(reader: T5Model, k: number, ids: tf.Tensor2D, mask: tf.Tensor2D, labels: tf.Tensor2D): tf.Tensor2D {
  return tf.tidy(() => {
    const [rows] = ids.shape;
    const tiled = tf.reshape(tf.tile(tf.expandDims(labels, 1), [1, k, 1]), [rows, labels.shape[1]]);
    // One example's k rows at a time per example in the batch (src/model/t5/row-scores.ts).
    return tf.reshape(rowSequenceLosses(reader, ids, mask, tiled, rows / k), [rows / k, k]) as tf.Tensor2D;
  });
}
