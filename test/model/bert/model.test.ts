import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../../src/model/backend';
import { parseBertConfig } from '../../../src/model/bert/config';
import { bertEncode, geluExact, geluTanh, layerNorm, linear } from '../../../src/model/bert/model';

/** Φ(x) by numerical integration of the normal density (independent of any erf approximation). */
function normalCdf(x: number): number {
  const n = 20000;
  const lo = -12;
  const h = (x - lo) / n;
  let s = 0;
  for (let i = 0; i <= n; i++) {
    const t = lo + i * h;
    const w = i === 0 || i === n ? 1 : i % 2 ? 4 : 2; // Simpson
    s += w * Math.exp((-t * t) / 2);
  }
  return (s * h) / 3 / Math.sqrt(2 * Math.PI);
}

const xs = [-4, -2.5, -1, -0.3, 0, 0.2, 1, 1.7, 3];

describe('BERT building blocks', () => {
  beforeAll(async () => {
    await initBackend('cpu');
  });

  it('geluExact is x·Φ(x) and its gradient is Φ(x) + x·φ(x)', async () => {
    const x = tf.tensor1d(xs);
    const y = geluExact(x);
    const dy = tf.grad((t: tf.Tensor) => tf.sum(geluExact(t)))(x);
    const [values, grads] = [await y.data(), await dy.data()];
    xs.forEach((v, i) => {
      const phi = Math.exp((-v * v) / 2) / Math.sqrt(2 * Math.PI);
      expect(values[i]).toBeCloseTo(v * normalCdf(v), 6);
      expect(grads[i]).toBeCloseTo(normalCdf(v) + v * phi, 5);
    });
    tf.dispose([x, y, dy]);
  });

  it('geluTanh follows the tanh approximation and stays within 1e-3 of the exact GELU', async () => {
    const x = tf.tensor1d(xs);
    const [approxT, exactT] = [geluTanh(x), geluExact(x)];
    const [approx, exact] = [await approxT.data(), await exactT.data()];
    xs.forEach((v, i) => {
      expect(approx[i]).toBeCloseTo(0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3))), 6);
      expect(Math.abs(approx[i] - exact[i])).toBeLessThan(1e-3);
    });
    tf.dispose([x, approxT, exactT]);
  });

  it('layerNorm normalises the last axis with the biased variance, then scales and shifts', async () => {
    const row = [1, 2, 4, 9];
    const mean = row.reduce((a, b) => a + b) / 4;
    const variance = row.reduce((a, b) => a + (b - mean) ** 2, 0) / 4;
    const out = tf.tidy(() => layerNorm(tf.tensor2d([row]), tf.tensor1d([1, 2, 1, 1]), tf.tensor1d([0, 0, 0.5, 0]), 1e-12));
    const want = row.map((v, i) => ((v - mean) / Math.sqrt(variance)) * [1, 2, 1, 1][i] + [0, 0, 0.5, 0][i]);
    Array.from(await out.data()).forEach((v, i) => expect(v).toBeCloseTo(want[i], 5));
    out.dispose();
  });

  it('linear multiplies by the transposed [out, in] weight over any leading axes', async () => {
    const out = tf.tidy(() =>
      linear(
        tf.tensor3d([[[1, 2]], [[3, 4]]]),
        tf.tensor2d([
          [1, 0],
          [0, 1],
          [1, 1],
        ]),
        tf.tensor1d([0, 0, 10]),
      ),
    );
    expect(out.shape).toEqual([2, 1, 3]);
    expect(await out.array()).toEqual([[[1, 2, 13]], [[3, 4, 17]]]);
    out.dispose();
  });

  it('bertEncode rejects float ids, mismatched masks and over-long inputs', () => {
    const config = parseBertConfig({
      model_type: 'bert',
      vocab_size: 10,
      hidden_size: 4,
      num_hidden_layers: 1,
      num_attention_heads: 2,
      intermediate_size: 8,
      max_position_embeddings: 3,
    });
    const params = (name: string): tf.Tensor => {
      throw new Error(`unexpected read of ${name}`);
    };
    const ids = tf.tensor2d([[1, 2]], [1, 2], 'int32');
    const floatIds = tf.tensor2d([[1, 2]]) as tf.Tensor2D;
    const long = tf.tensor2d([[1, 2, 3, 4]], [1, 4], 'int32');
    const [mask2, mask3, mask4] = [tf.ones([1, 2]), tf.ones([1, 3]), tf.ones([1, 4])] as tf.Tensor2D[];
    expect(() => bertEncode(config, params, { inputIds: floatIds, attentionMask: mask2 })).toThrow('must be int32');
    expect(() => bertEncode(config, params, { inputIds: ids, attentionMask: mask3 })).toThrow('differs from inputIds');
    expect(() => bertEncode(config, params, { inputIds: long, attentionMask: mask4 })).toThrow('max_position_embeddings is 3');
    tf.dispose([ids, floatIds, long, mask2, mask3, mask4]);
  });
});
