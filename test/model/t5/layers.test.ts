import * as tf from '@tensorflow/tfjs-core';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { initBackend } from '../../../src/model/backend';
import { causalMaskBias, mergeHeads, paddingMaskBias, splitHeads } from '../../../src/model/t5/attention';
import { geluNew, linear, rmsNorm } from '../../../src/model/t5/layers';

describe('T5 layers', () => {
  beforeAll(async () => {
    await initBackend('cpu');
  });
  // Every tensor a test creates is released when it ends.
  beforeEach(() => tf.engine().startScope());
  afterEach(() => tf.engine().endScope());

  it('rmsNorm divides by the root mean square without subtracting the mean, then scales', async () => {
    const y = rmsNorm(tf.tensor2d([[3, 4]]), tf.tensor1d([1, 2]), 0);
    const rms = Math.sqrt(12.5);
    const [a, b] = await y.data();
    expect(a).toBeCloseTo(3 / rms, 6);
    expect(b).toBeCloseTo(8 / rms, 6);
  });

  it('rmsNorm gradients with respect to input and weight equal autodiff of the plain formula', async () => {
    const x = tf.randomNormal([2, 3, 8], 0, 1, 'float32', 7);
    const w = tf.randomNormal([8], 1, 0.3, 'float32', 8);
    const upstream = tf.randomNormal([2, 3, 8], 0, 1, 'float32', 9);
    const plain = (a: tf.Tensor, b: tf.Tensor) => tf.mul(tf.mul(a, tf.rsqrt(tf.add(tf.mean(tf.square(a), -1, true), 1e-6))), b);
    const loss = (norm: typeof plain) => (a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(norm(a, b), upstream));
    const [dxWritten, dwWritten] = tf.grads(loss((a, b) => rmsNorm(a, b, 1e-6)))([x, w]);
    const [dxAuto, dwAuto] = tf.grads(loss(plain))([x, w]);
    const relL2 = (a: tf.Tensor, b: tf.Tensor) => tf.div(tf.norm(tf.sub(a, b)), tf.norm(b)).dataSync()[0];
    expect(relL2(dxWritten, dxAuto)).toBeLessThan(1e-6);
    expect(relL2(dwWritten, dwAuto)).toBeLessThan(1e-6);
    expect(relL2(rmsNorm(x, w, 1e-6), plain(x, w))).toBe(0);
  });

  it('geluNew is the tanh approximation (HF gelu_new)', async () => {
    const [one, minusTwo, zero] = await geluNew(tf.tensor1d([1, -2, 0])).data();
    expect(one).toBeCloseTo(0.8411920071, 6);
    expect(minusTwo).toBeCloseTo(-0.0454022884, 6);
    expect(zero).toBe(0);
  });

  it('linear applies a torch [out, in] weight over any leading dims', async () => {
    const y = linear(
      tf.tensor3d([[[1, 2]], [[3, 4]]]),
      tf.tensor2d([
        [1, 0],
        [1, 1],
        [0, 2],
      ]),
    );
    expect(y.shape).toEqual([2, 1, 3]);
    expect(await y.array()).toEqual([[[1, 3, 4]], [[3, 7, 8]]]);
  });

  it('splitHeads and mergeHeads are inverse', async () => {
    const x = tf.reshape(tf.range(0, 2 * 3 * 8), [2, 3, 8]);
    const heads = splitHeads(x, 4);
    expect(heads.shape).toEqual([2, 4, 3, 2]);
    expect(await mergeHeads(heads).array()).toEqual(await x.array());
    // A single position takes the reshape shortcut and must agree with the transpose.
    const one = tf.reshape(tf.range(0, 8), [1, 1, 8]);
    expect(await splitHeads(one, 4).array()).toEqual(await tf.transpose(tf.reshape(one, [1, 1, 4, 2]), [0, 2, 1, 3]).array());
    expect(await mergeHeads(splitHeads(one, 4)).array()).toEqual(await one.array());
  });

  it('masks are additive: 0 where allowed, float32 min where blocked', async () => {
    const min = -3.4028234663852886e38;
    const values = async (t: tf.Tensor) => [...(await t.data())].map((v) => v + 0); // -0 -> 0
    const padding = paddingMaskBias(tf.tensor2d([[1, 0]], [1, 2], 'int32'));
    expect(padding.shape).toEqual([1, 1, 1, 2]);
    expect(await values(padding)).toEqual([0, min]);
    expect(await values(causalMaskBias(2))).toEqual([0, min, 0, 0]);
  });
});
