/**
 * The blob store's choice and its folder implementation: `--blob-store` parsing, keys that cannot
 * leave the data folder, the folder store finding its files (and saying, with several processes,
 * that a missing one needs a shared mount or the database store), and a coordinator refusing the
 * database store without PostgreSQL state, as `npm start` does (flag and environment variable).
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BlobUnavailableError, checkBlobKey, FolderBlobStore, parseBlobStoreKind } from '../../server/blob-store';
import { Coordinator } from '../../server/coordinator';
import { tempDir } from './helpers';

describe('blob store', () => {
  it('parses --blob-store as folder or database, and nothing else', () => {
    expect(parseBlobStoreKind('folder')).toBe('folder');
    expect(parseBlobStoreKind(' Database ')).toBe('database');
    expect(() => parseBlobStoreKind('s3')).toThrow(/--blob-store must be "folder" .* or "database"/);
  });

  it('refuses keys that would leave the data folder', () => {
    expect(checkBlobKey('sessions/abc/models/v1.safetensors')).toBe('sessions/abc/models/v1.safetensors');
    for (const key of ['../x', 'sessions/../../etc/passwd', '/abs', 'a//b', 'a/./b', '', 'a\\b'])
      expect(() => checkBlobKey(key), key).toThrow(/invalid blob key/);
  });

  it('serves the data folder as the store, and names a missing file as unavailable (with a shared-mount hint for several processes)', async () => {
    const dir = tempDir();
    try {
      const store = new FolderBlobStore(dir.path);
      const key = 'sessions/s/models/v0.safetensors';
      await expect(store.get(key)).rejects.toBeInstanceOf(BlobUnavailableError);
      mkdirSync(join(dir.path, 'sessions/s/models'), { recursive: true });
      writeFileSync(store.path(key), 'x');
      await store.put(key);
      expect(await store.get(key)).toBe(join(dir.path, key));
      const shared = new FolderBlobStore(dir.path, true);
      await expect(shared.get('sessions/s/models/v9.safetensors')).rejects.toThrow(/--blob-store database/);
    } finally {
      dir.remove();
    }
  });

  it('keeps blobs in the database only with PostgreSQL state, and npm start says so in one line', () => {
    const dir = tempDir();
    try {
      expect(() => new Coordinator({ dataDir: dir.path, blobStore: 'database' })).toThrow(/needs PostgreSQL state/);
      const { CORAG_DATABASE_URL: _db, CORAG_BLOB_STORE: _blobs, ...withoutStateSettings } = process.env;
      const start = (args: string[], env: NodeJS.ProcessEnv = {}) =>
        spawnSync(process.execPath, ['--import', 'tsx', 'server/main.ts', '--no-demo', '--port', '0', '--data-dir', join(dir.path, 'data'), ...args], {
          encoding: 'utf8',
          timeout: 30_000,
          env: { ...withoutStateSettings, ...env },
        });
      const flag = start(['--blob-store', 'database']);
      expect([flag.status, flag.stderr]).toEqual([1, 'coordinator: --blob-store database needs --database (PostgreSQL): the blobs go into that database\n']);
      const env = start([], { CORAG_BLOB_STORE: 's3' });
      expect(env.status).toBe(1);
      expect(env.stderr).toContain('coordinator: --blob-store must be "folder"');
    } finally {
      dir.remove();
    }
  }, 60_000);
});
