/**
 * Switches a PostgreSQL deployment whose files are in its data folder (`--blob-store folder`) to
 * the database blob store in place: `npm run migrate -- --blobs-into-database --data-dir <folder>
 * --database <url>` (scripts/migrate.ts; docs/DEPLOY.md section 6). Stop every coordinator process
 * first, then start them all with `--blob-store database`.
 *
 * What goes in: every model version the state records, and every file of the rounds still open or
 * closing (their partial sums or deltas). Each blob is put in a transaction of its own and read back
 * (chunk SHA-256 computed by PostgreSQL, server/pg-blob-store.ts verifyBlob); one already stored
 * with the file's SHA-256 is left as it is, so a run that was interrupted is simply run again. The
 * data folder is only read.
 */
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { PgBlobStore, verifyBlob } from './pg-blob-store';
import { PostgresState, redactUrl } from './pg-state';

export interface BlobsIntoDatabaseReport {
  /** Blobs written now. */
  readonly written: number;
  /** Blobs the database already held with the file's SHA-256. */
  readonly present: number;
  readonly bytes: number;
  readonly seconds: number;
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

export async function putFolderBlobsIntoDatabase(options: {
  readonly dataDir: string;
  readonly database: string;
  readonly log?: (line: string) => void;
}): Promise<BlobsIntoDatabaseReport> {
  const started = performance.now();
  const log = options.log ?? (() => undefined);
  if (!existsSync(join(options.dataDir, 'STATE-IN-POSTGRESQL'))) {
    throw new Error(
      `${options.dataDir} is not the data folder of a PostgreSQL deployment (no STATE-IN-POSTGRESQL marker): an SQLite deployment moves with npm run migrate -- --from … --to … --blob-store database`,
    );
  }
  const state = new PostgresState(options.database);
  try {
    await state.open();
    const store = new PgBlobStore(state.pool, options.dataDir, () => state.open());
    const keys: string[] = [];
    for (const r of (
      await state.pool.query<{ session_id: string; version: number }>('SELECT session_id, version FROM model_versions ORDER BY session_id, version')
    ).rows)
      keys.push(`sessions/${r.session_id}/models/v${r.version}.safetensors`);
    for (const r of await state.activeRounds()) {
      const dir = `sessions/${r.sessionId}/rounds/${r.number}`;
      if (!existsSync(join(options.dataDir, dir))) continue;
      for (const name of readdirSync(join(options.dataDir, dir)).sort())
        if (/^(sum|delta)-[A-Za-z0-9_-]+\.safetensors$/.test(name)) keys.push(`${dir}/${name}`);
    }
    let written = 0;
    let present = 0;
    let bytes = 0;
    const c = await state.pool.connect();
    try {
      for (const key of keys) {
        const path = store.path(key);
        if (!existsSync(path)) throw new Error(`${path} is missing: the state names it (is this the data folder the deployment runs on?)`);
        const sha = await sha256File(path);
        const [row] = (await c.query<{ sha256: string }>('SELECT sha256 FROM blobs WHERE key = $1', [key])).rows;
        if (row?.sha256 === sha) present++;
        else {
          await store.put(key);
          written++;
        }
        await verifyBlob(c, key, path);
        bytes += statSync(path).size;
      }
    } finally {
      c.release();
    }
    log(
      `${keys.length} files (${(bytes / 2 ** 20).toFixed(1)} MiB) in the database blob store of ${redactUrl(options.database)}: ${written} written, ${present} already there; each verified`,
    );
    return { written, present, bytes, seconds: (performance.now() - started) / 1000 };
  } finally {
    await state.close();
  }
}
