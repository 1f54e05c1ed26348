/**
 * Integration: the real coordinator (server/app.ts) on 127.0.0.1 with a temp data folder, and
 * three headless CoRAG clients that contribute passages, follow SSE and complete two FedAvg rounds.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FederatedCoragClient, MemoryModelCache, trainingOptionsFromRound, type ClientEvent, type UploadRetryPolicy } from '../../src/corag/federated-client';
import type { QAPair } from '../../src/corag/local-training';
import type { ModelBundle } from '../../src/corag/model-bundle';
import { CoordinatorPassageSource, embedPassages, embedQueries, retrievedPassageEmbeddings, type PassageText } from '../../src/corag/retrieve';
import { CoragClient } from '../../src/federated/client';
import { decodeModel, decodeUpdate, type NamedTensor } from '../../src/federated/codec';
import { initBackend } from '../../src/model/backend';
import { fedAvgExpected, maxRelativeError, seeded, startServer, tempDir } from '../server/helpers';
import { tinyBundle } from './helpers';

/** The id the coordinator resolves to the tiny Contriever config, so it checks the contributed embeddings. */
const TINY_PASSAGE_ENCODER = 'corag/tiny-contriever (random, seed 2)';

const FACTS: PassageText[][] = [
  [
    { title: 'alice', text: 'alice lives in paris.' },
    { title: 'bob', text: 'bob lives in london.' },
  ],
  [
    { title: 'carol', text: 'carol lives in berlin.' },
    { title: 'david', text: 'david lives in madrid.' },
  ],
  [
    { title: 'emma', text: 'emma lives in rome.' },
    { title: 'frank', text: 'frank lives in vienna.' },
  ],
];
const qaOf = (facts: PassageText[]): QAPair[] =>
  facts.map((f) => ({ question: `where does ${f.title} live?`, answers: [f.text.split(' ').pop()!.replace('.', '')] }));

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

  /**
   * A session of one client (rounds close at 1 update) that talks to the coordinator through
   * `fetchImpl` (the fault tests' injected failures): version 0 is client i's bundle, applied,
   * and its facts are contributed.
   */
  async function oneClientSession(
    name: string,
    i: number,
    fetchImpl: typeof fetch,
    options: {
      deadlineSeconds?: number;
      uploadRetry?: UploadRetryPolicy;
      onEvent?: (e: ClientEvent) => void;
      contribute?: boolean;
      /** false: no training input until setTraining. */
      train?: boolean;
      /** Other clients joined before this one (they are selected for every round too, and never upload). */
      others?: number;
    } = {},
  ) {
    const anon = new CoragClient(server.url);
    const created = await anon.createSession({
      name,
      models: { reader: 'tiny-t5', passageEncoder: TINY_PASSAGE_ENCODER, embeddingDim: bundles[i].embeddingDim },
      training: { learningRate: 1e-3, localSteps: 1, passagesPerQuestion: 1, maxLength: 32, batchSize: 1, seed: 3 },
      roundPolicy: { minClients: 1, minUpdates: 1, deadlineSeconds: options.deadlineSeconds ?? 120, autoStart: false },
      trainedPrefixes: ['reader.'],
    });
    const sid = created.session.id;
    const admin = anon.withToken(created.adminToken);
    expect((await admin.uploadModel(sid, await bundles[i].exportGlobal())).version).toBe(0);
    for (let o = 0; o < (options.others ?? 0); o++) await anon.join(created.joinCode, `${name}-other-${o}`);
    const client = await FederatedCoragClient.join(new CoragClient(server.url, undefined, fetchImpl), created.joinCode, name, {
      bundle: bundles[i],
      ...(options.train === false
        ? {}
        : { qaPairs: qaOf(FACTS[i]).slice(0, 1), passageSource: (c: CoragClient, s: string) => new CoordinatorPassageSource(c, s) }),
      uploadRetry: options.uploadRetry,
      onEvent: options.onEvent,
      reconnectDelayMs: 50,
    });
    await client.loadGlobal(0);
    if (options.contribute !== false) await client.contributePassages(FACTS[i]);
    return { sid, admin, client, joinCode: created.joinCode };
  }

  /**
   * A fetch whose event streams can be cut like a lost connection: `drop()` errors every open
   * stream on the client's side (the coordinator sees the request end). Counts event requests.
   */
  function droppableEvents(base: typeof fetch = fetch) {
    const open = new Set<() => void>();
    let requests = 0;
    const fetchImpl: typeof fetch = async (input, init) => {
      const res = await base(input, init);
      if (!String(input).endsWith('/events')) return res;
      requests++;
      if (!res.ok || !res.body) return res;
      const reader = res.body.getReader();
      let cut = false;
      let controller!: ReadableStreamDefaultController<Uint8Array>;
      const body = new ReadableStream<Uint8Array>({
        start: (c) => {
          controller = c;
        },
        pull: async (c) => {
          try {
            const { value, done } = await reader.read();
            if (cut) return;
            if (done) c.close();
            else c.enqueue(value);
          } catch (e) {
            if (!cut) c.error(e);
          }
        },
        cancel: (reason) => reader.cancel(reason),
      });
      const drop = () => {
        open.delete(drop);
        cut = true;
        controller.error(new TypeError('network connection lost'));
        void reader.cancel().catch(() => undefined);
      };
      open.add(drop);
      return new Response(body, { status: res.status, headers: res.headers });
    };
    return { fetchImpl, drop: () => [...open].forEach((d) => d()), requests: () => requests };
  }

  /** Polls until `ok()` (every 20 ms, at most `ms`). */
  async function until(ok: () => boolean, ms = 60_000): Promise<void> {
    for (const start = Date.now(); !ok();) {
      if (Date.now() - start > ms) throw new Error('timed out waiting');
      await new Promise((res) => setTimeout(res, 20));
    }
  }

  async function closedRound(admin: CoragClient, sid: string, round: number) {
    let info = await admin.round(sid, round);
    for (let t = 0; info.state !== 'closed' && t < 600; t++) {
      await new Promise((res) => setTimeout(res, 50));
      info = await admin.round(sid, round);
    }
    return info;
  }

  it('contribute passages, train in two rounds, and the global model advances twice to the FedAvg of their deltas', async () => {
    const anon = new CoragClient(server.url);
    const created = await anon.createSession({
      name: 'corag-it',
      models: { reader: 'tiny-t5', passageEncoder: TINY_PASSAGE_ENCODER, embeddingDim: bundles[0].embeddingDim },
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
    const clients = await Promise.all(
      bundles.map((bundle, i) =>
        FederatedCoragClient.join(anon, created.joinCode, `client-${i}`, {
          bundle,
          qaPairs: qaOf(FACTS[i]),
          passageSource: (c, s) => new CoordinatorPassageSource(c, s),
          cache: caches[i],
          onEvent: (e: ClientEvent) => {
            if (e.type === 'uploaded') uploads.push({ round: e.round, body: e.body });
          },
        }),
      ),
    );
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
      const expected = fedAvgExpected(
        versions[r - 1],
        updates.map((u) => ({ n: u.numExamples, deltas: u.deltas as Map<string, NamedTensor> })),
      );
      for (const [name, t] of versions[r]) {
        const want = expected.get(name)!;
        // Zero-initialised tensors (BERT biases) stay near zero: compare those absolutely.
        const err = want.some((x) => x !== 0) ? maxRelativeError(t.data, want) : Math.max(...t.data.map(Math.abs));
        expect(err, name).toBeLessThan(1e-6);
      }
      // Training moved the trained tensors; the frozen passage encoder is carried over bit for bit.
      expect(versions[r].get('reader.lm_head.weight')!.data).not.toEqual(versions[r - 1].get('reader.lm_head.weight')!.data);
      expect(versions[r].get('passage_encoder.embeddings.word_embeddings.weight')!.data).toEqual(
        versions[0].get('passage_encoder.embeddings.word_embeddings.weight')!.data,
      );
    }
    // Every version a client trained from went through its cache.
    for (const cache of caches) for (const v of [0, 1]) expect(await cache.get(sid, v)).toBeDefined();

    // A reloaded tab reconnects with its stored credentials as the same client.
    const resumed = await FederatedCoragClient.resume(anon, clients[0].credentials, {
      bundle: bundles[0],
      qaPairs: qaOf(FACTS[0]),
      passageSource: (c, s) => new CoordinatorPassageSource(c, s),
    });
    expect(resumed.clientId).toBe(clients[0].clientId);
    expect(resumed.session.currentVersion).toBe(2);
  });

  it('retries an upload whose connection failed, and counts a retry answered "duplicate" as the earlier attempt having landed', async () => {
    // Round 1: the first PUT never reaches the coordinator. Round 2: it lands but the response is lost.
    let fault: 'before-send' | 'after-send' | null = null;
    const faultyFetch: typeof fetch = async (input, init) => {
      const isUpload = init?.method === 'PUT' && String(input).endsWith('/update');
      if (isUpload && fault === 'before-send') {
        fault = null;
        throw new TypeError('fetch failed');
      }
      const res = await fetch(input, init);
      if (isUpload && fault === 'after-send') {
        fault = null;
        throw new TypeError('network connection lost');
      }
      return res;
    };
    const events: ClientEvent[] = [];
    const { sid, admin, client } = await oneClientSession('corag-retry', 0, faultyFetch, {
      uploadRetry: { initialDelayMs: 10 },
      onEvent: (e) => {
        if (e.type !== 'training') events.push(e);
      },
    });
    for (const [round, mode] of [
      [1, 'before-send'],
      [2, 'after-send'],
    ] as const) {
      fault = mode;
      const opened = await admin.openRound(sid);
      expect(await client.participate(opened)).not.toBeNull();
      expect(fault, 'the fault was injected').toBeNull();
      const retries = events.filter((e) => e.type === 'upload-retrying' && e.round === round);
      expect(retries.map((e) => e.type === 'upload-retrying' && e.attempt)).toEqual([1]);
      expect(events.filter((e) => e.type === 'uploaded' && e.round === round)).toHaveLength(1);
      let info = await admin.round(sid, round);
      for (let t = 0; info.state !== 'closed' && t < 100; t++) {
        await new Promise((res) => setTimeout(res, 50));
        info = await admin.round(sid, round);
      }
      expect(info.state).toBe('closed');
      expect(info.accepted).toBe(1);
    }
    expect(client.roundsTrained).toBe(2);
    expect(events.some((e) => e.type === 'upload-refused')).toBe(false);
  });

  it('retries an upload the coordinator cut off as stalled (408 body_timeout) and lands it on the next attempt', async () => {
    let cutOff = 0;
    const stalling: typeof fetch = async (input, init) => {
      if (init?.method === 'PUT' && String(input).endsWith('/update') && cutOff === 0) {
        cutOff++;
        return new Response('{"error":"body_timeout","message":"no body bytes arrived for 30000 ms"}', {
          status: 408,
          headers: { 'content-type': 'application/json' },
        });
      }
      return fetch(input, init);
    };
    const retries: number[] = [];
    const { sid, admin, client } = await oneClientSession('corag-stalled', 0, stalling, {
      uploadRetry: { initialDelayMs: 5 },
      onEvent: (e) => {
        if (e.type === 'upload-retrying') retries.push(e.attempt);
      },
    });
    expect(await client.participate(await admin.openRound(sid))).not.toBeNull();
    expect([cutOff, retries]).toEqual([1, [1]]);
    expect((await admin.round(sid, 1)).accepted).toBe(1);
  });

  it('trains only what the session aggregates: in a reader-only session the query encoder stays as downloaded', async () => {
    const { sid, admin, client } = await oneClientSession('corag-reader-only', 2, fetch);
    await client.participate(await admin.openRound(sid));
    const bundle = bundles[2];
    const moved = async (prefix: string) =>
      [...(await bundle.delta(bundle.wireNamesMatching([prefix]))).values()].reduce((a, t) => a + t.data.reduce((b, x) => b + Math.abs(x), 0), 0);
    expect(await moved('reader.')).toBeGreaterThan(0);
    expect(await moved('query_encoder.')).toBe(0);
  });

  it("gives up on an upload after the policy's attempts and leaves the round to its deadline", async () => {
    const failing: typeof fetch = async (input, init) => {
      if (init?.method === 'PUT' && String(input).endsWith('/update')) throw new TypeError('fetch failed');
      return fetch(input, init);
    };
    const retries: number[] = [];
    const { sid, admin, client } = await oneClientSession('corag-offline', 1, failing, {
      uploadRetry: { attempts: 3, initialDelayMs: 5 },
      onEvent: (e) => {
        if (e.type === 'upload-retrying') retries.push(e.delayMs);
      },
    });
    const failure = client.participate(await admin.openRound(sid));
    await expect(failure).rejects.toThrow(/fetch failed/);
    // The failure names its stage and keeps the network error as its cause.
    await expect(failure).rejects.toMatchObject({ name: 'RoundStageError', stage: 'upload', round: 1, cause: { name: 'TypeError' } });
    expect(retries).toEqual([5, 10]);
    expect(client.roundsTrained).toBe(0);
    expect((await admin.round(sid, 1)).state).toBe('open');
  });

  it('says which stage failed: an empty store is a TrainingInputError, a lost download the download stage, a failing search the retrieve stage', async () => {
    const empty = await oneClientSession('corag-empty-store', 1, fetch, { contribute: false });
    await expect(empty.client.participate(await empty.admin.openRound(empty.sid))).rejects.toMatchObject({
      name: 'TrainingInputError',
      problem: 'empty_store',
      detail: { source: 'session' },
    });

    let offline = false;
    const flaky: typeof fetch = async (input, init) => {
      if (offline && /\/model\/\d+$|\/passages\/search$/.test(String(input))) throw new TypeError('fetch failed');
      return fetch(input, init);
    };
    const { sid, admin, client } = await oneClientSession('corag-stages', 1, flaky);
    offline = true;
    // A new version 1 is not cached: its download is the first thing that fails.
    expect((await admin.uploadModel(sid, await bundles[1].exportGlobal())).version).toBe(1);
    const r1 = await admin.openRound(sid);
    expect(r1.baseVersion).toBe(1);
    await expect(client.participate(r1)).rejects.toMatchObject({ name: 'RoundStageError', stage: 'download', round: 1, cause: { message: 'fetch failed' } });
    await admin.closeRound(sid, r1.round);
    // With the version in the cache, the search is what fails.
    offline = false;
    await client.loadGlobal(1);
    offline = true;
    await expect(client.participate(await admin.openRound(sid))).rejects.toMatchObject({ name: 'RoundStageError', stage: 'retrieve' });
  });

  it("by default keeps retrying a failing upload until the round's deadline, then gives up", async () => {
    const failing: typeof fetch = async (input, init) => {
      if (init?.method === 'PUT' && String(input).endsWith('/update')) return new Response('{"error":"unavailable","message":"down"}', { status: 503 });
      return fetch(input, init);
    };
    const retries: number[] = [];
    const { sid, admin, client } = await oneClientSession('corag-deadline', 1, failing, {
      deadlineSeconds: 4,
      uploadRetry: { initialDelayMs: 100, maxDelayMs: 400 },
      onEvent: (e) => {
        if (e.type === 'upload-retrying') retries.push(e.attempt);
      },
    });
    const round = await admin.openRound(sid);
    await expect(client.participate(round)).rejects.toMatchObject({ name: 'RoundStageError', stage: 'upload', cause: { status: 503, code: 'unavailable' } });
    // 100, 200, 400, 400, … ms waits fit many more than the 6 tries of a fixed policy, and none past the deadline.
    expect(retries.length).toBeGreaterThan(5);
    expect(Date.now()).toBeLessThan(Date.parse(round.deadlineAt) + 1000);
  });

  it('retrieves from the session store with its stored embeddings, and re-embeds hits whose embedding arrives malformed', async () => {
    let corrupt = false;
    const tampering: typeof fetch = async (input, init) => {
      const res = await fetch(input, init);
      if (!corrupt || !String(input).endsWith('/passages/search')) return res;
      const body = (await res.json()) as { hits: Array<{ embedding?: unknown }> };
      body.hits[0].embedding = [1, 2];
      body.hits[1].embedding = body.hits[1].embedding && (body.hits[1].embedding as number[]).map(() => 'x');
      return new Response(JSON.stringify(body), { status: res.status, headers: res.headers });
    };
    const { client } = await oneClientSession('corag-search', 2, tampering);
    const stored = await embedPassages(bundles[2], FACTS[2]);
    const queries = await embedQueries(bundles[2], ['where does emma live?']);
    const [hits] = await client.source.search(queries, 2);
    expect(hits).toHaveLength(2);
    for (const h of hits) expect(h.embedding).toEqual(stored[FACTS[2].findIndex((f) => f.text === h.text)]);

    corrupt = true;
    const [tampered] = await client.source.search(queries, 2);
    expect(tampered.map((h) => h.embedding)).toEqual([undefined, undefined]);
    // The retriever loss then embeds those passages itself: the same vectors, up to float rounding.
    const fromStore = await retrievedPassageEmbeddings(bundles[2], [hits]);
    const recomputed = await retrievedPassageEmbeddings(bundles[2], [tampered]);
    expect(maxRelativeError(await recomputed.data(), await fromStore.data())).toBeLessThan(1e-5);
    fromStore.dispose();
    recomputed.dispose();
  });

  it('run() follows the session again after the connection is lost (connection events), and trains in a round opened after the reconnect', async () => {
    const net = droppableEvents();
    const events: ClientEvent[] = [];
    const { sid, admin, client } = await oneClientSession('corag-reconnect', 0, net.fetchImpl, { onEvent: (e) => events.push(e) });
    const connection = () => events.flatMap((e) => (e.type === 'connection' ? [e] : []));
    const stop = new AbortController();
    const errors: unknown[] = [];
    const running = client.run({ signal: stop.signal, onError: (e) => errors.push(e) });
    await until(() => connection().length === 1);
    net.drop();
    await until(() => connection().length === 3);
    expect(connection().map((e) => e.online)).toEqual([true, false, true]);
    expect(connection()[1].message).toMatch(/lost the connection to the coordinator \(network connection lost\); retrying/);
    expect(net.requests()).toBe(2);
    // Each connection starts with its hello snapshot.
    expect(events.filter((e) => e.type === 'server' && e.event.type === 'hello')).toHaveLength(2);

    await admin.openRound(sid);
    expect((await closedRound(admin, sid, 1)).accepted).toBe(1);
    await until(() => events.some((e) => e.type === 'round-closed'));
    stop.abort();
    await running;
    expect(errors).toEqual([]);
    expect(client.roundsTrained).toBe(1);
    expect(events.filter((e) => e.type === 'uploaded').map((e) => e.round)).toEqual([1]);
  });

  it('run() stops following when the coordinator refuses its token (401) instead of retrying', async () => {
    // The coordinator no longer knows this tab's token (its data was reset, say): the stream is refused.
    const forgotten: typeof fetch = (input, init) =>
      String(input).endsWith('/events')
        ? fetch(input, { ...init, headers: { ...(init?.headers as Record<string, string>), authorization: 'Bearer forgotten' } })
        : fetch(input, init);
    const net = droppableEvents(forgotten);
    const events: ClientEvent[] = [];
    const { client } = await oneClientSession('corag-401', 1, net.fetchImpl, { onEvent: (e) => events.push(e), contribute: false });
    // Resolves by itself (no abort): the refusal ends it.
    await client.run();
    await new Promise((res) => setTimeout(res, 200)); // 4 reconnect delays: none is tried
    expect(net.requests()).toBe(1);
    const connection = events.flatMap((e) => (e.type === 'connection' ? [e] : []));
    expect(connection).toEqual([{ type: 'connection', online: false, message: expect.stringMatching(/^401 unauthorized/) }]);
  });

  it('takes part once per round: a reconnect whose hello shows the open round it uploaded to, or setTraining again, starts no second update', async () => {
    const net = droppableEvents();
    const events: ClientEvent[] = [];
    // One other selected client that never uploads keeps the round open after this client's update.
    const { sid, admin, client } = await oneClientSession('corag-once', 1, net.fetchImpl, { onEvent: (e) => events.push(e), others: 1 });
    const stop = new AbortController();
    const errors: unknown[] = [];
    const running = client.run({ signal: stop.signal, onError: (e) => errors.push(e) });
    await until(() => events.some((e) => e.type === 'connection'));
    const opened = await admin.openRound(sid);
    expect(opened.participants).toHaveLength(2);
    await until(() => events.some((e) => e.type === 'uploaded'));
    net.drop();
    await until(() => events.filter((e) => e.type === 'server' && e.event.type === 'hello').length === 2);
    const hello = events.filter((e) => e.type === 'server' && e.event.type === 'hello').pop()!;
    expect(hello.type === 'server' && hello.event.type === 'hello' && hello.event.session.round?.state).toBe('open');
    client.setTraining(qaOf(FACTS[1]).slice(0, 1), client.source);
    await new Promise((res) => setTimeout(res, 300));
    stop.abort();
    await running;
    expect(errors).toEqual([]);
    expect(events.filter((e) => e.type === 'training-started').map((e) => e.round)).toEqual([1]);
    expect(events.filter((e) => e.type === 'uploaded').map((e) => e.round)).toEqual([1]);
    expect(events.some((e) => e.type === 'upload-refused')).toBe(false);
    const round = await admin.round(sid, 1);
    expect([round.state, round.accepted]).toEqual(['open', 1]);
  });

  it('trains only while it has a training input: setTraining joins the open round, stopTraining skips the next', async () => {
    const events: ClientEvent[] = [];
    const { sid, admin, client } = await oneClientSession('corag-set-training', 2, fetch, { onEvent: (e) => events.push(e), train: false });
    expect(client.training).toBe(false);
    const stop = new AbortController();
    const errors: unknown[] = [];
    const running = client.run({ signal: stop.signal, onError: (e) => errors.push(e) });
    await until(() => events.some((e) => e.type === 'connection'));
    await admin.openRound(sid);
    await until(() => events.some((e) => e.type === 'round-skipped'));
    expect(events.filter((e) => e.type === 'round-skipped')).toEqual([{ type: 'round-skipped', round: 1, reason: 'not training' }]);

    // A source asked for once per round (a tab's own passages change between rounds).
    let asked = 0;
    const shared = new CoordinatorPassageSource(client.client, sid);
    client.setTraining(qaOf(FACTS[2]).slice(0, 1), () => {
      asked++;
      return shared;
    });
    expect(client.training).toBe(true);
    expect((await closedRound(admin, sid, 1)).accepted).toBe(1);
    expect(asked).toBe(1);

    client.stopTraining();
    expect(client.training).toBe(false);
    await until(() => events.some((e) => e.type === 'round-closed'));
    await admin.openRound(sid);
    await until(() => events.some((e) => e.type === 'round-skipped' && e.round === 2));
    stop.abort();
    await running;
    expect(errors).toEqual([]);
    expect(events.filter((e) => e.type === 'round-skipped').map((e) => e.type === 'round-skipped' && [e.round, e.reason])).toEqual([
      [1, 'not training'],
      [2, 'not training'],
    ]);
    expect(events.filter((e) => e.type === 'uploaded').map((e) => e.round)).toEqual([1]);
    expect(asked).toBe(1);
    expect((await admin.round(sid, 2)).accepted).toBe(0);
  });

  it('keeps reading events while a round is in progress, and runs the round-closed hook: the new version evaluated', async () => {
    const events: ClientEvent[] = [];
    const { sid, admin, client, joinCode } = await oneClientSession('corag-hook', 0, fetch, { onEvent: (e) => events.push(e), train: false });
    const pairs = qaOf(FACTS[0]);
    const shared = new CoordinatorPassageSource(client.client, sid);
    let release!: () => void;
    const gate = new Promise<void>((res) => (release = res));
    client.setTraining(pairs.slice(0, 1), async () => {
      await gate;
      return shared;
    });
    const evaluations: Array<{ round: number; version: number | null; count: number; bundleVersion: number | null; uploadedBefore: boolean }> = [];
    const stop = new AbortController();
    const errors: unknown[] = [];
    const running = client.run({
      signal: stop.signal,
      onError: (e) => errors.push(e),
      onRoundClosed: async (round) => {
        const uploadedBefore = events.some((e) => e.type === 'uploaded' && e.round === round.round);
        const result = await client.evaluateGlobal(round.resultVersion!, pairs, shared, { k: 1, maxNewTokens: 4, round: round.round });
        evaluations.push({ round: round.round, version: round.resultVersion, count: result.count, bundleVersion: client.bundle.version, uploadedBefore });
      },
    });
    await until(() => events.some((e) => e.type === 'connection'));
    await admin.openRound(sid);
    await until(() => events.some((e) => e.type === 'model-loaded' && e.round === 1));
    // The round waits on its passage source; another client's stream opening is still heard.
    const other = new CoragClient(server.url).withToken((await new CoragClient(server.url).join(joinCode, 'listener')).token);
    const listening = new AbortController();
    const otherEvents = other.events(sid, listening.signal);
    await otherEvents.next();
    await until(() => events.some((e) => e.type === 'server' && e.event.type === 'presence' && e.event.online === 2));
    expect(events.some((e) => e.type === 'training-started')).toBe(false);
    release();
    await until(() => evaluations.length === 1);
    listening.abort();
    await otherEvents.return(undefined);
    stop.abort();
    await running;
    expect(errors).toEqual([]);
    expect(evaluations).toEqual([{ round: 1, version: 1, count: 2, bundleVersion: 1, uploadedBefore: true }]);
  });

  it('reads the round config the coordinator hands out (numbers arrive as strings) into training options', () => {
    expect(
      trainingOptionsFromRound({
        learningRate: '0.001',
        localSteps: '2',
        passagesPerQuestion: 5,
        maxLength: '384',
        retrieverLoss: 'adist',
        note: 'x',
        batchSize: 'many',
      }),
    ).toEqual({ lr: 0.001, steps: 2, k: 5, maxLength: 384, retrieverLoss: 'adist' });
  });
});
