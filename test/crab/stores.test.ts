import { describe, expect, it } from 'vitest';
import type { QaCategories } from '../../src/crab/categories';
import type { CrabSplits } from '../../src/crab/splits';
import {
  allSplitRelevant,
  backgroundPassages,
  buildTestStores,
  buildTrainingStores,
  clientView,
  collaborativeView,
  partitionBackground,
  TRAINING_STORES,
} from '../../src/crab/stores';

// Two clients, 1- and 2-shot training sets; each QA pair has its own relevant passage r*.
const splits: CrabSplits = {
  seed: 0,
  shots: [1, 2],
  clients: [
    { train: ['t0', 't1'], dev: ['d0'], test: ['s0'] },
    { train: ['t2', 't3'], dev: ['d1'], test: ['s1'] },
  ],
};
const relevantOf: Record<string, string[]> = {
  t0: ['r0'],
  t1: ['r1'],
  t2: ['r2', 'r0'],
  t3: ['r3'],
  d0: ['rd0'],
  d1: ['rd1'],
  s0: ['rs0'],
  s1: ['rs1'],
};
const backgroundIds = Array.from({ length: 40 }, (_, i) => `b${String(i).padStart(2, '0')}`);
const corpusIds = [
  ...Object.values(relevantOf)
    .flat()
    .filter((id, i, a) => a.indexOf(id) === i),
  ...backgroundIds,
  'unused',
].sort();
const allRelevantIds = new Set(Object.values(relevantOf).flat());
const set = (ids: Iterable<string>) => new Set(ids);
const sorted = (ids: Iterable<string>) => [...ids].sort();

describe('background partition', () => {
  const background = backgroundPassages(corpusIds, allRelevantIds);
  const part = partitionBackground(background, { seed: 3, clients: 2, trainFraction: 0.8, splitFraction: 0.1, testFraction: 0.1 });

  it('is the corpus minus every passage relevant to a split QA pair', () => {
    expect(background).toHaveLength(41); // 40 b* + "unused"
    expect(background.some((id) => allRelevantIds.has(id))).toBe(false);
    const cats = new Map(Object.entries(relevantOf).map(([qaId, relevant]) => [qaId, { qaId, relevant, hardNegatives: [] }]));
    expect(allSplitRelevant(splits, cats)).toEqual(allRelevantIds);
  });

  it('cuts disjoint slices: 80% training, 10% per client inside it, 10% per client outside it', () => {
    expect(part.train).toHaveLength(32); // floor(0.8 × 41)
    expect(part.split.map((s) => s.length)).toEqual([4, 4]);
    expect(part.test.map((s) => s.length)).toEqual([4, 4]);
    const train = set(part.train);
    for (const s of part.split) for (const id of s) expect(train.has(id)).toBe(true);
    for (const s of part.test) for (const id of s) expect(train.has(id)).toBe(false);
    expect(set([...part.split[0], ...part.split[1]]).size).toBe(8);
    expect(set([...part.test[0], ...part.test[1]]).size).toBe(8);
  });

  it('depends on the seed only', () => {
    expect(partitionBackground(background, { seed: 3, clients: 2, testFraction: 0.1 })).toEqual(part);
    expect(partitionBackground(background, { seed: 4, clients: 2, testFraction: 0.1 }).train).not.toEqual(part.train);
  });

  it('refuses fractions whose slices would overlap', () => {
    expect(() => partitionBackground(background, { seed: 0, clients: 8, trainFraction: 0.8, splitFraction: 0.2 })).toThrow(/splitFraction <= trainFraction/);
    expect(() => partitionBackground(background, { seed: 0, clients: 8, trainFraction: 0.9, testFraction: 0.025 })).toThrow(
      /trainFraction \+ clients × testFraction <= 1/,
    );
  });
});

describe('training and test stores', () => {
  const part = partitionBackground(backgroundPassages(corpusIds, allRelevantIds), { seed: 3, clients: 2, testFraction: 0.1 });
  // Hard negatives: two training-background passages, plus one test-background passage that
  // must never reach a training store.
  const [h0, h1] = part.train;
  const leaked = part.test[0][0];
  const hardOf: Record<string, string[]> = { t0: [h0, leaked], t1: [h1], t2: [h0] };
  const categories = new Map<string, QaCategories>(
    Object.entries(relevantOf).map(([qaId, relevant]) => [qaId, { qaId, relevant, hardNegatives: hardOf[qaId] ?? [] }]),
  );
  const inputs = { corpusIds, splits, categories, background: part };
  const stores = buildTrainingStores(inputs, 2);
  const oneShot = buildTrainingStores(inputs, 1);
  const relevant2 = ['r0', 'r1', 'r2', 'r3'];
  const hard2 = [h0, h1];
  const views = (name: (typeof TRAINING_STORES)[number], s = stores) => [0, 1].map((c) => sorted(clientView(s[name], c)));

  it('REL: every client holds all training relevant passages and the training background', () => {
    for (const v of views('REL')) expect(v).toEqual(sorted([...relevant2, ...part.train]));
  });

  it('IRR: the training background, no relevant passage of any split', () => {
    for (const v of views('IRR')) {
      expect(v).toEqual(sorted(part.train));
      expect(v.some((id) => allRelevantIds.has(id))).toBe(false);
    }
  });

  it('REL-1: one client IRR + every training relevant passage, the others IRR', () => {
    expect(views('REL-1')).toEqual([sorted([...part.train, ...relevant2]), sorted(part.train)]);
    const holderOne = buildTrainingStores(inputs, 2, 1)['REL-1'];
    expect(sorted(clientView(holderOne, 1))).toEqual(sorted([...part.train, ...relevant2]));
    expect(() => buildTrainingStores(inputs, 2, 2)).toThrow(/relOneHolder/);
  });

  it("SPLIT: each client its own training pairs' relevant passages + its own background slice", () => {
    expect(views('SPLIT')).toEqual([sorted(['r0', 'r1', ...part.split[0]]), sorted(['r2', 'r0', 'r3', ...part.split[1]])]);
    expect(sorted(collaborativeView(stores.SPLIT))).toEqual(sorted([...relevant2, ...part.split.flat()]));
  });

  it('Table-2 variants: only relevant, + irrelevant, + hard negatives, hard negatives + irrelevant', () => {
    const irrelevant = part.train.filter((id) => !hard2.includes(id));
    expect(views('ONLY-REL')[0]).toEqual(sorted(relevant2));
    expect(views('REL+HARD')[0]).toEqual(sorted([...relevant2, ...hard2]));
    expect(views('REL+IRR')[0]).toEqual(sorted([...relevant2, ...irrelevant]));
    expect(views('HARD+IRR')[0]).toEqual(sorted(part.train));
    for (const name of TRAINING_STORES) expect(views(name)[0]).not.toContain(leaked);
  });

  it('uses only the k-shot training pairs', () => {
    expect(views('ONLY-REL', oneShot)[0]).toEqual(['r0', 'r2']); // t0 and t2
    expect(views('REL+HARD', oneShot)[0]).toEqual(sorted(['r0', 'r2', h0]));
    expect(views('SPLIT', oneShot)).toEqual([sorted(['r0', ...part.split[0]]), sorted(['r0', 'r2', ...part.split[1]])]);
  });

  it('test stores: relevant passages of the client test pairs + its own test background, sharing nothing with training', () => {
    const test = buildTestStores(inputs);
    expect([0, 1].map((c) => sorted(clientView(test, c)))).toEqual([sorted(['rs0', ...part.test[0]]), sorted(['rs1', ...part.test[1]])]);
    for (const s of [stores, oneShot]) {
      for (const name of TRAINING_STORES) {
        const training = set(collaborativeView(s[name]));
        expect(collaborativeView(test).filter((id) => training.has(id))).toEqual([]);
      }
    }
  });

  it('lists passages in corpus order without duplicates', () => {
    const rel = clientView(stores.REL, 0);
    expect(rel).toEqual(sorted(rel)); // corpusIds is sorted, so corpus order is sorted order
    expect(new Set(rel).size).toBe(rel.length);
  });
});
