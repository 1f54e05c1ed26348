import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hybridRetrieve, KeywordPassageIndex, type IndexedPassage } from '../../src/corag/hybrid-retrieval';
import type { ModelBundle } from '../../src/corag/model-bundle';
import { embedPassages, embedQueries, LocalPassageStore } from '../../src/corag/retrieve';
import { initBackend } from '../../src/model/backend';
import { tinyBundle } from './helpers';

const PASSAGES = [
  { title: 'alice', text: 'alice lives in paris.' },
  { title: 'bob', text: 'bob lives in london.' },
  { title: 'carol', text: 'carol lives in berlin.' },
  { title: 'david', text: 'david lives in madrid.' },
  { title: 'emma', text: 'emma lives in rome and keeps zebras.' },
  { title: 'frank', text: 'frank lives in oslo.' },
];

describe('hybrid retrieval (dense + BM25, reciprocal rank fusion)', () => {
  let bundle: ModelBundle;
  let store: LocalPassageStore;
  let indexed: IndexedPassage[];
  beforeAll(async () => {
    await initBackend('cpu');
    bundle = await tinyBundle(); // random weights: the dense ranking is arbitrary, BM25 is not
    store = LocalPassageStore.empty(bundle.embeddingDim, 'yours');
    const embeddings = await embedPassages(bundle, PASSAGES);
    const ids = store.add(PASSAGES, embeddings);
    indexed = PASSAGES.map((p, i) => ({ ...p, id: ids[i], embedding: embeddings[i] }));
  });
  afterAll(() => bundle.dispose());

  it("the keyword index finds the passage with the question's rare word, scored by the same inner product as dense hits", async () => {
    const keywords = new KeywordPassageIndex(indexed, 'yours');
    const [query] = await embedQueries(bundle, ['who keeps zebras?']);
    const hits = keywords.search('who keeps zebras?', query, 3);
    expect(hits).toHaveLength(1); // no other passage shares a word with the question
    expect(hits[0]).toMatchObject({ title: 'emma', source: 'yours', id: indexed[4].id });
    const [dense] = await store.search([query], PASSAGES.length);
    expect(hits[0].score).toBeCloseTo(dense.find((d) => d.id === indexed[4].id)!.score, 5);
  });

  it('fuses both rankings: the keyword match reaches the top k even when the dense ranking puts it last, and no passage comes twice', async () => {
    const question = 'who keeps zebras?';
    const [query] = await embedQueries(bundle, [question]);
    // Give emma an embedding pointing away from the query, so dense retrieval surely ranks her last.
    const embeddings = indexed.map((p) => (p.title === 'emma' ? query.map((v) => -100 * v) : p.embedding));
    const rigged = LocalPassageStore.empty(bundle.embeddingDim, 'yours');
    const ids = rigged.add(PASSAGES, embeddings);
    const riggedIndex = new KeywordPassageIndex(
      PASSAGES.map((p, i) => ({ ...p, id: ids[i], embedding: embeddings[i] })),
      'yours',
    );
    const [dense] = await rigged.search([query], PASSAGES.length);
    expect(dense.at(-1)!.title).toBe('emma');
    const k = 2;
    expect(dense.slice(0, k).map((p) => p.title)).not.toContain('emma');
    const hybrid = await hybridRetrieve(bundle, rigged, riggedIndex, question, { k, candidates: PASSAGES.length });
    expect(hybrid).toHaveLength(k);
    expect(hybrid.map((p) => p.title)).toContain('emma');
    expect(new Set(hybrid.map((p) => p.id)).size).toBe(k);
    // With no keyword match at all, the dense order (of that question) is kept.
    const none = await hybridRetrieve(bundle, store, new KeywordPassageIndex(indexed, 'yours'), 'xyzzy?', { k: 3 });
    const [xyzzy] = await embedQueries(bundle, ['xyzzy?']);
    const [xyzzyDense] = await store.search([xyzzy], 3);
    expect(none.map((p) => p.id)).toEqual(xyzzyDense.map((p) => p.id));
  });

  it('weights the keyword ranking: 0 keeps the dense order, a large weight the BM25 order, and the retriever config sets the default', async () => {
    const question = 'who lives in rome?';
    const keywords = new KeywordPassageIndex(indexed, 'yours');
    const [query] = await embedQueries(bundle, [question]);
    const [dense] = await store.search([query], PASSAGES.length);
    const bm25 = keywords.search(question, query, PASSAGES.length);
    const all = { k: PASSAGES.length, candidates: PASSAGES.length };
    expect((await hybridRetrieve(bundle, store, keywords, question, { ...all, keywordWeight: 0 })).map((p) => p.id)).toEqual(dense.map((p) => p.id));
    const keywordFirst = await hybridRetrieve(bundle, store, keywords, question, { ...all, keywordWeight: 1000 });
    expect(keywordFirst.slice(0, bm25.length).map((p) => p.id)).toEqual(bm25.map((p) => p.id));
    expect(keywordFirst[0].title).toBe('emma');
    // A retriever whose config.json carries corag.hybrid_keyword_weight gets it without being asked.
    const weighted = Object.create(bundle, { policy: { value: { ...bundle.policy, retriever: { hybridKeywordWeight: 1000 } } } }) as ModelBundle;
    expect((await hybridRetrieve(weighted, store, keywords, question, all)).map((p) => p.id)).toEqual(keywordFirst.map((p) => p.id));
  });

  it('rejects k that is not a positive integer', async () => {
    const keywords = new KeywordPassageIndex(indexed, 'yours');
    await expect(hybridRetrieve(bundle, store, keywords, 'who?', { k: 0 })).rejects.toThrow(/k must be/);
  });
});
