import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CoragClient, CoragHttpError } from '../../src/federated/client';
import { decodeModel, encodeModel, encodeUpdate } from '../../src/federated/codec';
import { writeSafetensors } from '../../src/model/safetensors';
import { MODEL_SHAPES, randomTensors, seeded, startServer, tempDir, TRAINED_PREFIXES, trainedShapes } from './helpers';

/** Every hostile request gets a 4xx JSON error naming the problem and leaves the state unchanged. */
describe('hostile input', () => {
  const dir = tempDir();
  let server: Awaited<ReturnType<typeof startServer>>;
  let sid: string;
  let admin: CoragClient;
  let inRound: CoragClient[];
  let outsider: CoragClient;
  const random = seeded(3);
  const meta = { round: 1, baseVersion: 0, numExamples: 5, metrics: {} };
  const goodDeltas = () => randomTensors(trainedShapes(), random, 0.01);

  beforeAll(async () => {
    server = await startServer({ dataDir: dir.path, maxUpdateBytes: 64 * 1024, rateLimitPerMinute: 10_000 });
    const anon = new CoragClient(server.url);
    const created = await anon.createSession({
      name: 'hostile',
      models: { reader: 'r', passageEncoder: 'enc', embeddingDim: 8 },
      roundPolicy: { minClients: 2, minUpdates: 1 },
      trainedPrefixes: TRAINED_PREFIXES,
      // 'enc' is no encoder the coordinator can load; passage trust is tested in passage-intake.test.ts.
      passages: { embeddingCheck: 'off' },
    });
    sid = created.session.id;
    admin = anon.withToken(created.adminToken);
    await admin.uploadModel(sid, encodeModel(randomTensors(MODEL_SHAPES, random)));
    inRound = [anon.withToken((await anon.join(created.joinCode)).token), anon.withToken((await anon.join(created.joinCode)).token)];
    await admin.openRound(sid);
    outsider = anon.withToken((await anon.join(created.joinCode)).token); // joined after selection
  });
  afterAll(async () => {
    await server.app.close();
    dir.remove();
  });

  async function refused(request: () => Promise<unknown>, status: number, code: string, mention?: string): Promise<void> {
    const before = JSON.stringify(await admin.session(sid));
    const err = await request().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(CoragHttpError);
    const e = err as CoragHttpError;
    expect([e.status, e.code]).toEqual([status, code]);
    if (mention) expect(e.message).toContain(mention);
    expect(JSON.stringify(await admin.session(sid))).toBe(before);
  }

  it('refuses missing and invalid tokens (401)', async () => {
    await refused(() => new CoragClient(server.url).uploadUpdate(sid, 1, encodeUpdate(goodDeltas(), meta)), 401, 'unauthorized');
    await refused(
      () => new CoragClient(server.url, 'x'.repeat(43)).addPassages(sid, [{ title: '', text: 'a', embedding: new Array(8).fill(0), encoder: 'enc' }]),
      401,
      'unauthorized',
    );
  });

  it('refuses a client that was not selected for the round (403)', async () => {
    await refused(() => outsider.uploadUpdate(sid, 1, encodeUpdate(goodDeltas(), meta)), 403, 'not_selected');
  });

  it('refuses NaN and Inf in a delta, naming the tensor', async () => {
    for (const bad of [NaN, Infinity]) {
      const d = goodDeltas();
      d.get('reader.shared.weight')!.data[17] = bad;
      await refused(() => inRound[0].uploadUpdate(sid, 1, encodeUpdate(d, meta)), 400, 'non_finite', 'reader.shared.weight');
    }
  });

  it('refuses wrong tensor names, shapes and dtypes', async () => {
    const extra = goodDeltas();
    extra.set('reader.evil.weight', { shape: [2], data: new Float32Array(2) });
    await refused(() => inRound[0].uploadUpdate(sid, 1, encodeUpdate(extra, meta)), 400, 'unknown_tensor', 'reader.evil.weight');
    const frozen = goodDeltas();
    frozen.set('passage_encoder.embeddings.word_embeddings.weight', { shape: [40, 8], data: new Float32Array(320) });
    await refused(() => inRound[0].uploadUpdate(sid, 1, encodeUpdate(frozen, meta)), 400, 'unknown_tensor');
    const missing = goodDeltas();
    missing.delete('reader.shared.weight');
    await refused(() => inRound[0].uploadUpdate(sid, 1, encodeUpdate(missing, meta)), 400, 'missing_tensor', 'reader.shared.weight');
    const shape = goodDeltas();
    shape.set('reader.shared.weight', { shape: [16, 50], data: shape.get('reader.shared.weight')!.data });
    await refused(() => inRound[0].uploadUpdate(sid, 1, encodeUpdate(shape, meta)), 400, 'wrong_shape', '[50,16]');
    const ints = new Map([...goodDeltas()].map(([n, t]) => [n, { shape: t.shape, data: new Int32Array(t.data.length), dtype: 'I32' as const }]));
    const body = writeSafetensors(ints, { 'corag.round': '1', 'corag.base_version': '0', 'corag.num_examples': '5' });
    await refused(() => inRound[0].uploadUpdate(sid, 1, body), 400, 'wrong_dtype', 'I32');
  });

  it('refuses truncated safetensors and oversize bodies', async () => {
    const body = encodeUpdate(goodDeltas(), meta);
    await refused(() => inRound[0].uploadUpdate(sid, 1, body.subarray(0, body.length - 10)), 400, 'malformed_safetensors', 'truncated');
    await refused(() => inRound[0].uploadUpdate(sid, 1, body.subarray(0, 5)), 400, 'malformed_safetensors', 'truncated');
    await refused(() => inRound[0].uploadUpdate(sid, 1, new Uint8Array(65 * 1024)), 413, 'body_too_large');
  });

  it('refuses a duplicate update (also after the round closed) and an update for a closed round', async () => {
    const receipt = await inRound[0].uploadUpdate(sid, 1, encodeUpdate(goodDeltas(), meta));
    expect(receipt.accepted).toBe(1);
    await refused(() => inRound[0].uploadUpdate(sid, 1, encodeUpdate(goodDeltas(), meta)), 409, 'duplicate_update');
    const closed = await admin.closeRound(sid, 1);
    expect(closed.state).toBe('closed');
    expect(decodeModel(await inRound[0].downloadModel(sid, 1)).size).toBe(MODEL_SHAPES.length);
    await refused(() => inRound[1].uploadUpdate(sid, 1, encodeUpdate(goodDeltas(), meta)), 409, 'round_closed', 'round 1');
    // The client whose update went in hears "duplicate" even now: a retry after a lost response
    // learns that its update counted.
    await refused(() => inRound[0].uploadUpdate(sid, 1, encodeUpdate(goodDeltas(), meta)), 409, 'duplicate_update', 'closed since');
  });

  it('refuses embeddings of the wrong dimension or encoder, and empty or huge passage text', async () => {
    const p = (over: object) => ({ title: 't', text: 'some passage', embedding: new Array(8).fill(0.5), encoder: 'enc', ...over });
    await refused(() => inRound[0].addPassages(sid, [p({ embedding: new Array(7).fill(0) })]), 400, 'wrong_embedding_dimension', '7');
    await refused(() => inRound[0].addPassages(sid, [p({ encoder: 'other' })]), 400, 'wrong_encoder', 'other');
    await refused(() => inRound[0].addPassages(sid, [p({ text: '' })]), 400, 'invalid_request', 'text');
    await refused(() => inRound[0].addPassages(sid, [p({ text: '   ' })]), 400, 'empty_text');
    await refused(() => inRound[0].addPassages(sid, [p({ text: 'x'.repeat(20_001) })]), 400, 'invalid_request', 'text');
    await refused(() => inRound[0].search(sid, new Array(9).fill(1)), 400, 'wrong_embedding_dimension');
  });

  it('stores, dedupes, searches (with stored embeddings when asked); a passage leaves the store when its last contributor withdraws it', async () => {
    const [a, b] = inRound;
    const e = (i: number) => Array.from({ length: 8 }, (_, j) => (j === i ? 1 : 0));
    const r1 = await a.addPassages(
      sid,
      [0, 1, 2].map((i) => ({ title: `t${i}`, text: `passage ${i}`, embedding: e(i), encoder: 'enc' })),
    );
    const r2 = await b.addPassages(sid, [
      { title: 't1', text: 'passage 1', embedding: e(1), encoder: 'enc' },
      { title: 'b', text: 'by b', embedding: e(3), encoder: 'enc' },
    ]);
    expect(r2.results[0]).toEqual({ id: r1.results[1].id, duplicate: true });
    const hits = await b.search(sid, e(2), 2);
    expect(hits[0].passage.text).toBe('passage 2');
    expect(hits[0].embedding).toBeUndefined(); // only when asked
    const odd = [0.1, -1 / 3, 1e-7, Math.PI, 2 ** -20, 123.456, -0.5, 7]; // float32 values must survive JSON exactly
    const [added] = (await a.addPassages(sid, [{ title: 'odd', text: 'odd values', embedding: odd, encoder: 'enc' }])).results;
    const withVectors = await b.search(sid, odd, 3, { withEmbeddings: true });
    expect(withVectors[0].id).toBe(added.id);
    expect(Float32Array.from(withVectors[0].embedding!)).toEqual(Float32Array.from(odd));
    expect(withVectors.every((h) => h.embedding?.length === 8)).toBe(true);
    await refused(() => b.search(sid, odd, 101, { withEmbeddings: true }), 400, 'k_too_large', 'at most 100');
    await a.deletePassage(sid, added.id);
    expect(await a.contributions(sid)).toEqual(
      expect.arrayContaining([
        { clientId: expect.any(String), passages: 3 },
        { clientId: expect.any(String), passages: 1 },
      ]),
    );
    await refused(() => b.deletePassage(sid, r1.results[0].id), 403, 'not_your_passage');
    await a.deletePassage(sid, r1.results[0].id);
    expect((await b.search(sid, e(0), 10)).map((h) => h.id)).not.toContain(r1.results[0].id);
    expect(await b.passages(sid, [r1.results[0].id, r2.results[1].id])).toHaveLength(1);
    // "passage 1" has two contributors, a (first) and b (a duplicate): it stays until both withdraw.
    const shared = r1.results[1].id;
    const bId = (await b.passages(sid, [r2.results[1].id]))[0].clientId;
    expect(await a.withdrawPassages(sid, [shared])).toEqual([{ id: shared, outcome: 'kept' }]);
    expect((await b.passages(sid, [shared]))[0].clientId).toBe(bId); // now credited to b
    expect((await b.search(sid, e(1), 1))[0].id).toBe(shared);
    await refused(() => a.deletePassage(sid, shared), 403, 'not_your_passage'); // a is no contributor any more
    expect(await b.withdrawPassages(sid, [shared, r2.results[1].id])).toEqual([
      { id: shared, outcome: 'withdrawn' },
      { id: r2.results[1].id, outcome: 'withdrawn' },
    ]);
    expect(await a.withdrawPassages(sid, [r1.results[0].id])).toEqual([{ id: r1.results[0].id, outcome: 'gone' }]);
    expect(await b.passages(sid, [shared, r2.results[1].id])).toEqual([]);
    expect((await b.search(sid, e(1), 10)).map((h) => h.id)).not.toContain(shared);
  });

  it('serves the OpenAPI document and never answers 5xx to garbage', async () => {
    const doc = await (await fetch(`${server.url}/api/openapi.json`)).json();
    expect(Object.keys(doc.paths)).toContain('/api/sessions/{sessionId}/rounds/{round}/update');
    for (const [method, path, body] of [
      ['POST', '/api/sessions', '{not json'],
      ['POST', '/api/join', JSON.stringify({ code: 'NOPE' })],
      ['GET', `/api/sessions/${sid}/rounds/abc`, undefined],
      ['GET', `/api/sessions/../../etc/passwd`, undefined],
      ['PUT', `/api/sessions/${sid}/model`, 'text'],
    ] as const) {
      const res = await fetch(`${server.url}${path}`, { method, body, headers: body ? { 'content-type': 'application/json' } : {} });
      expect(res.status, `${method} ${path}`).toBeGreaterThanOrEqual(400);
      expect(res.status, `${method} ${path}`).toBeLessThan(500);
      expect(await res.json()).toHaveProperty('error');
    }
  });
});
