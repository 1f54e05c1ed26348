/**
 * Update-acceptance throughput with one vs two coordinator processes serving one session, for
 * `npm run bench:server` (`--processes-only`). Both rows keep their state in PostgreSQL (a
 * throwaway local cluster, test/server/postgres.ts, one database per row) and run the same server
 * the same way (`tsx server/main.ts` child processes, same flags), so the only difference is the
 * number of processes the clients are spread over (round-robin over their ports). The two
 * processes share one data folder and one LanceDB folder as docs/DEPLOY.md section 6 says.
 *
 * The update stream is the same for both rows: in round r client i sends the same bytes to either
 * setup. The rows' rounds alternate (which row goes first alternates too), so load from other jobs
 * hits both; the table gives medians. After each round, outside the timings, the two-process
 * version must equal the one-process version of the same round and both must equal FedAvg
 * computed here in float64, to 1e-6; otherwise the bench fails, so the numbers are of correct work.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoragClient } from '../src/federated/client';
import { decodeModel, encodeModel, encodeUpdate, type NamedTensor } from '../src/federated/codec';
import { maxRelativeError } from '../src/model/numerics';
import { startCoordinator } from '../test/server/coordinator-process';
import { startTestPostgres } from '../test/server/postgres';

const CLIENTS = 16;
const ROUNDS = 15;
const SIDE = 256;
const PARAMS = SIDE * SIDE;
const TOLERANCE = 1e-6;

interface Coordinator {
  readonly url: string;
  stop(): Promise<void>;
}

/** One `tsx server/main.ts` on a free port (test/server/coordinator-process.ts), with a stop that waits for its exit. */
async function startBenchCoordinator(dataDir: string, database: string, passages: string): Promise<Coordinator> {
  const { url, child, exited } = await startCoordinator(dataDir, database, passages, {
    // Every client uploads at once from 127.0.0.1: lift the limits meant for hostile callers.
    args: ['--max-uploads', String(CLIENTS * 2), '--rate-limit', '1000000', '--join-limit', '1000000'],
  });
  return {
    url,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

interface Setup {
  readonly name: string;
  readonly processes: number;
}

interface Running {
  readonly coordinators: readonly Coordinator[];
  readonly dir: string;
}

/** `n` processes on one fresh database and one data + LanceDB folder; the first creates the schema, so it starts first. */
async function startSetup(n: number, database: string): Promise<Running> {
  const dir = mkdtempSync(join(tmpdir(), 'corag-bench-procs-'));
  const data = join(dir, 'data');
  mkdirSync(data);
  const coordinators: Coordinator[] = [];
  try {
    for (let i = 0; i < n; i++) coordinators.push(await startBenchCoordinator(data, database, join(dir, 'lance')));
  } catch (e) {
    for (const c of coordinators) await c.stop();
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  return { coordinators, dir };
}

function seededTensor(seed: number, scale: number): NamedTensor {
  let s = seed >>> 0;
  const next = () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32) * 2 - 1;
  return { shape: [SIDE, SIDE], data: Float32Array.from({ length: PARAMS }, () => next() * scale) };
}

/** Round r's update of client i: the same for every setup, different across clients so FedAvg weights matter. */
function update(r: number, i: number): { n: number; delta: NamedTensor } {
  return { n: 1 + ((i + r) % 5), delta: seededTensor(1000 * r + i + 7, 0.01) };
}

interface Session {
  /** Runs round r (opened here) with the given bodies; returns its timings (ms). */
  round(r: number, bodies: readonly Uint8Array[]): Promise<{ acceptMs: number; closeMs: number }>;
  version(v: number): Promise<Float32Array>;
}

async function prepare(run: Running, initial: NamedTensor): Promise<Session> {
  const urls = run.coordinators.map((c) => c.url);
  const anon = new CoragClient(urls[0]);
  const created = await anon.createSession({
    name: 'bench',
    models: { reader: 'r', passageEncoder: 'p', embeddingDim: 8 },
    roundPolicy: { minClients: CLIENTS, minUpdates: CLIENTS, deadlineSeconds: 600 },
    trainedPrefixes: ['reader.'],
  });
  const sid = created.session.id;
  const admin = anon.withToken(created.adminToken);
  await admin.uploadModel(sid, encodeModel(new Map([['reader.w', initial]])));
  const clients: CoragClient[] = [];
  for (let i = 0; i < CLIENTS; i++) {
    const url = urls[i % urls.length];
    clients.push(new CoragClient(url).withToken((await new CoragClient(url).join(created.joinCode, `c${i}`)).token));
  }
  // Any process answers for the round (the state is shared); the first is asked, as a client would.
  const watcher = clients[0];
  return {
    async round(r, bodies) {
      const opened = await admin.openRound(sid);
      if (opened.round !== r) throw new Error(`bench expected round ${r}, the coordinator opened ${opened.round}`);
      // Not timed: every process must see the round open before the uploads start.
      for (const [p, c] of clients.slice(0, urls.length).entries()) {
        for (let t = 0; (await c.round(sid, 'current')).round !== r; t++) {
          if (t > 5000) throw new Error(`round ${r} never became current at ${urls[p]}`);
          await new Promise((res) => setTimeout(res, 2));
        }
      }
      const t0 = performance.now();
      await Promise.all(clients.map((c, i) => c.uploadUpdate(sid, r, bodies[i])));
      const t1 = performance.now();
      for (;;) {
        const info = await watcher.round(sid, r);
        if (info.state === 'closed') break;
        if (info.state === 'failed') throw new Error(`bench round ${r} failed: ${info.failureReason}`);
        await new Promise((res) => setTimeout(res, 2));
      }
      return { acceptMs: t1 - t0, closeMs: performance.now() - t1 };
    },
    async version(v) {
      const t = decodeModel(await admin.downloadModel(sid, v)).get('reader.w');
      if (!t) throw new Error(`version ${v} has no reader.w`);
      return t.data;
    },
  };
}

const median = (xs: readonly number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

export async function coordinatorProcessesSection(progress: (line: string) => void): Promise<string[]> {
  const heading = '## Update acceptance: one vs two coordinator processes (PostgreSQL state)';
  const cluster = await startTestPostgres();
  if (!cluster) return [heading, '', 'PostgreSQL is not installed here: not measured (several processes need PostgreSQL state).'];
  const setups: Setup[] = [
    { name: 'one process (baseline)', processes: 1 },
    { name: 'two processes, clients round-robin', processes: 2 },
  ];
  const running: Running[] = [];
  try {
    for (const s of setups) running.push(await startSetup(s.processes, await cluster.createDatabase()));
    const initial = seededTensor(1, 1);
    const sessions = await Promise.all(running.map((r) => prepare(r, initial)));
    const times = setups.map(() => ({ accept: [] as number[], close: [] as number[] }));
    let global = Float64Array.from(initial.data);
    let worst = 0;
    // Round 1 of each warms the JIT and the connections; not counted.
    for (let r = 1; r <= ROUNDS + 1; r++) {
      const updates = Array.from({ length: CLIENTS }, (_, i) => update(r, i));
      const bodies = updates.map((u) => encodeUpdate(new Map([['reader.w', u.delta]]), { round: r, baseVersion: r - 1, numExamples: u.n, metrics: {} }));
      const order = r % 2 === 0 ? [0, 1] : [1, 0];
      for (const i of order) {
        const t = await sessions[i].round(r, bodies);
        if (r > 1) {
          times[i].accept.push(t.acceptMs);
          times[i].close.push(t.closeMs);
        }
      }
      // Correctness, untimed: FedAvg g + Σ n_i d_i / Σ n_i in float64, and two processes = one.
      const total = updates.reduce((s, u) => s + u.n, 0);
      for (const u of updates) for (let k = 0; k < PARAMS; k++) global[k] += (u.n * u.delta.data[k]) / total;
      const [one, two] = await Promise.all(sessions.map((s) => s.version(r)));
      const errors = [maxRelativeError(one, global), maxRelativeError(two, global), maxRelativeError(two, one)];
      worst = Math.max(worst, ...errors);
      if (errors.some((e) => !(e < TOLERANCE)))
        throw new Error(
          `round ${r}: published versions differ from FedAvg (one vs FedAvg, two vs FedAvg, two vs one: ${errors.map((e) => e.toExponential(2)).join(', ')})`,
        );
      global = Float64Array.from(one);
      progress(`coordinator processes: round ${r}/${ROUNDS + 1}`);
    }
    const rate = (i: number) => CLIENTS / (median(times[i].accept) / 1000);
    return [
      heading,
      '',
      `Command: \`npm run bench:server -- --processes-only\` (bench/coordinator-processes.ts). ${CLIENTS} clients upload one F32 delta each (${PARAMS.toLocaleString('en')} trained values, ${((PARAMS * 4) / 2 ** 20).toFixed(2)} MiB, different per client, the same bytes for both rows) at once over HTTP on 127.0.0.1; FedAvg; the round closes itself at the last update. Each row is \`tsx server/main.ts\` child processes with the same flags on their own fresh database of a throwaway local PostgreSQL cluster (Unix socket, fsync off) and their own data + LanceDB folder; with two processes, client i talks to process i mod 2, each process keeps its partial sum and the process that accepts the last update merges them. Median of ${ROUNDS} rounds per row after one warm-up round, the rows' rounds alternating in the same run. updates/s: ${CLIENTS} ÷ (first upload sent → last accept answered); close: last accept answered → round \`closed\` as the first process answers it over HTTP (polled every 2 ms).`,
      '',
      '| coordinators | updates/s | speed ratio to one process | close latency ms | accept ms (min–max) |',
      '|---|---:|---:|---:|---:|',
      ...setups.map(
        (s, i) =>
          `| ${s.name} | ${rate(i).toFixed(1)} | ${(rate(i) / rate(0)).toFixed(2)} | ${median(times[i].close).toFixed(1)} | ${Math.min(...times[i].accept).toFixed(0)}–${Math.max(...times[i].accept).toFixed(0)} |`,
      ),
      '',
      `Correct work: after every round (warm-up included) the two-process version equalled the one-process version of the same updates, and both equalled FedAvg computed by the bench in float64: largest relative error ${worst.toExponential(2)} (the bench fails above ${TOLERANCE}).`,
      '',
      `Reading it: this machine has 2 CPU cores shared with other jobs, the PostgreSQL server and the bench client itself, so a second coordinator process gets no cores of its own and this row cannot show a scale-out gain; it is there to be re-run where each coordinator has its own cores or machine. A ratio above 1 here is concurrency, not added compute: one process runs a session's accepts one at a time (its promise chain, server/coordinator.ts: PostgreSQL round trips, the update file read and validated, a new partial-sum file written), so it idles while it waits; two processes run two such chains, which meet only at the round's row lock. With two processes the closer reads and merges two partial-sum files instead of one (the round state itself is read from PostgreSQL by whichever process is asked).`,
    ];
  } finally {
    for (const r of running) {
      for (const c of r.coordinators) await c.stop();
      rmSync(r.dir, { recursive: true, force: true });
    }
    await cluster.stop();
  }
}
