import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../../src/model/backend';
import { fidEncode, type FusedEncoding } from '../../../src/model/t5/fid';
import { beamSearch, greedyGenerate } from '../../../src/model/t5/generate';
import type { T5Model } from '../../../src/model/t5/model';
import { intInput, loadT5Fixture, T5_FIXTURES } from './fixtures';

/** Sum of log p(token) of `tokens[1..]` under teacher forcing (EOS not suppressed). */
async function teacherForcedLogProb(model: T5Model, encoder: FusedEncoding, tokens: number[], eosSuppressedBefore: number): Promise<number> {
  const logProbs = tf.tidy(() => {
    const input = tf.tensor2d([tokens.slice(0, -1)], [1, tokens.length - 1], 'int32');
    return tf.logSoftmax(model.logits(model.decode(input, encoder.hidden, encoder.mask).hidden));
  });
  const values = (await logProbs.array()) as number[][][];
  logProbs.dispose();
  let sum = 0;
  for (let t = 1; t < tokens.length; t++) {
    if (t - 1 < eosSuppressedBefore && tokens[t] === model.config.eos_token_id) return -Infinity;
    sum += values[0][t - 1][tokens[t]];
  }
  return sum;
}

for (const name of T5_FIXTURES) {
  describe(`generation over the ${name} FiD encoding`, () => {
    let fixture: ReturnType<typeof loadT5Fixture>;
    let encoder: FusedEncoding;

    beforeAll(async () => {
      await initBackend('cpu');
      fixture = loadT5Fixture(name);
      const ids = intInput(fixture.expected, 'fid_input_ids');
      const mask = intInput(fixture.expected, 'fid_attention_mask');
      encoder = fidEncode(fixture.model, ids, mask, ids.shape[0]);
      tf.dispose([ids, mask]);
    });

    afterAll(() => {
      tf.dispose([encoder.hidden, encoder.mask]);
      fixture.store.dispose();
    });

    it('gives the same logits step by step with the KV cache as the teacher-forced decoder', async () => {
      const tokens = [0, 17, 5, 300, 42, 1, 99];
      const full = tf.tidy(() => model().logits(model().decode(tf.tensor2d([tokens], [1, tokens.length], 'int32'), encoder.hidden, encoder.mask).hidden));
      const expected = (await full.array()) as number[][][];
      full.dispose();
      const cache = model().createDecoderCache(encoder.hidden, encoder.mask);
      for (let t = 0; t < tokens.length; t++) {
        const input = tf.tensor2d([[tokens[t]]], [1, 1], 'int32');
        const step = model().stepLogits(input, cache);
        const got = ((await step.array()) as number[][])[0];
        tf.dispose([input, step]);
        const maxRef = Math.max(...expected[0][t].map(Math.abs));
        const maxDiff = Math.max(...got.map((v, i) => Math.abs(v - expected[0][t][i])));
        expect(maxDiff / maxRef, `position ${t}`).toBeLessThan(1e-5);
      }
      expect(cache.length).toBe(tokens.length);
      cache.dispose();
    });

    it('greedy decoding with EOS suppressed for 8 tokens reproduces the reference ids', async () => {
      const reference: number[] = fixture.expectedJson.fid_greedy_ids;
      const [ids] = await greedyGenerate(model(), encoder.hidden, encoder.mask, { maxNewTokens: 8, minNewTokens: 8 });
      expect(ids).toEqual(reference);
    });

    it('greedy decoding stops at the end-of-sequence token', async () => {
      const reference: number[] = fixture.expectedJson.fid_greedy_ids;
      // Declare the third generated token to be EOS: decoding must end there, EOS included.
      const [ids] = await greedyGenerate(model(), encoder.hidden, encoder.mask, { maxNewTokens: 8, eosTokenId: reference[3] });
      expect(ids).toEqual(reference.slice(0, reference.indexOf(reference[3]) + 1));
    });

    it('beam search with one beam equals greedy decoding', async () => {
      const [greedy] = await greedyGenerate(model(), encoder.hidden, encoder.mask, { maxNewTokens: 8, minNewTokens: 8 });
      const [[best]] = await beamSearch(model(), encoder.hidden, encoder.mask, { maxNewTokens: 8, minNewTokens: 8, numBeams: 1 });
      expect(best.tokens).toEqual(greedy);
    });

    it('beam search returns numBeams distinct hypotheses, best first, scored by their length-penalised log-probability', async () => {
      const lengthPenalty = 0.5;
      const [hyps] = await beamSearch(model(), encoder.hidden, encoder.mask, { maxNewTokens: 5, minNewTokens: 2, numBeams: 4, lengthPenalty });
      expect(hyps).toHaveLength(4);
      expect(new Set(hyps.map((h) => h.tokens.join(','))).size).toBe(4);
      for (let i = 1; i < hyps.length; i++) expect(hyps[i].score).toBeLessThanOrEqual(hyps[i - 1].score);
      for (const h of hyps) {
        const generated = h.tokens.length - 1;
        const logProb = await teacherForcedLogProb(model(), encoder, h.tokens, 2);
        expect(h.score).toBeCloseTo(logProb / generated ** lengthPenalty, 4);
      }
      // A wider search never finds a worse best hypothesis than greedy here.
      const [greedy] = await greedyGenerate(model(), encoder.hidden, encoder.mask, { maxNewTokens: 5, minNewTokens: 2 });
      const greedyScore = (await teacherForcedLogProb(model(), encoder, greedy, 2)) / (greedy.length - 1) ** lengthPenalty;
      expect(hyps[0].score).toBeGreaterThanOrEqual(greedyScore - 1e-5);
    });

    it('decodes a batch row by row the same as each row alone, and leaks no tensors', async () => {
      const ids = intInput(fixture.expected, 'enc_input_ids');
      const mask = intInput(fixture.expected, 'enc_attention_mask');
      const hidden = model().encode(ids, mask);
      const before = tf.memory().numTensors;
      const batched = await greedyGenerate(model(), hidden, mask, { maxNewTokens: 6, eosTokenId: 7 });
      const beams = await beamSearch(model(), hidden, mask, { maxNewTokens: 6, numBeams: 3 });
      expect(tf.memory().numTensors).toBe(before);
      for (let row = 0; row < 2; row++) {
        const [h, m] = [tf.slice(hidden, [row, 0, 0], [1, -1, -1]), tf.slice(mask, [row, 0], [1, -1])];
        const [alone] = await greedyGenerate(model(), h, m, { maxNewTokens: 6, eosTokenId: 7 });
        const [aloneBeams] = await beamSearch(model(), h, m, { maxNewTokens: 6, numBeams: 3 });
        expect(batched[row]).toEqual(alone);
        expect(beams[row].map((b) => b.tokens)).toEqual(aloneBeams.map((b) => b.tokens));
        tf.dispose([h, m]);
      }
      tf.dispose([ids, mask, hidden]);
    });

    it('with a constraint, greedy and beam search emit only allowed tokens and pick the best allowed one', async () => {
      const firstLogits = tf.tidy(() => model().logits(model().decode(tf.tensor2d([[0]], [1, 1], 'int32'), encoder.hidden, encoder.mask).hidden));
      const first = ((await firstLogits.array()) as number[][][])[0][0];
      firstLogits.dispose();
      const [a, b, c] = [17, 300, 42];
      // Step 0: a or b; step 1: c only; then end (an empty list means EOS).
      const constraint = { allowedNext: (_example: number, generated: readonly number[]) => [[a, b], [c], []][generated.length] ?? [] };
      const [greedy] = await greedyGenerate(model(), encoder.hidden, encoder.mask, { maxNewTokens: 8, constraint });
      expect(greedy).toEqual([0, first[a] >= first[b] ? a : b, c, model().config.eos_token_id]);
      const [hyps] = await beamSearch(model(), encoder.hidden, encoder.mask, { maxNewTokens: 8, numBeams: 3, constraint });
      // Only two sequences satisfy the constraint, so only two hypotheses are found.
      expect(hyps.map((h) => h.tokens).sort()).toEqual(
        [
          [0, a, c, 1],
          [0, b, c, 1],
        ].sort(),
      );
      // Scores stay the model's own log-probabilities (the mask does not renormalise), best first.
      for (const h of hyps) expect(h.score).toBeCloseTo((await teacherForcedLogProb(model(), encoder, h.tokens, 0)) / 3, 4);
      expect(hyps[0].score).toBeGreaterThanOrEqual(hyps[1].score);
    });

    it('a constraint that answers null leaves decoding unconstrained', async () => {
      const [free] = await greedyGenerate(model(), encoder.hidden, encoder.mask, { maxNewTokens: 6, minNewTokens: 6 });
      const [nulled] = await greedyGenerate(model(), encoder.hidden, encoder.mask, {
        maxNewTokens: 6,
        minNewTokens: 6,
        constraint: { allowedNext: () => null },
      });
      expect(nulled).toEqual(free);
    });

    function model(): T5Model {
      return fixture.model;
    }
  });
}
