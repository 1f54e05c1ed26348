import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../src/model/backend';
import { embeddingLookup, sumTensors } from '../../src/model/ops';

describe('embeddingLookup', () => {
  beforeAll(async () => {
    await initBackend('cpu');
  });

  it('gathers rows and scatter-adds gradients for repeated ids, on cpu and wasm', async () => {
    for (const backend of ['cpu', 'wasm'] as const) {
      await initBackend(backend);
      const table = tf.tensor2d([
        [1, 2],
        [3, 4],
        [5, 6],
      ]);
      const ids = tf.tensor2d(
        [
          [0, 2],
          [0, 0],
        ],
        [2, 2],
        'int32',
      );
      expect(await embeddingLookup(table, ids).array()).toEqual([
        [
          [1, 2],
          [5, 6],
        ],
        [
          [1, 2],
          [1, 2],
        ],
      ]);
      const weights = tf.tensor3d([
        [
          [1, 1],
          [1, 2],
        ],
        [
          [3, 3],
          [4, 4],
        ],
      ]);
      const grad = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(embeddingLookup(t as tf.Tensor2D, ids), weights)))(table);
      expect(await grad.array()).toEqual([
        [8, 8],
        [0, 0],
        [1, 2],
      ]);
    }
  });
});

describe('sumTensors', () => {
  it('adds more tensors than one WebGPU program may bind, in groups, and returns a tensor the caller owns', async () => {
    await initBackend('cpu');
    const tensors = Array.from({ length: 20 }, (_, i) => tf.fill([2, 3], i + 1));
    const before = tf.memory().numTensors;
    const sum = sumTensors(tensors);
    expect(await sum.array()).toEqual([
      [210, 210, 210],
      [210, 210, 210],
    ]);
    expect(tf.memory().numTensors).toBe(before + 1);
    const single = sumTensors([tensors[0]]);
    expect(single).not.toBe(tensors[0]);
    tf.dispose([sum, single, ...tensors]);
  });
});
