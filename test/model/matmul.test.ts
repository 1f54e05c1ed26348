import * as tf from '@tensorflow/tfjs-core';
import { afterAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../src/model/backend';
import { matMulWeightTransposed } from '../../src/model/matmul';
import { maxRelativeError } from '../../src/model/numerics';

/** Value and gradients (w.r.t. a and the weight, under a random upstream gradient) of a·Wᵀ. */
async function valueAndGrads(f: (a: tf.Tensor2D, w: tf.Tensor2D) => tf.Tensor2D) {
  const a = tf.tensor2d(
    Float32Array.from({ length: 6 * 5 }, (_, i) => Math.sin(i * 1.3)),
    [6, 5],
  );
  const w = tf.tensor2d(
    Float32Array.from({ length: 4 * 5 }, (_, i) => Math.cos(i * 0.7)),
    [4, 5],
  );
  const upstream = tf.tensor2d(
    Float32Array.from({ length: 6 * 4 }, (_, i) => Math.sin(i * 2.1 + 1)),
    [6, 4],
  );
  const y = f(a, w);
  const grads = tf.grads((x: tf.Tensor, weight: tf.Tensor) => tf.sum(tf.mul(f(x as tf.Tensor2D, weight as tf.Tensor2D), upstream)))([a, w]);
  const out = { y: await y.data(), da: await grads[0].data(), dw: await grads[1].data() };
  tf.dispose([a, w, upstream, y, ...grads]);
  return out;
}

describe('matMulWeightTransposed', () => {
  afterAll(() => initBackend('cpu'));

  it('on wasm (explicit transposes, hand-written gradient) equals tf.matMul(a, W, false, true) and its gradients on cpu', async () => {
    await initBackend('cpu');
    const reference = await valueAndGrads((a, w) => tf.matMul(a, w, false, true));
    await initBackend('wasm');
    expect(tf.getBackend()).toBe('wasm');
    const got = await valueAndGrads(matMulWeightTransposed);
    for (const k of ['y', 'da', 'dw'] as const) expect(maxRelativeError(got[k], reference[k])).toBeLessThan(1e-5);
  });

  it('on wasm, a frozen weight (trainable = false) gives the same value and dx and never computes dW', async () => {
    await initBackend('wasm');
    const reference = await valueAndGrads(matMulWeightTransposed);
    const w = tf.variable(
      tf.tensor2d(
        Float32Array.from({ length: 4 * 5 }, (_, i) => Math.cos(i * 0.7)),
        [4, 5],
      ),
      false,
    );
    const a = tf.tensor2d(
      Float32Array.from({ length: 6 * 5 }, (_, i) => Math.sin(i * 1.3)),
      [6, 5],
    );
    const upstream = tf.tensor2d(
      Float32Array.from({ length: 6 * 4 }, (_, i) => Math.sin(i * 2.1 + 1)),
      [6, 4],
    );
    // Count the [4, 5] tensors created in the backward pass: with W an input of the op, dW = dyᵀ·x would be one.
    const before = tf.memory().numTensors;
    let weightSized = 0;
    const engine = tf.engine() as unknown as { trackTensor(t: tf.Tensor, b: unknown): void };
    const track = engine.trackTensor;
    const [da] = tf.grads((x: tf.Tensor) => tf.sum(tf.mul(matMulWeightTransposed(x as tf.Tensor2D, w), upstream)))([a]);
    engine.trackTensor = function (this: unknown, t: tf.Tensor, b: unknown) {
      if (t.shape.length === 2 && t.shape[0] === 4 && t.shape[1] === 5) weightSized++;
      track.call(this, t, b);
    };
    try {
      tf.grads((x: tf.Tensor) => tf.sum(tf.mul(matMulWeightTransposed(x as tf.Tensor2D, w), upstream)))([a])[0].dispose();
    } finally {
      engine.trackTensor = track;
    }
    // Only the forward's transposed copy Wᵀ is [5, 4]; nothing of W's shape appears.
    expect(weightSized).toBe(0);
    expect(maxRelativeError(await da.data(), reference.da)).toBeLessThan(1e-6);
    tf.dispose([da, a, upstream, w]);
    expect(tf.memory().numTensors).toBe(before - 3);
  });

  it('leaves no tensors behind on wasm', async () => {
    await initBackend('wasm');
    const before = tf.memory().numTensors;
    await valueAndGrads(matMulWeightTransposed);
    expect(tf.memory().numTensors).toBe(before);
  });
});
