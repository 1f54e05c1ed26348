import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../../src/model/backend';
import { relativeL2Error } from '../../../src/model/numerics';
import { fusedRmsNorm } from '../../../src/model/webgpu/rms-norm';
import { installNodeWebGpu } from '../../../src/platform/node/webgpu';
import { countDispatches } from './dispatches';

/** The plain formula in tfjs ops (autodiff gives its gradients). */
function plainRmsNorm(x: tf.Tensor, w: tf.Tensor, epsilon: number): tf.Tensor {
  return tf.mul(tf.mul(x, tf.rsqrt(tf.add(tf.mean(tf.square(x), -1, true), epsilon))), w);
}

interface NormResult {
  y: Float32Array;
  dx: Float32Array;
  dw: Float32Array;
}

/** y, dx and dw of sum(norm(x, w) · upstream) for seeded random inputs of `shape`. */
async function evaluate(norm: typeof plainRmsNorm, shape: number[], epsilon: number): Promise<NormResult> {
  const width = shape[shape.length - 1];
  const [y, dx, dw] = tf.tidy(() => {
    const x = tf.randomNormal(shape, 0, 2, 'float32', 11);
    const w = tf.randomNormal([width], 1, 0.3, 'float32', 12);
    const upstream = tf.randomNormal(shape, 0, 1, 'float32', 13);
    const [gx, gw] = tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(norm(a, b, epsilon), upstream)))([x, w]);
    return [norm(x, w, epsilon), gx, gw];
  });
  const result = { y: (await y.data()) as Float32Array, dx: (await dx.data()) as Float32Array, dw: (await dw.data()) as Float32Array };
  tf.dispose([y, dx, dw]);
  return result;
}

// Needs Dawn with a Vulkan driver (SwiftShader on machines without a GPU), like test/platform/node/webgpu.test.ts.
describe('fused RMS norm on WebGPU', () => {
  beforeAll(async () => {
    await installNodeWebGpu();
    await initBackend('webgpu');
  });
  afterAll(async () => {
    await initBackend('cpu');
  });

  // Rows narrower than, equal to and wider than the 64 threads of a row's workgroup; row counts
  // below and above the 16 row lanes of the weight-gradient program, and not multiples of them.
  for (const { shape, epsilon } of [
    { shape: [3, 8], epsilon: 1e-6 },
    { shape: [2, 5, 64], epsilon: 1e-6 },
    { shape: [37, 200], epsilon: 1e-3 },
    { shape: [2, 3, 7, 130], epsilon: 1e-6 },
  ]) {
    it(`equals the plain formula forward and in both gradients within 1e-5 (shape ${shape.join('×')}, ε ${epsilon})`, async () => {
      const before = tf.memory().numTensors;
      const fused = await evaluate(fusedRmsNorm, shape, epsilon);
      const plain = await evaluate(plainRmsNorm, shape, epsilon);
      expect(tf.memory().numTensors).toBe(before);
      expect(relativeL2Error(fused.y, plain.y)).toBeLessThan(1e-5);
      expect(relativeL2Error(fused.dx, plain.dx)).toBeLessThan(1e-5);
      expect(relativeL2Error(fused.dw, plain.dw)).toBeLessThan(1e-5);
      // Not trivially equal because everything is zero.
      expect(Math.max(...plain.dx.map(Math.abs))).toBeGreaterThan(1e-3);
      expect(Math.max(...plain.dw.map(Math.abs))).toBeGreaterThan(1e-3);
    });
  }

  it('takes one GPU dispatch forward and three for both gradients', () => {
    tf.tidy(() => {
      const x = tf.randomNormal([4, 6, 32], 0, 1, 'float32', 1);
      const w = tf.randomNormal([32], 1, 0.3, 'float32', 2);
      expect(countDispatches(() => fusedRmsNorm(x, w, 1e-6))).toBe(1);
      const dy = tf.randomNormal([4, 6, 32], 0, 1, 'float32', 3);
      const forwardAndBackward = countDispatches(() => tf.grads((a: tf.Tensor, b: tf.Tensor) => fusedRmsNorm(a, b, 1e-6))([x, w], dy));
      expect(forwardAndBackward).toBe(1 + 3);
    });
  });
});
