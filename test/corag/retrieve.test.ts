import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ModelBundle } from '../../src/corag/model-bundle';
import {
  embedPassages,
  embedQueries,
  embedTexts,
  LocalPassageStore,
  mergedPassageSource,
  passageRetrieverText,
  retrieve,
  retrievedPassageEmbeddings,
} from '../../src/corag/retrieve';
import { initBackend } from '../../src/model/backend';
import { tinyBundle } from './helpers';

const PASSAGES = [
  { title: 'alice', text: 'alice lives in paris.' },
  { title: 'bob', text: 'bob lives in london.' },
  { title: 'carol', text: 'carol lives in berlin.' },
  { title: 'david', text: 'david lives in madrid.' },
  { title: 'emma', text: 'emma lives in rome.' },
];

describe('retrieval', () => {
  let bundle: ModelBundle;
  beforeAll(async () => {
    await initBackend('cpu');
    bundle = await tinyBundle();
  });
  afterAll(() => bundle.dispose());

  it('embeds in batches with done/total progress, equal to one-by-one embedding, without leaking tensors', async () => {
    const tensors = tf.memory().numTensors;
    const progress: Array<[number, number]> = [];
    const batched = await embedPassages(bundle, PASSAGES, { batchSize: 2, onProgress: (d, t) => progress.push([d, t]) });
    expect(progress).toEqual([
      [2, 5],
      [4, 5],
      [5, 5],
    ]);
    expect(tf.memory().numTensors).toBe(tensors);
    for (const [i, p] of PASSAGES.entries()) {
      const [alone] = await embedTexts(bundle, 'passage', [passageRetrieverText(p)]);
      // Padding in a batch must not change an embedding (mean pooling over real tokens only).
      for (let j = 0; j < alone.length; j++) expect(batched[i][j]).toBeCloseTo(alone[j], 5);
    }
  });

  it('batches texts by length and returns the rows in input order', async () => {
    // Lengths out of order, so length-sorted batches differ from input-order batches.
    const texts = [
      'a long text about the river that runs through the old town and the bridges over it',
      'short',
      'a text of middling length here',
      'x',
      'another fairly long text, with several words in it, about trains',
    ];
    const sorted = await embedTexts(bundle, 'passage', texts, { batchSize: 2 });
    const inOrder = await embedTexts(bundle, 'passage', texts, { batchSize: 2, sortByLength: false });
    for (const [i, t] of texts.entries()) {
      const [alone] = await embedTexts(bundle, 'passage', [t]);
      for (let j = 0; j < alone.length; j++) {
        expect(sorted[i][j]).toBeCloseTo(alone[j], 5);
        expect(inOrder[i][j]).toBeCloseTo(alone[j], 5);
      }
    }
  });

  it('the local store returns the exact top-k by inner product of the query embedding, with stored embeddings', async () => {
    const store = LocalPassageStore.empty(bundle.embeddingDim);
    await store.addTexts(bundle, PASSAGES);
    const [query] = await embedQueries(bundle, ['where does carol live?']);
    const embeddings = await embedPassages(bundle, PASSAGES);
    const brute = embeddings.map((e, i) => ({ i, s: e.reduce((a, x, j) => a + x * query[j], 0) })).sort((a, b) => b.s - a.s);
    const [hits] = await retrieve(bundle, store, ['where does carol live?'], { k: 3 });
    expect(hits.map((h) => h.title)).toEqual(brute.slice(0, 3).map((b) => PASSAGES[b.i].title));
    hits.forEach((h, r) => expect(h.score).toBeCloseTo(brute[r].s, 4));
    expect(hits[0].embedding).toHaveLength(bundle.embeddingDim);
  });

  it('a merged source ranks the union by score and keeps a passage held by both sources once', async () => {
    const a = LocalPassageStore.empty(bundle.embeddingDim, 'a');
    const b = LocalPassageStore.empty(bundle.embeddingDim, 'b');
    await a.addTexts(bundle, PASSAGES.slice(0, 3));
    await b.addTexts(bundle, PASSAGES.slice(2));
    const queries = await embedQueries(bundle, ['where does emma live?']);
    const [merged] = await mergedPassageSource([a, b]).search(queries, 5);
    expect(merged.map((p) => p.title).sort()).toEqual(PASSAGES.map((p) => p.title).sort());
    for (let i = 1; i < merged.length; i++) expect(merged[i - 1].score).toBeGreaterThanOrEqual(merged[i].score);
    const [single] = await (async () => {
      const all = LocalPassageStore.empty(bundle.embeddingDim);
      await all.addTexts(bundle, PASSAGES);
      return all.search(queries, 5);
    })();
    expect(merged.map((p) => p.title)).toEqual(single.map((p) => p.title));
  });

  it('gathers retrieved passage embeddings [B, k, dim], encoding those the source did not return', async () => {
    const store = LocalPassageStore.empty(bundle.embeddingDim);
    await store.addTexts(bundle, PASSAGES);
    const retrieved = await retrieve(bundle, store, ['where does bob live?', 'where does alice live?'], { k: 2 });
    const withStored = await retrievedPassageEmbeddings(bundle, retrieved);
    const stripped = retrieved.map((r) => r.map(({ embedding: _unused, ...rest }) => rest));
    const recomputed = await retrievedPassageEmbeddings(bundle, stripped);
    expect(withStored.shape).toEqual([2, 2, bundle.embeddingDim]);
    const diff = tf.tidy(() => tf.max(tf.abs(tf.sub(withStored, recomputed))).dataSync()[0]);
    expect(diff).toBeLessThan(1e-5);
    tf.dispose([withStored, recomputed]);
  });
});
