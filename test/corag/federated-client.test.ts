/**
 * Integration: the real coordinator (server/app.ts) on 127.0.0.1 with a temp data folder, and
 * three headless CoRAG clients that contribute passages, follow SSE and complete two FedAvg rounds.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FederatedCoragClient, MemoryModelCache, trainingOptionsFromRound, type ClientEvent } from '../../src/corag/federated-client';
import type { QAPair } from '../../src/corag/local-training';
import type { ModelBundle } from '../../src/corag/model-bundle';
import { CoordinatorPassageSource, type PassageText } from '../../src/corag/retrieve';
import { CoragClient } from '../../src/federated/client';
import { decodeModel, decodeUpdate, type NamedTensor } from '../../src/federated/codec';
import { initBackend } from '../../src/model/backend';
import { fedAvgExpected, maxRelativeError, seeded, startServer, tempDir } from '../server/helpers';
import { tinyBundle } from './helpers';

const FACTS: PassageText[][] = [
  [{ title: 'alice', text: 'alice lives in paris.' }, { title: 'bob', text: 'bob lives in london.' }],
  [{ title: 'carol', text: 'carol lives in berlin.' }, { title: 'david', text: 'david lives in madrid.' }],
  [{ title: 'emma', text: 'emma lives in rome.' }, { title: 'frank', text: 'frank lives in vienna.' }],
];
const qaOf = (facts: PassageText[]): QAPair[] => facts.map((f) => ({ question: `where does ${f.title} live?`, answers: [f.text.split(' ').pop()!.replace('.', '')] }));

describe('three headless CoRAG clients over the real coordinator', () => {
  const dir = tempDir();
  let server: Awaited<ReturnType<typeof startServer>>;
  const bundles: ModelBundle[] = [];
  beforeAll(async () => {
    await initBackend('wasm'); // the training steps: see local-training.test.ts
    server = await startServer({ dataDir: dir.path, random: seeded(5) });
    for (let i = 0; i < 3; i++) bundles.push(await tinyBundle());
  });
  afterAll(async () => {
    await server.app.close();
    dir.remove();
    for (const b of bundles) b.dispose();
  });

  it('contribute passages, train in two rounds, and the global model advances twice to the FedAvg of their deltas', async () => {
    const anon = new CoragClient(server.url);
    const created = await anon.createSession({
      name: 'corag-it',
      models: { reader: 'tiny-t5', passageEncoder: 'tiny-contriever', embeddingDim: bundles[0].embeddingDim },
      training: { learningRate: 1e-3, localSteps: 2, passagesPerQuestion: 2, maxLength: 32, batchSize: 2, seed: 3 },
      roundPolicy: { minClients: 3, minUpdates: 3, deadlineSeconds: 120, autoStart: false },
      trainedPrefixes: ['reader.', 'query_encoder.'],
    });
    const sid = created.session.id;
    const admin = anon.withToken(created.adminToken);
    const initial = await bundles[0].exportGlobal();
    expect((await admin.uploadModel(sid, initial)).version).toBe(0);

    const uploads: Array<{ round: number; body: Uint8Array }> = [];
    const caches = bundles.map(() => new MemoryModelCache());
    const clients = await Promise.all(bundles.map((bundle, i) =>
      FederatedCoragClient.join(anon, created.joinCode, `client-${i}`, {
        bundle,
        qaPairs: qaOf(FACTS[i]),
        passageSource: (c, s) => new CoordinatorPassageSource(c, s),
        cache: caches[i],
        onEvent: (e: ClientEvent) => { if (e.type === 'uploaded') uploads.push({ round: e.round, body: e.body }); },
      })));
    for (const [i, c] of clients.entries()) {
      await c.loadGlobal(0);
      expect(await c.contributePassages(FACTS[i])).toHaveLength(2);
    }
    expect((await admin.session(sid)).passages).toBe(6);

    const running = clients.map((c) => c.run({ maxRounds: 2 }));
    const versions = [decodeModel(initial)];
    for (let r = 1; r <= 2; r++) {
      const opened = await admin.openRound(sid);
      expect(opened.participants).toHaveLength(3);
      let info = opened;
      for (let t = 0; info.state !== 'closed' && t < 600; t++) {
        await new Promise((res) => setTimeout(res, 100));
        info = await admin.round(sid, r);
      }
      expect(info.state).toBe('closed');
      expect(info.resultVersion).toBe(r);
      versions.push(decodeModel(await admin.downloadModel(sid, r)));
    }
    await Promise.all(running);
    expect((await admin.session(sid)).currentVersion).toBe(2);
    expect(clients.map((c) => c.roundsTrained)).toEqual([2, 2, 2]);

    const trainedShapes = new Map([...versions[0]].filter(([n]) => /^(reader|query_encoder)\./.test(n)).map(([n, t]) => [n, [...t.shape]]));
    for (let r = 1; r <= 2; r++) {
      const updates = uploads.filter((u) => u.round === r).map((u) => decodeUpdate(u.body, trainedShapes));
      expect(updates).toHaveLength(3);
      for (const u of updates) expect(u.baseVersion).toBe(r - 1);
      const expected = fedAvgExpected(versions[r - 1], updates.map((u) => ({ n: u.numExamples, deltas: u.deltas as Map<string, NamedTensor> })));
      for (const [name, t] of versions[r]) {
        const want = expected.get(name)!;
        // Zero-initialised tensors (BERT biases) stay near zero: compare those absolutely.
        const err = want.some((x) => x !== 0) ? maxRelativeError(t.data, want) : Math.max(...t.data.map(Math.abs));
        expect(err, name).toBeLessThan(1e-6);
      }
      // Training moved the trained tensors; the frozen passage encoder is carried over bit for bit.
      expect(versions[r].get('reader.lm_head.weight')!.data).not.toEqual(versions[r - 1].get('reader.lm_head.weight')!.data);
      expect(versions[r].get('passage_encoder.embeddings.word_embeddings.weight')!.data).toEqual(versions[0].get('passage_encoder.embeddings.word_embeddings.weight')!.data);
    }
    // Every version a client trained from went through its cache.
    for (const cache of caches) for (const v of [0, 1]) expect(await cache.get(sid, v)).toBeDefined();

    // A reloaded tab reconnects with its stored credentials as the same client.
    const resumed = await FederatedCoragClient.resume(anon, clients[0].credentials, {
      bundle: bundles[0], qaPairs: qaOf(FACTS[0]), passageSource: (c, s) => new CoordinatorPassageSource(c, s),
    });
    expect(resumed.clientId).toBe(clients[0].clientId);
    expect(resumed.session.currentVersion).toBe(2);
  });

  it('reads the round config the coordinator hands out (numbers arrive as strings) into training options', () => {
    expect(trainingOptionsFromRound({ learningRate: '0.001', localSteps: '2', passagesPerQuestion: 5, maxLength: '384', retrieverLoss: 'adist', note: 'x', batchSize: 'many' }))
      .toEqual({ lr: 0.001, steps: 2, k: 5, maxLength: 384, retrieverLoss: 'adist' });
  });
});
