import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../../src/model/backend';
import { fidEncode, fidForward, fidInputText, fidLoss, fidTargetText, padIdRows, passageAttentionScores, truncateIds } from '../../../src/model/t5/fid';
import { intInput, loadT5Fixture } from './fixtures';

describe('Atlas input format', () => {
  it('writes the reader input and target as Atlas does', () => {
    expect(fidInputText('who wrote Faust?', { title: 'Goethe', text: 'Johann Wolfgang von Goethe wrote Faust.' })).toBe(
      'question: who wrote Faust? answer: <extra_id_0> title: Goethe context: Johann Wolfgang von Goethe wrote Faust.',
    );
    expect(fidTargetText('Goethe')).toBe('<extra_id_0> Goethe');
  });

  it('truncates ids to the max length keeping the final EOS, and leaves short ones alone', () => {
    expect(truncateIds([5, 6, 7, 8, 1], 3, 1)).toEqual([5, 6, 1]);
    expect(truncateIds([5, 6, 7, 8, 9], 3, 1)).toEqual([5, 6, 7]);
    expect(truncateIds([5, 1], 3, 1)).toEqual([5, 1]);
    expect(() => truncateIds([5], 0, 1)).toThrow('maxLength');
  });

  it('pads rows to the longest row or to the fixed max length, with a mask', () => {
    const longest = padIdRows(
      [
        [4, 1],
        [5, 6, 7, 8, 1],
      ],
      { maxLength: 4, padTokenId: 0, eosTokenId: 1 },
    );
    expect(longest.shape).toEqual([2, 4]);
    expect([...longest.ids]).toEqual([4, 1, 0, 0, 5, 6, 7, 1]);
    expect([...longest.mask]).toEqual([1, 1, 0, 0, 1, 1, 1, 1]);
    const fixed = padIdRows([[4, 1]], { maxLength: 5, padTokenId: 0, eosTokenId: 1, padTo: 'max' });
    expect(fixed.shape).toEqual([1, 5]);
    expect([...fixed.ids]).toEqual([4, 1, 0, 0, 0]);
  });
});

describe('passageAttentionScores', () => {
  beforeAll(async () => {
    await initBackend('cpu');
  });

  it('averages the attention mass per passage over layers, heads and counted target tokens', async () => {
    // 1 example, 2 heads, 2 target tokens, 2 passages of 2 tokens.
    const layer0 = tf.tensor4d(
      [
        [
          [0.5, 0.25, 0.25, 0],
          [1, 0, 0, 0],
        ],
        [
          [0, 0, 0.5, 0.5],
          [0.25, 0.25, 0.25, 0.25],
        ],
      ].flat(2),
      [1, 2, 2, 4],
    );
    const layer1 = tf.tensor4d(new Array(16).fill(0.25), [1, 2, 2, 4]);
    const all = passageAttentionScores([layer0, layer1], 2);
    // layer0 passage 0: (0.75 + 1 + 0 + 0.5) / 4 heads·tokens; layer1: 0.5 everywhere.
    const p0All = (2.25 / 4 + 0.5) / 2;
    const allValues = await all.data();
    expect(allValues[0]).toBeCloseTo(p0All, 6);
    expect(allValues[0] + allValues[1]).toBeCloseTo(1, 6);
    // With the second target token ignored, only token 0 counts: layer0 passage 0 = (0.75 + 0) / 2.
    const labels = tf.tensor2d([[3, -100]], [1, 2], 'int32');
    const firstOnly = await passageAttentionScores([layer0, layer1], 2, labels).data();
    expect(firstOnly[0]).toBeCloseTo((0.75 / 2 + 0.5) / 2, 6);
    tf.dispose([layer0, layer1, all, labels]);
  });

  it('rejects attention that does not split into the given number of passages', () => {
    const a = tf.zeros([1, 1, 1, 5]);
    expect(() => passageAttentionScores([a], 2)).toThrow('5 encoder positions are not 2 equal passages');
    a.dispose();
  });
});

describe('Fusion-in-Decoder over the t5-tiny-gated fixture', () => {
  let fixture: ReturnType<typeof loadT5Fixture>;
  let ids: tf.Tensor2D;
  let mask: tf.Tensor2D;
  let labels: tf.Tensor2D;

  beforeAll(async () => {
    await initBackend('cpu');
    fixture = loadT5Fixture('t5-tiny-gated');
    ids = intInput(fixture.expected, 'fid_input_ids');
    mask = intInput(fixture.expected, 'fid_attention_mask');
    labels = intInput(fixture.expected, 'fid_labels');
  });

  afterAll(() => {
    tf.dispose([ids, mask, labels]);
    fixture.store.dispose();
  });

  it('fuses two examples in one encoder batch exactly as each example alone', async () => {
    const k = ids.shape[0];
    const twoIds = tf.concat([ids, tf.reverse(ids, 0)]);
    const twoMask = tf.concat([mask, tf.reverse(mask, 0)]);
    const twoLabels = tf.concat([labels, labels]);
    const both = fidForward(fixture.model, twoIds, twoMask, k, twoLabels);
    const alone = fidForward(fixture.model, ids, mask, k, labels);
    expect(both.encoder.hidden.shape).toEqual([2, k * ids.shape[1], 32]);
    const diff = tf.max(tf.abs(tf.sub(tf.slice(both.logits, [0, 0, 0], [1, -1, -1]), alone.logits)));
    expect((await diff.data())[0]).toBeLessThan(1e-5);
    tf.dispose([
      twoIds,
      twoMask,
      twoLabels,
      both.encoder.hidden,
      both.encoder.mask,
      both.logits,
      both.loss,
      alone.encoder.hidden,
      alone.encoder.mask,
      alone.logits,
      alone.loss,
      diff,
    ]);
  });

  it('fidLoss equals fidForward().loss, and the cross-attention scores sum to one per example', async () => {
    const out = fidForward(fixture.model, ids, mask, ids.shape[0], labels, { crossAttentions: true });
    const loss = fidLoss(fixture.model, ids, mask, ids.shape[0], labels);
    expect((await loss.data())[0]).toBeCloseTo(fixture.expectedJson.fid_loss, 5);
    expect((await out.loss.data())[0]).toBe((await loss.data())[0]);
    const scores = passageAttentionScores(out.crossAttentions!, ids.shape[0], labels);
    expect(scores.shape).toEqual([1, ids.shape[0]]);
    const sum = [...(await scores.data())].reduce((a, b) => a + b, 0);
    expect(sum).toBeCloseTo(1, 5);
    tf.dispose([out.encoder.hidden, out.encoder.mask, out.logits, out.loss, ...out.crossAttentions!, loss, scores]);
  });

  it('fidLoss with a logit mask: zeros change nothing; allowing only the labels gives loss 0', async () => {
    const [b, t] = labels.shape;
    const vocab = fixture.model.config.vocab_size;
    const plain = (await fidLoss(fixture.model, ids, mask, ids.shape[0], labels).data())[0];
    const zeros = tf.zeros([b, t, vocab]);
    expect((await fidLoss(fixture.model, ids, mask, ids.shape[0], labels, zeros).data())[0]).toBeCloseTo(plain, 6);
    // Every token but the label ruled out: the restricted softmax puts all its mass on the label.
    const onlyLabel = tf.tidy(() => tf.mul(tf.sub(1, tf.oneHot(tf.maximum(tf.cast(labels, 'int32'), tf.scalar(0, 'int32')), vocab)), -1e4));
    expect((await fidLoss(fixture.model, ids, mask, ids.shape[0], labels, onlyLabel).data())[0]).toBeCloseTo(0, 5);
    tf.dispose([zeros, onlyLabel]);
  });

  it('refuses encoder rows that are not whole examples', () => {
    expect(() => fidEncode(fixture.model, ids, mask, 2)).toThrow('3 encoder rows are not a whole number of examples of 2 passages');
  });
});
