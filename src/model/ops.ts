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
        if (!flatIds) throw new Error('embeddingLookup: the gradient was called without the ids it saved');
        const rows = tf.reshape(dy, [-1, t.shape[1]]);
        return tf.scatterND(tf.reshape(flatIds, [-1, 1]), rows, t.shape);
      },
    };
  });
  return lookup(table);
}

/**
 * Elementwise sum of any number of same-shape tensors. tf.addN compiles one WebGPU program with a
 * storage buffer per input, and WebGPU allows 8 per shader stage (7 inputs + the output): more
 * inputs make an invalid pipeline and garbage. Sums in groups of at most 7 instead.
 */
export const MAX_ADDN_INPUTS = 7;

export function sumTensors<T extends tf.Tensor>(tensors: readonly T[]): T {
  if (tensors.length === 0) throw new Error('sumTensors: nothing to sum');
  return tf.tidy(() => {
    let level: tf.Tensor[] = [...tensors];
    while (level.length > 1) {
      const next: tf.Tensor[] = [];
      for (let i = 0; i < level.length; i += MAX_ADDN_INPUTS) {
        const group = level.slice(i, i + MAX_ADDN_INPUTS);
        const [lone] = group;
        next.push(group.length === 1 && lone ? lone : tf.addN(group));
      }
      level = next;
    }
    const [sum] = level;
    if (!sum) throw new Error('sumTensors: nothing to sum');
    // A lone input comes back as a copy, so the caller always owns the result.
    return (sum === tensors[0] ? tf.clone(sum) : sum) as T;
  });
}
