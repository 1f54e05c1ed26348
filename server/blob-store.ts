/**
 * Where the coordinator's large immutable files live: model versions, a round's running (partial)
 * sums and stored deltas. Every such file is named by a key, its path under the data folder
 * (`sessions/<id>/models/v3.safetensors`, `sessions/<id>/rounds/2/sum-<node>-5.safetensors`), and is
 * always written to and read from that local path; the store decides who else can read it.
 *
 * - `folder` (the default, FolderBlobStore): the data folder IS the store, as before. One process,
 *   or several coordinator processes that share the data folder (a shared mount).
 * - `database` (server/pg-blob-store.ts): blobs in PostgreSQL, so coordinators on different hosts
 *   share nothing but the database (and the passage store). The data folder is then each process's
 *   own cache: what it wrote, and what it fetched when another process wrote it.
 *
 * The protocol is the same for both, and the coordinator's durability order holds: a file is
 * written atomically, then `put` (so the blob is complete in the store), THEN the transaction that
 * names it commits. `get` before reading a file another process may have written.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';

export type BlobStoreKind = 'folder' | 'database';

export interface BlobStore {
  readonly kind: BlobStoreKind;
  /** The local path of `key`: where the coordinator writes it, and where a fetched copy is cached. */
  path(key: string): string;
  /** Publishes the complete file at path(key) as blob `key` to every process (replacing a blob of that key), all or nothing. */
  put(key: string): Promise<void>;
  /** path(key), holding blob `key`: the local copy when it is what the store holds, else fetched into it. BlobUnavailableError when nobody has it. */
  get(key: string): Promise<string>;
  /** Forgets blob `key` in the store (not the local file). */
  delete(key: string): Promise<void>;
  /** Forgets every blob whose key starts with `prefix` (a closed round's sums and deltas). */
  deletePrefix(prefix: string): Promise<void>;
}

/** A blob the coordinator needs that the store does not have, or has damaged (its SHA-256 or size is not the recorded one). */
export class BlobUnavailableError extends Error {
  constructor(
    readonly key: string,
    readonly reason: 'missing' | 'corrupt',
    detail: string,
  ) {
    super(`blob ${key}: ${detail}`);
    this.name = 'BlobUnavailableError';
  }
}

/** `--blob-store` / CORAG_BLOB_STORE: folder or database (else one line saying why). */
export function parseBlobStoreKind(raw: string): BlobStoreKind {
  const value = raw.trim().toLowerCase();
  if (value === 'folder' || value === 'database') return value;
  throw new Error(`--blob-store must be "folder" (the data folder, the default) or "database" (PostgreSQL, with --database), got "${raw}"`);
}

// Keys are made by the coordinator from ids it checked; a key that escapes the data folder is a bug.
const KEY = /^[A-Za-z0-9_-][A-Za-z0-9_.-]*(\/[A-Za-z0-9_-][A-Za-z0-9_.-]*)*$/;

export function checkBlobKey(key: string): string {
  if (!KEY.test(key) || key.split('/').some((part) => part === '..' || part === '.')) throw new Error(`invalid blob key "${key}"`);
  return key;
}

/** The data folder as the store: put and delete have nothing to do, get finds the file or says where it went missing. */
export class FolderBlobStore implements BlobStore {
  readonly kind = 'folder';

  /** `shared`: several processes use this folder (PostgreSQL state), so a missing file may mean it is not a shared mount. */
  constructor(
    private readonly root: string,
    private readonly shared = false,
  ) {}

  path(key: string): string {
    return join(this.root, checkBlobKey(key));
  }

  async put(key: string): Promise<void> {
    this.path(key);
  }

  async get(key: string): Promise<string> {
    const path = this.path(key);
    if (existsSync(path)) return path;
    throw new BlobUnavailableError(
      key,
      'missing',
      `${path} does not exist${this.shared ? ' (coordinators on several hosts need the same data folder, or --blob-store database: docs/DEPLOY.md)' : ''}`,
    );
  }

  async delete(key: string): Promise<void> {
    checkBlobKey(key);
  }

  async deletePrefix(): Promise<void> {}
}
