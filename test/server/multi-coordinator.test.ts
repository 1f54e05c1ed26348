/**
 * Several coordinators, one session: two coordinator processes (`tsx server/main.ts`, different
 * ports) share one PostgreSQL database, one data folder and one LanceDB passage folder. Eight real
 * clients (the one client runtime, FederatedCoragClient, with the tiny fixture models on wasm), four
 * pointed at each process, contribute passages and train in three FedAvg rounds. Each published
 * version must equal single-process FedAvg (float64) of exactly the update bodies the clients
 * posted (recorded from their `uploaded` events, unchanged); passages contributed through both
 * processes are stored once and found by either; one process is killed with SIGKILL mid-round after
 * accepting updates, its clients fail over to the other (failoverFetch: no load balancer in front),
 * and the other finishes the round with the dead process's updates in it.
 */
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { FederatedCoragClient } from '../../src/corag/federated-client';
import type { ModelBundle } from '../../src/corag/model-bundle';
import { CoordinatorPassageSource, embedPassages, type PassageText } from '../../src/corag/retrieve';
import { CoragClient, type FetchLike } from '../../src/federated/client';
import { decodeModel, decodeUpdate, type NamedTensor } from '../../src/federated/codec';
import { failoverFetch } from '../../src/federated/failover';
import { initBackend } from '../../src/model/backend';
import { tinyBundle } from '../corag/helpers';
import { fedAvgExpected, maxRelativeError, tempDir } from './helpers';
import { startCoordinator, waitFor } from './coordinator-process';
import { startTestPostgres } from './postgres';

const cluster = await startTestPostgres();
afterAll(() => cluster?.stop());

const TRAINED_PREFIXES = ['reader.'];
const PEOPLE = ['alice', 'bob', 'carol', 'david', 'emma', 'frank', 'gina', 'hugo'];
const CITIES = ['paris', 'london', 'berlin', 'madrid', 'rome', 'vienna', 'lisbon', 'oslo'];
const fact = (i: number): PassageText => ({ title: PEOPLE[i], text: `${PEOPLE[i]} lives in ${CITIES[i]}.` });

describe.skipIf(!cluster)('two coordinator processes, one session (PostgreSQL + shared data folder + LanceDB), real clients', () => {
  const dir = tempDir();
  const children: ChildProcess[] = [];
  const bundles: ModelBundle[] = [];
  afterAll(() => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    for (const b of bundles) b.dispose();
    dir.remove();
  });

  // Two processes and eight wasm clients: 35-50 s alone, over 120 s on a loaded 2-core machine.
  it("aggregates the clients' real updates exactly across both, stores each passage once, and survives SIGKILL of one mid-round", async () => {
    await initBackend('wasm');
    const database = await cluster!.createDatabase();
    const dataDir = join(dir.path, 'data');
    const lance = join(dir.path, 'lance');
    mkdirSync(dataDir);
    const starting = Promise.all([startCoordinator(dataDir, database, lance), startCoordinator(dataDir, database, lance)]);
    // The clients' models are built while the two processes start.
    for (let i = 0; i < 8; i++) bundles.push(await tinyBundle());
    const [a, b] = await starting;
    children.push(a.child, b.child);

    const anon = new CoragClient(a.url);
    const created = await anon.createSession({
      name: 'two coordinators',
      models: { reader: 'corag/tiny-t5', passageEncoder: 'corag/tiny-contriever (random, seed 2)', embeddingDim: bundles[0].embeddingDim },
      training: { learningRate: 1e-3, localSteps: 1, passagesPerQuestion: 1, maxLength: 32, batchSize: 1, seed: 3 },
      roundPolicy: { minClients: 8, minUpdates: 8, deadlineSeconds: 3600, autoStart: true },
      trainedPrefixes: TRAINED_PREFIXES,
      // The coordinator processes have no copy of the tiny retriever to re-embed samples with.
      passages: { embeddingCheck: 'off' },
    });
    const sid = created.session.id;
    expect((await anon.withToken(created.adminToken).uploadModel(sid, await bundles[0].exportGlobal())).version).toBe(0);

    // Round 2's uploads of clients 2 and 3 (on A) are held at the door until A is dead: the kill
    // then lands between accepted updates and ones still to come, every run. Held, not changed.
    const held = new Map<number, { hit: boolean; release: () => void; released: Promise<void> }>();
    for (const i of [2, 3]) {
      let release!: () => void;
      const released = new Promise<void>((r) => (release = r));
      held.set(i, { hit: false, release, released });
    }
    const gate =
      (i: number): FetchLike =>
      async (input, init) => {
        const h = held.get(i);
        if (h && init?.method === 'PUT' && String(input).endsWith('/rounds/2/update')) {
          h.hit = true;
          await h.released;
        }
        return fetch(input, init);
      };
    // Clients 0-3 prefer A, 4-7 prefer B; each fails over to the other on a connection error.
    const uploads = new Map<number, Array<{ client: number; body: Uint8Array }>>([1, 2, 3].map((r) => [r, []]));
    const clients: FederatedCoragClient[] = [];
    for (let i = 0; i < 8; i++) {
      const urls = i < 4 ? [a.url, b.url] : [b.url, a.url];
      const server = new CoragClient(urls[0], undefined, failoverFetch(urls, gate(i)));
      const client = await FederatedCoragClient.join(server, created.joinCode, `c${i}`, {
        bundle: bundles[i],
        qaPairs: [{ question: `where does ${PEOPLE[i]} live?`, answers: [CITIES[i]] }],
        passageSource: (c, s) => new CoordinatorPassageSource(c, s),
        reconnectDelayMs: 50,
        onEvent: (e) => {
          if (e.type === 'uploaded') uploads.get(e.round)!.push({ client: i, body: e.body });
        },
      });
      await client.loadGlobal(0);
      clients.push(client);
    }

    // Passages: the same two facts contributed through both processes at once, and one each.
    const [viaA, viaB] = await Promise.all([
      clients[0].contributePassages([fact(0), fact(1), fact(2)]),
      clients[4].contributePassages([fact(0), fact(1), fact(3)]),
    ]);
    expect(viaA.slice(0, 2)).toEqual(viaB.slice(0, 2));
    expect(new Set([...viaA, ...viaB]).size).toBe(4);
    const [embedded2, embedded3] = await embedPassages(bundles[0], [fact(2), fact(3)]);
    for (const url of [a.url, b.url]) {
      const c = new CoragClient(url, clients[1].credentials.token);
      expect((await c.session(sid)).passages).toBe(4);
      // Each process finds the passage added through the other.
      expect((await c.search(sid, embedded3, 1))[0].passage.text).toBe(fact(3).text);
      expect((await c.search(sid, embedded2, 1))[0].passage.text).toBe(fact(2).text);
    }
    // The passage records are in PostgreSQL: the shared folder holds no database (processes on other hosts could share it).
    expect(existsSync(join(dataDir, 'coordinator.sqlite'))).toBe(false);

    const runs = clients.map((c) => c.run({ maxRounds: 3 }));
    const db = new pg.Client({ connectionString: database });
    await db.connect();
    try {
      // Round 2: A has accepted clients 0 and 1, clients 2 and 3 are at the door: kill A.
      await waitFor('A to accept two round-2 updates', () => {
        const r2 = uploads.get(2)!.map((u) => u.client);
        return r2.includes(0) && r2.includes(1) && held.get(2)!.hit && held.get(3)!.hit;
      });
      a.child.kill('SIGKILL');
      await a.exited;
      for (const h of held.values()) h.release();
      await Promise.all(runs);
      expect(clients.map((c) => c.roundsTrained)).toEqual(Array(8).fill(3));

      const reader = new CoragClient(b.url, clients[5].credentials.token);
      await waitFor('round 3 to close', async () => (await reader.round(sid, 3)).state !== 'open');
      let global = decodeModel(await reader.downloadModel(sid, 0));
      const trained = new Map([...global].filter(([n]) => TRAINED_PREFIXES.some((p) => n.startsWith(p))).map(([n, t]) => [n, t.shape]));
      for (let round = 1; round <= 3; round++) {
        const info = await reader.round(sid, round);
        expect([info.state, info.accepted, info.resultVersion]).toEqual(['closed', 8, round]);
        // One update from each of the eight clients, as they posted it.
        const posted = uploads.get(round)!;
        expect(posted.map((u) => u.client).sort()).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
        const updates = posted.map((u) => {
          const d = decodeUpdate(u.body, trained);
          expect([d.round, d.baseVersion]).toEqual([round, round - 1]);
          return { n: d.numExamples, deltas: d.deltas as Map<string, NamedTensor> };
        });
        const v = decodeModel(await reader.downloadModel(sid, round));
        const expected = fedAvgExpected(global, updates);
        for (const [name, t] of v) expect(maxRelativeError(t.data, expected.get(name)!), `round ${round} ${name}`).toBeLessThan(1e-6);
        // The clients really trained: the version moved.
        expect([...trained.keys()].some((n) => maxRelativeError(v.get(n)!.data, global.get(n)!.data) > 0)).toBe(true);
        global = v;
      }
      const nodes = async (round: number) =>
        (await db.query<{ n: number }>('SELECT COUNT(*)::int AS n FROM updates WHERE round = $1 GROUP BY node ORDER BY n', [round])).rows.map((r) => r.n);
      // Round 1 came in through both processes; round 2 through both, A's two kept after its death; round 3 through B alone.
      expect(await nodes(1)).toEqual([4, 4]);
      expect(await nodes(2)).toEqual([2, 6]);
      expect(await nodes(3)).toEqual([8]);
      expect((await db.query('SELECT 1 FROM updates')).rowCount).toBe(24);
      expect((await reader.session(sid)).passages).toBe(4);
    } finally {
      await db.end();
    }
    b.child.kill('SIGTERM');
    await b.exited;
  }, 300_000);
});
