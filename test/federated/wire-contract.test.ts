/**
 * The wire contract (src/federated/protocol.ts) against a real coordinator: every answer and event
 * the server really sends passes the client's schema checks (src/federated/wire-check.ts), and one
 * that is altered on the way is refused with an error naming the event or answer and the field.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CoragClient, CoragProtocolError } from '../../src/federated/client';
import { encodeModel, encodeUpdate } from '../../src/federated/codec';
import { serverEventSchemas, type ServerEvent } from '../../src/federated/protocol';
import { parseServerEvent } from '../../src/federated/wire-check';
import { MODEL_SHAPES, randomTensors, seeded, startServer, tempDir, TRAINED_PREFIXES, trainedShapes } from '../server/helpers';

/** A fetch that passes every request to the real coordinator and rewrites the text of its answers. */
function rewriting(rewrite: (url: string, text: string) => string): typeof fetch {
  return async (input, init) => {
    const res = await fetch(input, init);
    const url = String(input);
    if (res.headers.get('content-type')?.startsWith('text/event-stream') && res.body) {
      const decoder = new TextDecoder();
      const encoder = new TextEncoder();
      const body = res.body.pipeThrough(
        new TransformStream<Uint8Array, Uint8Array>({
          transform: (chunk, out) => out.enqueue(encoder.encode(rewrite(url, decoder.decode(chunk, { stream: true })))),
        }),
      );
      return new Response(body, { status: res.status, headers: res.headers });
    }
    return new Response(rewrite(url, await res.text()), { status: res.status, headers: res.headers });
  };
}

async function protocolError(p: Promise<unknown>): Promise<CoragProtocolError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(CoragProtocolError);
  return e as CoragProtocolError;
}

describe('the wire contract against a real coordinator', () => {
  const dir = tempDir();
  let server: Awaited<ReturnType<typeof startServer>>;
  beforeAll(async () => {
    server = await startServer({ dataDir: dir.path, random: seeded(21), rateLimitPerMinute: 10_000 });
  });
  afterAll(async () => {
    await server.app.close();
    dir.remove();
  });

  const newSession = (name: string) =>
    new CoragClient(server.url).createSession({
      name,
      models: { reader: 'r', passageEncoder: 'enc', embeddingDim: 4 },
      training: { learningRate: 0.001, localSteps: '2', batchSize: 2, retrievalSource: 'shared', note: 'x' },
      roundPolicy: { minClients: 2, minUpdates: 2, deadlineSeconds: 60 },
      trainedPrefixes: TRAINED_PREFIXES,
      passages: { embeddingCheck: 'off' },
      trainingQuestions: { questions: Array.from({ length: 12 }, (_, i) => ({ question: `q${i}?`, answers: [`a${i}`] })), heldOut: 2, perClient: 4 },
    });

  it('accepts every answer and every event type a session produces (the client checks each against its schema)', async () => {
    const random = seeded(3);
    const anon = new CoragClient(server.url);
    const created = await newSession('contract');
    const sid = created.session.id;
    expect(created.session.round).toBeNull();
    expect(created.session.currentVersion).toBeNull();
    const admin = anon.withToken(created.adminToken);
    expect(await admin.uploadModel(sid, encodeModel(randomTensors(MODEL_SHAPES, random)))).toEqual({ version: 0 });
    const clients = await Promise.all([0, 1].map(async (i) => anon.withToken((await anon.join(created.joinCode, `c${i}`)).token)));

    const events: ServerEvent[] = [];
    const abort = new AbortController();
    let streamError: unknown;
    const listening = (async () => {
      for await (const e of clients[0].events(sid, abort.signal)) events.push(e);
    })().catch((e: unknown) => {
      if (!abort.signal.aborted) streamError = e;
    });
    // The stream's hello, then the other client's presence.
    const otherStream = new AbortController();
    const other = (async () => {
      for await (const e of clients[1].events(sid, otherStream.signal)) void e;
    })().catch(() => undefined);

    // A round that fails (no updates by its close): failureReason and a null result version.
    const failed = await admin.closeRound(sid, (await admin.openRound(sid)).round);
    expect(failed.state).toBe('failed');
    expect(failed.failureReason).toEqual(expect.any(String));

    // A round that closes with both updates: receipts, then the closed round with its metrics.
    const round = await admin.openRound(sid);
    const receipts = await Promise.all(
      clients.map((c, i) =>
        c.uploadUpdate(
          sid,
          round.round,
          encodeUpdate(randomTensors(trainedShapes(), random, 0.1), {
            round: round.round,
            baseVersion: round.baseVersion,
            numExamples: 3 + i,
            metrics: { loss: i },
          }),
        ),
      ),
    );
    expect(receipts.some((r) => r.roundComplete)).toBe(true);
    let closed = await admin.round(sid, round.round);
    for (let tries = 0; closed.state !== 'closed' && tries < 100; tries++) {
      await new Promise((res) => setTimeout(res, 20));
      closed = await admin.round(sid, round.round);
    }
    expect(closed).toMatchObject({ state: 'closed', resultVersion: 1, failureReason: null });
    expect((await admin.round(sid, 'current')).round).toBe(round.round);

    // Passages: contribute, search (with and without embeddings), read, count, withdraw.
    const added = await clients[0].addPassages(sid, [
      { title: 't', text: 'one passage', embedding: [1, 0, 0, 0], encoder: 'enc' },
      { text: 'another passage', embedding: [0, 1, 0, 0], encoder: 'enc' },
    ]);
    expect(added.results).toHaveLength(2);
    const hits = await clients[1].search(sid, [1, 0, 0, 0], 2, { withEmbeddings: true });
    expect(hits[0].embedding).toEqual([1, 0, 0, 0]);
    expect((await clients[1].search(sid, [1, 0, 0, 0], 1))[0].embedding).toBeUndefined();
    expect((await clients[1].passages(sid, [added.results[0].id]))[0].text).toBe('one passage');
    expect(await clients[1].contributions(sid)).toHaveLength(1);
    expect(await clients[0].deletePassage(sid, added.results[1].id)).toEqual({ id: added.results[1].id, deleted: true, contributorsLeft: 0 });

    const questions = await clients[0].trainingQuestions(sid);
    expect(questions.questions).toHaveLength(4);
    expect(questions.evaluation).toHaveLength(2);
    const info = await clients[1].session(sid);
    expect(info.config.trainingQuestions).toMatchObject({ pool: 12, heldOut: 2, perClient: 4 });
    expect(info.round?.state).toBe('closed');

    await new Promise((res) => setTimeout(res, 100));
    abort.abort();
    otherStream.abort();
    await Promise.all([listening, other]);
    expect(streamError).toBeUndefined();
    // Every event type the protocol defines arrived, and passed its schema.
    expect(new Set(events.map((e) => e.type))).toEqual(new Set(Object.keys(serverEventSchemas)));
    expect(events[0].type).toBe('hello');
  });

  it('refuses a malformed event: the stream ends with an error naming the event and field, and the event is never yielded', async () => {
    const created = await newSession('bad event');
    const sid = created.session.id;
    const admin = new CoragClient(server.url, created.adminToken);
    await admin.uploadModel(sid, encodeModel(randomTensors(MODEL_SHAPES, seeded(4))));
    const joins = await Promise.all([0, 1].map(() => new CoragClient(server.url).join(created.joinCode)));
    // A round-opened event whose round state is not one of the four.
    const client = new CoragClient(
      server.url,
      joins[0].token,
      rewriting((_url, text) => text.replace('"state":"open"', '"state":"opening"')),
    );
    const seen: string[] = [];
    const abort = new AbortController();
    const listening = (async () => {
      for await (const e of client.events(sid, abort.signal)) {
        seen.push(e.type);
        if (e.type === 'hello') await admin.openRound(sid);
      }
    })();
    const e = await protocolError(listening);
    abort.abort();
    expect(e.what).toBe('server event "round-opened"');
    expect(e.field).toBe('/round/state');
    expect(e.message).toMatch(/server event "round-opened" does not match the protocol: \/round\/state /);
    expect(seen).not.toContain('round-opened');
    expect(seen[0]).toBe('hello');
  });

  it('refuses a malformed answer with an error naming the route and the field', async () => {
    const created = await newSession('bad answer');
    const sid = created.session.id;
    const token = created.adminToken;
    const wrongType = new CoragClient(
      server.url,
      token,
      rewriting((_url, text) => text.replace('"embeddingDim":4', '"embeddingDim":"4"')),
    );
    const e1 = await protocolError(wrongType.session(sid));
    expect(e1.what).toBe(`GET /api/sessions/${sid} answer`);
    expect(e1.field).toBe('/config/models/embeddingDim');

    const missing = new CoragClient(
      server.url,
      undefined,
      rewriting((_url, text) => text.replace('"token":', '"tok":')),
    );
    const e2 = await protocolError(missing.join(created.joinCode));
    expect(e2.what).toBe('POST /api/join answer');
    expect(e2.message).toMatch(/^POST \/api\/join answer does not match the protocol: the value .*token/);

    // A search hit's embedding is the one part a client may do without (it re-embeds the passage):
    // one that is not numbers is dropped; a malformed score refuses the answer.
    const join = await new CoragClient(server.url).join(created.joinCode);
    await new CoragClient(server.url, join.token).addPassages(sid, [{ text: 'a passage', embedding: [1, 0, 0, 0], encoder: 'enc' }]);
    const badEmbedding = new CoragClient(
      server.url,
      join.token,
      rewriting((_url, text) => text.replace('"embedding":[1,0,0,0]', '"embedding":["x",0,0,0]')),
    );
    const [hit] = await badEmbedding.search(sid, [1, 0, 0, 0], 1, { withEmbeddings: true });
    expect(hit.passage.text).toBe('a passage');
    expect(hit).not.toHaveProperty('embedding');
    const badScore = new CoragClient(
      server.url,
      join.token,
      rewriting((_url, text) => text.replace(/"score":[^,]*/, '"score":"high"')),
    );
    expect((await protocolError(badScore.search(sid, [1, 0, 0, 0], 1))).field).toBe('/hits/0/score');

    const notJson = new CoragClient(
      server.url,
      token,
      rewriting(() => 'not json'),
    );
    const e3 = await protocolError(notJson.contributions(sid));
    expect(e3.message).toBe(`GET /api/sessions/${sid}/contributions answer does not match the protocol: the value is not JSON`);
  });
});

describe('parseServerEvent', () => {
  it('skips event types it does not know and refuses data that names another type or is not JSON', () => {
    expect(parseServerEvent('something-newer', '{"type":"something-newer"}')).toBeUndefined();
    expect(parseServerEvent('presence', '{"type":"presence","online":2}')).toEqual({ type: 'presence', online: 2 });
    expect(() => parseServerEvent('hello', '{"type":"presence","online":2}')).toThrow(CoragProtocolError);
    expect(() => parseServerEvent('presence', '{"type":"presence","online":-1}')).toThrow(/server event "presence" does not match the protocol: \/online/);
    expect(() => parseServerEvent('presence', '{"type":"presence"')).toThrow(/server event "presence" does not match the protocol: the value is not JSON/);
  });
});
