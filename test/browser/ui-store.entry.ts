/** Page side of ui-store.browser.test.ts: the real BrowserStore on the browser's IndexedDB. */
import { BrowserStore, KV, type NewPassage } from '../../src/platform/browser/idb-store';
import { exposeToTests } from './page-api';

const DB = 'corag-store-test';

exposeToTests({
  async addPassages(passages: Array<{ title: string; text: string; file: string; embedding?: number[] }>): Promise<number[]> {
    const store = await BrowserStore.open(DB);
    try {
      return await store.addPassages(passages.map((p) => ({ ...p, share: 'private', embedding: p.embedding ? Float32Array.from(p.embedding) : undefined })));
    } finally {
      store.close();
    }
  },
  /** A batch whose third passage cannot be stored (a function is not cloneable). */
  async addBrokenBatch(): Promise<string> {
    const store = await BrowserStore.open(DB);
    try {
      const ok: NewPassage = { title: 'fine', text: 'fine', file: 'broken.txt', share: 'private' };
      await store.addPassages([ok, ok, { ...ok, text: (() => 'x') as unknown as string }]);
      return 'stored';
    } catch (e) {
      return (e as Error).name;
    } finally {
      store.close();
    }
  },
  async listPassages() {
    const store = await BrowserStore.open(DB);
    try {
      return (await store.allPassages()).map((p) => ({
        id: p.id,
        title: p.title,
        file: p.file,
        embedding: p.embedding ? [...p.embedding] : null,
        isFloat32: p.embedding instanceof Float32Array,
      }));
    } finally {
      store.close();
    }
  },
  async embedAndContribute(id: number) {
    const store = await BrowserStore.open(DB);
    try {
      await store.updatePassages([{ id, change: { embedding: new Float32Array([1, 2]), encoder: 'enc', contributedAs: { sessionId: 's', id: 9 } } }]);
      return (await store.allPassages()).find((p) => p.id === id);
    } finally {
      store.close();
    }
  },
  async deleteFile(file: string) {
    const store = await BrowserStore.open(DB);
    try {
      return await store.deleteFile(file);
    } finally {
      store.close();
    }
  },
  /** Puts versions 0..n-1 of a session in the model cache; returns which are kept and one read-back. */
  async cacheVersions(n: number) {
    const store = await BrowserStore.open(DB);
    try {
      const cache = store.modelCache(2);
      for (let v = 0; v < n; v++) await cache.put('s1', v, new Uint8Array([v, v + 1, v + 2]));
      const kept = (await store.cachedVersions('s1')).sort((a, b) => a - b);
      const last = await cache.get('s1', n - 1);
      const first = await cache.get('s1', 0);
      return { kept, last: last ? [...last] : null, first: first ? [...first] : null };
    } finally {
      store.close();
    }
  },
  async setAndGet(value: unknown) {
    const store = await BrowserStore.open(DB);
    try {
      await store.set(KV.qaPairs, value);
      return await store.get(KV.qaPairs);
    } finally {
      store.close();
    }
  },
});
