/**
 * Contributed passages the coordinator can trust (server/passage-intake.ts): over HTTP, with a
 * tiny random Contriever as the session's frozen passage encoder, honest clients' embeddings pass,
 * forged ones (absurd norm, another passage's embedding) are refused whole with the store
 * unchanged, sessions whose encoder cannot be loaded refuse contributions unless checks are off,
 * and passage quotas (count and bytes, per client and per session) hold.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ModelBundle } from '../../src/corag/model-bundle';
import { embedPassages, embedQueries, type PassageText } from '../../src/corag/retrieve';
import { CoragClient, CoragHttpError, type NewSession } from '../../src/federated/client';
import { DEFAULT_PASSAGE_POLICY } from '../../src/federated/protocol';
import { writeSafetensors } from '../../src/model/safetensors';
import { decodeModel } from '../../src/federated/codec';
import { initBackend } from '../../src/model/backend';
import { DEMO_MODELS } from '../../server/demo';
import { checksFor, embeddingAgreement, EMBEDDING_TOLERANCE } from '../../server/passage-intake';
import { tinyBundle } from '../corag/helpers';
import { startServer, tempDir } from './helpers';

const PASSAGES: PassageText[] = Array.from({ length: 40 }, (_, i) => ({
  title: `Topic ${i}`,
  text: `Passage number ${i} tells that the river ${['Vistula', 'Oder', 'Rhine', 'Danube', 'Elbe'][i % 5]} flows through city ${i * 13} in the year ${1000 + i * 7}.`,
}));

describe('passages the coordinator can trust', () => {
  const dir = tempDir();
  let server: Awaited<ReturnType<typeof startServer>>;
  let bundle: ModelBundle;
  let honest: Float32Array[];
  let globalModel: Uint8Array;
  const anon = () => new CoragClient(server.url);

  beforeAll(async () => {
    await initBackend('wasm');
    server = await startServer({ dataDir: dir.path, rateLimitPerMinute: 100_000 });
    bundle = await tinyBundle();
    globalModel = await bundle.exportGlobal();
    // What an honest tab sends: the passage encoder of the session's global model, in this process.
    honest = await embedPassages(bundle, PASSAGES);
  });
  afterAll(async () => {
    await server.app.close();
    bundle.dispose();
    dir.remove();
  });

  /** A session over the tiny models (the passage encoder id the coordinator resolves) and `n` joined clients. */
  async function session(n: number, extra: Partial<NewSession> = {}) {
    const created = await anon().createSession({
      name: 'trust',
      models: { ...DEMO_MODELS, embeddingDim: bundle.embeddingDim },
      trainedPrefixes: ['reader.'],
      ...extra,
    });
    const sid = created.session.id;
    const admin = anon().withToken(created.adminToken);
    await admin.uploadModel(sid, globalModel);
    const clients: CoragClient[] = [];
    for (let i = 0; i < n; i++) clients.push(anon().withToken((await anon().join(created.joinCode, `c${i}`)).token));
    return { sid, admin, clients };
  }

  const input = (p: PassageText, embedding: ArrayLike<number>, encoder: string = DEMO_MODELS.passageEncoder) => ({
    title: p.title,
    text: p.text,
    embedding: Array.from(embedding),
    encoder,
  });
  const honestInputs = (from: number, to: number) => PASSAGES.slice(from, to).map((p, i) => input(p, honest[from + i]));

  /** The request is refused with status/code (naming `mention`), and the session and its store are unchanged. */
  async function refused(
    admin: CoragClient,
    sid: string,
    request: () => Promise<unknown>,
    status: number,
    code: string,
    mention?: string,
  ): Promise<CoragHttpError> {
    const before = JSON.stringify([await admin.session(sid), await admin.contributions(sid)]);
    const err = await request().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(CoragHttpError);
    const e = err as CoragHttpError;
    expect([e.status, e.code]).toEqual([status, code]);
    if (mention) expect(e.message).toContain(mention);
    expect(JSON.stringify([await admin.session(sid), await admin.contributions(sid)])).toBe(before);
    return e;
  }

  it('accepts honest batches: a first batch checked whole, later batches sampled, and embeddings a tab rounded to float16', async () => {
    const {
      sid,
      admin,
      clients: [a],
    } = await session(1);
    expect((await a.addPassages(sid, honestInputs(0, 16))).results.every((r) => !r.duplicate)).toBe(true);
    expect((await a.addPassages(sid, honestInputs(16, 32))).results).toHaveLength(16);
    // float16-rounded embeddings (a tab that stores halves) are within the tolerance.
    const halves = honest
      .slice(32, 40)
      .map((e) =>
        Float32Array.from([...decodeModel(writeSafetensors(new Map([['e', { shape: [e.length], data: e, dtype: 'F16' as const }]]))).values()][0].data),
      );
    expect(halves.some((h, i) => h.some((v, j) => v !== honest[32 + i][j]))).toBe(true);
    await a.addPassages(
      sid,
      PASSAGES.slice(32, 40).map((p, i) => input(p, halves[i])),
    );
    expect((await admin.session(sid)).passages).toBe(40);
  });

  it('refuses an embedding of norm 2.8e30 (embedding_norm_out_of_range), stores nothing of its batch, and it never becomes top-1', async () => {
    const {
      sid,
      admin,
      clients: [a, attacker],
    } = await session(2);
    await a.addPassages(sid, honestInputs(0, 10));
    const huge = honest[10].map((v) => v * (2.8e30 / Math.hypot(...honest[10])));
    expect(Math.hypot(...huge)).toBeGreaterThan(2e30);
    const e = await refused(
      admin,
      sid,
      () => attacker.addPassages(sid, [...honestInputs(11, 13), { ...input(PASSAGES[10], huge), text: 'BUY NOW' }]),
      400,
      'embedding_norm_out_of_range',
      'passages[2]',
    );
    expect(e.message).toContain('nothing was stored');
    // Every question still gets an honest passage first.
    const queries = await embedQueries(
      bundle,
      PASSAGES.slice(0, 10).map((p) => `where does ${p.title} flow?`),
    );
    for (const q of queries) expect((await a.search(sid, q, 1))[0].passage.text).not.toBe('BUY NOW');
  });

  it("catches an honest text carrying another passage's embedding (embedding_mismatch), refuses the whole batch, then checks that client's later batches in full", async () => {
    const {
      sid,
      admin,
      clients: [attacker],
    } = await session(1, { passages: { embeddingCheck: 'sample', sampleFraction: 0, minSampleChecks: 1 } });
    // The closest other passage: the subtlest swap available.
    const agreement = honest.map((e, j) => (j === 3 ? -Infinity : embeddingAgreement(e, honest[3]).cosine));
    const closest = agreement.indexOf(Math.max(...agreement));
    const swap = embeddingAgreement(honest[closest], honest[3]);
    expect(swap.relativeL2).toBeGreaterThan(EMBEDDING_TOLERANCE.maxRelativeL2);
    const forged = [...honestInputs(0, 3), input(PASSAGES[3], honest[closest]), ...honestInputs(4, 6)];
    await refused(admin, sid, () => attacker.addPassages(sid, forged), 400, 'embedding_mismatch', `passages[3] ("${PASSAGES[3].title}")`);
    // Caught once: a later batch is checked whole, wherever the forgery sits (sampling alone would check 1 of 20).
    const later = [...honestInputs(10, 29), input(PASSAGES[29], honest[30])];
    await refused(admin, sid, () => attacker.addPassages(sid, later), 400, 'embedding_mismatch', 'passages[19]');
    expect((await attacker.addPassages(sid, honestInputs(10, 30))).results).toHaveLength(20);
  });

  it('checks only new passages: a duplicate keeps the stored embedding whatever the second sender claims', async () => {
    const {
      sid,
      clients: [a, b],
    } = await session(2);
    const [first] = (await a.addPassages(sid, honestInputs(0, 1))).results;
    const [dup] = (await b.addPassages(sid, [input(PASSAGES[0], honest[1])])).results;
    expect(dup).toEqual({ id: first.id, duplicate: true });
    const [hit] = await a.search(sid, honest[0], 1, { withEmbeddings: true });
    expect(hit.embedding).toEqual(Array.from(honest[0]));
  });

  it('refuses contributions with a clear 503 when the coordinator cannot load the passage encoder, unless the session turned checks off', async () => {
    const unknown = { reader: 'r', passageEncoder: 'no such encoder!', embeddingDim: bundle.embeddingDim };
    const {
      sid,
      admin,
      clients: [a],
    } = await session(1, { models: unknown });
    await refused(
      admin,
      sid,
      () =>
        a.addPassages(
          sid,
          honestInputs(0, 2).map((p) => ({ ...p, encoder: unknown.passageEncoder })),
        ),
      503,
      'passage_encoder_unavailable',
      'no such encoder!',
    );
    const off = await session(1, { models: unknown, passages: { embeddingCheck: 'off' } });
    expect(
      (
        await off.clients[0].addPassages(
          off.sid,
          honestInputs(0, 2).map((p) => ({ ...p, encoder: unknown.passageEncoder })),
        )
      ).results,
    ).toHaveLength(2);
    // No global model yet: nothing to check with.
    const created = await anon().createSession({ name: 'no model', models: { ...DEMO_MODELS, embeddingDim: bundle.embeddingDim } });
    const c = anon().withToken((await anon().join(created.joinCode)).token);
    const err = await c.addPassages(created.session.id, honestInputs(0, 1)).then(
      () => undefined,
      (e: unknown) => e as CoragHttpError,
    );
    expect([err?.status, err?.code]).toEqual([503, 'passage_encoder_unavailable']);
    expect(err?.message).toContain('no global model');
  });

  it('holds per-client and per-session passage quotas (count and bytes) with 413 passage_quota_exceeded, the store unchanged', async () => {
    const bytesOf = (p: PassageText) => Buffer.byteLength(p.title) + Buffer.byteLength(p.text) + 4 * bundle.embeddingDim;
    const {
      sid,
      admin,
      clients: [a, b, c],
    } = await session(3, {
      passages: { embeddingCheck: 'off', maxPassagesPerClient: 5, maxPassagesPerSession: 8, maxBytesPerClient: 1e9, maxBytesPerSession: 1e9 },
    });
    await a.addPassages(sid, honestInputs(0, 4));
    await refused(admin, sid, () => a.addPassages(sid, honestInputs(4, 6)), 413, 'passage_quota_exceeded', 'this client holds 4 passages');
    await a.addPassages(sid, honestInputs(4, 5)); // exactly at the limit
    // A duplicate of someone else's passage counts for its new contributor, not for the session.
    await b.addPassages(sid, honestInputs(0, 2));
    await b.addPassages(sid, honestInputs(5, 8));
    expect((await admin.session(sid)).passages).toBe(8);
    await refused(admin, sid, () => c.addPassages(sid, honestInputs(8, 9)), 413, 'passage_quota_exceeded', 'this session holds 8 passages');
    // Withdrawing frees the quota.
    const [mine] = (await b.addPassages(sid, honestInputs(7, 8))).results;
    expect((await b.withdrawPassages(sid, [mine.id]))[0].outcome).toBe('withdrawn');
    expect((await c.addPassages(sid, honestInputs(8, 9))).results).toHaveLength(1);

    const limit = bytesOf(PASSAGES[0]) + bytesOf(PASSAGES[1]) + 10;
    const bytes = await session(1, { passages: { embeddingCheck: 'off', maxBytesPerClient: limit } });
    await bytes.clients[0].addPassages(bytes.sid, honestInputs(0, 2));
    await refused(
      bytes.admin,
      bytes.sid,
      () => bytes.clients[0].addPassages(bytes.sid, honestInputs(2, 3)),
      413,
      'passage_quota_exceeded',
      `past the limit of ${limit} bytes`,
    );
  });

  it('fills in the passage policy defaults, and refuses a malformed one', async () => {
    const { sid, admin } = await session(0);
    expect((await admin.session(sid)).config.passages).toEqual(DEFAULT_PASSAGE_POLICY);
    const err = await anon()
      .createSession({ name: 'bad', models: DEMO_MODELS, passages: { embeddingCheck: 'maybe' as 'off' } })
      .then(
        () => undefined,
        (e: unknown) => e as CoragHttpError,
      );
    expect([err?.status, err?.code]).toEqual([400, 'invalid_request']);
  });
});

describe('how many passages of a batch are recomputed (checksFor)', () => {
  const policy = { ...DEFAULT_PASSAGE_POLICY, firstBatchChecks: 16, sampleFraction: 0.1, minSampleChecks: 2 };
  it('checks all of a first batch up to firstBatchChecks, a fraction (at least minSampleChecks) later, everything after a mismatch or with "all", nothing with "off"', () => {
    expect(checksFor(policy, 10, { batches: 0, mismatches: 0 })).toBe(10);
    expect(checksFor(policy, 100, { batches: 0, mismatches: 0 })).toBe(16);
    expect(checksFor(policy, 100, { batches: 3, mismatches: 0 })).toBe(10);
    expect(checksFor(policy, 5, { batches: 3, mismatches: 0 })).toBe(2);
    expect(checksFor(policy, 1, { batches: 3, mismatches: 0 })).toBe(1);
    expect(checksFor(policy, 100, { batches: 3, mismatches: 1 })).toBe(100);
    expect(checksFor({ ...policy, embeddingCheck: 'all' }, 100, { batches: 3, mismatches: 0 })).toBe(100);
    expect(checksFor({ ...policy, embeddingCheck: 'off' }, 100, { batches: 0, mismatches: 0 })).toBe(0);
    expect(checksFor(policy, 0, { batches: 0, mismatches: 0 })).toBe(0);
  });
});
