/**
 * `MB=256 npx tsx bench/blob-store.ts`: the PostgreSQL blob store (server/pg-blob-store.ts) on a
 * throwaway local cluster (test/server/postgres.ts, fsync off): put a MB-MiB file from one cache
 * folder, get it into another, byte-compare, and report the throughput and the process's peak RSS
 * (sampled every 20 ms) against its RSS before: the store streams 1 MiB chunks, so the peak should
 * not grow with MB.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, openSync, writeSync, closeSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { tmpdir } from 'node:os';
import { PgBlobStore } from '../server/pg-blob-store';
import { PostgresState } from '../server/pg-state';
import { startTestPostgres } from '../test/server/postgres';

const MB = Number(process.env.MB ?? 256);
const cluster = (await startTestPostgres())!;
const state = new PostgresState(await cluster.createDatabase());
await state.open();
const a = mkdtempSync(join(tmpdir(), 'blob-a-'));
const b = mkdtempSync(join(tmpdir(), 'blob-b-'));
const key = 'sessions/s/models/v0.safetensors';
mkdirSync(dirname(join(a, key)), { recursive: true });
const fd = openSync(join(a, key), 'w');
const piece = randomBytes(1 << 20);
for (let i = 0; i < MB; i++)
  writeSync(
    fd,
    piece.map((x) => x ^ i),
  );
closeSync(fd);
let peak = 0;
const base = process.memoryUsage().rss;
const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
const sa = new PgBlobStore(state.pool, a, () => state.open());
const sb = new PgBlobStore(state.pool, b, () => state.open());
let t = performance.now();
await sa.put(key);
const put = (performance.now() - t) / 1000;
t = performance.now();
await sb.get(key);
const get = (performance.now() - t) / 1000;
clearInterval(timer);
const same = readFileSync(join(a, key)).equals(readFileSync(join(b, key)));
process.stdout.write(
  `${JSON.stringify({ MB, put_s: put.toFixed(2), get_s: get.toFixed(2), put_MBps: (MB / put).toFixed(0), get_MBps: (MB / get).toFixed(0), rss_base_MB: (base / 2 ** 20).toFixed(0), rss_peak_MB: (peak / 2 ** 20).toFixed(0), same })}\n`,
);
await state.close();
await cluster.stop();
rmSync(a, { recursive: true });
rmSync(b, { recursive: true });
