/**
 * The PostgreSQL blob store against a real server (a throwaway cluster: ./postgres.ts): blobs of
 * several chunks come back byte for byte into another process's cache; a writer killed with SIGKILL
 * half way through leaves the previous blob intact and none of its own chunks; damaged stored bytes
 * are refused with the cache untouched; a cached copy that is no longer the stored blob is fetched
 * again.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { BlobUnavailableError } from '../../server/blob-store';
import { PgBlobStore, verifyBlob } from '../../server/pg-blob-store';
import { PostgresState } from '../../server/pg-state';
import { tempDir } from './helpers';
import { startTestPostgres } from './postgres';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const cluster = await startTestPostgres();
afterAll(() => cluster?.stop());

const CHUNK = 4096;

/** A migrated database, and a store on it over a cache folder of its own (one per simulated process). */
async function setup() {
  const database = await cluster!.createDatabase();
  const state = new PostgresState(database);
  await state.open();
  const dirs: Array<{ path: string; remove(): void }> = [];
  const store = () => {
    const dir = tempDir();
    dirs.push(dir);
    return new PgBlobStore(state.pool, dir.path, () => state.open(), CHUNK);
  };
  const write = (s: PgBlobStore, key: string, bytes: Uint8Array) => {
    mkdirSync(dirname(s.path(key)), { recursive: true });
    writeFileSync(s.path(key), bytes);
  };
  return {
    database,
    pool: state.pool,
    store,
    write,
    async done() {
      await state.close();
      for (const d of dirs) d.remove();
    },
  };
}

describe.skipIf(!cluster)('PostgreSQL blob store', () => {
  it('returns every blob byte for byte in another cache, whatever its size against the chunk size', async () => {
    const t = await setup();
    try {
      const writer = t.store();
      const reader = t.store();
      const sizes = [0, 1, CHUNK, 3 * CHUNK, 5 * CHUNK + 17];
      const blobs = sizes.map((n, i) => ({ key: `sessions/s/models/v${i}.safetensors`, bytes: randomBytes(n) }));
      for (const b of blobs) {
        t.write(writer, b.key, b.bytes);
        await writer.put(b.key);
      }
      for (const b of blobs) {
        const path = await reader.get(b.key);
        expect(path).toBe(reader.path(b.key));
        expect(readFileSync(path).equals(b.bytes), b.key).toBe(true);
      }
      // Stored in chunks of at most CHUNK bytes.
      const { rows } = await t.pool.query<{ n: number; max: number }>('SELECT COUNT(*)::int AS n, MAX(length(data))::int AS max FROM blob_chunks');
      expect(rows[0]).toEqual({ n: 0 + 1 + 1 + 3 + 6, max: CHUNK });
      // Concurrent gets of one key share one download and agree.
      const fresh = t.store();
      const paths = await Promise.all([0, 1, 2].map(() => fresh.get(blobs[4].key)));
      expect(new Set(paths).size).toBe(1);
      expect(readFileSync(paths[0]).equals(blobs[4].bytes)).toBe(true);
      await expect(reader.get('sessions/s/models/v99.safetensors')).rejects.toMatchObject({ name: 'BlobUnavailableError', reason: 'missing' });
      await writer.deletePrefix('sessions/s/models/v');
      expect((await t.pool.query('SELECT 1 FROM blob_chunks')).rowCount).toBe(0);
    } finally {
      await t.done();
    }
  });

  it('leaves the previous blob whole and no chunk of the new one when its writer is killed mid-put', async () => {
    const t = await setup();
    try {
      const key = 'sessions/s/rounds/1/sum-a-1.safetensors';
      const before = randomBytes(2 * CHUNK + 5);
      const writer = t.store();
      t.write(writer, key, before);
      await writer.put(key);
      // Another process replaces it with 16 chunks and is SIGKILLed after inserting the third.
      const child = t.store();
      t.write(child, key, randomBytes(16 * CHUNK));
      const script = `
        import pg from 'pg';
        import { PgBlobStore } from './server/pg-blob-store.ts';
        const pool = new pg.Pool({ connectionString: process.env.BLOB_DB });
        await new PgBlobStore(pool, process.env.BLOB_ROOT, async () => {}, ${CHUNK}).put(process.env.BLOB_KEY);
        process.stdout.write('committed');`;
      const proc = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
        cwd: ROOT,
        env: { ...process.env, BLOB_DB: t.database, BLOB_ROOT: child.root, BLOB_KEY: key, CORAG_CRASH_AT: 'blob:chunk-written#3' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      proc.stdout.on('data', (b: Buffer) => (out += b.toString()));
      proc.stderr.on('data', (b: Buffer) => (out += b.toString()));
      const signal = await new Promise((res) => proc.once('exit', (_code, sig) => res(sig)));
      expect(signal, out).toBe('SIGKILL');
      expect(out).not.toContain('committed');

      const reader = t.store();
      expect(readFileSync(await reader.get(key)).equals(before)).toBe(true);
      const { rows } = await t.pool.query<{ n: number; bytes: number }>('SELECT COUNT(*)::int AS n, SUM(length(data))::int AS bytes FROM blob_chunks');
      expect(rows[0]).toEqual({ n: 3, bytes: before.byteLength });
      // Once PostgreSQL has dropped the dead connection, the key takes a put again.
      const after = randomBytes(CHUNK + 1);
      t.write(writer, key, after);
      await writer.put(key);
      expect(readFileSync(await t.store().get(key)).equals(after)).toBe(true);
    } finally {
      await t.done();
    }
  });

  it('refuses a blob whose stored bytes do not match its SHA-256, leaving no file in the cache (and the migration read-back names the chunk)', async () => {
    const t = await setup();
    try {
      const key = 'sessions/s/models/v1.safetensors';
      const writer = t.store();
      t.write(writer, key, randomBytes(3 * CHUNK));
      await writer.put(key);
      await t.pool.query("UPDATE blob_chunks SET data = overlay(data placing '\\x00ff'::bytea from 100) WHERE key = $1 AND n = 1", [key]);
      const reader = t.store();
      const failure = await reader.get(key).catch((e: unknown) => e);
      expect(failure).toBeInstanceOf(BlobUnavailableError);
      expect(failure).toMatchObject({ reason: 'corrupt' });
      expect((failure as Error).message).toMatch(/SHA-256/);
      expect(existsSync(dirname(reader.path(key))) ? readdirSync(dirname(reader.path(key))) : []).toEqual([]);
      // npm run migrate's read-back (PostgreSQL hashing each stored chunk) finds the damaged one too.
      const c = await t.pool.connect();
      try {
        await expect(verifyBlob(c, key, writer.path(key), CHUNK)).rejects.toThrow(/stored chunk 1 is missing or differs/);
      } finally {
        c.release();
      }
      // A missing chunk is refused the same way.
      await t.pool.query('DELETE FROM blob_chunks WHERE key = $1 AND n = 2', [key]);
      await expect(reader.get(key)).rejects.toMatchObject({ reason: 'corrupt' });
    } finally {
      await t.done();
    }
  });

  it('fetches again when the cached copy is not the stored blob (replaced by another process, or damaged on disk)', async () => {
    const t = await setup();
    try {
      const key = 'sessions/s/models/v2.safetensors';
      const a = t.store();
      const b = t.store();
      const first = randomBytes(CHUNK + 3);
      t.write(a, key, first);
      await a.put(key);
      expect(readFileSync(await b.get(key)).equals(first)).toBe(true);
      // A put that never committed in a (its install lost a race) is replaced by another process's.
      const second = randomBytes(2 * CHUNK);
      t.write(b, key, second);
      await b.put(key);
      expect(readFileSync(await a.get(key)).equals(second)).toBe(true);
      // A cached copy damaged on disk, found by a process that starts afresh on that folder.
      const path = a.path(key);
      const damaged = Buffer.from(second);
      damaged[10] ^= 1;
      writeFileSync(path, damaged);
      const restarted = new PgBlobStore(t.pool, a.root, async () => undefined, CHUNK);
      expect(readFileSync(await restarted.get(key)).equals(second)).toBe(true);
    } finally {
      await t.done();
    }
  });
});
