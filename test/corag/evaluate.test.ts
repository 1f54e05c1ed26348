import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { evaluate } from '../../src/corag/evaluate';
import type { ModelBundle } from '../../src/corag/model-bundle';
import { buildFidBatch, cleanAnswer, disposeFidBatch, fidBatchLoss, generateAnswers, perPassageLoss } from '../../src/corag/reader';
import { LocalPassageStore } from '../../src/corag/retrieve';
import { exactMatch, f1Score } from '../../src/crab/metrics';
import { initBackend } from '../../src/model/backend';
import { tinyBundle } from './helpers';

const PASSAGES = [
  { title: 'alice', text: 'alice lives in paris.' },
  { title: 'bob', text: 'bob lives in london.' },
  { title: 'carol', text: 'carol lives in berlin.' },
];
const QA = [
  { question: 'where does alice live?', answers: ['paris'] },
  { question: 'where does bob live?', answers: ['london', 'London, UK'] },
];

describe('reader and evaluation', () => {
  let bundle: ModelBundle;
  beforeAll(async () => {
    await initBackend('cpu');
    bundle = await tinyBundle();
  });
  afterAll(() => bundle.dispose());

  it('with one passage, the per-passage CE equals the FiD loss of that passage alone', () => {
    const batch = buildFidBatch(bundle, ['where does alice live?'], [[PASSAGES[0], PASSAGES[1]]], ['paris'], { maxLength: 32 });
    const single = buildFidBatch(bundle, ['where does alice live?'], [[PASSAGES[1]]], ['paris'], { maxLength: 32 });
    const ce = perPassageLoss(bundle, batch);
    const alone = fidBatchLoss(bundle, single);
    expect(ce.shape).toEqual([1, 2]);
    expect(ce.dataSync()[1]).toBeCloseTo(alone.dataSync()[0], 4);
    tf.dispose([ce, alone]);
    disposeFidBatch(batch);
    disposeFidBatch(single);
  });

  it('generates answers greedily and with beams, with cross-attention shares over the passages that sum to 1', async () => {
    const tensors = tf.memory().numTensors;
    const passages = [[PASSAGES[0], PASSAGES[1]], [PASSAGES[1], PASSAGES[2]]];
    const greedy = await generateAnswers(bundle, QA.map((q) => q.question), passages, { maxNewTokens: 4, maxLength: 32 });
    const beams = await generateAnswers(bundle, QA.map((q) => q.question), passages, { maxNewTokens: 4, maxLength: 32, numBeams: 2 });
    expect(tf.memory().numTensors).toBe(tensors);
    for (const g of [...greedy, ...beams]) {
      expect(g.tokens[0]).toBe(bundle.readerConfig.decoder_start_token_id);
      expect(g.tokens.length).toBeLessThanOrEqual(5);
      expect(g.passageScores).toHaveLength(2);
      expect(g.passageScores[0] + g.passageScores[1]).toBeCloseTo(1, 4);
      expect(g.answer).toBe(cleanAnswer(bundle.readerTokenizer.decode(g.tokens)));
    }
  });

  it('evaluate scores every prediction with SQuAD EM/F1 and reports their means, with and without retrieval', async () => {
    const store = LocalPassageStore.empty(bundle.embeddingDim);
    await store.addTexts(bundle, PASSAGES);
    const progress: number[] = [];
    const open = await evaluate(bundle, QA, store, { k: 2, maxNewTokens: 4, maxLength: 32, batchSize: 1, onProgress: (d) => progress.push(d) });
    expect(progress).toEqual([1, 2]);
    expect(open.count).toBe(2);
    for (const p of open.predictions) {
      expect(p.passages).toHaveLength(2);
      expect(p.exactMatch).toBe(exactMatch(p.prediction, p.answers));
      expect(p.f1).toBe(f1Score(p.prediction, p.answers));
    }
    expect(open.exactMatch).toBe((open.predictions[0].exactMatch + open.predictions[1].exactMatch) / 2);
    const closed = await evaluate(bundle, QA, null, { k: 0, maxNewTokens: 4 });
    expect(closed.predictions.every((p) => p.passages.length === 0)).toBe(true);
  });

  it('cleanAnswer drops sentinels and extra spaces', () => {
    expect(cleanAnswer('<extra_id_0>  paris <extra_id_1>')).toBe('paris');
  });
});
