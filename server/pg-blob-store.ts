/**
 * The blob store in PostgreSQL (`--blob-store database`, server/blob-store.ts): coordinators on
 * different hosts share model versions, partial sums and deltas through the database they already
 * share, with no shared mount.
 *
 * Layout (migration `blobs`, server/pg-state.ts): a `blobs` row per key (size, SHA-256) and its bytes
 * as `blob_chunks` rows of at most 1 MiB of bytea each. Chunked bytea rather than large objects:
 * rows are written and removed by ordinary transactions (a large object outlives a deleted row
 * unless something unlinks it, and vacuumlo is one more job to run), they cascade with their
 * `blobs` row, they replicate logically and dump with the rest of the schema, and reading or
 * writing one chunk at a time keeps a 900 MB model out of memory with nothing but `pg`.
 * The column is STORAGE EXTERNAL: float weights barely compress, so TOAST's compression would only
 * cost CPU.
 *
 * A put is one transaction (the row, every chunk, then its size and hash): a writer killed half way
 * leaves nothing, and readers see the previous blob of the key or the new one. A get reads in one
 * REPEATABLE READ snapshot, streams the chunks into a temp file beside the cache path, and renames
 * it into place only when the size and SHA-256 match the row; anything else is refused
 * (BlobUnavailableError 'corrupt') and the cache is left as it was. A local copy is used only while
 * its hash is the store's (checked by hashing it once per process, then remembered), so a copy of
 * a key that another process has since replaced is fetched again.
 */
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, mkdirSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type pg from 'pg';
import { writeFileAtomicStreamed } from '../src/platform/node/atomic-file';
import { BlobUnavailableError, checkBlobKey, type BlobStore } from './blob-store';
import { crashPoint } from './crash-points';
import { inTransaction } from './pg-transaction';

export const BLOB_CHUNK_BYTES = 1 << 20;

/** The schema (applied as a migration by server/pg-state.ts). */
export const BLOBS_SCHEMA = `
CREATE TABLE blobs (
  key TEXT PRIMARY KEY,
  size BIGINT NOT NULL,
  sha256 TEXT NOT NULL,
  created_at TEXT NOT NULL
);
CREATE TABLE blob_chunks (
  key TEXT NOT NULL REFERENCES blobs(key) ON DELETE CASCADE,
  n INTEGER NOT NULL,
  data BYTEA NOT NULL,
  PRIMARY KEY (key, n)
);
ALTER TABLE blob_chunks ALTER COLUMN data SET STORAGE EXTERNAL;`;

async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: BLOB_CHUNK_BYTES })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/**
 * Writes the file at `path` as blob `key` (replacing one of that key) on `c`, inside the caller's
 * transaction: a chunk at a time, its size and SHA-256 recorded last. PgBlobStore.put runs it in a
 * transaction of its own; `npm run migrate` in the copy's one transaction (server/copy-deployment.ts).
 */
export async function writeBlob(c: pg.ClientBase, key: string, path: string, chunkBytes = BLOB_CHUNK_BYTES): Promise<{ size: number; sha256: string }> {
  checkBlobKey(key);
  const file = await open(path, 'r');
  try {
    const hash = createHash('sha256');
    const buffer = Buffer.alloc(chunkBytes);
    // The key's row first: a concurrent put of the same key waits here until this transaction ends.
    await c.query(
      `INSERT INTO blobs (key, size, sha256, created_at) VALUES ($1, 0, '', $2)
       ON CONFLICT (key) DO UPDATE SET size = 0, sha256 = '', created_at = EXCLUDED.created_at`,
      [key, new Date().toISOString()],
    );
    await c.query('DELETE FROM blob_chunks WHERE key = $1', [key]);
    let size = 0;
    for (let n = 0; ; n++) {
      const got = await readUpTo(file, buffer, size);
      if (got === 0) break;
      const chunk = buffer.subarray(0, got);
      hash.update(chunk);
      // Awaited before the buffer is refilled: pg has written the bytes out by then.
      await c.query('INSERT INTO blob_chunks (key, n, data) VALUES ($1, $2, $3)', [key, n, chunk]);
      size += got;
      crashPoint('blob:chunk-written');
      if (got < buffer.byteLength) break;
    }
    const sha256 = hash.digest('hex');
    await c.query('UPDATE blobs SET size = $2, sha256 = $3 WHERE key = $1', [key, size, sha256]);
    return { size, sha256 };
  } finally {
    await file.close();
  }
}

/**
 * Checks blob `key` as stored (read back on `c`) against the file at `path`: the recorded size and
 * SHA-256, and each chunk's SHA-256 computed by PostgreSQL over the stored bytes (so the bytes
 * themselves are compared without being sent back). Throws naming the first difference.
 */
export async function verifyBlob(c: pg.ClientBase, key: string, path: string, chunkBytes = BLOB_CHUNK_BYTES): Promise<void> {
  const [row] = (await c.query<{ size: string; sha256: string }>('SELECT size, sha256 FROM blobs WHERE key = $1', [key])).rows;
  if (!row) throw new Error(`blob ${key} is not in the database`);
  const stored = (await c.query<{ n: number; sha: string }>("SELECT n, encode(sha256(data), 'hex') AS sha FROM blob_chunks WHERE key = $1 ORDER BY n", [key]))
    .rows;
  const file = await open(path, 'r');
  try {
    const whole = createHash('sha256');
    const buffer = Buffer.alloc(chunkBytes);
    let size = 0;
    for (let i = 0; ; i++) {
      const got = await readUpTo(file, buffer, size);
      if (got === 0) {
        if (stored.length !== i) throw new Error(`blob ${key}: the database holds ${stored.length} chunks, ${path} makes ${i}`);
        break;
      }
      const chunk = buffer.subarray(0, got);
      whole.update(chunk);
      size += got;
      if (stored[i]?.n !== i || stored[i].sha !== createHash('sha256').update(chunk).digest('hex')) {
        throw new Error(`blob ${key}: stored chunk ${i} is missing or differs from ${path}`);
      }
    }
    const sha256 = whole.digest('hex');
    if (Number(row.size) !== size || row.sha256 !== sha256) {
      throw new Error(`blob ${key}: the database records ${row.size} bytes, SHA-256 ${row.sha256}; ${path} has ${size} bytes, SHA-256 ${sha256}`);
    }
  } finally {
    await file.close();
  }
}

/** Reads up to buffer.byteLength bytes at `position` (fewer only at the end of the file). */
async function readUpTo(file: FileHandle, buffer: Buffer, position: number): Promise<number> {
  let got = 0;
  while (got < buffer.byteLength) {
    const { bytesRead } = await file.read(buffer, got, buffer.byteLength - got, position + got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  return got;
}

export class PgBlobStore implements BlobStore {
  readonly kind = 'database';
  /** key → the SHA-256 of the local copy, known to be what this process wrote or verified. */
  private readonly verified = new Map<string, string>();
  /** Fetches in flight: concurrent gets of one key share one download. */
  private readonly fetching = new Map<string, Promise<string>>();

  /** `ready`: resolves once the schema (the `blobs` migration) is in place. */
  constructor(
    private readonly pool: pg.Pool,
    /** The cache folder (the process's data folder). */
    readonly root: string,
    private readonly ready: () => Promise<void>,
    private readonly chunkBytes = BLOB_CHUNK_BYTES,
  ) {}

  path(key: string): string {
    return join(this.root, checkBlobKey(key));
  }

  async put(key: string): Promise<void> {
    const path = this.path(key);
    await this.ready();
    try {
      const { sha256 } = await inTransaction(this.pool, (c) => writeBlob(c, key, path, this.chunkBytes));
      this.verified.set(key, sha256);
    } catch (e) {
      this.verified.delete(key);
      throw e;
    }
  }

  async get(key: string): Promise<string> {
    const path = this.path(key);
    await this.ready();
    const [row] = (await this.pool.query<{ sha256: string }>('SELECT sha256 FROM blobs WHERE key = $1', [key])).rows;
    if (!row) throw new BlobUnavailableError(key, 'missing', 'not in the database blob store');
    if (this.verified.get(key) === row.sha256 && existsSync(path)) return path;
    const pending = this.fetching.get(key);
    if (pending) return pending;
    const work = (async () => {
      // A copy from before this process started (or from a put that never committed) counts only if it is the stored one.
      if (existsSync(path) && (await sha256File(path)) === row.sha256) {
        this.verified.set(key, row.sha256);
        return path;
      }
      await this.fetch(key, path);
      return path;
    })().finally(() => this.fetching.delete(key));
    this.fetching.set(key, work);
    return work;
  }

  /** Streams blob `key` into `path`: a temp file, renamed over it only when the size and SHA-256 are the row's. */
  private async fetch(key: string, path: string): Promise<void> {
    mkdirSync(dirname(path), { recursive: true });
    const digest = await writeFileAtomicStreamed(path, (write) =>
      inTransaction(this.pool, async (c) => {
        // One snapshot: a put of the key committing meanwhile cannot mix its chunks into this read.
        await c.query('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY');
        const [row] = (await c.query<{ size: string; sha256: string }>('SELECT size, sha256 FROM blobs WHERE key = $1', [key])).rows;
        if (!row) throw new BlobUnavailableError(key, 'missing', 'not in the database blob store');
        const size = Number(row.size);
        const hash = createHash('sha256');
        let position = 0;
        for (let n = 0; position < size; n++) {
          const [chunk] = (await c.query<{ data: Buffer }>('SELECT data FROM blob_chunks WHERE key = $1 AND n = $2', [key, n])).rows;
          if (!chunk || chunk.data.byteLength === 0)
            throw new BlobUnavailableError(key, 'corrupt', `chunk ${n} is missing (${position} of ${size} bytes read)`);
          hash.update(chunk.data);
          await write(chunk.data);
          position += chunk.data.byteLength;
        }
        const got = hash.digest('hex');
        if (position !== size || got !== row.sha256) {
          throw new BlobUnavailableError(
            key,
            'corrupt',
            `the stored bytes (${position} bytes, SHA-256 ${got}) are not the recorded ones (${size} bytes, SHA-256 ${row.sha256})`,
          );
        }
        return got;
      }),
    );
    this.verified.set(key, digest);
  }

  async delete(key: string): Promise<void> {
    checkBlobKey(key);
    await this.ready();
    await this.pool.query('DELETE FROM blobs WHERE key = $1', [key]);
    this.verified.delete(key);
  }

  async deletePrefix(prefix: string): Promise<void> {
    await this.ready();
    await this.pool.query('DELETE FROM blobs WHERE left(key, length($1)) = $1', [prefix]);
    for (const key of this.verified.keys()) if (key.startsWith(prefix)) this.verified.delete(key);
  }

  /** Every stored key starting with `prefix` (for sweeping what a crash left behind). */
  async keys(prefix: string): Promise<string[]> {
    await this.ready();
    return (await this.pool.query<{ key: string }>('SELECT key FROM blobs WHERE left(key, length($1)) = $1 ORDER BY key', [prefix])).rows.map((r) => r.key);
  }
}
