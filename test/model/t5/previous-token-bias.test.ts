import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../../src/model/backend';
import { parseT5Config } from '../../../src/model/t5/config';
import { positionBias } from '../../../src/model/t5/position-bias';
import { addPreviousTokenBias } from '../../../src/model/t5/previous-token-bias';

const config = parseT5Config({
  model_type: 't5',
  vocab_size: 10,
  d_model: 8,
  d_kv: 2,
  num_heads: 4,
  d_ff: 16,
  num_layers: 1,
  num_decoder_layers: 1,
  relative_attention_num_buckets: 32,
});

beforeAll(async () => {
  await initBackend('cpu');
});

describe('addPreviousTokenBias', () => {
  it('makes head h of the encoder favour the key h+1 positions before each query, and leaves the other heads alone', async () => {
    const weights = new Float32Array(32 * 4);
    addPreviousTokenBias(weights, config, 2, 5);
    // The bias the encoder adds to its scores: [1, heads, query, key] for a 6-token input.
    const bias = positionBias(tf.tensor2d(weights, [32, 4]), 0, 6, 6, true, config);
    const b = (await bias.array()) as number[][][][];
    for (let q = 2; q < 6; q++) {
      for (let k = 0; k < 6; k++) {
        expect(b[0][0][q][k]).toBe(k === q - 1 ? 5 : 0);
        expect(b[0][1][q][k]).toBe(k === q - 2 ? 5 : 0);
        expect(b[0][2][q][k]).toBe(0);
        expect(b[0][3][q][k]).toBe(0);
      }
    }
  });

  it('refuses more heads than the model has or than exact buckets allow, and a bias of the wrong size', () => {
    expect(() => addPreviousTokenBias(new Float32Array(32 * 4), config, 5, 5)).toThrow(/previous-token heads/);
    expect(() => addPreviousTokenBias(new Float32Array(32 * 4), config, 1.5, 5)).toThrow(/previous-token heads/);
    expect(() => addPreviousTokenBias(new Float32Array(31 * 4), config, 1, 5)).toThrow(/relative bias has/);
  });
});
