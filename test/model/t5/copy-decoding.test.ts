import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../../src/model/backend';
import { mixCopyDistribution, validateCopyDecoding, type CopyDecodingOptions } from '../../../src/model/t5/copy-decoding';
import { fidEncode, type FusedEncoding } from '../../../src/model/t5/fid';
import { beamSearch, greedyGenerate } from '../../../src/model/t5/generate';
import { intInput, loadT5Fixture } from './fixtures';

const logOf = (probs: number[]) => Float32Array.from(probs, Math.log);
const expOf = (logs: Float32Array) => Array.from(logs, Math.exp);

describe('mixing the copy pointer into next-token probabilities', () => {
  // vocab: 0 = pad, 1 = EOS (control), 2 … 5 content tokens; one example, source = [4, 5, 1, 0].
  const copy = (weight: number, heads?: number[]): CopyDecodingOptions => ({
    weight,
    heads,
    sourceIds: [Int32Array.from([4, 5, 1, 0])],
    controlTokens: new Set([0, 1]),
  });
  const lm = [0.05, 0.15, 0.4, 0.2, 0.1, 0.1];

  it('leaves the LM distribution unchanged at weight 0', () => {
    const row = logOf(lm);
    mixCopyDistribution(row, Float32Array.from([0.7, 0.3, 0, 0]), 1, 6, 1, 4, copy(0), () => 0);
    expOf(row).forEach((p, v) => expect(p).toBeCloseTo(lm[v], 6));
  });

  it('keeps the control tokens at their LM probability and splits the rest between LM and pointer', () => {
    const row = logOf(lm);
    // Head 0 points 0.6 at token 4, 0.2 at token 5, 0.2 at EOS (a control position: not pointed).
    mixCopyDistribution(row, Float32Array.from([0.6, 0.2, 0.2, 0]), 1, 6, 1, 4, copy(0.5), () => 0);
    const p = expOf(row);
    expect(p[0]).toBeCloseTo(0.05, 6);
    expect(p[1]).toBeCloseTo(0.15, 6);
    const content = 0.8;
    expect(p[2]).toBeCloseTo(0.5 * 0.4, 6);
    expect(p[4]).toBeCloseTo(0.5 * 0.1 + 0.5 * content * 0.75, 6);
    expect(p[5]).toBeCloseTo(0.5 * 0.1 + 0.5 * content * 0.25, 6);
    expect(p.reduce((a, b) => a + b)).toBeCloseTo(1, 6);
  });

  it('averages the chosen heads only', () => {
    const attention = Float32Array.from([1, 0, 0, 0, /* head 1 */ 0, 1, 0, 0]);
    const both = logOf(lm);
    mixCopyDistribution(both, attention, 1, 6, 2, 4, copy(1), () => 0);
    expect(Math.exp(both[4])).toBeCloseTo(0.4, 6);
    expect(Math.exp(both[5])).toBeCloseTo(0.4, 6);
    const second = logOf(lm);
    mixCopyDistribution(second, attention, 1, 6, 2, 4, copy(1, [1]), () => 0);
    expect(Math.exp(second[5])).toBeCloseTo(0.8, 6);
    expect(Math.exp(second[4])).toBeCloseTo(0, 6);
  });

  it('falls back to the LM alone when all attention is on control positions', () => {
    const row = logOf(lm);
    mixCopyDistribution(row, Float32Array.from([0, 0, 0.5, 0.5]), 1, 6, 1, 4, copy(1), () => 0);
    expOf(row).forEach((p, v) => expect(p).toBeCloseTo(lm[v], 6));
  });

  it("reads each row's source through exampleOf (beams share their example's source)", () => {
    const options: CopyDecodingOptions = { weight: 1, sourceIds: [Int32Array.from([2, 2]), Int32Array.from([3, 3])], controlTokens: new Set([0, 1]) };
    const rows = new Float32Array([...logOf(lm), ...logOf(lm), ...logOf(lm)]);
    mixCopyDistribution(rows, Float32Array.from([0.5, 0.5, 0.5, 0.5, 0.5, 0.5]), 3, 6, 1, 2, options, (r) => (r < 2 ? 0 : 1));
    expect(Math.exp(rows[2])).toBeCloseTo(0.8, 6);
    expect(Math.exp(rows[6 + 2])).toBeCloseTo(0.8, 6);
    expect(Math.exp(rows[12 + 3])).toBeCloseTo(0.8, 6);
  });

  it('rejects a weight outside [0, 1], source rows that do not fit the encoder output, and unknown heads', () => {
    const ok = copy(0.5);
    expect(() => validateCopyDecoding(ok, 1, 4, 2)).not.toThrow();
    expect(() => validateCopyDecoding(copy(1.5), 1, 4, 2)).toThrow(/weight/);
    expect(() => validateCopyDecoding(copy(Number.NaN), 1, 4, 2)).toThrow(/weight/);
    expect(() => validateCopyDecoding(ok, 2, 4, 2)).toThrow(/source rows/);
    expect(() => validateCopyDecoding(ok, 1, 5, 2)).toThrow(/positions/);
    expect(() => validateCopyDecoding(copy(0.5, [2]), 1, 4, 2)).toThrow(/head 2/);
  });
});

describe('generation with copy decoding over the t5-tiny-gated FiD encoding', () => {
  let fixture: ReturnType<typeof loadT5Fixture>;
  let encoder: FusedEncoding;
  let source: Int32Array;

  beforeAll(async () => {
    await initBackend('cpu');
    fixture = loadT5Fixture('t5-tiny-gated');
    const ids = intInput(fixture.expected, 'fid_input_ids');
    const mask = intInput(fixture.expected, 'fid_attention_mask');
    encoder = fidEncode(fixture.model, ids, mask, ids.shape[0]);
    source = Int32Array.from(ids.dataSync());
    tf.dispose([ids, mask]);
  });

  afterAll(() => {
    tf.dispose([encoder.hidden, encoder.mask]);
    fixture.store.dispose();
  });

  const control = () => new Set([fixture.model.config.pad_token_id, fixture.model.config.eos_token_id]);

  it('gives the same last-layer cross-attention step by step as the teacher-forced decoder', async () => {
    const model = fixture.model;
    const tokens = [0, 17, 5, 300];
    const { crossAttentions } = model.decode(tf.tensor2d([tokens], [1, tokens.length], 'int32'), encoder.hidden, encoder.mask, { crossAttentions: true });
    const expected = (await crossAttentions![crossAttentions!.length - 1].array()) as number[][][][];
    tf.dispose(crossAttentions!);
    const cache = model.createDecoderCache(encoder.hidden, encoder.mask);
    for (let t = 0; t < tokens.length; t++) {
      const input = tf.tensor2d([[tokens[t]]], [1, 1], 'int32');
      const step = model.stepLogitsAndAttention(input, cache);
      const got = (await step.attention.array()) as number[][][];
      tf.dispose([input, step.logits, step.attention]);
      got[0].forEach((row, h) => row.forEach((a, s) => expect(Math.abs(a - expected[0][h][t][s]), `t ${t} h ${h} s ${s}`).toBeLessThan(1e-5)));
    }
    cache.dispose();
  });

  it('with the pointer alone, greedy and beam search emit only tokens of the input (or control tokens)', async () => {
    const copy: CopyDecodingOptions = { weight: 1, sourceIds: [source], controlTokens: control() };
    const allowed = new Set([...source, ...control()]);
    const [greedy] = await greedyGenerate(fixture.model, encoder.hidden, encoder.mask, { maxNewTokens: 8, minNewTokens: 8, copy });
    expect(greedy.length).toBe(9);
    for (const id of greedy.slice(1)) expect(allowed.has(id), `token ${id}`).toBe(true);
    const [hyps] = await beamSearch(fixture.model, encoder.hidden, encoder.mask, { maxNewTokens: 6, minNewTokens: 6, numBeams: 3, copy });
    for (const h of hyps) for (const id of h.tokens.slice(1)) expect(allowed.has(id), `token ${id}`).toBe(true);
    // Without the pointer the same random model does produce tokens that are not in its input.
    const [free] = await greedyGenerate(fixture.model, encoder.hidden, encoder.mask, { maxNewTokens: 8, minNewTokens: 8 });
    expect(free.slice(1).some((id) => !allowed.has(id))).toBe(true);
  });

  it('refuses copy options that do not fit the encoder batch', async () => {
    const copy: CopyDecodingOptions = { weight: 1, sourceIds: [source.subarray(1)], controlTokens: control() };
    await expect(greedyGenerate(fixture.model, encoder.hidden, encoder.mask, { maxNewTokens: 2, copy })).rejects.toThrow(/positions/);
  });
});
