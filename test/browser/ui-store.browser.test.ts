/**
 * The tab's IndexedDB store (src/platform/browser/idb-store.ts) in headless chromium — the real
 * IndexedDB, not a fake: passages with embeddings survive a reload, a batch is all-or-nothing,
 * the model cache keeps the newest versions by session, quota errors become StorageQuotaError.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { guardQuota, StorageQuotaError } from '../../src/platform/browser/idb-store';
import { startBrowserHarness, type BrowserHarness } from './harness';

describe('BrowserStore on IndexedDB', () => {
  let harness: BrowserHarness;
  beforeAll(async () => {
    harness = await startBrowserHarness({ name: 'ui-store', entry: 'test/browser/ui-store.entry.ts' });
  }, 180_000);
  afterAll(async () => {
    await harness?.close();
  });

  it('keeps passages and their Float32 embeddings across a page reload', async () => {
    const ids = await harness.call<number[]>('addPassages', [
      { title: 'a', text: 'alpha', file: 'one.txt', embedding: [0.5, -1] },
      { title: 'b', text: 'beta', file: 'two.jsonl' },
    ]);
    expect(ids).toEqual([1, 2]);
    await harness.page.reload();
    await harness.page.waitForFunction(() => '__corag' in window);
    const listed = await harness.call<Array<{ id: number; file: string; embedding: number[] | null; isFloat32: boolean }>>('listPassages');
    expect(listed).toEqual([
      { id: 1, title: 'a', file: 'one.txt', embedding: [0.5, -1], isFloat32: true },
      { id: 2, title: 'b', file: 'two.jsonl', embedding: null, isFloat32: false },
    ]);
  });

  it('stores a batch whole or not at all', async () => {
    expect(await harness.call('addBrokenBatch')).toBe('DataCloneError');
    const files = (await harness.call<Array<{ file: string }>>('listPassages')).map((p) => p.file);
    expect(files).toEqual(['one.txt', 'two.jsonl']);
  });

  it('updates a passage in place and deletes by file', async () => {
    const updated = await harness.call<{ id: number; embedding: Record<string, number>; contributedAs: unknown; text: string }>('embedAndContribute', 2);
    expect(updated).toMatchObject({ id: 2, text: 'beta', contributedAs: { sessionId: 's', id: 9 } });
    expect(await harness.call('deleteFile', 'one.txt')).toBe(1);
    expect((await harness.call<Array<{ id: number }>>('listPassages')).map((p) => p.id)).toEqual([2]);
  });

  it('caches model versions by session and keeps the newest two', async () => {
    expect(await harness.call('cacheVersions', 4)).toEqual({ kept: [2, 3], last: [3, 4, 5], first: null });
    expect(await harness.call('setAndGet', { pairs: [{ question: 'q', answers: ['a'] }] })).toEqual({ pairs: [{ question: 'q', answers: ['a'] }] });
  });

  it('turns a quota error into a StorageQuotaError that tells the user nothing of the batch was stored', async () => {
    const quota = guardQuota('3 passages', () => Promise.reject(new DOMException('full', 'QuotaExceededError')));
    await expect(quota).rejects.toBeInstanceOf(StorageQuotaError);
    await expect(quota).rejects.toThrow(/storage is full: could not save 3 passages\. Nothing from this batch was stored/);
    await expect(guardQuota('x', () => Promise.reject(new TypeError('other')))).rejects.toBeInstanceOf(TypeError);
  });
});
