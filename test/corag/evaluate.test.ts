import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { evaluate } from '../../src/corag/evaluate';
import type { ModelBundle } from '../../src/corag/model-bundle';
import { buildFidBatch, cleanAnswer, disposeFidBatch, fidBatchLoss, generateAnswers, perPassageLoss } from '../../src/corag/reader';
import { LocalPassageStore } from '../../src/corag/retrieve';
import { exactMatch, f1Score } from '../../src/text/answer-metrics';
import { initBackend } from '../../src/model/backend';
import { fidForward } from '../../src/model/t5/fid';
import { meanTokenCrossEntropy, sequenceCrossEntropy } from '../../src/model/t5/loss';
import { controlTokens } from '../../src/corag/copy-answers';
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
    const passages = [
      [PASSAGES[0], PASSAGES[1]],
      [PASSAGES[1], PASSAGES[2]],
    ];
    const greedy = await generateAnswers(
      bundle,
      QA.map((q) => q.question),
      passages,
      { maxNewTokens: 4, maxLength: 32 },
    );
    const beams = await generateAnswers(
      bundle,
      QA.map((q) => q.question),
      passages,
      { maxNewTokens: 4, maxLength: 32, numBeams: 2 },
    );
    expect(tf.memory().numTensors).toBe(tensors);
    for (const g of [...greedy, ...beams]) {
      expect(g.tokens[0]).toBe(bundle.readerConfig.decoder_start_token_id);
      expect(g.tokens.length).toBeLessThanOrEqual(5);
      expect(g.passageScores).toHaveLength(2);
      expect(g.passageScores[0] + g.passageScores[1]).toBeCloseTo(1, 4);
      expect(g.answer).toBe(cleanAnswer(bundle.readerTokenizer.decode(g.tokens)));
    }
  });

  it("with copy decoding at weight 1 answers only with tokens of the question's inputs; the weight comes from the reader's config.json unless given", async () => {
    const passages = [
      [PASSAGES[0], PASSAGES[1]],
      [PASSAGES[1], PASSAGES[2]],
    ];
    const questions = QA.map((q) => q.question);
    const control = controlTokens(bundle.readerTokenizer);
    const pointed = await generateAnswers(bundle, questions, passages, { maxNewTokens: 6, maxLength: 32, copyWeight: 1 });
    const plain = await generateAnswers(bundle, questions, passages, { maxNewTokens: 6, maxLength: 32 });
    const batch = buildFidBatch(bundle, questions, passages, undefined, { maxLength: 32 });
    const ids = Array.from(batch.inputIds.dataSync());
    disposeFidBatch(batch);
    const perExample = ids.length / questions.length;
    pointed.forEach((g, i) => {
      const allowed = new Set([...ids.slice(i * perExample, (i + 1) * perExample), ...control]);
      for (const id of g.tokens.slice(1)) expect(allowed.has(id), `example ${i} token ${id}`).toBe(true);
    });
    // The random reader without the pointer does say things that are not in its inputs.
    expect(plain.some((g, i) => g.tokens.slice(1).some((id) => !ids.slice(i * perExample, (i + 1) * perExample).includes(id) && !control.has(id)))).toBe(true);
    const configured = await tinyBundle(1, 2, 'gated-gelu', { corag: { copy_decoding_weight: 1 } });
    try {
      expect(configured.policy.reader.copyDecodingWeight).toBe(1);
      const byDefault = await generateAnswers(configured, questions, passages, { maxNewTokens: 6, maxLength: 32 });
      expect(byDefault.map((g) => g.tokens)).toEqual(pointed.map((g) => g.tokens));
      const off = await generateAnswers(configured, questions, passages, { maxNewTokens: 6, maxLength: 32, copyWeight: 0 });
      expect(off.map((g) => g.tokens)).toEqual(plain.map((g) => g.tokens));
    } finally {
      configured.dispose();
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

  it('reports the gold-answer NLL as the mean token CE of `<extra_id_0> {first answer}` given the retrieved passages, pooled over batches', async () => {
    const store = LocalPassageStore.empty(bundle.embeddingDim);
    await store.addTexts(bundle, PASSAGES);
    const tensors = tf.memory().numTensors;
    // Batches of one question: the pooled value must still count every token of both answers once.
    const result = await evaluate(bundle, QA, store, { k: 2, maxNewTokens: 4, maxLength: 32, batchSize: 1 });
    expect(tf.memory().numTensors).toBe(tensors);

    // Independently: one FiD batch of both questions with the passages evaluate retrieved,
    // teacher forced, and the T5 loss helpers' mean token CE over all its labels.
    const passages = result.predictions.map((p) => p.passages.map(({ title, text }) => ({ title, text })));
    const batch = buildFidBatch(
      bundle,
      QA.map((q) => q.question),
      passages,
      QA.map((q) => q.answers[0]),
      { maxLength: 32 },
    );
    const [mean, perQuestion, tokens] = tf.tidy((): tf.Tensor[] => {
      const { logits } = fidForward(bundle.reader, batch.inputIds, batch.attentionMask, batch.numPassages, batch.labels!);
      return [
        meanTokenCrossEntropy(logits, batch.labels!),
        sequenceCrossEntropy(logits, batch.labels!),
        tf.sum(tf.cast(tf.notEqual(batch.labels!, -100), 'int32'), 1),
      ];
    });
    const expectedMean = mean.dataSync()[0];
    const expectedPerQuestion = Array.from(perQuestion.dataSync());
    const expectedTokens = Array.from(tokens.dataSync());
    tf.dispose([mean, perQuestion, tokens]);
    disposeFidBatch(batch);

    expect(expectedMean).toBeGreaterThan(0);
    expect(result.answerNll).toBeCloseTo(expectedMean, 5);
    expect(result.answerTokens).toBe(expectedTokens[0] + expectedTokens[1]);
    result.predictions.forEach((p, i) => {
      expect(p.answerTokens).toBe(expectedTokens[i]);
      expect(p.answerNllSum / p.answerTokens).toBeCloseTo(expectedPerQuestion[i], 5);
    });
  });

  it('the closed-book gold-answer NLL is the reader loss of the bare question', async () => {
    const closed = await evaluate(bundle, QA.slice(0, 1), null, { k: 0, maxNewTokens: 2, maxLength: 32 });
    const batch = buildFidBatch(bundle, [QA[0].question], [[{ title: '', text: '' }]], [QA[0].answers[0]], { maxLength: 32 });
    const loss = fidBatchLoss(bundle, batch);
    expect(closed.answerNll).toBeCloseTo(loss.dataSync()[0], 5);
    loss.dispose();
    disposeFidBatch(batch);
  });

  it('cleanAnswer drops sentinels and extra spaces', () => {
    expect(cleanAnswer('<extra_id_0>  paris <extra_id_1>')).toBe('paris');
  });
});
