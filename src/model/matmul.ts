/**
 * x · Wᵀ for a torch Linear weight W [out, in], on the fast path of every backend.
 *
 * tfjs-backend-wasm 4.22 sends a 2-D matMul through XNNPACK only when neither operand is
 * transposed: [4096,128]·[128,512] runs at ~32 GFLOPS on one core of the project machine, the
 * same product with `transposeB` at ~3.4 GFLOPS and with `transposeA` at ~1.7 GFLOPS (a plain
 * loop; `npm run bench:model -- --backend wasm` has the table). A Linear layer is x·Wᵀ, and its
 * gradient is dy·W and dyᵀ·x, so every forward product and half of the backward ones hit the slow
 * loop. On wasm this op transposes explicitly (one cheap copy of W or dy) and multiplies
 * untransposed, in the forward and in a hand-written gradient. Other backends keep tf.matMul with
 * `transposeB`, which webgpu and cpu handle at full speed.
 */
import * as tf from '@tensorflow/tfjs-core';

function untransposedLinear(a: tf.Tensor2D, weight: tf.Tensor2D): tf.Tensor2D {
  const op = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const [x, w] = args as [tf.Tensor2D, tf.Tensor2D];
    const save = args[2] as tf.GradSaveFunc;
    save([x, w]);
    return {
      value: tf.tidy(() => tf.matMul(x, tf.transpose(w))),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [xs, ws] = saved as [tf.Tensor2D, tf.Tensor2D];
        const dy2 = dy as tf.Tensor2D;
        // dx = dy · W  ([M, out]·[out, in]);  dW = dyᵀ · x  ([out, M]·[M, in]).
        return [tf.matMul(dy2, ws), tf.tidy(() => tf.matMul(tf.transpose(dy2), xs))];
      },
    };
  });
  return op(a, weight) as tf.Tensor2D;
}

/**
 * The same product for a FROZEN weight (a tf.Variable with trainable = false: LoRA's base, a
 * frozen encoder): W is closed over instead of being an input, so the gradient function computes
 * dx alone. A customGrad's gradient function returns every input's gradient at once, so with W as
 * an input the backward pass would compute dW = dyᵀ·x for every frozen projection on the path and
 * keep it until the pass ends (measured on wasm, flan-t5-base dimensions with 2 + 2 layers under
 * LoRA: 84 MiB of the peak, about 42 MiB per encoder + decoder layer; docs/PERFORMANCE.md
 * "flan-t5-base in 4 GiB with LoRA").
 */
function untransposedFrozenLinear(a: tf.Tensor2D, weight: tf.Tensor2D): tf.Tensor2D {
  const op = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const [x] = args as [tf.Tensor2D];
    return {
      value: tf.tidy(() => tf.matMul(x, tf.transpose(weight))),
      gradFunc: (dy: tf.Tensor) => [tf.matMul(dy as tf.Tensor2D, weight)],
    };
  });
  return op(a) as tf.Tensor2D;
}

/** a [M, in] · weightᵀ with weight [out, in] → [M, out]. */
export function matMulWeightTransposed(a: tf.Tensor2D, weight: tf.Tensor2D): tf.Tensor2D {
  if (tf.getBackend() === 'wasm')
    return weight instanceof tf.Variable && !weight.trainable ? untransposedFrozenLinear(a, weight) : untransposedLinear(a, weight);
  return tf.matMul(a, weight, false, true);
}
