import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../../src/model/backend';
import { allowedPositions, copyAttentionLoss } from '../../../src/model/t5/copy-attention';

beforeAll(async () => {
  await initBackend('cpu');
});

describe('copyAttentionLoss', () => {
  it("is the mean −log of the chosen head's mass on the allowed positions, over supervised target positions only", async () => {
    // B=1, heads=2, T=3, S=4.
    const probs = tf.tensor4d(
      [
        // head 0
        0.1, 0.2, 0.3, 0.4, 0.5, 0.25, 0.25, 0, 0.25, 0.25, 0.25, 0.25,
        // head 1 (not the supervised head)
        1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0,
      ],
      [1, 2, 3, 4],
    );
    // t=0: position 3; t=1: positions 1 or 2 (either counts); t=2: not supervised.
    const allowed = tf.tensor3d(allowedPositions([[[3], [1, 2], []]], 3, 4), [1, 3, 4]);
    const loss = copyAttentionLoss(probs, allowed, 0);
    const expected = (-Math.log(0.4) - Math.log(0.5)) / 2;
    expect((await loss.data())[0]).toBeCloseTo(expected, 5);
    tf.dispose([probs, allowed, loss]);
  });

  it('over several heads, is the mean of their losses', async () => {
    const probs = tf.tensor4d([0.5, 0.5, 0.25, 0.75], [1, 2, 1, 2]);
    const allowed = tf.tensor3d([0, 1], [1, 1, 2]);
    const both = copyAttentionLoss(probs, allowed, 0, 2);
    expect((await both.data())[0]).toBeCloseTo((-Math.log(0.5) - Math.log(0.75)) / 2, 5);
    expect(() => copyAttentionLoss(probs, allowed, 1, 2)).toThrow(/not among the 2 heads/);
  });

  it('is 0 when nothing is supervised, and its gradient raises the mass on the allowed position', async () => {
    const none = copyAttentionLoss(tf.fill([1, 1, 2, 3], 1 / 3) as tf.Tensor4D, tf.zeros([1, 2, 3]) as tf.Tensor3D, 0);
    expect((await none.data())[0]).toBe(0);
    const scores = tf.tensor4d([0, 0, 0], [1, 1, 1, 3]);
    const allowed = tf.tensor3d([0, 1, 0], [1, 1, 3]);
    const grad = tf.grad((s: tf.Tensor) => copyAttentionLoss(tf.softmax(s) as tf.Tensor4D, allowed, 0))(scores);
    const g = await grad.data();
    // Gradient descent raises the allowed score and lowers the others.
    expect(g[1]).toBeLessThan(0);
    expect(g[0]).toBeGreaterThan(0);
    expect(g[2]).toBeGreaterThan(0);
  });

  it('refuses a head that does not exist and allowed positions of the wrong shape', () => {
    const probs = tf.zeros([1, 2, 3, 4]) as tf.Tensor4D;
    expect(() => copyAttentionLoss(probs, tf.zeros([1, 3, 4]) as tf.Tensor3D, 2)).toThrow(/heads 2 … 2/);
    expect(() => copyAttentionLoss(probs, tf.zeros([1, 3, 5]) as tf.Tensor3D, 0)).toThrow(/allowed positions/);
    expect(() => allowedPositions([[[4]]], 1, 4)).toThrow(/outside/);
  });
});
