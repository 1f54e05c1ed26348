import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeModel, decodeUpdate, encodeModel } from '../../src/federated/codec';
import { localName, ModelBundle, trainableForWirePrefixes, wireName } from '../../src/corag/model-bundle';
import { initBackend } from '../../src/model/backend';
import { demoGlobalModel } from '../../server/demo';
import { tinyBundle } from './helpers';
import { expectIdenticalNumbers } from '../identical-numbers';

describe('ModelBundle', () => {
  let bundle: ModelBundle;
  beforeAll(async () => {
    await initBackend('cpu');
    bundle = await tinyBundle();
  });
  afterAll(() => bundle.dispose());

  it('maps local names to the coordinator wire namespace and back', () => {
    expect(wireName('encoder.block.0.layer.0.SelfAttention.q.weight')).toBe('reader.encoder.block.0.layer.0.SelfAttention.q.weight');
    expect(wireName('query.embeddings.word_embeddings.weight')).toBe('query_encoder.embeddings.word_embeddings.weight');
    expect(wireName('passage.encoder.layer.0.output.dense.bias')).toBe('passage_encoder.encoder.layer.0.output.dense.bias');
    for (const name of bundle.wireNames()) expect(wireName(localName(name))).toBe(name);
    expect(() => localName('decoder.final_layer_norm.weight')).toThrow(/belongs to no model part/);
  });

  it("trains what a session's trained prefixes aggregate, never the passage encoder", () => {
    expect(trainableForWirePrefixes(['reader.'])).toBe('reader');
    expect(trainableForWirePrefixes(['query_encoder.'])).toBe('query-encoder');
    expect(trainableForWirePrefixes(['reader.', 'query_encoder.'])).toBe('reader+query-encoder');
    expect(trainableForWirePrefixes([''])).toBe('reader+query-encoder');
    expect(trainableForWirePrefixes(['reader.encoder.'])).toBe('reader');
    expect(() => trainableForWirePrefixes(['passage_encoder.'])).toThrow(/neither the reader/);
  });

  it('exports exactly the global model the coordinator demo builds from the same seeds', async () => {
    const exported = decodeModel(await bundle.exportGlobal());
    const demo = decodeModel(demoGlobalModel());
    expect([...exported.keys()].sort()).toEqual([...demo.keys()].sort());
    for (const [name, t] of demo) expectIdenticalNumbers(exported.get(name)?.data, t.data, name);
  });

  it('applies a global version, and its delta after a change is local − global exactly, for the trained names only', async () => {
    // A different global model: every tensor shifted by its index-dependent offset.
    const shifted = decodeModel(await bundle.exportGlobal());
    for (const t of shifted.values()) t.data.forEach((x, i, a) => (a[i] = x + ((i % 7) - 3) * 1e-3));
    const globalBytes = encodeModel(shifted);
    bundle.applyGlobal(globalBytes, 3);
    expect(bundle.version).toBe(3);
    const global = decodeModel(globalBytes);
    const roundTrip = decodeModel(await bundle.exportGlobal());
    for (const [name, t] of global) expectIdenticalNumbers(roundTrip.get(name)?.data, t.data, name);

    // Pretend training: perturb one reader and one query-encoder tensor.
    const readerName = 'encoder.block.0.layer.0.SelfAttention.q.weight';
    const queryName = 'query.embeddings.word_embeddings.weight';
    for (const name of [readerName, queryName]) {
      const v = (name.startsWith('query.') ? bundle.retriever.params : bundle.readerParams).get(name);
      tf.tidy(() => v.assign(tf.add(v, tf.mul(tf.randomNormal(v.shape, 0, 1, 'float32', 7), 0.01))));
    }
    const trained = bundle.wireNamesMatching(['reader.', 'query_encoder.']);
    expect(trained.some((n) => n.startsWith('passage_encoder.'))).toBe(false);
    const body = await bundle.encodeDelta(trained, { round: 1, numExamples: 12, metrics: { loss: 1.5 } });
    const expectedShapes = new Map(trained.map((n) => [n, [...global.get(n)!.shape]]));
    const update = decodeUpdate(body, expectedShapes);
    expect(update.baseVersion).toBe(3);
    expect(update.numExamples).toBe(12);
    const local = decodeModel(await bundle.exportGlobal());
    let changed = 0;
    for (const name of trained) {
      const d = update.deltas.get(name)!.data;
      const l = local.get(name)!.data;
      const g = global.get(name)!.data;
      for (let i = 0; i < d.length; i++) {
        if (d[i] !== Math.fround(l[i] - g[i])) throw new Error(`${name}[${i}]: delta ${d[i]} != ${l[i]} - ${g[i]}`);
        if (d[i] !== 0) changed++;
      }
    }
    // Exactly the two perturbed tensors differ: q [32, 32] and the query word embeddings [30522, 32].
    expect(changed).toBe(32 * 32 + 30522 * 32);
  });

  it('builds an equal bundle from a global version alone (configs and tokenizers given)', async () => {
    const bytes = await bundle.exportGlobal();
    const copy = ModelBundle.fromGlobal(bundle, bytes, 4);
    try {
      expect(copy.version).toBe(4);
      expect(copy.wireNames().sort()).toEqual(bundle.wireNames().sort());
      const a = decodeModel(await copy.exportGlobal());
      for (const [name, t] of decodeModel(bytes)) expectIdenticalNumbers(a.get(name)?.data, t.data, name);
    } finally {
      copy.dispose();
    }
    const partial = decodeModel(bytes);
    partial.delete('passage_encoder.encoder.layer.1.output.dense.weight');
    expect(() => ModelBundle.fromGlobal(bundle, encodeModel(partial), 4)).toThrow(/passage\.encoder\.layer\.1\.output\.dense\.weight/);
  });

  it('refuses a global model of a different shape or with missing tensors, naming the tensor', async () => {
    const good = decodeModel(await bundle.exportGlobal());
    const missing = new Map(good);
    missing.delete('query_encoder.pooler.dense.weight');
    missing.delete('reader.shared.weight');
    expect(() => bundle.applyGlobal(encodeModel(missing), 9)).toThrow(/lacks tensor "reader.shared.weight"/);
    const extra = new Map(good);
    extra.set('reader.bogus', { shape: [1], data: new Float32Array(1) });
    expect(() => bundle.applyGlobal(encodeModel(extra), 9)).toThrow(/"reader.bogus" that this model does not/);
  });
});
