import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../../src/model/backend';
import { relativeL2Error } from '../../../src/model/numerics';
import { MASK_BIAS } from '../../../src/model/t5/attention';
import { fusedBiasedSoftmax } from '../../../src/model/webgpu/biased-softmax';
import { installNodeWebGpu } from '../../../src/platform/node/webgpu';
import { countDispatches } from './dispatches';

/** The plain formula in tfjs ops (autodiff gives its gradients). */
function plainBiasedSoftmax(scores: tf.Tensor4D, bias: tf.Tensor4D): tf.Tensor4D {
  return tf.softmax(tf.add(scores, bias)) as tf.Tensor4D;
}

interface SoftmaxResult {
  probs: Float32Array;
  dScores: Float32Array;
  dBias: Float32Array;
}

/**
 * probs and both gradients of sum(softmax · upstream) for seeded random scores [B, H, T, S] and a
 * bias of `biasShape`, with key positions ≥ `maskedFrom` masked (MASK_BIAS added) in every row.
 */
async function evaluate(softmax: typeof plainBiasedSoftmax, shape: number[], biasShape: number[], maskedFrom = Infinity): Promise<SoftmaxResult> {
  const [probs, dScores, dBias] = tf.tidy(() => {
    const scores = tf.randomNormal<tf.Rank>(shape, 0, 3, 'float32', 21) as tf.Tensor4D;
    const keyMask = tf.tensor1d(Array.from({ length: biasShape[3] }, (_, j) => (j >= maskedFrom ? MASK_BIAS : 0)));
    const bias = tf.add(tf.randomNormal(biasShape, 0, 1, 'float32', 22), keyMask) as tf.Tensor4D;
    const upstream = tf.randomNormal(shape, 0, 1, 'float32', 23);
    const [gs, gb] = tf.grads((s: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(softmax(s as tf.Tensor4D, b as tf.Tensor4D), upstream)))([scores, bias]);
    return [softmax(scores, bias), gs, gb];
  });
  const result = { probs: (await probs.data()) as Float32Array, dScores: (await dScores.data()) as Float32Array, dBias: (await dBias.data()) as Float32Array };
  tf.dispose([probs, dScores, dBias]);
  return result;
}

// Needs Dawn with a Vulkan driver (SwiftShader on machines without a GPU), like test/platform/node/webgpu.test.ts.
describe('fused softmax(scores + bias) on WebGPU', () => {
  beforeAll(async () => {
    await installNodeWebGpu();
    await initBackend('webgpu');
  });
  afterAll(async () => {
    await initBackend('cpu');
  });

  // The bias shapes T5 uses: the full folded bias, a position bias shared over the batch, a
  // padding mask shared over heads and queries; key lengths below and above the 64 row threads.
  for (const { shape, biasShape, maskedFrom } of [
    { shape: [2, 3, 5, 7], biasShape: [2, 3, 5, 7] },
    { shape: [2, 4, 6, 6], biasShape: [1, 4, 6, 6] },
    { shape: [3, 2, 4, 150], biasShape: [3, 1, 1, 150], maskedFrom: 120 },
    { shape: [1, 2, 1, 65], biasShape: [1, 2, 1, 65], maskedFrom: 64 },
  ]) {
    it(`equals tf.softmax(scores + bias) forward and in both gradients within 1e-5 (scores ${shape.join('×')}, bias ${biasShape.join('×')}${maskedFrom ? ', masked keys' : ''})`, async () => {
      const before = tf.memory().numTensors;
      const fused = await evaluate(fusedBiasedSoftmax, shape, biasShape, maskedFrom);
      const plain = await evaluate(plainBiasedSoftmax, shape, biasShape, maskedFrom);
      expect(tf.memory().numTensors).toBe(before);
      expect(relativeL2Error(fused.probs, plain.probs)).toBeLessThan(1e-5);
      expect(relativeL2Error(fused.dScores, plain.dScores)).toBeLessThan(1e-5);
      expect(relativeL2Error(fused.dBias, plain.dBias)).toBeLessThan(1e-5);
      expect(Math.max(...plain.dScores.map(Math.abs))).toBeGreaterThan(1e-3);
      if (maskedFrom) expect(fused.probs[maskedFrom]).toBe(0);
    });
  }

  it('takes one GPU dispatch forward and one backward when the bias has the full shape', () => {
    tf.tidy(() => {
      const scores = tf.randomNormal([2, 3, 4, 5], 0, 1, 'float32', 1) as tf.Tensor4D;
      const bias = tf.randomNormal([2, 3, 4, 5], 0, 1, 'float32', 2) as tf.Tensor4D;
      const dy = tf.randomNormal([2, 3, 4, 5], 0, 1, 'float32', 3);
      expect(countDispatches(() => fusedBiasedSoftmax(scores, bias))).toBe(1);
      const forwardAndBackward = countDispatches(() =>
        tf.grads((s: tf.Tensor, b: tf.Tensor) => fusedBiasedSoftmax(s as tf.Tensor4D, b as tf.Tensor4D))([scores, bias], dy),
      );
      expect(forwardAndBackward).toBe(2);
    });
  });
});
