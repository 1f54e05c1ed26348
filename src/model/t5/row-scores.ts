/**
 * The reader's answer loss for each encoder row ALONE: Atlas's perplexity score, the gold target
 * of Perplexity Distillation (one row = one (question, passage) pair, its labels the question's
 * answer). Scored a chunk of rows at a time, outside any gradient tape.
 *
 * Why chunks: all B·k rows at once hold vocab-sized [B·k, T, vocab] tensors (t5-small, batch 8,
 * k 10, 32 target tokens: 330 MB each), several of them during the loss; a chunk of c rows holds
 * c/(B·k) of that. Rows are independent (each is encoded and decoded on its own), so the result
 * is the same whatever the chunk size.
 */
import * as tf from '@tensorflow/tfjs-core';
import { sequenceCrossEntropy } from './loss';
import type { T5Model } from './model';

/**
 * Mean token cross-entropy [rows] of `labels[r]` given `inputIds[r]` alone, for each of the
 * `rows` = inputIds.shape[0] rows, `chunkRows` rows at a time. `labels` [rows, T] (-100 ignored).
 * The caller owns the result.
 */
export function rowSequenceLosses(model: T5Model, inputIds: tf.Tensor, attentionMask: tf.Tensor, labels: tf.Tensor, chunkRows: number): tf.Tensor1D {
  const rows = inputIds.shape[0]!;
  if (!Number.isInteger(chunkRows) || chunkRows <= 0) throw new Error(`rowSequenceLosses: chunkRows must be a positive integer, got ${chunkRows}`);
  if (labels.shape[0] !== rows || attentionMask.shape[0] !== rows) {
    throw new Error(`rowSequenceLosses: ${rows} input rows but ${attentionMask.shape[0]} mask rows and ${labels.shape[0]} label rows`);
  }
  const parts: tf.Tensor1D[] = [];
  try {
    for (let start = 0; start < rows; start += chunkRows) {
      const count = Math.min(chunkRows, rows - start);
      parts.push(
        tf.tidy(() => {
          const whole = count === rows;
          const rowsOf = (t: tf.Tensor) => (whole ? t : tf.slice(t, [start, 0], [count, -1]));
          const ids = rowsOf(inputIds);
          const mask = rowsOf(attentionMask);
          const chunkLabels = rowsOf(labels);
          const { hidden } = model.decode(model.decoderInputs(chunkLabels), model.encode(ids, mask), mask);
          return sequenceCrossEntropy(model.logits(hidden), chunkLabels);
        }),
      );
    }
    const [only] = parts;
    return parts.length === 1 && only ? only : tf.concat1d(parts);
  } finally {
    if (parts.length > 1) tf.dispose(parts);
  }
}
