import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { CoragClient, CoragHttpError } from '../../src/federated/client';
import { decodeModel, encodeModel, encodeUpdate, type NamedTensor } from '../../src/federated/codec';
import { fedAvgExpected, maxRelativeError, MODEL_SHAPES, randomTensors, seeded, tempDir, TRAINED_PREFIXES, trainedShapes } from './helpers';
import { stateBackends, startTestPostgres } from './postgres';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** A coordinator in a child process; resolves with its URL once it listens. */
function startChild(
  dataDir: string,
  database: string | undefined,
  crashAt?: string,
): Promise<{ url: string; child: ChildProcess; exited: Promise<NodeJS.Signals | null> }> {
  const env: NodeJS.ProcessEnv = { ...process.env, CORAG_CRASH_AT: crashAt ?? '' };
  delete env.CORAG_DATABASE_URL;
  if (database) env.CORAG_DATABASE_URL = database; // as an operator would set it
  const child = spawn(process.execPath, ['--import', 'tsx', 'server/main.ts', '--port', '0', '--no-demo', '--data-dir', dataDir], {
    cwd: ROOT,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<NodeJS.Signals | null>((res) => child.once('exit', (_code, signal) => res(signal)));
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (b: Buffer) => {
      out += b.toString();
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) resolve({ url: m[1], child, exited });
    });
    child.stderr!.on('data', (b: Buffer) => {
      out += b.toString();
      process.stderr.write(b);
    });
    child.once('exit', () => reject(new Error(`coordinator exited before listening:\n${out}`)));
  });
}

// The state in SQLite (the default) and in PostgreSQL (a throwaway cluster: ./postgres.ts).
const cluster = await startTestPostgres();
afterAll(() => cluster?.stop());

for (const backend of stateBackends(cluster))
  describe.skipIf(backend.skip)(`crash safety: SIGKILL inside a round, restart on the same data folder (state in ${backend.name})`, () => {
    const dir = tempDir();
    const children: ChildProcess[] = [];
    afterAll(() => {
      for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
      dir.remove();
    });

    it('loses no accepted update or passage and counts none twice', async () => {
      const random = seeded(11);
      const database = await backend.database();
      const start = async (crashAt?: string) => {
        const s = await startChild(dir.path, database, crashAt);
        children.push(s.child);
        return s;
      };
      let s = await start();
      const anon = new CoragClient(s.url);
      const created = await anon.createSession({
        name: 'crash',
        models: { reader: 'r', passageEncoder: 'enc', embeddingDim: 8 },
        roundPolicy: { minClients: 4, minUpdates: 4, deadlineSeconds: 3600 },
        trainedPrefixes: TRAINED_PREFIXES,
        passages: { embeddingCheck: 'off' }, // made-up encoder 'enc'; checks: passage-intake.test.ts
      });
      const sid = created.session.id;
      const global = randomTensors(MODEL_SHAPES, random);
      await anon.withToken(created.adminToken).uploadModel(sid, encodeModel(global));
      const tokens = await Promise.all([0, 1, 2, 3].map(async () => (await anon.join(created.joinCode)).token));
      await anon.withToken(created.adminToken).openRound(sid);
      const updates = tokens.map((_, i) => ({ n: 3 + i, deltas: randomTensors(trainedShapes(), random, 0.1) as Map<string, NamedTensor> }));
      const body = (i: number) => encodeUpdate(updates[i].deltas, { round: 1, baseVersion: 0, numExamples: updates[i].n, metrics: {} });
      const as = (url: string, i: number) => new CoragClient(url, tokens[i]);
      const passages = (i: number) =>
        [0, 1].map((j) => ({ title: `c${i}`, text: `passage ${j} of client ${i}`, embedding: Array.from({ length: 8 }, (_, k) => i + j + k), encoder: 'enc' }));
      const expectDisconnect = async (p: Promise<unknown>) =>
        expect(
          await p.then(
            () => 'answered',
            (e: unknown) => (e instanceof CoragHttpError ? e.message : 'disconnected'),
          ),
        ).toBe('disconnected');

      // 1. Killed during an upload, after the new running sum hit the disk but before the commit.
      s.child.kill('SIGKILL');
      await s.exited;
      s = await start('upload:sum-written');
      await expectDisconnect(as(s.url, 0).uploadUpdate(sid, 1, body(0)));
      expect(await s.exited).toBe('SIGKILL');

      // 2. Killed right after the accept was committed (the client never saw the receipt).
      s = await start('upload:committed');
      await expectDisconnect(as(s.url, 0).uploadUpdate(sid, 1, body(0)));
      expect(await s.exited).toBe('SIGKILL');

      // 3. The retry is recognised as a duplicate; passages killed after their commit.
      s = await start('passages:committed');
      const dup = await as(s.url, 0)
        .uploadUpdate(sid, 1, body(0))
        .catch((e: CoragHttpError) => e.code);
      expect(dup).toBe('duplicate_update');
      await expectDisconnect(as(s.url, 1).addPassages(sid, passages(1)));
      expect(await s.exited).toBe('SIGKILL');

      // 4. Passage retry dedupes; the last update triggers aggregation, killed before its commit.
      s = await start('aggregate:written');
      const again = await as(s.url, 1).addPassages(sid, passages(1));
      expect(again.results.every((r) => r.duplicate)).toBe(true);
      await as(s.url, 2).uploadUpdate(sid, 1, body(2));
      await as(s.url, 1).uploadUpdate(sid, 1, body(1));
      await as(s.url, 3)
        .uploadUpdate(sid, 1, body(3))
        .catch(() => undefined);
      expect(await s.exited).toBe('SIGKILL');

      // 5. A clean restart finishes the aggregation exactly once.
      s = await start();
      const client = as(s.url, 0);
      const round = await client.round(sid, 1);
      expect(round.state).toBe('closed');
      expect(round.accepted).toBe(4);
      const v1 = decodeModel(await client.downloadModel(sid, 1));
      const expected = fedAvgExpected(global, updates);
      for (const [name, t] of v1) expect(maxRelativeError(t.data, expected.get(name)!), name).toBeLessThan(1e-6);
      const info = await client.session(sid);
      expect(info.currentVersion).toBe(1);
      expect(info.passages).toBe(2);
      expect((await client.contributions(sid)).map((c) => c.passages)).toEqual([2]);
      s.child.kill('SIGTERM');
      await s.exited;
    });
  });
