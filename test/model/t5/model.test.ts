import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../../src/model/backend';
import { ParameterStore } from '../../../src/model/params';
import { parseSafetensors, readTensor } from '../../../src/model/safetensors';
import { parseT5Config } from '../../../src/model/t5/config';
import { meanTokenCrossEntropy, sequenceCrossEntropy, shiftRight } from '../../../src/model/t5/loss';
import { T5Model } from '../../../src/model/t5/model';
import { intInput, loadT5Fixture, readT5Fixture } from './fixtures';

async function maxAbsDiff(a: tf.Tensor, b: tf.Tensor): Promise<number> {
  const d = tf.max(tf.abs(tf.sub(a, b)));
  const v = (await d.data())[0];
  d.dispose();
  return v;
}

describe('T5Model', () => {
  let fixture: ReturnType<typeof loadT5Fixture>;
  let ids: tf.Tensor2D;
  let mask: tf.Tensor2D;
  let labels: tf.Tensor2D;

  beforeAll(async () => {
    await initBackend('cpu');
    fixture = loadT5Fixture('t5-tiny-relu');
    ids = intInput(fixture.expected, 'enc_input_ids');
    mask = intInput(fixture.expected, 'enc_attention_mask');
    labels = intInput(fixture.expected, 'labels');
  });

  afterAll(() => {
    tf.dispose([ids, mask, labels]);
    fixture.store.dispose();
  });

  it('keeps the tensor count stable over repeated forward and backward passes', async () => {
    const variables = [...fixture.store.entries()].map(([, v]) => v);
    const step = async () => {
      const { value, grads } = tf.variableGrads(() => fixture.model.loss(ids, mask, labels), variables);
      const out = fixture.model.forward(ids, mask, labels);
      await value.data();
      tf.dispose([value, ...Object.values(grads), out.encoderHidden, out.logits, out.loss]);
    };
    await step();
    const before = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) await step();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('takes gradients with tf.grads over a chosen subset of parameters through a getter', async () => {
    const chosen = ['decoder.block.1.layer.1.EncDecAttention.q.weight', 'encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight'];
    const gradFn = tf.grads((...xs: tf.Tensor[]) => {
      const model = new T5Model(fixture.model.config, (name) => {
        const i = chosen.indexOf(name);
        return i >= 0 ? xs[i] : fixture.store.get(name);
      });
      return model.loss(ids, mask, labels);
    });
    const grads = gradFn(chosen.map((n) => fixture.store.get(n)));
    const refGrads = parseSafetensors(readT5Fixture('t5-tiny-relu').grads);
    for (let i = 0; i < chosen.length; i++) {
      const { shape, data } = readTensor(refGrads, chosen[i]);
      const expected = tf.tensor(data as Float32Array, shape);
      const scale = tf.max(tf.abs(expected));
      expect((await maxAbsDiff(grads[i], expected)) / (await scale.data())[0], chosen[i]).toBeLessThan(1e-4);
      tf.dispose([expected, scale]);
    }
    tf.dispose(grads);
  });

  it('ignores encoder/decoder.embed_tokens copies and falls back to them when shared.weight is absent', async () => {
    const files = readT5Fixture('t5-tiny-gated');
    const config = parseT5Config(files.config);
    const base = ParameterStore.fromSafetensors(files.model);
    const withCopies = ParameterStore.fromSafetensors(files.model);
    withCopies.set('encoder.embed_tokens.weight', tf.clone(base.get('shared.weight')));
    withCopies.set('decoder.embed_tokens.weight', tf.clone(base.get('shared.weight')));
    const onlyCopies = ParameterStore.fromSafetensors(files.model, (n) => n !== 'shared.weight');
    onlyCopies.set('encoder.embed_tokens.weight', tf.clone(base.get('shared.weight')));
    const reference = new T5Model(config, base).loss(ids, mask, labels);
    for (const store of [withCopies, onlyCopies]) {
      const loss = new T5Model(config, store).loss(ids, mask, labels);
      expect(await maxAbsDiff(loss, reference)).toBe(0);
      loss.dispose();
    }
    tf.dispose(reference);
    [base, withCopies, onlyCopies].forEach((s) => s.dispose());
  });

  it('says which parameter is missing', () => {
    const model = new T5Model(fixture.model.config, new ParameterStore());
    expect(() => model.encode(ids, mask)).toThrow('parameter "shared.weight" is missing');
  });
});

describe('teacher forcing and loss', () => {
  beforeAll(async () => {
    await initBackend('cpu');
  });

  it('shifts labels right behind the start token and turns -100 into pad', async () => {
    const labels = tf.tensor2d(
      [
        [5, 6, 1, -100],
        [7, -100, -100, -100],
      ],
      [2, 4],
      'int32',
    );
    const shifted = shiftRight(labels, 9, 0);
    expect(await shifted.array()).toEqual([
      [9, 5, 6, 1],
      [9, 7, 0, 0],
    ]);
    tf.dispose([labels, shifted]);
  });

  it('averages cross-entropy over labels != -100 only, per batch and per sequence', async () => {
    // Row 0: p(label) = softmax([0, ln 3])[1] = 3/4 at t=0, t=1 ignored; row 1: uniform over 2 at both.
    const logits = tf.tensor3d([
      [
        [0, Math.log(3)],
        [5, -5],
      ],
      [
        [0, 0],
        [0, 0],
      ],
    ]);
    const labels = tf.tensor2d(
      [
        [1, -100],
        [0, 1],
      ],
      [2, 2],
      'int32',
    );
    const mean = meanTokenCrossEntropy(logits, labels);
    const perSequence = sequenceCrossEntropy(logits, labels);
    expect((await mean.data())[0]).toBeCloseTo((-Math.log(0.75) + 2 * Math.log(2)) / 3, 6);
    const seq = await perSequence.data();
    expect(seq[0]).toBeCloseTo(-Math.log(0.75), 6);
    expect(seq[1]).toBeCloseTo(Math.log(2), 6);
    tf.dispose([logits, labels, mean, perSequence]);
  });
});
