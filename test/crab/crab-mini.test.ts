import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { splitLines } from '../../src/crab/loaders';
import { clientView, collaborativeView, TRAINING_STORES } from '../../src/crab/stores';
import { readCrabCache, readQuestionFolder } from '../../src/platform/node/crab-files';
import { buildCrabMini } from '../../src/platform/node/crab-mini-builder';

const shared = (path: string) => fileURLToPath(new URL(`../../../shared/data/${path}`, import.meta.url));
const repo = (path: string) => fileURLToPath(new URL(`../../${path}`, import.meta.url));
const temp = mkdtempSync(join(tmpdir(), 'crab-mini-'));
afterAll(() => rmSync(temp, { recursive: true, force: true }));

describe('CRAB-mini from SQuAD v1.1 dev', () => {
  const out = join(temp, 'a');
  const first = buildCrabMini({ squad: shared('squad/dev-v1.1.json'), out, demo: { dir: join(temp, 'demo'), articles: 4, maxQa: 150 } });
  const { dataset, manifest } = first;

  it('has the recipe sizes: 8 clients × 64 training, 16 dev and 32 test QA pairs', () => {
    expect(manifest.stats.passages).toBe(3382);
    expect(manifest.stats.qaPairs).toBe(10570);
    expect(manifest.stats.qaInSplits).toBe(8 * (64 + 16 + 32));
    for (const c of dataset.splits.clients) expect([c.train.length, c.dev.length, c.test.length]).toEqual([64, 16, 32]);
    expect(manifest.inputs).toEqual([{ file: 'dev-v1.1.json', bytes: 4854279, sha256: '95aa6a52d5d6a735563366753ca50492a658031da74f301ac5238b03966972c9' }]);
  });

  it('makes ~100-word passages with article titles', () => {
    const lengths = dataset.passages.map((p) => p.text.split(/\s+/).length);
    expect(Math.max(...lengths)).toBeLessThan(125); // maxWords + minWords
    expect(lengths.reduce((a, b) => a + b, 0) / lengths.length).toBeGreaterThan(40);
    expect(dataset.passages[0].title).toBe('Super Bowl 50');
  });

  it('gives every split QA pair a relevant passage that contains an answer', () => {
    for (const qa of dataset.qaPairs) expect(dataset.categories.get(qa.id)!.relevant.length).toBeGreaterThan(0);
  });

  it('shares no passage between any training store and any test store, at every shot count', () => {
    const test = new Set(collaborativeView(dataset.testStores));
    for (const shots of ['16', '32', '64']) {
      for (const name of TRAINING_STORES) {
        expect(collaborativeView(dataset.trainingStores[shots][name]).filter((id) => test.has(id))).toEqual([]);
      }
    }
  });

  it('writes a cache the runner can read back', () => {
    const cache = readCrabCache(out);
    expect(cache.passages).toHaveLength(3382);
    expect(cache.qa).toHaveLength(896);
    expect(cache.qa.filter((q) => q.split === 'train' && q.client === 3 && q.position < 16)).toHaveLength(16);
    expect(clientView(cache.stores.training['32']['REL-1'], 0)).toEqual(clientView(dataset.trainingStores['32']['REL-1'], 0));
    expect(cache.splits).toEqual(dataset.splits);
  });

  it('reads back, for the evaluation scripts, the questions of one split with a relevant passage, or of the demo folder with "all"', () => {
    const cache = readCrabCache(out);
    const dev = readQuestionFolder(out, 'dev');
    expect(dev.passages).toEqual(cache.passages);
    expect(dev.questions.map((q) => q.id)).toEqual(cache.qa.filter((q) => q.split === 'dev' && q.relevant.length > 0).map((q) => q.id));
    expect(readQuestionFolder(out, 'dev', 5).questions).toEqual(dev.questions.slice(0, 5));
    const demo = readQuestionFolder(join(temp, 'demo'), 'all');
    expect(demo.questions.length).toBeGreaterThan(0);
    expect(demo.questions.every((q) => q.relevant.every((id) => demo.passages.some((p) => p.id === id)))).toBe(true);
    // The demo's questions have no split: only "all" takes them.
    expect(readQuestionFolder(join(temp, 'demo'), 'dev').questions).toEqual([]);
  });

  it('is deterministic: the same seed gives the same manifest hash, another seed another', () => {
    const again = buildCrabMini({ squad: shared('squad/dev-v1.1.json'), out: join(temp, 'b') });
    expect(again.manifestSha256).toBe(first.manifestSha256);
    expect(readFileSync(join(temp, 'b', 'stores.json'), 'utf8')).toBe(readFileSync(join(out, 'stores.json'), 'utf8'));
    const other = buildCrabMini({ squad: shared('squad/dev-v1.1.json'), out: join(temp, 'c'), config: { seed: 1 } });
    expect(other.manifestSha256).not.toBe(first.manifestSha256);
  });

  it('rebuilds the shipped demo split byte for byte', () => {
    for (const file of ['passages.jsonl', 'qa.jsonl', 'NOTICE.md']) {
      expect(readFileSync(join(temp, 'demo', file), 'utf8')).toBe(readFileSync(repo(`public/demo/${file}`), 'utf8'));
    }
    const passages = splitLines(readFileSync(repo('public/demo/passages.jsonl'), 'utf8')).map((l) => JSON.parse(l));
    const qa = splitLines(readFileSync(repo('public/demo/qa.jsonl'), 'utf8')).map((l) => JSON.parse(l));
    const ids = new Set(passages.map((p: { id: string }) => p.id));
    expect(passages.length).toBeGreaterThan(200);
    for (const q of qa) for (const id of q.relevant) expect(ids.has(id)).toBe(true);
  });
});

describe('CRAB from NQ-open + DPR passages (--data-dir)', () => {
  it('builds with the NQ-open and psgs_w100 loaders', () => {
    const { dataset, manifest } = buildCrabMini({
      dataDir: shared(''),
      out: join(temp, 'nq'),
      config: { clients: 2, shots: [2, 4], devPerClient: 2, testPerClient: 4 },
    });
    expect(manifest.inputs.map((i) => i.file)).toEqual(['psgs_w100.sample1000.tsv', 'NQ-open.dev.jsonl']);
    expect(manifest.chunking).toBeNull(); // DPR passages are used as they are
    expect(dataset.passages).toHaveLength(1000);
    expect(dataset.qaPairs).toHaveLength(2 * (4 + 2 + 4));
    expect(() => buildCrabMini({ dataDir: join(temp, 'missing'), out: join(temp, 'x') })).toThrow(/does not exist/);
  });
});
