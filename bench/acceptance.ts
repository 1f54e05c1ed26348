/**
 * Update-acceptance throughput with the coordinator state in SQLite (the baseline) vs PostgreSQL,
 * for `npm run bench:server` (`--acceptance-only [--database postgres://…]`; without --database a
 * throwaway cluster is started as the tests start one, test/server/postgres.ts).
 *
 * One round = every one of C clients uploads its F32 delta at once over HTTP (127.0.0.1); the round
 * closes itself when the last update is accepted (FedAvg, running sum). Measured per round: updates
 * accepted per second (first upload sent → last accept answered) and the close latency (last accept
 * answered → round state `closed` with its version published, polled every 2 ms in-process).
 * Backends alternate round by round on the same machine, so load from other jobs hits both; the
 * table gives medians. A setup is any function that starts coordinators and returns their URLs;
 * clients are spread over the URLs round-robin. One vs two coordinator processes is its own
 * section (bench/coordinator-processes.ts): both of its rows are child processes on PostgreSQL.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildApp, type CoordinatorApp } from '../server/app';
import { CoragClient } from '../src/federated/client';
import { encodeModel, encodeUpdate, type NamedTensor } from '../src/federated/codec';
import { startTestPostgres } from '../test/server/postgres';

interface Running {
  readonly urls: readonly string[];
  /** The in-process coordinator that reports round state (the first). */
  readonly app: CoordinatorApp;
  stop(): Promise<void>;
}

interface Setup {
  readonly name: string;
  start(): Promise<Running>;
}

const CLIENTS = 16;
const ROUNDS = 7;
const PARAMS = 256 * 256;

function tensors(scale: number, seed: number): Map<string, NamedTensor> {
  let s = seed >>> 0;
  const next = () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32) * 2 - 1;
  return new Map([['reader.w', { shape: [256, 256], data: Float32Array.from({ length: PARAMS }, () => next() * scale) }]]);
}

async function oneProcess(database: string | undefined): Promise<Running> {
  const dir = mkdtempSync(join(tmpdir(), 'corag-bench-accept-'));
  const built = await buildApp({
    dataDir: dir,
    ...(database ? { database } : {}),
    rateLimitPerMinute: 1_000_000,
    joinsPerMinutePerIp: 1_000_000,
    maxConcurrentUploads: CLIENTS * 2,
  });
  const url = await built.app.listen({ port: 0, host: '127.0.0.1' });
  return {
    urls: [url],
    app: built,
    stop: async () => {
      await built.app.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** One session on a running setup; `round()` runs the next round and returns its two timings (ms). */
async function prepare(run: Running): Promise<() => Promise<{ acceptMs: number; closeMs: number }>> {
  const anon = new CoragClient(run.urls[0]);
  const created = await anon.createSession({
    name: 'bench',
    models: { reader: 'r', passageEncoder: 'p', embeddingDim: 8 },
    roundPolicy: { minClients: CLIENTS, minUpdates: CLIENTS, deadlineSeconds: 600 },
    trainedPrefixes: ['reader.'],
  });
  const sid = created.session.id;
  const admin = anon.withToken(created.adminToken);
  await admin.uploadModel(sid, encodeModel(tensors(1, 1)));
  const clients = await Promise.all(
    Array.from({ length: CLIENTS }, async (_, i) =>
      new CoragClient(run.urls[i % run.urls.length]).withToken((await anon.join(created.joinCode, `c${i}`)).token),
    ),
  );
  const deltas = tensors(0.01, 2);
  return async () => {
    const round = await admin.openRound(sid);
    const bodies = clients.map((_, i) => encodeUpdate(deltas, { round: round.round, baseVersion: round.baseVersion, numExamples: 1 + i, metrics: {} }));
    const t0 = performance.now();
    await Promise.all(clients.map((c, i) => c.uploadUpdate(sid, round.round, bodies[i])));
    const t1 = performance.now();
    for (;;) {
      const info = await run.app.coordinator.round(sid, round.round);
      if (info.state === 'closed') break;
      if (info.state === 'failed') throw new Error(`bench round failed: ${info.failureReason}`);
      await new Promise((res) => setTimeout(res, 2));
    }
    return { acceptMs: t1 - t0, closeMs: performance.now() - t1 };
  };
}

const median = (xs: readonly number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

export async function acceptanceSection(databaseUrl: string | undefined, progress: (line: string) => void): Promise<string[]> {
  const cluster = databaseUrl ? undefined : await startTestPostgres();
  const database = databaseUrl ?? (await cluster?.createDatabase());
  const setups: Setup[] = [{ name: 'SQLite state, one process (baseline)', start: () => oneProcess(undefined) }];
  if (database) setups.push({ name: 'PostgreSQL state, one process', start: () => oneProcess(database) });
  const running: Running[] = [];
  try {
    for (const s of setups) running.push(await s.start());
    const rounds = await Promise.all(running.map(prepare));
    const times = setups.map(() => ({ accept: [] as number[], close: [] as number[] }));
    // Round 0 of each warms the JIT and the connections; not counted.
    for (let r = 0; r <= ROUNDS; r++) {
      for (const [i, round] of rounds.entries()) {
        const t = await round();
        if (r > 0) {
          times[i].accept.push(t.acceptMs);
          times[i].close.push(t.closeMs);
        }
      }
      progress(`update acceptance: round ${r}/${ROUNDS}`);
    }
    const base = CLIENTS / (median(times[0].accept) / 1000);
    const out = [
      '## Update acceptance: SQLite vs PostgreSQL state',
      '',
      `${CLIENTS} clients upload one F32 delta each (${PARAMS.toLocaleString('en')} trained values, ${((PARAMS * 4) / 2 ** 20).toFixed(2)} MiB) at once over HTTP on 127.0.0.1; FedAvg with a durable running sum; the round closes itself at the last update. Median of ${ROUNDS} rounds per row after one warm-up round, the rows' rounds alternating in the same run (bench/acceptance.ts). updates/s: ${CLIENTS} ÷ (first upload sent → last accept answered); close: last accept answered → round \`closed\`, new version published.${databaseUrl ? '' : ' PostgreSQL: a throwaway local cluster on a Unix socket, fsync off (as in the tests), so its commits cost less than on a durable server.'}`,
      '',
      '| state | updates/s | ratio to baseline | close latency ms | accept ms (min–max) |',
      '|---|---:|---:|---:|---:|',
      ...setups.map((s, i) => {
        const rate = CLIENTS / (median(times[i].accept) / 1000);
        return `| ${s.name} | ${rate.toFixed(1)} | ${(rate / base).toFixed(2)} | ${median(times[i].close).toFixed(1)} | ${Math.min(...times[i].accept).toFixed(0)}–${Math.max(...times[i].accept).toFixed(0)} |`;
      }),
      '| PostgreSQL state, two processes | see "Update acceptance: one vs two coordinator processes" below | | | |',
      '',
      "Reading the close column: with SQLite the close runs synchronously right after the last accept commits, before its HTTP answer is written, so it is inside that answer's time and the column shows ~0; with PostgreSQL the close awaits its transactions after the answer. Compare the rows by updates/s (which then includes the close for SQLite). SQLite commits with synchronous=FULL (an fsync per accept); the test cluster runs with fsync off, so the PostgreSQL row is an upper bound for a durable server.",
    ];
    if (!database) out.push('', 'PostgreSQL is not installed here: its row was not measured.');
    return out;
  } finally {
    for (const r of running) await r.stop();
    await cluster?.stop();
  }
}
