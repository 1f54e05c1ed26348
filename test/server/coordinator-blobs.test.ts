/**
 * Coordinators that share nothing but PostgreSQL (`blobStore: 'database'`): each has its own data
 * folder. Process A creates the session (model v0 into the database), accepts one update into its
 * partial sum (FedAvg) or stores its delta (a robust strategy), then dies and its folder is lost;
 * process D accepts another; process B, which never saw A's or D's files, accepts the last update
 * and closes the round from A's and D's shares fetched from the database. D serves the new version
 * (fetched) identical to B's and drops its copy of the round; a process started later on a new empty
 * folder serves both versions over HTTP; the round's sums and deltas are gone from the database
 * (a leftover of a closer that died before deleting them is swept when a process starts).
 */
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { Coordinator } from '../../server/coordinator';
import { decodeModel, encodeModel, encodeUpdate, type NamedTensor } from '../../src/federated/codec';
import { applyDelta, createStrategy, type StoredDeltaStrategy } from '../../src/federated/strategy';
import { deltaNorm, inMemoryDeltaChunks } from '../../src/federated/strategies/delta-chunks';
import { fedAvgExpected, maxRelativeError, MODEL_SHAPES, randomTensors, seeded, startServer, tempDir, TRAINED_PREFIXES, trainedShapes } from './helpers';
import { waitFor } from './coordinator-process';
import { startTestPostgres } from './postgres';
import { expectIdenticalNumbers } from '../identical-numbers';

const cluster = await startTestPostgres();
afterAll(() => cluster?.stop());

const STRATEGIES = [
  { strategy: 'fedavg', strategyParams: {} },
  { strategy: 'trimmed-mean', strategyParams: { trimFraction: 0.34 } },
] as const;

describe.skipIf(!cluster)('coordinators with separate data folders, sharing only PostgreSQL (--blob-store database)', () => {
  for (const { strategy, strategyParams } of STRATEGIES)
    it(`close a ${strategy} round from a dead process's share fetched from the database, and serve the new version from an empty folder`, async () => {
      const database = await cluster!.createDatabase();
      const dir = tempDir();
      const folder = (name: string) => join(dir.path, name);
      const open = (name: string) => new Coordinator({ dataDir: folder(name), database, node: name, blobStore: 'database', random: seeded(5) });
      const a = open('a');
      const b = open('b');
      const d = open('d');
      let server: Awaited<ReturnType<typeof startServer>> | undefined;
      try {
        await Promise.all([a.resume(), b.resume(), d.resume()]);
        const random = seeded(11);
        const global = randomTensors(MODEL_SHAPES, random);
        const created = await a.createSession(
          {
            name: 'no shared folder',
            models: { reader: 'r', passageEncoder: 'p', embeddingDim: 8 },
            trainedPrefixes: TRAINED_PREFIXES,
            roundPolicy: { minClients: 3, minUpdates: 3, autoStart: false },
            strategy,
            strategyParams,
          },
          encodeModel(global),
        );
        const sid = created.session.id;
        const clients: string[] = [];
        for (const c of [a, d, b]) clients.push((await c.join(created.joinCode)).clientId);
        await a.openRound(sid);
        const deltas = [0, 1, 2].map((i) => randomTensors(trainedShapes(), random, 0.1 * (i + 1)) as Map<string, NamedTensor>);
        const body = (i: number) => encodeUpdate(deltas[i], { round: 1, baseVersion: 0, numExamples: 3 + i, metrics: {} });
        expect(await a.acceptUpdate(sid, 1, clients[0], body(0))).toMatchObject({ accepted: 1, roundComplete: false });

        // A dies and its host's disk with it: its share of the round exists only in the database.
        await a.close();
        rmSync(folder('a'), { recursive: true, force: true });
        expect(await d.acceptUpdate(sid, 1, clients[1], body(1))).toMatchObject({ accepted: 2, roundComplete: false });
        expect(await b.acceptUpdate(sid, 1, clients[2], body(2))).toMatchObject({ accepted: 3, roundComplete: true });
        expect(await b.closeRound(sid, 1, 'complete')).toMatchObject({ state: 'closed', resultVersion: 1, failureReason: null });

        const v1 = readFileSync(await b.modelFile(sid, 1));
        const published = decodeModel(v1);
        if (strategy === 'fedavg') {
          const expected = fedAvgExpected(
            global,
            [0, 1, 2].map((i) => ({ n: 3 + i, deltas: deltas[i] })),
          );
          for (const [name, values] of expected) expect(maxRelativeError(published.get(name)!.data, values), name).toBeLessThan(1e-6);
        } else {
          const s = createStrategy(strategy, strategyParams) as StoredDeltaStrategy;
          const updates = deltas.map((d, i) => ({ weight: 3 + i, norm: deltaNorm(new Map([...d].map(([n, t]) => [n, t.data]))) }));
          const expected = applyDelta(global, s.aggregate(inMemoryDeltaChunks(deltas), updates, 0.25).delta);
          for (const [name, t] of expected) expectIdenticalNumbers(published.get(name)?.data, t.data, name);
        }

        // D, alive all along, serves the same bytes (fetched) and has dropped its files of the closed round.
        expect(readFileSync(await d.modelFile(sid, 1)).equals(v1)).toBe(true);
        await waitFor("D to drop round 1's folder", () => !existsSync(join(folder('d'), 'sessions', sid, 'rounds', '1')));

        // What a closer that died between publishing and deleting the round's blobs leaves behind:
        // swept by the next process that starts.
        const sql = new pg.Client({ connectionString: database });
        await sql.connect();
        await sql
          .query("INSERT INTO blobs (key, size, sha256, created_at) VALUES ($1, 0, '', 'now')", [`sessions/${sid}/rounds/1/sum-x-1.safetensors`])
          .finally(() => sql.end());

        // A new process on an empty folder: v0 and v1 come from the database through the download route.
        server = await startServer({ dataDir: folder('c'), database, blobStore: 'database' });
        const token = (await server.coordinator.join(created.joinCode)).token;
        for (const [version, bytes] of [
          [0, encodeModel(global)],
          [1, v1],
        ] as const) {
          const res = await fetch(`${server.url}/api/sessions/${sid}/model/${version}`, { headers: { authorization: `Bearer ${token}` } });
          expect(res.status).toBe(200);
          expect(Buffer.from(await res.arrayBuffer()).equals(Buffer.from(bytes)), `v${version}`).toBe(true);
        }
        // The closed round's sums and deltas are gone from the database; the model versions stay.
        const c = new pg.Client({ connectionString: database });
        await c.connect();
        const keys = (await c.query<{ key: string }>('SELECT key FROM blobs ORDER BY key').finally(() => c.end())).rows.map((r) => r.key);
        expect(keys).toEqual([`sessions/${sid}/models/v0.safetensors`, `sessions/${sid}/models/v1.safetensors`]);
        // Last, a JSON answer: a server closed right after a streamed download can wait out its keep-alive timeout.
        expect((await fetch(`${server.url}/api/sessions/${sid}`, { headers: { authorization: `Bearer ${token}` } })).status).toBe(200);
      } finally {
        await server?.app.close();
        await b.close();
        await d.close();
        dir.remove();
      }
    });
});
