/**
 * Small tensor operations shared by the T5 and BERT models that tfjs-core lacks or implements
 * in a way one of our backends cannot differentiate.
 */
import * as tf from '@tensorflow/tfjs-core';

/**
 * Embedding lookup `table[ids]` whose gradient is a scatter-add into the table.
 *
 * tf.gather's gradient uses the UnsortedSegmentSum kernel, which the wasm backend does not
 * have; ScatterNd (which sums duplicate indices) exists on cpu, wasm and webgpu.
 */
export function embeddingLookup(table: tf.Tensor2D, ids: tf.Tensor): tf.Tensor {
  const lookup = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const t = args[0] as tf.Tensor2D;
    const save = args[1] as tf.GradSaveFunc;
    const flat = tf.reshape(ids, [-1]) as tf.Tensor1D;
    save([flat]);
    const out = tf.reshape(tf.gather(t, flat), [...ids.shape, t.shape[1]]);
    return {
      value: out,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [flatIds] = saved;
        const rows = tf.reshape(dy, [-1, t.shape[1]]);
        return tf.scatterND(tf.reshape(flatIds, [-1, 1]), rows, t.shape);
      },
    };
  });
  return lookup(table);
}
