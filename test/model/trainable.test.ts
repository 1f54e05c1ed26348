import { readFileSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../src/model/backend';
import { Contriever, padTokenBatch } from '../../src/model/contriever';
import { inBatchContrastiveLoss } from '../../src/model/losses';
import { AdamW } from '../../src/model/optimizer';
import { ParameterStore } from '../../src/model/params';
import { parseT5Config } from '../../src/model/t5/config';
import { T5Model } from '../../src/model/t5/model';
import { allParameters, namedGradients, selectTrainable, type ModelParts } from '../../src/model/trainable';
import { expectIdenticalNumbers } from '../identical-numbers';

const fixtures = new URL('../../../shared/fixtures/hf-reference/', import.meta.url);
const read = (path: string) => readFileSync(new URL(path, fixtures));

describe('trainable parameter selection and named gradients', () => {
  let reader: ParameterStore;
  let readerModel: T5Model;
  let retriever: Contriever;
  let parts: ModelParts;
  const queries = [
    [101, 7, 8, 102],
    [101, 9, 102],
  ];
  const passages = [
    [101, 20, 21, 22, 102],
    [101, 30, 31, 102],
    [101, 40, 102],
  ];
  const readerInput = {
    ids: [
      [5, 6, 7, 1],
      [8, 9, 1, 0],
    ],
    mask: [
      [1, 1, 1, 1],
      [1, 1, 1, 0],
    ],
    labels: [
      [10, 11, 1],
      [12, 1, -100],
    ],
  };

  beforeAll(async () => {
    await initBackend('cpu');
    reader = ParameterStore.fromSafetensors(read('t5-tiny-gated/model.safetensors'));
    readerModel = new T5Model(parseT5Config(JSON.parse(read('t5-tiny-gated/config.json').toString())), reader);
    retriever = Contriever.fromCheckpoint(JSON.parse(read('bert-tiny/config.json').toString()), new Uint8Array(read('bert-tiny/model.safetensors')));
    parts = { reader, retriever: retriever.params };
  });
  afterAll(() => {
    reader.dispose();
    retriever.dispose();
  });

  /** Reader token CE + in-batch contrastive retriever loss: touches reader, query and passage sides. */
  function jointLoss(): tf.Scalar {
    return tf.tidy(() => {
      const ids = tf.tensor2d(readerInput.ids, undefined, 'int32');
      const mask = tf.tensor2d(readerInput.mask, undefined, 'int32');
      const labels = tf.tensor2d(readerInput.labels, undefined, 'int32');
      const q = padTokenBatch(queries, 0);
      const p = padTokenBatch(passages, 0);
      const retrieverLoss = inBatchContrastiveLoss(retriever.embed('query', q), retriever.embed('passage', p), [0, 1]);
      return tf.add(readerModel.loss(ids, mask, labels), retrieverLoss) as tf.Scalar;
    });
  }

  it('selects the reader, the query encoder, both, everything, a list or a regex', () => {
    const readerNames = reader.names();
    const queryNames = retriever.parameterNames('query');
    expect([...selectTrainable(parts, 'reader').keys()]).toEqual(readerNames);
    expect([...selectTrainable(parts, 'query-encoder').keys()]).toEqual(queryNames);
    expect([...selectTrainable(parts, 'reader+query-encoder').keys()]).toEqual([...readerNames, ...queryNames]);
    expect(selectTrainable(parts, 'all').size).toBe(reader.size + retriever.params.size);
    expect([...selectTrainable(parts, /^query\.encoder\.layer\.1\./).keys()]).toHaveLength(16);
    expect([...selectTrainable(parts, ['lm_head.weight', 'query.embeddings.LayerNorm.bias']).keys()]).toEqual([
      'lm_head.weight',
      'query.embeddings.LayerNorm.bias',
    ]);
  });

  it('rejects unknown names, empty matches, missing parts, frozen and duplicated parameters', () => {
    expect(() => selectTrainable(parts, ['nope.weight'])).toThrow('no parameter of that name');
    expect(() => selectTrainable(parts, /^pooler\./)).toThrow('no parameter name matches');
    expect(() => selectTrainable({ reader }, 'query-encoder')).toThrow('the model has no retriever');
    const frozen = new ParameterStore([['frozen.w', tf.zeros([2])]], false);
    expect(() => selectTrainable({ reader: frozen }, 'reader')).toThrow('"frozen.w" is frozen');
    expect(() => allParameters({ reader, retriever: reader })).toThrow('appears in more than one model part');
    frozen.dispose();
  });

  it('query-encoder gradients are exactly the query.* part of the full gradient, and nothing else', async () => {
    const full = namedGradients(jointLoss, selectTrainable(parts, 'all'));
    const query = namedGradients(jointLoss, selectTrainable(parts, 'query-encoder'));
    expect([...query.grads.keys()].sort()).toEqual(retriever.parameterNames('query').sort());
    expect((await query.loss.data())[0]).toBeCloseTo((await full.loss.data())[0], 5);
    for (const [name, g] of query.grads) {
      expectIdenticalNumbers((await g.data()) as Float32Array, (await full.grads.get(name)!.data()) as Float32Array, name);
    }
    // The full gradient covers reader and passage side too, with non-zero values.
    expect(full.grads.has('lm_head.weight') && full.grads.has('passage.embeddings.word_embeddings.weight')).toBe(true);
    const passageNorm = tf.tidy(() => tf.norm(full.grads.get('passage.encoder.layer.0.output.dense.weight')!));
    expect((await passageNorm.data())[0]).toBeGreaterThan(0);
    tf.dispose([full.loss, query.loss, passageNorm, ...full.grads.values(), ...query.grads.values()]);
  });

  it('training the query encoder lowers the loss, leaves everything else untouched and leaks no tensors', async () => {
    const opt = new AdamW({ lr: 1e-3, weightDecay: 0 });
    const trainable = selectTrainable(parts, 'query-encoder');
    const snapshot = async (name: string) => Array.from(await retriever.params.get(name).data());
    const passageBefore = await snapshot('passage.encoder.layer.0.attention.self.query.weight');
    const readerBefore = Array.from(await reader.get('lm_head.weight').data());
    const losses: number[] = [];
    let tensorsAfterFirst = 0;
    for (let step = 0; step < 6; step++) {
      const { loss, grads } = namedGradients(jointLoss, trainable);
      losses.push((await loss.data())[0]);
      await opt.apply(trainable, grads);
      tf.dispose([loss, ...grads.values()]);
      if (step === 0) tensorsAfterFirst = tf.memory().numTensors;
    }
    expect(tf.memory().numTensors).toBe(tensorsAfterFirst);
    expect(losses[5]).toBeLessThan(losses[0]);
    expect(await snapshot('passage.encoder.layer.0.attention.self.query.weight')).toEqual(passageBefore);
    expect(Array.from(await reader.get('lm_head.weight').data())).toEqual(readerBefore);
    opt.dispose();
  });
});
