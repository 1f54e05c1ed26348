/**
 * The tab's persistent state in IndexedDB (through idb): the personal passage store (passages with
 * their Contriever embeddings — the local exact index is rebuilt from them on load, a linear scan
 * needs nothing else), downloaded global model versions cached by version, and small records
 * (credentials, training QA pairs, per-round history). Used by the page and by both workers
 * (IndexedDB is available in workers), so a reload loses nothing that was committed.
 *
 * Every write is one transaction: a batch is stored whole or not at all. A full disk surfaces as
 * StorageQuotaError with a message for the user; it is never swallowed.
 */
import { openDB, type DBSchema, type IDBPDatabase } from 'idb';
import type { ClientCredentials, ModelCache } from '../../corag/federated-client';
import { isQuotaError } from '../../corag/errors';
import { TAB_KEYS } from '../../federated/rejoin';

export type ShareChoice = 'private' | 'contribute';

export interface StoredPassage {
  readonly id: number;
  readonly title: string;
  readonly text: string;
  /** File it was read from. */
  readonly file: string;
  readonly share: ShareChoice;
  /** Passage-encoder embedding (the encoder is frozen in every session, so it stays valid). */
  readonly embedding?: Float32Array;
  /** Passage encoder id the embedding was made with (session models.passageEncoder). */
  readonly encoder?: string;
  /** Id in the session's collaborative store once contributed. */
  readonly contributedAs?: { readonly sessionId: string; readonly id: number };
  readonly addedAt: number;
}

export type NewPassage = Omit<StoredPassage, 'id' | 'addedAt'>;

interface CachedModel {
  readonly key: string;
  readonly sessionId: string;
  readonly version: number;
  readonly bytes: Uint8Array;
  readonly savedAt: number;
}

interface CoragDb extends DBSchema {
  passages: { key: number; value: StoredPassage; indexes: { file: string } };
  models: { key: string; value: CachedModel; indexes: { session: string } };
  kv: { key: string; value: unknown };
}

export const DB_NAME = 'corag-web';
const DB_VERSION = 1;

export class StorageQuotaError extends Error {
  constructor(what: string, cause: unknown) {
    super(
      `Browser storage is full: could not save ${what}. Nothing from this batch was stored; what was stored before is intact. Free space (delete files or old passages) and try again.`,
    );
    this.name = 'StorageQuotaError';
    this.cause = cause;
  }
}

export async function guardQuota<T>(what: string, write: () => Promise<T>): Promise<T> {
  try {
    return await write();
  } catch (e) {
    if (isQuotaError(e)) throw new StorageQuotaError(what, e);
    throw e;
  }
}

/**
 * Runs `work` in `tx` and waits for the commit; on any error the transaction is aborted, so none
 * of its writes land (a request that throws synchronously, e.g. DataCloneError, would otherwise
 * leave the earlier requests to commit).
 */
async function atomically<T>(tx: { done: Promise<void>; abort(): void }, work: () => Promise<T>): Promise<T> {
  try {
    const result = await work();
    await tx.done;
    return result;
  } catch (e) {
    tx.done.catch(() => undefined);
    try {
      tx.abort();
    } catch {
      /* already finished or aborted */
    }
    throw e;
  }
}

export class BrowserStore {
  private constructor(private readonly db: IDBPDatabase<CoragDb>) {}

  static async open(name = DB_NAME): Promise<BrowserStore> {
    const db = await openDB<CoragDb>(name, DB_VERSION, {
      upgrade(db) {
        const passages = db.createObjectStore('passages', { keyPath: 'id', autoIncrement: true });
        passages.createIndex('file', 'file');
        const models = db.createObjectStore('models', { keyPath: 'key' });
        models.createIndex('session', 'sessionId');
        db.createObjectStore('kv');
      },
    });
    return new BrowserStore(db);
  }

  close(): void {
    this.db.close();
  }

  // ------------------------------------------------------------------ passages

  /** Stores passages in one transaction; returns their ids in order. */
  addPassages(passages: readonly NewPassage[]): Promise<number[]> {
    return guardQuota(`${passages.length} passages`, async () => {
      const tx = this.db.transaction('passages', 'readwrite');
      const now = Date.now();
      return atomically(tx, () => Promise.all(passages.map((p) => tx.store.add({ ...p, addedAt: now } as StoredPassage))));
    });
  }

  async allPassages(): Promise<StoredPassage[]> {
    return this.db.getAll('passages');
  }

  async passageCount(): Promise<number> {
    return this.db.count('passages');
  }

  /** Applies `change` to each listed passage in one transaction (embedding, share, contributedAs). */
  updatePassages(changes: ReadonlyArray<{ id: number; change: Partial<Omit<StoredPassage, 'id'>> }>): Promise<void> {
    return guardQuota(`changes to ${changes.length} passages`, async () => {
      const tx = this.db.transaction('passages', 'readwrite');
      await atomically(tx, async () => {
        for (const { id, change } of changes) {
          const current = await tx.store.get(id);
          if (current) await tx.store.put({ ...current, ...change, id });
        }
      });
    });
  }

  async deleteFile(file: string): Promise<number> {
    const tx = this.db.transaction('passages', 'readwrite');
    const keys = await tx.store.index('file').getAllKeys(file);
    for (const k of keys) await tx.store.delete(k);
    await tx.done;
    return keys.length;
  }

  // ------------------------------------------------------------------ model versions

  /** A ModelCache (for FederatedCoragClient) keeping the newest `keep` versions per session. */
  modelCache(keep = 2): ModelCache {
    return {
      get: async (sessionId, version) => (await this.db.get('models', `${sessionId}/${version}`))?.bytes,
      put: (sessionId, version, bytes) =>
        guardQuota(`model version ${version} (${bytes.byteLength} bytes)`, async () => {
          const tx = this.db.transaction('models', 'readwrite');
          await atomically(tx, async () => {
            await tx.store.put({ key: `${sessionId}/${version}`, sessionId, version, bytes, savedAt: Date.now() });
            const all = (await tx.store.index('session').getAll(sessionId)).sort((a, b) => b.version - a.version);
            for (const old of all.slice(keep)) await tx.store.delete(old.key);
          });
        }),
    };
  }

  async cachedVersions(sessionId: string): Promise<number[]> {
    return (await this.db.getAllKeysFromIndex('models', 'session', sessionId)).map((k) => Number(k.split('/').pop()));
  }

  // ------------------------------------------------------------------ small records

  async get<T>(key: string): Promise<T | undefined> {
    return (await this.db.get('kv', key)) as T | undefined;
  }

  set(key: string, value: unknown): Promise<void> {
    return guardQuota(`"${key}"`, async () => {
      await this.db.put('kv', value, key);
    });
  }

  async delete(key: string): Promise<void> {
    await this.db.delete('kv', key);
  }

  credentials(): Promise<(ClientCredentials & { joinCode: string; baseUrl: string; name: string }) | undefined> {
    return this.get('credentials');
  }
}

/** Keys of the kv records, in one place. */
export const KV = {
  /** The join's answer (src/federated/rejoin.ts TabCredentials): a reload resumes this client. */
  credentials: TAB_KEYS.credentials,
  /** A join sent and not yet answered, with its idempotency key (sent again after a reload). */
  pendingJoin: TAB_KEYS.pendingJoin,
  /** The peers the page's coordinator advertised at the last connect (used when it stops answering). */
  peers: TAB_KEYS.peers,
  qaPairs: 'qaPairs',
  /** Per-round history of this tab: { round, version, em, f1, loss }[] */
  history: 'history',
  /** Last loss curve of the current round (survives a reload mid-training). */
  lossCurve: 'lossCurve',
  /** The user chose to take part in rounds (a reload resumes taking part). */
  participating: 'participating',
} as const;
