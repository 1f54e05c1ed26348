/** The small building blocks of a T5 block: linear maps, RMS layer norm and the feed-forward net. */
import * as tf from '@tensorflow/tfjs-core';
import { loraAdapterNames, loraUpdate } from '../lora';
import { matMulWeightTransposed } from '../matmul';
import { dimsOf, lastDim } from '../shape';
import { fusedRmsNorm } from '../webgpu/rms-norm';
import type { T5Config } from './config';
import type { WeightGetter } from './weights';

/**
 * y = x Wᵀ for a torch Linear weight W [out, in] (T5 has no biases), over any leading dims;
 * with `activation`, the activation is applied inside the same matmul kernel.
 */
export function linear(x: tf.Tensor, weight: tf.Tensor, activation?: 'relu'): tf.Tensor {
  const inDim = lastDim(x.shape, 'linear');
  const a = tf.reshape(x, [-1, inDim]) as tf.Tensor2D;
  const w = weight as tf.Tensor2D;
  let y: tf.Tensor;
  if (!activation) y = matMulWeightTransposed(a, w);
  // The fused matMul + activation kernel has no fast untransposed path on wasm (src/model/matmul.ts).
  else if (tf.getBackend() === 'wasm') y = tf.relu(matMulWeightTransposed(a, w));
  else y = tf.fused.matMul({ a, b: w, transposeB: true, activation });
  return tf.reshape(y, [...x.shape.slice(0, -1), weight.shape[0]]);
}

/**
 * An attention projection: x Wᵀ for the weight `weightName`, plus its LoRA adapter's
 * scale · (x Aᵀ) Bᵀ when the getter has one (src/model/lora.ts). The adapter path never forms a
 * weight-sized tensor, so a frozen W gets neither a gradient nor a merged copy while training.
 */
export function projection(w: WeightGetter, weightName: string, x: tf.Tensor): tf.Tensor {
  const y = linear(x, w(weightName));
  const scale = w.loraScale?.(weightName);
  if (scale === undefined) return y;
  const { a, b } = loraAdapterNames(weightName);
  return tf.add(y, loraUpdate(x, w(a), w(b), scale));
}

/**
 * T5LayerNorm: scale by the root mean square over the last axis; no mean subtraction, no bias.
 * y = x · r · w with r = 1/√(mean(x²) + ε).
 *
 * The gradient is written out rather than left to autodiff, which differentiates the six
 * elementwise ops one by one (about 16 kernels per norm, 32 norms per t5-small step; each kernel
 * is a GPU dispatch on webgpu). With n = x·r and g = dy·w:
 *   dx = r · (g − n · mean(g·n)),   dw = Σ_rows dy·n
 * which is 8 kernels. On webgpu the same maths runs as fused WebGPU programs instead (one
 * dispatch forward, three backward; src/model/webgpu/rms-norm.ts); cpu and wasm keep these ops.
 */
export function rmsNorm(x: tf.Tensor, weight: tf.Tensor, epsilon: number): tf.Tensor {
  if (tf.getBackend() === 'webgpu') return fusedRmsNorm(x, weight, epsilon);
  const norm = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const [input, scale] = args as [tf.Tensor, tf.Tensor];
    const save = args[2] as tf.GradSaveFunc;
    const inverseRms = tf.rsqrt(tf.add(tf.mean(tf.square(input), -1, true), epsilon));
    const normalised = tf.mul(input, inverseRms);
    save([normalised, inverseRms, scale]);
    return {
      value: tf.mul(normalised, scale),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [n, r, w] = saved;
        if (!n || !r || !w) throw new Error('rmsNorm: the gradient was called without the tensors it saved');
        const g = tf.mul(dy, w);
        const dx = tf.mul(r, tf.sub(g, tf.mul(n, tf.mean(tf.mul(g, n), -1, true))));
        const dw = tf.sum(tf.reshape(tf.mul(dy, n), [-1, dimsOf(w.shape, 1, 'rmsNorm weight')[0]]), 0);
        return [dx, dw];
      },
    };
  });
  return norm(x, weight);
}

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);

/** HF's `gelu_new`: the tanh approximation of GELU used by T5 v1.1 / flan-t5. */
export function geluNew(x: tf.Tensor): tf.Tensor {
  const cube = tf.mul(tf.mul(x, x), x);
  const inner = tf.mul(tf.add(x, tf.mul(cube, 0.044715)), SQRT_2_OVER_PI);
  return tf.mul(tf.mul(x, 0.5), tf.add(tf.tanh(inner), 1));
}

/**
 * The DenseReluDense sublayer at `prefix` (e.g. `encoder.block.0.layer.1.DenseReluDense`):
 * relu: wo(relu(wi x)); gated-gelu: wo(gelu_new(wi_0 x) * wi_1 x).
 */
export function feedForward(w: WeightGetter, prefix: string, x: tf.Tensor, config: T5Config): tf.Tensor {
  const hidden =
    config.feed_forward_proj === 'gated-gelu'
      ? tf.mul(geluNew(linear(x, w(`${prefix}.wi_0.weight`))), linear(x, w(`${prefix}.wi_1.weight`)))
      : linear(x, w(`${prefix}.wi.weight`), 'relu');
  return linear(hidden, w(`${prefix}.wo.weight`));
}
