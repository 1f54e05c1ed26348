/**
 * Several coordinators, one session: two coordinator processes (`tsx server/main.ts`, different
 * ports) share one PostgreSQL database, one data folder and one LanceDB passage folder. Eight
 * clients, spread over both, take part in three FedAvg rounds; each published version must equal
 * single-process FedAvg of the updates the state recorded as accepted; passages contributed
 * through both processes are stored once and found by either; one process is killed with SIGKILL
 * mid-round after accepting updates, and the other finishes the round with those updates in it.
 *
 * The clients here send made-up deltas over HTTP (as crash.test.ts does), so the expected FedAvg
 * is known exactly; the real client runtime over several coordinators is not exercised yet.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { CoragClient } from '../../src/federated/client';
import { decodeModel, encodeModel, encodeUpdate, type NamedTensor } from '../../src/federated/codec';
import { fedAvgExpected, maxRelativeError, MODEL_SHAPES, randomTensors, seeded, tempDir, TRAINED_PREFIXES, trainedShapes } from './helpers';
import { startTestPostgres } from './postgres';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

function startCoordinator(dataDir: string, database: string, passages: string): Promise<{ url: string; child: ChildProcess; exited: Promise<unknown> }> {
  const env: NodeJS.ProcessEnv = { ...process.env, CORAG_CRASH_AT: '' };
  delete env.CORAG_DATABASE_URL;
  const args = [
    '--import',
    'tsx',
    'server/main.ts',
    '--port',
    '0',
    '--no-demo',
    '--data-dir',
    dataDir,
    '--database',
    database,
    '--passage-store',
    passages,
    '--max-uploads',
    '16',
  ];
  const child = spawn(process.execPath, args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise((res) => child.once('exit', res));
  return new Promise((resolve, reject) => {
    let out = '';
    const seen = (b: Buffer) => {
      out += b.toString();
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) resolve({ url: m[1], child, exited });
    };
    child.stdout!.on('data', seen);
    child.stderr!.on('data', (b: Buffer) => {
      seen(b);
      process.stderr.write(b);
    });
    child.once('exit', () => reject(new Error(`coordinator exited before listening:\n${out}`)));
  });
}

const cluster = await startTestPostgres();
afterAll(() => cluster?.stop());

describe.skipIf(!cluster)('two coordinator processes, one session (PostgreSQL + shared data folder + LanceDB)', () => {
  const dir = tempDir();
  const children: ChildProcess[] = [];
  afterAll(() => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    dir.remove();
  });

  it('aggregates exactly across both, stores each passage once, and survives SIGKILL of one mid-round', async () => {
    const database = await cluster!.createDatabase();
    const dataDir = join(dir.path, 'data');
    const lance = join(dir.path, 'lance');
    mkdirSync(dataDir);
    const a = await startCoordinator(dataDir, database, lance);
    children.push(a.child);
    const b = await startCoordinator(dataDir, database, lance);
    children.push(b.child);
    const random = seeded(23);

    const anon = new CoragClient(a.url);
    const created = await anon.createSession({
      name: 'two coordinators',
      models: { reader: 'r', passageEncoder: 'enc', embeddingDim: 8 },
      roundPolicy: { minClients: 8, minUpdates: 8, deadlineSeconds: 3600, autoStart: true },
      trainedPrefixes: TRAINED_PREFIXES,
      passages: { embeddingCheck: 'off' }, // made-up encoder 'enc'
    });
    const sid = created.session.id;
    const global0 = randomTensors(MODEL_SHAPES, random);
    await anon.withToken(created.adminToken).uploadModel(sid, encodeModel(global0));
    // Clients 0-3 talk to A, 4-7 to B (as behind a load balancer).
    const urlOf = (i: number, aAlive = true) => (i < 4 && aAlive ? a.url : b.url);
    const tokens: string[] = [];
    for (let i = 0; i < 8; i++) tokens.push((await new CoragClient(urlOf(i)).join(created.joinCode, `c${i}`)).token);

    // Passages: the same two texts contributed through both processes, and one text each.
    const passage = (text: string, k: number) => ({
      title: '',
      text,
      embedding: Array.from({ length: 8 }, (_, j) => (j === k ? 1 : 0.01 * j)),
      encoder: 'enc',
    });
    await Promise.all([
      new CoragClient(a.url, tokens[0]).addPassages(sid, [passage('shared one', 0), passage('shared two', 1), passage('only via a', 2)]),
      new CoragClient(b.url, tokens[4]).addPassages(sid, [passage('shared one', 0), passage('shared two', 1), passage('only via b', 3)]),
    ]);
    const db = new pg.Client({ connectionString: database });
    await db.connect();
    try {
      for (const url of [a.url, b.url]) {
        const c = new CoragClient(url, tokens[1]);
        expect((await c.session(sid)).passages).toBe(4);
        // Each process finds the passage added through the other.
        const hits = await c.search(
          sid,
          Array.from({ length: 8 }, (_, j) => (j === 3 ? 1 : 0)),
          1,
        );
        expect(hits[0].passage.text).toBe('only via b');
        const hitsA = await c.search(
          sid,
          Array.from({ length: 8 }, (_, j) => (j === 2 ? 1 : 0)),
          1,
        );
        expect(hitsA[0].passage.text).toBe('only via a');
      }

      let global = global0;
      const waitFor = async (what: string, ok: () => Promise<boolean>) => {
        for (let t = 0; t < 600; t++) {
          if (await ok()) return;
          await new Promise((r) => setTimeout(r, 50));
        }
        throw new Error(`timed out waiting for ${what}`);
      };
      for (let round = 1; round <= 3; round++) {
        await waitFor(`round ${round} to open`, async () => (await new CoragClient(b.url, tokens[5]).round(sid, 'current')).round === round);
        const updates = tokens.map((_, i) => ({ n: 2 + ((i + round) % 5), deltas: randomTensors(trainedShapes(), random, 0.1) as Map<string, NamedTensor> }));
        const body = (i: number) => encodeUpdate(updates[i].deltas, { round, baseVersion: round - 1, numExamples: updates[i].n, metrics: { loss: 1 + i } });
        const send = (i: number, aAlive = true) => new CoragClient(urlOf(i, aAlive), tokens[i]).uploadUpdate(sid, round, body(i));
        if (round === 2) {
          // A accepts three updates and B two; then A dies (SIGKILL) and its last client goes to B.
          await Promise.all([0, 1, 2, 4, 5].map((i) => send(i)));
          const byNode = await db.query<{ node: string; n: number }>(
            'SELECT node, COUNT(*)::int AS n FROM updates WHERE round = 2 GROUP BY node ORDER BY n DESC',
          );
          expect(byNode.rows.map((r) => r.n)).toEqual([3, 2]);
          a.child.kill('SIGKILL');
          await a.exited;
          await Promise.all([3, 6, 7].map((i) => send(i, false)));
        } else await Promise.all(tokens.map((_, i) => send(i, round < 2)));
        await waitFor(`round ${round} to close`, async () => ['closed', 'failed'].includes((await new CoragClient(b.url, tokens[5]).round(sid, round)).state));
        const info = await new CoragClient(b.url, tokens[5]).round(sid, round);
        expect([info.state, info.accepted, info.resultVersion]).toEqual(['closed', 8, round]);
        const v = decodeModel(await new CoragClient(b.url, tokens[5]).downloadModel(sid, round));
        const expected = fedAvgExpected(global, updates);
        for (const [name, t] of v) expect(maxRelativeError(t.data, expected.get(name)!), `round ${round} ${name}`).toBeLessThan(1e-6);
        // Weighted mean of the clients' losses, over both processes' partials.
        const total = updates.reduce((s, u) => s + u.n, 0);
        expect(info.metrics.loss).toBeCloseTo(updates.reduce((s, u, i) => s + u.n * (1 + i), 0) / total, 9);
        global = v;
      }
      // Round 1's updates came in through both processes: two nodes recorded.
      expect((await db.query('SELECT DISTINCT node FROM updates WHERE round = 1')).rowCount).toBe(2);
      expect((await db.query('SELECT 1 FROM updates')).rowCount).toBe(24);
    } finally {
      await db.end();
    }
    b.child.kill('SIGTERM');
    await b.exited;
  });
});
