import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../src/model/backend';
import { attentionDistillationLoss, inBatchContrastiveLoss, perplexityDistillationLoss, retrieverScores, stopGradient } from '../../src/model/losses';

/** Deterministic pseudo-random numbers in [-1, 1) (mulberry32). */
function randoms(n: number, seed: number): number[] {
  let a = seed;
  return Array.from({ length: n }, () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 31 - 1;
  });
}

function softmax(xs: number[]): number[] {
  const m = Math.max(...xs);
  const e = xs.map((x) => Math.exp(x - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / s);
}

const dot = (a: number[], b: number[]) => a.reduce((s, x, i) => s + x * b[i], 0);

// Two queries, three retrieved passages each, dimension 4.
const B = 2,
  K = 3,
  D = 4;
const qRows = [randoms(D, 1), randoms(D, 2)];
const pRows = [0, 1].map((i) => [0, 1, 2].map((j) => randoms(D, 10 + 3 * i + j).map((x) => x * 0.05)));
const ce = [
  [1.2, 1.25, 2.0],
  [0.7, 0.69, 0.71],
];

/** Atlas's loss written out: KLDivLoss(mean) over B*K elements, temperatures 0.01. */
function handPdist(): { loss: number; gradQ: number[][] } {
  let loss = 0;
  const gradQ = qRows.map(() => new Array(D).fill(0));
  for (let i = 0; i < B; i++) {
    const target = softmax(ce[i].map((c) => -c / 0.01));
    const scores = pRows[i].map((p) => dot(qRows[i], p) / Math.sqrt(D));
    const probs = softmax(scores.map((s) => s / 0.01));
    for (let j = 0; j < K; j++) {
      if (target[j] > 0) loss += target[j] * (Math.log(target[j]) - Math.log(probs[j]));
      // d/dscore_j of sum_j t_j (log t_j - log softmax(score/T)_j) = (p_j - t_j) / T
      const dScore = (probs[j] - target[j]) / 0.01 / (B * K);
      for (let d = 0; d < D; d++) gradQ[i][d] += (dScore * pRows[i][j][d]) / Math.sqrt(D);
    }
  }
  return { loss: loss / (B * K), gradQ };
}

describe('retriever losses', () => {
  beforeAll(async () => {
    await initBackend('cpu');
  });

  it('retrieverScores divides each query-passage inner product by sqrt(dim)', async () => {
    const s = tf.tidy(() => retrieverScores(tf.tensor2d(qRows), tf.tensor3d(pRows)));
    const got = (await s.array()) as number[][];
    s.dispose();
    for (let i = 0; i < B; i++) for (let j = 0; j < K; j++) expect(got[i][j]).toBeCloseTo(dot(qRows[i], pRows[i][j]) / 2, 6);
  });

  it('PDist equals the hand-computed Atlas KL and its query gradient', async () => {
    const want = handPdist();
    const passages = tf.tensor3d(pRows);
    const queries = tf.tensor2d(qRows);
    const { value, grads } = tf.valueAndGrads((q: tf.Tensor) => perplexityDistillationLoss(q as tf.Tensor2D, passages, ce))([queries]);
    expect(await value.data()).toHaveLength(1);
    expect((await value.data())[0]).toBeCloseTo(want.loss, 5);
    const gq = (await grads[0].array()) as number[][];
    for (let i = 0; i < B; i++) for (let d = 0; d < D; d++) expect(gq[i][d]).toBeCloseTo(want.gradQ[i][d], 4);
    expect(want.loss).toBeGreaterThan(0.01); // the example is not trivially matched already
    tf.dispose([passages, queries, value, ...grads]);
  });

  it('PDist is near zero when the retriever already ranks like the reader', async () => {
    // One dimension; q = 1, passage values chosen so q·p/sqrt(1)/0.01 = -CE/0.01.
    const loss = tf.tidy(() => perplexityDistillationLoss(tf.tensor2d([[1]]), tf.tensor3d([[[-1.2], [-1.25], [-2.0]]]), [[1.2, 1.25, 2.0]]));
    expect(Math.abs((await loss.data())[0])).toBeLessThan(1e-6);
    loss.dispose();
  });

  it('ADist uses the attention scores themselves as gold (higher attention = better)', async () => {
    const attention = [
      [0.3, 0.1, 0.6],
      [0.2, 0.5, 0.3],
    ];
    const viaAdist = tf.tidy(() => attentionDistillationLoss(tf.tensor2d(qRows), tf.tensor3d(pRows), attention, { temperatureGold: 0.1 }));
    // Equivalent PDist input: CE = -attention, with the same gold temperature.
    const viaPdist = tf.tidy(() =>
      perplexityDistillationLoss(
        tf.tensor2d(qRows),
        tf.tensor3d(pRows),
        attention.map((r) => r.map((x) => -x)),
        { temperatureGold: 0.1 },
      ),
    );
    expect((await viaAdist.data())[0]).toBeCloseTo((await viaPdist.data())[0], 6);
    tf.dispose([viaAdist, viaPdist]);
  });

  it('passes no gradient into the distillation target', async () => {
    const queries = tf.tensor2d(qRows);
    const passages = tf.tensor3d(pRows);
    const gold = tf.tensor2d(ce);
    const grads = tf.grads((g: tf.Tensor) => perplexityDistillationLoss(queries, passages, g as tf.Tensor2D))([gold]);
    expect(Array.from(await grads[0].data()).every((x) => x === 0)).toBe(true);
    const direct = tf.grad((x: tf.Tensor) => tf.sum(tf.mul(stopGradient(x), x)))(gold);
    expect(await direct.array()).toEqual(await gold.array()); // d(sg(x)·x)/dx = x
    tf.dispose([queries, passages, gold, direct, ...grads]);
  });

  it('in-batch contrastive loss is the cross-entropy of q·pᵀ/temperature', async () => {
    const q = [
      [1, 0],
      [0, 1],
    ];
    const p = [
      [0.1, 0.02],
      [0.03, 0.05],
      [-0.02, 0.04],
    ];
    const positives = [0, 2];
    let want = 0;
    q.forEach((row, i) => {
      const probs = softmax(p.map((pr) => dot(row, pr) / 0.05));
      want -= Math.log(probs[positives[i]]);
    });
    const loss = tf.tidy(() => inBatchContrastiveLoss(tf.tensor2d(q), tf.tensor2d(p), positives));
    expect((await loss.data())[0]).toBeCloseTo(want / 2, 5);
    loss.dispose();
    expect(() => inBatchContrastiveLoss(tf.zeros([2, 2]) as tf.Tensor2D, tf.zeros([3, 2]) as tf.Tensor2D, [0, 3])).toThrow('outside [0, 3)');
  });

  it('leaves no tensors behind', () => {
    const queries = tf.tensor2d(qRows);
    const passages = tf.tensor3d(pRows);
    const before = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) {
      const { value, grads } = tf.valueAndGrads((q: tf.Tensor) => perplexityDistillationLoss(q as tf.Tensor2D, passages, ce))([queries]);
      tf.dispose([value, ...grads]);
    }
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([queries, passages]);
  });
});
