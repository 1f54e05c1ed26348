import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../../src/model/backend';
import { installWasmSharedIdentity } from '../../../src/model/wasm/shared-identity';

describe('the wasm backend with the sharing Identity kernel', () => {
  beforeAll(async () => {
    await initBackend('wasm');
  });

  it('is installed by initBackend', () => {
    expect(installWasmSharedIdentity()).toBe(true);
  });

  it('clones without a new buffer, and the clone outlives its source', async () => {
    const x = tf.tensor2d([
      [1, -2, 3],
      [4, 5, -6],
    ]);
    // numDataBuffers counts distinct buffers (numBytes counts every tensor, views included).
    const before = tf.memory().numDataBuffers;
    const y = tf.clone(x);
    expect(tf.memory().numDataBuffers).toBe(before);
    x.dispose();
    expect(await y.array()).toEqual([
      [1, -2, 3],
      [4, 5, -6],
    ]);
    y.dispose();
    expect(tf.memory().numDataBuffers).toBe(before - 1);
  });

  it('keeps a saved tensor at its old value when the variable it came from is assigned', async () => {
    const v = tf.variable(tf.tensor1d([1, 2, 3]));
    const saved = tf.clone(v);
    v.assign(tf.tensor1d([10, 20, 30]));
    expect(Array.from(await saved.data())).toEqual([1, 2, 3]);
    expect(Array.from(await v.data())).toEqual([10, 20, 30]);
    tf.dispose([v, saved]);
  });

  it('gives the same gradients as the cpu backend through ops that save inputs and outputs', async () => {
    const values = [0.5, -1.25, 2, 0.75, -0.3, 1.1];
    const f = (x: tf.Tensor) => tf.sum(tf.mul(tf.exp(tf.mul(x, x)), tf.relu(tf.sub(x, 0.1))));
    const wasm = tf.grad(f)(tf.tensor1d(values));
    const fromWasm = Array.from(await wasm.data());
    wasm.dispose();
    await initBackend('cpu');
    const cpu = tf.grad(f)(tf.tensor1d(values));
    const fromCpu = Array.from(await cpu.data());
    cpu.dispose();
    await initBackend('wasm');
    fromWasm.forEach((g, i) => expect(g).toBeCloseTo(fromCpu[i], 5));
  });
});
