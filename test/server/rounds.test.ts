import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stateBackends, startTestPostgres } from './postgres';
import { CoragClient } from '../../src/federated/client';
import { decodeModel, encodeModel, encodeUpdate, type NamedTensor } from '../../src/federated/codec';
import type { ServerEvent } from '../../src/federated/protocol';
import { fedAvgExpected, maxRelativeError, MODEL_SHAPES, randomTensors, seeded, startServer, tempDir, TRAINED_PREFIXES, trainedShapes } from './helpers';

// The state in SQLite (the default) and in PostgreSQL (a throwaway cluster: ./postgres.ts).
const cluster = await startTestPostgres();
afterAll(() => cluster?.stop());

for (const backend of stateBackends(cluster))
  describe.skipIf(backend.skip)(`FedAvg rounds over real HTTP with 4 simulated clients (state in ${backend.name})`, () => {
    const dir = tempDir();
    let server: Awaited<ReturnType<typeof startServer>>;
    beforeAll(async () => {
      server = await startServer({ dataDir: dir.path, database: await backend.database(), random: seeded(7) });
    });
    afterAll(async () => {
      await server.app.close();
      dir.remove();
    });

    it('two full rounds produce exactly the FedAvg of the accepted deltas, pushed over SSE', async () => {
      const random = seeded(1);
      const anon = new CoragClient(server.url);
      const created = await anon.createSession({
        name: 'rounds',
        models: { reader: 'r', passageEncoder: 'p', embeddingDim: 8 },
        roundPolicy: { minClients: 4, minUpdates: 2, deadlineSeconds: 60 },
        trainedPrefixes: TRAINED_PREFIXES,
      });
      const sid = created.session.id;
      const admin = anon.withToken(created.adminToken);
      let global = randomTensors(MODEL_SHAPES, random);
      expect((await admin.uploadModel(sid, encodeModel(global))).version).toBe(0);
      const clients = await Promise.all([0, 1, 2, 3].map(async (i) => anon.withToken((await anon.join(created.joinCode, `c${i}`)).token)));

      const events: ServerEvent[] = [];
      const abort = new AbortController();
      const listening = (async () => {
        for await (const e of clients[0].events(sid, abort.signal)) events.push(e);
      })().catch(() => undefined);

      for (let r = 1; r <= 2; r++) {
        const round = await admin.openRound(sid);
        expect(round.round).toBe(r);
        expect(round.participants).toHaveLength(4);
        const base = decodeModel(await clients[0].downloadModel(sid, round.baseVersion));
        const sent: Array<{ n: number; deltas: Map<string, NamedTensor> }> = [];
        await Promise.all(
          clients.map(async (c, i) => {
            const deltas = randomTensors(trainedShapes(), random, 0.1);
            const n = 10 * (i + 1) + r;
            sent.push({ n, deltas });
            // Half the clients send fp16: the expectation then uses the fp16-rounded values.
            const dtype = i % 2 ? 'F16' : 'F32';
            const body = encodeUpdate(deltas, { round: r, baseVersion: round.baseVersion, numExamples: n, metrics: { loss: i } }, dtype);
            if (dtype === 'F16') for (const [name, t] of decodeModel(body)) deltas.set(name, t);
            await c.uploadUpdate(sid, r, body);
          }),
        );
        let info = await admin.round(sid, r);
        for (let tries = 0; info.state !== 'closed' && tries < 100; tries++) {
          await new Promise((res) => setTimeout(res, 20));
          info = await admin.round(sid, r);
        }
        expect(info.state).toBe('closed');
        expect(info.resultVersion).toBe(r);
        const next = decodeModel(await clients[1].downloadModel(sid, r));
        const expected = fedAvgExpected(base, sent);
        for (const [name, t] of next) expect(maxRelativeError(t.data, expected.get(name)!), name).toBeLessThan(1e-6);
        // The frozen passage encoder is carried over bit for bit.
        expect(next.get('passage_encoder.embeddings.word_embeddings.weight')!.data).toEqual(
          global.get('passage_encoder.embeddings.word_embeddings.weight')!.data,
        );
        const w = sent.map((s) => s.n);
        expect(info.metrics.loss).toBeCloseTo(w.reduce((a, n, i) => a + n * i, 0) / w.reduce((a, b) => a + b, 0), 9);
        global = next;
      }
      await new Promise((res) => setTimeout(res, 50));
      abort.abort();
      await listening;
      const types = events.map((e) => e.type);
      expect(types[0]).toBe('hello');
      expect(types.filter((t) => t === 'round-opened')).toHaveLength(2);
      expect(types.filter((t) => t === 'update-accepted')).toHaveLength(8);
      expect(types.filter((t) => t === 'round-closed')).toHaveLength(2);
    });
  });
