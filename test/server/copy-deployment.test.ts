/**
 * `npm run migrate` (server/copy-deployment.ts) on real engines: an embedded deployment built by
 * real rounds over HTTP (SQLite state, embedded passages, model and sum files) is copied into a
 * throwaway PostgreSQL cluster (./postgres.ts) and a LanceDB folder; a coordinator started on the
 * copy must serve the same thing and carry on. Skipped where PostgreSQL is not installed (never in CI).
 */
import { cpSync, existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { copyDeployment, CopyRefused } from '../../server/copy-deployment';
import { CoragClient } from '../../src/federated/client';
import { decodeModel, encodeModel, encodeUpdate, type NamedTensor } from '../../src/federated/codec';
import type { PassageInput, SearchHit } from '../../src/federated/protocol';
import { fedAvgExpected, maxRelativeError, MODEL_SHAPES, randomTensors, seeded, startServer, tempDir, TRAINED_PREFIXES, trainedShapes } from './helpers';
import { startTestPostgres } from './postgres';

const cluster = await startTestPostgres();
afterAll(() => cluster?.stop());

const DIM = 8;
const MODELS = { reader: 'r', passageEncoder: 'p', embeddingDim: DIM };

interface Participant {
  readonly client: CoragClient;
  readonly clientId: string;
  readonly token: string;
}

/** The rows of every coordinator-state table in PostgreSQL, as text: "changes nothing" compares these. */
async function pgContents(url: string): Promise<Record<string, string[]>> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const tables = (await c.query<{ tablename: string }>('SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename')).rows;
    const out: Record<string, string[]> = {};
    for (const { tablename } of tables)
      out[tablename] = (await c.query<{ r: string }>(`SELECT t::text AS r FROM "${tablename}" t ORDER BY 1`)).rows.map((r) => r.r);
    return out;
  } finally {
    await c.end();
  }
}

async function waitClosed(admin: CoragClient, sid: string, round: number) {
  let info = await admin.round(sid, round);
  for (let tries = 0; info.state !== 'closed' && info.state !== 'failed' && tries < 200; tries++) {
    await new Promise((res) => setTimeout(res, 25));
    info = await admin.round(sid, round);
  }
  return info;
}

describe.skipIf(!cluster)('copying an embedded deployment into PostgreSQL + LanceDB', () => {
  const dirs = tempDir();
  const source = join(dirs.path, 'source');
  const target = join(dirs.path, 'target');
  const lance = join(dirs.path, 'lance');
  let database: string;
  const random = seeded(11);
  const queries = Array.from({ length: 4 }, () => Array.from({ length: DIM }, () => random() * 2 - 1));
  // What the source served, to compare the copy with.
  const before: {
    a?: { sid: string; adminToken: string; participants: Participant[]; lastId: number };
    b?: {
      sid: string;
      adminToken: string;
      participants: Participant[];
      base: Map<string, NamedTensor>;
      first: { n: number; deltas: Map<string, NamedTensor> };
    };
    joinCodes: Map<string, string>;
    infos: Map<string, unknown>;
    searches: Map<string, SearchHit[][]>;
    questions?: unknown;
  } = { joinCodes: new Map(), infos: new Map(), searches: new Map() };

  beforeAll(async () => {
    database = await cluster!.createDatabase();
    const server = await startServer({ dataDir: source, random: seeded(3) });
    try {
      const anon = new CoragClient(server.url);
      const join3 = async (code: string, n: number): Promise<Participant[]> =>
        Promise.all(
          Array.from({ length: n }, async (_, i) => {
            const { token, clientId } = await anon.join(code, `c${i}`);
            return { client: anon.withToken(token), clientId, token };
          }),
        );

      // Session A: passages (one shared by two contributors), training questions, two closed rounds.
      const a = await anon.createSession({
        name: 'a',
        models: MODELS,
        roundPolicy: { minClients: 3, minUpdates: 2, deadlineSeconds: 600 },
        trainedPrefixes: TRAINED_PREFIXES,
        passages: { embeddingCheck: 'off' },
        trainingQuestions: {
          questions: Array.from({ length: 20 }, (_, i) => ({ question: `question ${i}?`, answers: [`answer ${i}`] })),
          perClient: 4,
          heldOut: 4,
        },
      });
      const adminA = anon.withToken(a.adminToken);
      await adminA.uploadModel(a.session.id, encodeModel(randomTensors(MODEL_SHAPES, random)));
      const pa = await join3(a.joinCode, 3);
      const passage = (i: number): PassageInput => ({
        title: `t${i}`,
        text: `passage ${i}`,
        embedding: Array.from({ length: DIM }, () => random() * 2 - 1),
        encoder: 'p',
      });
      const first = Array.from({ length: 40 }, (_, i) => passage(i));
      const ids = (await pa[0].client.addPassages(a.session.id, first)).results.map((r) => r.id);
      const more = (await pa[1].client.addPassages(a.session.id, [...first.slice(0, 5), ...Array.from({ length: 10 }, (_, i) => passage(100 + i))])).results;
      // A shared passage stays when one contributor withdraws; the newest passage goes (its id is never reused).
      expect((await pa[1].client.deletePassage(a.session.id, ids[0])).deleted).toBe(false);
      const lastId = more.at(-1)!.id;
      expect((await pa[1].client.deletePassage(a.session.id, lastId)).deleted).toBe(true);
      for (let r = 1; r <= 2; r++) {
        const round = await adminA.openRound(a.session.id);
        await Promise.all(
          pa.map((p, i) =>
            p.client.uploadUpdate(
              a.session.id,
              r,
              encodeUpdate(randomTensors(trainedShapes(), random, 0.1), { round: r, baseVersion: round.baseVersion, numExamples: 5 + i, metrics: { loss: i } }),
            ),
          ),
        );
        expect((await waitClosed(adminA, a.session.id, r)).resultVersion).toBe(r);
      }
      before.questions = await pa[2].client.trainingQuestions(a.session.id);
      before.a = { sid: a.session.id, adminToken: a.adminToken, participants: pa, lastId };

      // Session B: round 1 left open with one of two updates accepted (its running sum on disk).
      const b = await anon.createSession({
        name: 'b',
        models: MODELS,
        roundPolicy: { minClients: 2, minUpdates: 1, deadlineSeconds: 600 },
        trainedPrefixes: TRAINED_PREFIXES,
      });
      const adminB = anon.withToken(b.adminToken);
      const base = randomTensors(MODEL_SHAPES, random);
      await adminB.uploadModel(b.session.id, encodeModel(base));
      const pb = await join3(b.joinCode, 2);
      const round = await adminB.openRound(b.session.id);
      const deltas = randomTensors(trainedShapes(), random, 0.1);
      await pb[0].client.uploadUpdate(b.session.id, 1, encodeUpdate(deltas, { round: 1, baseVersion: round.baseVersion, numExamples: 7, metrics: {} }));
      before.b = { sid: b.session.id, adminToken: b.adminToken, participants: pb, base, first: { n: 7, deltas } };

      for (const [sid, code] of [
        [a.session.id, a.joinCode],
        [b.session.id, b.joinCode],
      ]) {
        before.joinCodes.set(sid, code);
        const { online: _, ...info } = await server.coordinator.sessionInfo(sid);
        before.infos.set(sid, info);
      }
      before.searches.set(a.session.id, await Promise.all(queries.map((q) => pa[0].client.search(a.session.id, q, 5, { withEmbeddings: true }))));
    } finally {
      await server.app.close();
    }
  });
  afterAll(() => dirs.remove());

  it('copies everything, verified, and a coordinator on the copy serves the same sessions, versions and passages and carries on', async () => {
    const sourceDb = readFileSync(join(source, 'coordinator.sqlite'));
    const lines: string[] = [];
    const report = await copyDeployment({ from: source, to: target, database, passageStore: lance, log: (l) => lines.push(l) });
    expect(report.sessions).toHaveLength(2);
    expect(report.tables.sessions.rows).toBe(2);
    expect(report.tables.clients.rows).toBe(5);
    expect(report.tables.rounds.rows).toBe(3);
    expect(report.tables.updates.rows).toBe(7);
    expect(report.tables.training_questions.rows).toBe(20);
    expect(report.tables.passages.rows).toBe(49);
    expect(report.tables.passage_contributors.rows).toBe(53);
    expect(report.passagesIn).toBe('lancedb');
    expect(report.embeddingsSampled).toBe(49);
    // The passage records are in PostgreSQL: the new folder holds files only.
    expect(existsSync(join(target, 'coordinator.sqlite'))).toBe(false);
    expect(report.files.count).toBeGreaterThanOrEqual(5);
    expect(lines.some((l) => l.startsWith('verified:'))).toBe(true);
    // The source was only read.
    expect(readFileSync(join(source, 'coordinator.sqlite')).equals(sourceDb)).toBe(true);

    const server = await startServer({ dataDir: target, database, passageStore: { uri: lance }, random: seeded(3) });
    try {
      const { a, b } = before as Required<typeof before>;
      expect(await server.coordinator.sessionIds()).toEqual(expect.arrayContaining([a.sid, b.sid]));
      for (const [sid, info] of before.infos) {
        const { online: _, ...now } = await server.coordinator.sessionInfo(sid);
        expect(now).toEqual(info);
        expect(await server.coordinator.joinCode(sid)).toBe(before.joinCodes.get(sid));
      }
      // Model versions, byte for byte, over HTTP.
      const on = (p: Participant) => new CoragClient(server.url).withToken(p.token);
      for (const v of [0, 1, 2]) {
        const served = await on(a.participants[0]).downloadModel(a.sid, v);
        expect(Buffer.from(served).equals(readFileSync(join(source, 'sessions', a.sid, 'models', `v${v}.safetensors`)))).toBe(true);
      }
      // The same top-k (ids, scores, texts, embeddings) from LanceDB as from the embedded store.
      const searches = await Promise.all(queries.map((q) => on(a.participants[0]).search(a.sid, q, 5, { withEmbeddings: true })));
      expect(searches).toEqual(before.searches.get(a.sid));
      // Existing tokens: the same question shard (join order kept), and the open round finishes
      // from the copied running sum: exactly FedAvg of the update before and the one after.
      expect(await on(a.participants[2]).trainingQuestions(a.sid)).toEqual(before.questions);
      const second = randomTensors(trainedShapes(), random, 0.1);
      await on(b.participants[1]).uploadUpdate(b.sid, 1, encodeUpdate(second, { round: 1, baseVersion: 0, numExamples: 3, metrics: {} }));
      const adminB = new CoragClient(server.url).withToken(b.adminToken);
      expect((await waitClosed(adminB, b.sid, 1)).resultVersion).toBe(1);
      const expected = fedAvgExpected(b.base, [b.first, { n: 3, deltas: second }]);
      for (const [name, t] of decodeModel(await on(b.participants[0]).downloadModel(b.sid, 1))) {
        expect(maxRelativeError(t.data, expected.get(name)!), name).toBeLessThan(1e-6);
      }
      // The next round of A, opened with the admin token, with the old clients and a new one.
      const adminA = new CoragClient(server.url).withToken(a.adminToken);
      const joined = await new CoragClient(server.url).join(before.joinCodes.get(a.sid)!, 'newcomer');
      expect(joined.sessionId).toBe(a.sid);
      const round = await adminA.openRound(a.sid);
      expect(round.round).toBe(3);
      expect(round.participants).toContain(joined.clientId);
      const byId = new Map([
        ...a.participants.map((p) => [p.clientId, on(p)] as const),
        [joined.clientId, new CoragClient(server.url).withToken(joined.token)],
      ]);
      await Promise.all(
        round.participants.map((id) =>
          byId
            .get(id)!
            .uploadUpdate(a.sid, 3, encodeUpdate(randomTensors(trainedShapes(), random, 0.1), { round: 3, baseVersion: 2, numExamples: 4, metrics: {} })),
        ),
      );
      expect((await waitClosed(adminA, a.sid, 3)).resultVersion).toBe(3);
      // New passages continue after the source's last id, even one that was withdrawn.
      const added = await on(a.participants[0]).addPassages(a.sid, [{ title: 'n', text: 'new passage', embedding: queries[0], encoder: 'p' }]);
      expect(added.results[0].id).toBe(a.lastId + 1);
    } finally {
      await server.app.close();
    }
  });

  it('copies a source that ran with --passage-store: its vectors read from that store (left as it was) into the PostgreSQL records', async () => {
    const { a } = before as Required<typeof before>;
    // The source, run once with a LanceDB store: its embeddings move there, its records keep none.
    const ranWithLance = join(dirs.path, 'ran-with-lance');
    const sourceStore = join(dirs.path, 'source-lance');
    cpSync(source, ranWithLance, { recursive: true });
    const old = await startServer({ dataDir: ranWithLance, passageStore: { uri: sourceStore }, random: seeded(3) });
    await old.app.close();
    const to = join(dirs.path, 'from-lance');
    const fresh = await cluster!.createDatabase();
    const refused = await copyDeployment({ from: ranWithLance, to, database: fresh }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(CopyRefused);
    expect((refused as Error).message).toMatch(/ran with --passage-store.*--from-passage-store/);
    const same = await copyDeployment({ from: ranWithLance, to, database: fresh, passageStore: sourceStore, fromPassageStore: sourceStore }).catch(
      (e: unknown) => e,
    );
    expect((same as Error).message).toMatch(/is the store the source runs with/);
    const storeBefore = readdirSync(join(sourceStore, `passages_${a.sid}.lance`), { recursive: true }).sort();

    const report = await copyDeployment({ from: ranWithLance, to, database: fresh, fromPassageStore: sourceStore });
    expect(report.passagesIn).toBe('postgresql');
    expect([report.tables.passages.rows, report.tables.passage_embeddings.rows, report.embeddingsSampled]).toEqual([49, 49, 49]);
    expect(readdirSync(join(sourceStore, `passages_${a.sid}.lance`), { recursive: true }).sort()).toEqual(storeBefore);
    // The copy's embedded store (embeddings in PostgreSQL) answers exactly as the source did.
    const server = await startServer({ dataDir: to, database: fresh, random: seeded(3) });
    try {
      const on = new CoragClient(server.url).withToken(a.participants[0].token);
      expect(await Promise.all(queries.map((q) => on.search(a.sid, q, 5, { withEmbeddings: true })))).toEqual(before.searches.get(a.sid));
      const added = await on.addPassages(a.sid, [{ title: 'n', text: 'another new passage', embedding: queries[1], encoder: 'p' }]);
      expect(added.results[0].id).toBe(a.lastId + 1);
    } finally {
      await server.app.close();
    }
  });

  it("with --blob-store database, puts the model versions and the open round's running sum into PostgreSQL: a coordinator on an empty folder serves them and finishes the round", async () => {
    const { a, b } = before as Required<typeof before>;
    const fresh = await cluster!.createDatabase();
    const lines: string[] = [];
    const report = await copyDeployment({ from: source, to: join(dirs.path, 'to-blobs'), database: fresh, blobStore: 'database', log: (l) => lines.push(l) });
    // Session A: v0-v2; session B: v0 and its open round's sum-1.
    const blobFiles = readdirSync(join(source, 'sessions'), { recursive: true }).filter((f) => String(f).endsWith('.safetensors'));
    expect(report.blobs).toBe(blobFiles.length);
    expect(blobFiles.length).toBe(5);
    expect(lines.some((l) => l.startsWith('verified:') && l.includes('5 of them in the database blob store'))).toBe(true);

    // Another host: nothing in its data folder, everything it reads comes from PostgreSQL.
    const server = await startServer({ dataDir: join(dirs.path, 'elsewhere'), database: fresh, blobStore: 'database', random: seeded(3) });
    try {
      const on = (p: Participant) => new CoragClient(server.url).withToken(p.token);
      for (const v of [0, 1, 2]) {
        const served = await on(a.participants[0]).downloadModel(a.sid, v);
        expect(Buffer.from(served).equals(readFileSync(join(source, 'sessions', a.sid, 'models', `v${v}.safetensors`))), `v${v}`).toBe(true);
      }
      const second = randomTensors(trainedShapes(), random, 0.1);
      await on(b.participants[1]).uploadUpdate(b.sid, 1, encodeUpdate(second, { round: 1, baseVersion: 0, numExamples: 3, metrics: {} }));
      expect((await waitClosed(new CoragClient(server.url).withToken(b.adminToken), b.sid, 1)).resultVersion).toBe(1);
      const expected = fedAvgExpected(b.base, [b.first, { n: 3, deltas: second }]);
      for (const [name, t] of decodeModel(await on(b.participants[0]).downloadModel(b.sid, 1))) {
        expect(maxRelativeError(t.data, expected.get(name)!), name).toBeLessThan(1e-6);
      }
      // Last, a JSON answer: closing the server right after a streamed download's last byte reached
      // the client can find that response not yet finished and wait out the keep-alive timeout.
      expect((await on(b.participants[0]).session(b.sid)).currentVersion).toBe(1);
    } finally {
      await server.app.close();
    }
  });

  it('refuses a second copy into the same database and changes nothing', async () => {
    const contents = await pgContents(database);
    const lanceTables = readdirSync(lance).sort();
    const again = join(dirs.path, 'again');
    const err = await copyDeployment({ from: source, to: again, database, passageStore: join(dirs.path, 'lance-again') }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CopyRefused);
    expect((err as Error).message).toMatch(/already holds 2 of these 2 sessions.*copied there already\. Nothing was written/);
    expect(await pgContents(database)).toEqual(contents);
    expect(readdirSync(lance).sort()).toEqual(lanceTables);
    expect(existsSync(again) || existsSync(`${again}.partial`) || existsSync(join(dirs.path, 'lance-again'))).toBe(false);
  });

  it('undoes a copy that fails midway (a corrupted row), and runs again once the row is mended', async () => {
    const broken = join(dirs.path, 'broken');
    cpSync(source, broken, { recursive: true });
    const db = new Database(join(broken, 'coordinator.sqlite'));
    db.pragma('foreign_keys = OFF');
    // The last session copied (ids are copied in sorted order) gets an update of a round that never existed.
    const last = [...before.infos.keys()].sort().at(-1)!;
    const client = (db.prepare('SELECT id FROM clients WHERE session_id = ? LIMIT 1').get(last) as { id: string }).id;
    db.prepare(
      'INSERT INTO updates (session_id, round, client_id, num_examples, weight, sum_seq, bytes, accepted_at, norm) VALUES (?, 99, ?, 1, 1, 1, 1, ?, 1)',
    ).run(last, client, new Date().toISOString());
    db.close();
    const fresh = await cluster!.createDatabase();
    const store = join(dirs.path, 'lance-broken');
    const to = join(dirs.path, 'target-broken');
    const lines: string[] = [];
    const err = await copyDeployment({ from: broken, to, database: fresh, passageStore: store, log: (l) => lines.push(l) }).catch((e: unknown) => e);
    expect((err as Error).message).toMatch(new RegExp(`copying session ${last}, table updates: .*foreign key.*Nothing was copied`, 's'));
    // Midway: the first session's rows had been written in the transaction.
    expect(lines.some((l) => l.startsWith('state: session') && l.includes('(1/2)'))).toBe(true);
    expect(await pgContents(fresh)).toEqual({});
    expect(existsSync(to) || existsSync(`${to}.partial`)).toBe(false);
    expect(existsSync(store)).toBe(false);

    const mend = new Database(join(broken, 'coordinator.sqlite'));
    mend.prepare('DELETE FROM updates WHERE round = 99').run();
    mend.close();
    const report = await copyDeployment({ from: broken, to, database: fresh, passageStore: store });
    expect(report.tables.updates.rows).toBe(7);
    expect(Object.keys(await pgContents(fresh))).toContain('sessions');
  });
});
