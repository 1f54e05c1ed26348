import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../../src/model/backend';
import { parseT5Config } from '../../../src/model/t5/config';
import { bucketsByDistance, positionBias, relativePositionBucket } from '../../../src/model/t5/position-bias';

const config = parseT5Config({ model_type: 't5', relative_attention_num_buckets: 32, relative_attention_max_distance: 128 });

describe('relativePositionBucket (HF _relative_position_bucket, 32 buckets, max distance 128)', () => {
  it('bidirectional: 16 buckets per direction, 8 exact, then logarithmic up to bucket 15', () => {
    // relative position = key - query; keys after the query use buckets 16..31.
    const cases: Array<[number, number]> = [
      [0, 0],
      [-1, 1],
      [1, 17],
      [-7, 7],
      [-8, 8],
      [-12, 9],
      [-16, 10],
      [-64, 14],
      [-127, 15],
      [-128, 15],
      [-1000, 15],
      [8, 24],
      [1000, 31],
    ];
    for (const [relative, bucket] of cases) expect(relativePositionBucket(relative, true, 32, 128), `relative ${relative}`).toBe(bucket);
  });

  it('causal: keys after the query share bucket 0; 16 exact, then logarithmic up to bucket 31', () => {
    const cases: Array<[number, number]> = [
      [5, 0],
      [0, 0],
      [-5, 5],
      [-15, 15],
      [-16, 16],
      [-32, 21],
      [-64, 26],
      [-128, 31],
      [-500, 31],
    ];
    for (const [relative, bucket] of cases) expect(relativePositionBucket(relative, false, 32, 128), `relative ${relative}`).toBe(bucket);
  });

  it('lists one bucket per distinct relative position, most negative first', () => {
    // Queries at 5, 6 and keys 0..2: key - query runs from -6 to -3.
    expect([...bucketsByDistance(5, 2, 3, false, config)]).toEqual([6, 5, 4, 3]);
  });
});

describe('positionBias', () => {
  beforeAll(async () => {
    await initBackend('cpu');
  });

  it('looks up one bias per head and bucket into [1, heads, queries, keys], with a scatter-add gradient', async () => {
    const table = tf.tensor2d(
      Array.from({ length: 32 * 2 }, (_, i) => i),
      [32, 2],
    ); // bucket b, head h -> 2b + h
    const bias = positionBias(table, 0, 2, 3, true, config);
    expect(bias.shape).toEqual([1, 2, 2, 3]);
    // Buckets for queries 0,1 and keys 0..2: [[0, 17, 18], [1, 0, 17]].
    expect(await bias.array()).toEqual([
      [
        [
          [0, 34, 36],
          [2, 0, 34],
        ],
        [
          [1, 35, 37],
          [3, 1, 35],
        ],
      ],
    ]);
    const grad = tf.grad((t: tf.Tensor) => tf.sum(positionBias(t, 0, 2, 3, true, config)))(table);
    const g = (await grad.array()) as number[][];
    expect(g[0]).toEqual([2, 2]);
    expect(g[17]).toEqual([2, 2]);
    expect(g[18]).toEqual([1, 1]);
    expect(g[5]).toEqual([0, 0]);
    tf.dispose([table, bias, grad]);
  });

  /** table[bucket(k - (queryStart + q))][h], directly. */
  function directBias(table: number[][], queryStart: number, queryLength: number, keyLength: number, bidirectional: boolean): number[][][] {
    const heads = table[0].length;
    return Array.from({ length: heads }, (_, h) =>
      Array.from({ length: queryLength }, (_, q) =>
        Array.from({ length: keyLength }, (_, k) => table[relativePositionBucket(k - (queryStart + q), bidirectional, 32, 128)][h]),
      ),
    );
  }

  it('equals the direct per-pair lookup for square, rectangular, offset and single-query shapes', async () => {
    const values = Array.from({ length: 32 }, (_, b) => [Math.sin(b + 1), Math.cos(3 * b), b / 7]);
    const table = tf.tensor2d(values);
    const cases: Array<[number, number, number, boolean]> = [
      [0, 20, 20, true],
      [0, 7, 40, true],
      [0, 30, 30, false],
      [3, 4, 9, false],
      [17, 1, 18, false],
      [0, 1, 1, false],
      [0, 2, 1, true],
    ];
    for (const [start, q, k, bidirectional] of cases) {
      const bias = positionBias(table, start, q, k, bidirectional, config);
      expect(bias.shape).toEqual([1, 3, q, k]);
      const got = ((await bias.array()) as number[][][][])[0];
      const want = directBias(values, start, q, k, bidirectional);
      for (let h = 0; h < 3; h++)
        for (let i = 0; i < q; i++)
          for (let j = 0; j < k; j++) {
            expect(got[h][i][j], `case ${[start, q, k, bidirectional]} h${h} q${i} k${j}`).toBeCloseTo(want[h][i][j], 6);
          }
      bias.dispose();
    }
    table.dispose();
  });

  it('the incremental decoder bias at position p is row p of the full causal bias', async () => {
    const table = tf.randomNormal([32, 2], 0, 1, 'float32', 7);
    const full = (await positionBias(table, 0, 40, 40, false, config).array()) as number[][][][];
    for (const p of [0, 1, 17, 39]) {
      const step = (await positionBias(table, p, 1, p + 1, false, config).array()) as number[][][][];
      for (let h = 0; h < 2; h++) expect(step[0][h][0]).toEqual(full[0][h][p].slice(0, p + 1));
    }
    table.dispose();
  });
});
