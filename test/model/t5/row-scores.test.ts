import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../../src/model/backend';
import { IGNORE_INDEX, sequenceCrossEntropy, tokenNll } from '../../../src/model/t5/loss';
import { rowSequenceLosses } from '../../../src/model/t5/row-scores';
import { intInput, loadT5Fixture, T5_FIXTURES } from './fixtures';

describe.each(['cpu', 'wasm'] as const)('per-row answer scores on %s', (backend) => {
  beforeAll(async () => {
    await initBackend(backend);
  });

  it('sequenceCrossEntropy (gathered) gives exactly the one-hot log-softmax numbers', async () => {
    const logits = tf.randomNormal([3, 5, 97], 0, 4, 'float32', 7);
    const labels = tf.tensor2d(
      [
        [3, 96, 0, IGNORE_INDEX, 12],
        [IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX],
        [50, 50, 1, 2, 95],
      ],
      [3, 5],
      'int32',
    );
    const gathered = sequenceCrossEntropy(logits, labels);
    const oneHot = tf.tidy(() => {
      const { nll, mask } = tokenNll(logits, labels);
      return tf.div(tf.sum(nll, 1), tf.maximum(tf.sum(mask, 1), 1));
    });
    expect(Array.from(await gathered.data())).toEqual(Array.from(await oneHot.data()));
    expect((await gathered.data())[1]).toBe(0); // nothing counted
    tf.dispose([logits, labels, gathered, oneHot]);
  });

  it.each(T5_FIXTURES)('%s: rows scored alone give the Hugging Face batch loss, whatever the chunk size', async (name) => {
    const { model, store, expected, expectedJson } = loadT5Fixture(name);
    const ids = intInput(expected, 'enc_input_ids');
    const mask = intInput(expected, 'enc_attention_mask');
    const labels = intInput(expected, 'labels');
    const rows = ids.shape[0];
    const byChunk = new Map<number, Float32Array>();
    for (const chunk of [1, 2, rows]) {
      const before = tf.memory().numTensors;
      const losses = rowSequenceLosses(model, ids, mask, labels, chunk);
      expect(losses.shape).toEqual([rows]);
      byChunk.set(chunk, (await losses.data()) as Float32Array);
      losses.dispose();
      expect(tf.memory().numTensors).toBe(before);
    }
    for (const chunk of [1, 2]) {
      byChunk.get(chunk)!.forEach((v, r) => expect(Math.abs(v - byChunk.get(rows)![r])).toBeLessThanOrEqual(1e-6 * Math.abs(byChunk.get(rows)![r])));
    }
    // HF's loss is the mean over every counted token of the batch: the rows' means weighted by their counts.
    const counts = Array.from(await labels.data()).reduce(
      (c, id, i) => (id !== IGNORE_INDEX ? (c[Math.floor(i / labels.shape[1])]++, c) : c),
      new Array<number>(rows).fill(0),
    );
    const total = counts.reduce((a, b) => a + b, 0);
    const batchLoss = Array.from(byChunk.get(1)!).reduce((s, v, r) => s + v * counts[r], 0) / total;
    expect(Math.abs(batchLoss - expectedJson.loss) / expectedJson.loss).toBeLessThan(1e-4);
    tf.dispose([ids, mask, labels]);
    store.dispose();
  });

  it('refuses a chunk size that is not a positive integer and mismatched rows', () => {
    const { model, store } = loadT5Fixture(T5_FIXTURES[0]);
    const ids = tf.zeros([2, 3], 'int32');
    const mask = tf.ones([2, 3], 'int32');
    expect(() => rowSequenceLosses(model, ids, mask, tf.zeros([2, 2], 'int32'), 0)).toThrow(/chunkRows must be a positive integer/);
    expect(() => rowSequenceLosses(model, ids, mask, tf.zeros([3, 2], 'int32'), 1)).toThrow(/2 input rows/);
    tf.dispose([ids, mask]);
    store.dispose();
  });
});
