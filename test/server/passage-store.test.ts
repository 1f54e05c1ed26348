/**
 * The passage store behind its interface (server/passages.ts): the same behaviour suite runs
 * against the embedded store (exact in-memory index, embeddings in the records) and the LanceDB
 * store (server/lance-passages.ts, a real LanceDB folder; its index threshold set high so these
 * stores are searched exactly), each with its records in SQLite (server/sqlite-passages.ts) and in
 * PostgreSQL (server/pg-passages.ts, a throwaway cluster: test/server/postgres.ts). Then what only
 * the LanceDB store does: the IVF-PQ index built in the background past the crossover (recall@40
 * against exact), crash leftovers reconciled on open, a folder written by the embedded store
 * migrated, the --passage-store option validated; and what only PostgreSQL records face: two
 * processes' stores writing one session at once.
 */
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { nowIso, openDatabase } from '../../server/db';
import { ApiError } from '../../server/errors';
import { LancePassageStore, parsePassageStoreLocation } from '../../server/lance-passages';
import { EmbeddedPassageStore, type PassageRecords, type PassageStore } from '../../server/passages';
import { PgPassageRecords } from '../../server/pg-passages';
import { PostgresState } from '../../server/pg-state';
import { describePgvector, PgvectorPassageStore } from '../../server/pgvector-passages';
import { SqlitePassageRecords } from '../../server/sqlite-passages';
import { CoragClient, CoragHttpError } from '../../src/federated/client';
import type { PassageInput } from '../../src/federated/protocol';
import { ExactVectorIndex } from '../../src/retrieval/vector-index';
import { seeded, startServer, tempDir } from './helpers';
import { startTestPglite } from './pglite-vector';
import { startTestPostgres } from './postgres';

const DIM = 16;
const MODELS = { reader: 'r', passageEncoder: 'enc', embeddingDim: DIM };
const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const cluster = await startTestPostgres();
afterAll(() => cluster?.stop());
// PostgreSQL with pgvector (PGlite over the wire protocol; Debian's PostgreSQL has no pgvector).
const lite = await startTestPglite();
afterAll(() => lite.stop());

/** The PostgreSQL records' pool and URL, for a store that works in their database (pgvector). */
interface PgHandle {
  readonly pool: PostgresState['pool'];
  readonly url: string;
}
interface Kind {
  readonly name: 'embedded' | 'lancedb' | 'pgvector';
  make(records: PassageRecords, dir: string, pg?: PgHandle): PassageStore;
}
const KINDS: Kind[] = [
  { name: 'embedded', make: (records) => new EmbeddedPassageStore(records) },
  // Searched exactly: the index threshold is far above these stores.
  { name: 'lancedb', make: (records, dir) => new LancePassageStore(records, { uri: join(dir, 'lance'), indexAbove: 1_000_000 }, async () => ['s']) },
];
/** Searched exactly unless `indexAbove` says otherwise. */
const pgvectorKind = (options: ConstructorParameters<typeof PgvectorPassageStore>[3] = {}): Kind => ({
  name: 'pgvector',
  make: (records, _dir, pg) => new PgvectorPassageStore(records as PgPassageRecords, pg!.pool, pg!.url, { indexAbove: 1_000_000, ...options }),
});
const PGVECTOR = pgvectorKind();

/** Where the records live; `skip` where PostgreSQL is not installed (never under CI). */
interface RecordsBackend {
  readonly records: 'SQLite' | 'PostgreSQL' | 'PGlite';
  readonly skip: boolean;
}
const BACKENDS: RecordsBackend[] = [
  { records: 'SQLite', skip: false },
  { records: 'PostgreSQL', skip: !cluster },
];
const PGLITE: RecordsBackend = { records: 'PGlite', skip: false };
const COMBINATIONS = [
  ...KINDS.flatMap((kind) => BACKENDS.map((backend) => ({ ...backend, kind, name: kind.name }))),
  // pgvector needs its records in PostgreSQL with the extension.
  { ...PGLITE, kind: PGVECTOR, name: PGVECTOR.name },
];

/** Each temp folder's PostgreSQL database (a reopen of the folder reopens its database). */
const databases = new Map<string, string>();

/** Records holding session 's' (SQLite in the folder, or the folder's PostgreSQL database); `close` closes their database. */
async function openRecords(backend: RecordsBackend, dir: string): Promise<{ records: PassageRecords; close: () => Promise<void>; pg?: PgHandle }> {
  if (backend.records === 'SQLite') {
    const db = openDatabase(join(dir, 'coordinator.sqlite'));
    if (!db.prepare("SELECT 1 FROM sessions WHERE id = 's'").get())
      db.prepare("INSERT INTO sessions (id, config, admin_token_hash, join_code, created_at) VALUES ('s', '{}', 'h', 'j', ?)").run(nowIso());
    return {
      records: new SqlitePassageRecords(db),
      close: async () => {
        db.close();
      },
    };
  }
  let url = databases.get(dir);
  if (!url) {
    url = await (backend.records === 'PGlite' ? lite : cluster!).createDatabase();
    databases.set(dir, url);
  }
  const state = new PostgresState(url);
  await state.open();
  if (!(await state.session('s')))
    await state.createSession({ id: 's', config: '{}', adminTokenHash: 'h', joinCode: 'j', withModel: false, createdAt: nowIso() });
  return { records: new PgPassageRecords(state.pool, () => state.open()), close: () => state.close(), pg: { pool: state.pool, url } };
}

/** Session 's' in a temp folder, and the store of `kind` on records of `backend` (reopen: same folder). */
async function opened(kind: Kind, dir = tempDir(), backend: RecordsBackend = BACKENDS[0]) {
  const { records, close: closeRecords, pg } = await openRecords(backend, dir.path);
  const store = kind.make(records, dir.path, pg);
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await store.close();
    await closeRecords();
  };
  cleanups.push(close);
  await store.open().catch(async (e: unknown) => {
    await close();
    throw e;
  });
  return { records, store, dir, close, pg };
}

const vector = (random: () => number, dim = DIM) => Array.from({ length: dim }, () => random() * 2 - 1);
const input = (i: number, embedding: number[], text = `passage ${i}`): PassageInput => ({ title: `t${i}`, text, embedding, encoder: 'enc' });

async function apiError(p: Promise<unknown>): Promise<ApiError> {
  const e = await p.then(
    () => undefined,
    (x: unknown) => x,
  );
  expect(e).toBeInstanceOf(ApiError);
  return e as ApiError;
}

/** Exact top-k computed here, independently of both stores. */
function exactTop(rows: ReadonlyMap<number, readonly number[]>, q: readonly number[], k: number): number[] {
  const index = new ExactVectorIndex(q.length);
  for (const [id, v] of rows) index.add([id], [v]);
  return index.search(q, k).map((h) => h.id);
}

describe.each(COMBINATIONS)('$name passage store, records in $records', ({ kind, skip, ...backend }) => {
  if (skip) return void it.skip('needs PostgreSQL (initdb)', () => undefined);
  const open = (dir?: ReturnType<typeof tempDir>) => opened(kind, dir, { ...backend, skip });
  it('adds, dedupes identical contributions (same batch, other clients), counts and credits as before', async () => {
    const { store } = await open();
    const r = seeded(1);
    const e = [vector(r), vector(r), vector(r)];
    const first = await store.add('s', MODELS, 'alice', [input(0, e[0]), input(1, e[1]), input(0, e[2])]);
    expect(first.map((x) => x.duplicate)).toEqual([false, false, true]);
    expect(first[2].id).toBe(first[0].id);
    const second = await store.add('s', MODELS, 'bob', [input(1, e[2]), input(2, e[2])]);
    expect(second).toEqual([
      { id: first[1].id, duplicate: true },
      { id: expect.any(Number), duplicate: false },
    ]);
    expect(await store.count('s')).toBe(3);
    expect(await store.contributions('s')).toEqual([
      { clientId: 'alice', passages: 2 },
      { clientId: 'bob', passages: 1 },
    ]);
    expect((await store.get('s', [second[1].id, first[0].id, 999])).map((p) => p.text)).toEqual(['passage 2', 'passage 0']);
    // The duplicate kept the stored embedding, not the one sent with it.
    const hit = (await store.search('s', MODELS, e[1], 1, true))[0];
    expect(hit.id).toBe(first[1].id);
    expect(hit.embedding).toEqual(Array.from(Float32Array.from(e[1])));
    expect((await store.existingHashes('s', [(await store.get('s', [first[0].id]))[0].hash, 'nope'])).size).toBe(1);
  });

  it('withdraws: refuses strangers and unknown ids, keeps a passage others still contribute, removes it from search with its last contributor', async () => {
    const { store } = await open();
    const r = seeded(2);
    const e = vector(r);
    const [{ id }] = await store.add('s', MODELS, 'alice', [input(0, e)]);
    await store.add('s', MODELS, 'bob', [input(0, e), input(1, vector(r))]);
    expect((await apiError(store.withdraw('s', MODELS, 'carol', id))).code).toBe('not_your_passage');
    expect((await apiError(store.withdraw('s', MODELS, 'alice', 12345))).code).toBe('passage_not_found');
    expect(await store.withdraw('s', MODELS, 'alice', id)).toEqual({ deleted: false, contributorsLeft: 1 });
    expect((await store.get('s', [id]))[0].clientId).toBe('bob');
    expect((await store.search('s', MODELS, e, 1))[0].id).toBe(id);
    expect(await store.withdraw('s', MODELS, 'bob', id)).toEqual({ deleted: true, contributorsLeft: 0 });
    expect((await store.search('s', MODELS, e, 10)).map((h) => h.id)).not.toContain(id);
    expect(await store.count('s')).toBe(1);
    expect((await apiError(store.withdraw('s', MODELS, 'bob', id))).code).toBe('passage_not_found');
  });

  it('searches exactly: the same ids, order and scores as an exact top-k, embeddings bit for bit', async () => {
    const { store } = await open();
    const r = seeded(3);
    const rows = new Map<number, readonly number[]>();
    for (let b = 0; b < 3; b++) {
      const batch = Array.from({ length: 100 }, (_, i) => input(b * 100 + i, vector(r)));
      (await store.add('s', MODELS, 'c', batch)).forEach((x, i) => rows.set(x.id, batch[i].embedding));
    }
    // Withdrawn passages leave the reference too.
    for (const id of [...rows.keys()].slice(0, 30)) {
      await store.withdraw('s', MODELS, 'c', id);
      rows.delete(id);
    }
    for (let t = 0; t < 5; t++) {
      const q = vector(r);
      for (const k of [1, 10, 40, 1000]) {
        const hits = await store.search('s', MODELS, q, k, true);
        expect(hits.map((h) => h.id)).toEqual(exactTop(rows, q, k));
        for (const h of hits) {
          const v = Float32Array.from(rows.get(h.id)!);
          expect(Float32Array.from(h.embedding!)).toEqual(v);
          let dot = 0;
          for (let j = 0; j < DIM; j++) dot += Math.fround(q[j]) * v[j];
          expect(h.score).toBe(dot);
        }
      }
    }
  });

  it('finds the same passages after a restart', async () => {
    const first = await open();
    const r = seeded(4);
    const batch = Array.from({ length: 50 }, (_, i) => input(i, vector(r)));
    await first.store.add('s', MODELS, 'c', batch);
    const q = vector(r);
    const before = await first.store.search('s', MODELS, q, 20, true);
    await first.store.withdraw('s', MODELS, 'c', before[0].id);
    const after = await first.store.search('s', MODELS, q, 20, true);
    await first.close();
    const again = await open(first.dir);
    expect(await again.store.count('s')).toBe(49);
    expect(await again.store.search('s', MODELS, q, 20, true)).toEqual(after);
    // Ids keep growing: a new passage does not reuse the withdrawn one's id.
    const [{ id }] = await again.store.add('s', MODELS, 'c', [input(99, vector(r))]);
    expect(id).toBeGreaterThan(Math.max(...before.map((h) => h.id)));
    again.dir.remove();
  });

  it('refuses hostile input with the same 4xx as before and leaves the store unchanged', async () => {
    const { store } = await open();
    const r = seeded(5);
    await store.add('s', MODELS, 'c', [input(0, vector(r))]);
    const good = input(1, vector(r));
    const cases: Array<[PassageInput, string]> = [
      [{ ...good, embedding: vector(r, DIM - 1) }, 'wrong_embedding_dimension'],
      [{ ...good, encoder: 'other' }, 'wrong_encoder'],
      [{ ...good, text: '  \n' }, 'empty_text'],
      [{ ...good, embedding: [...vector(r, DIM - 1), 1e39] }, 'non_finite'],
      [{ ...good, embedding: [...vector(r, DIM - 1), Number.NaN] }, 'non_finite'],
    ];
    for (const [bad, code] of cases) {
      // A bad passage after a good one: the whole batch is refused.
      expect((await apiError(store.add('s', MODELS, 'c', [good, bad]))).code).toBe(code);
    }
    const quota = { client: { maxPassages: 1, maxBytes: 1e9 } };
    const refused = await apiError(store.add('s', MODELS, 'c', [good], quota));
    expect([refused.status, refused.code]).toEqual([413, 'passage_quota_exceeded']);
    expect((await apiError(store.search('s', MODELS, vector(r, DIM + 1), 5))).code).toBe('wrong_embedding_dimension');
    expect((await apiError(store.search('s', MODELS, [...vector(r, DIM - 1), Infinity], 5))).code).toBe('non_finite');
    expect(await store.count('s')).toBe(1);
    expect((await store.search('s', MODELS, vector(r), 10)).length).toBe(1);
    // Quota bytes count 4 per embedding value in both stores.
    const bytes = Buffer.byteLength('t0') + Buffer.byteLength('passage 0') + 4 * DIM;
    await store.add('s', MODELS, 'c', [good], { session: { maxPassages: 10, maxBytes: bytes + Buffer.byteLength('t1passage 1') + 4 * DIM } });
    expect((await apiError(store.add('s', MODELS, 'c', [input(2, vector(r))], { session: { maxPassages: 10, maxBytes: 2 * bytes + 4 * DIM } }))).code).toBe(
      'passage_quota_exceeded',
    );
    expect(await store.count('s')).toBe(2);
  });
});

describe.each(COMBINATIONS)('$name passage store over HTTP, records in $records', ({ kind, skip, records }) => {
  it.skipIf(skip)('answers bad bytes with 4xx, never 5xx, and serves the same store after a restart', async () => {
    const dir = tempDir();
    cleanups.push(dir.remove);
    const options = {
      dataDir: join(dir.path, 'data'),
      rateLimitPerMinute: 100_000,
      ...(kind.name === 'lancedb' ? { passageStore: { uri: join(dir.path, 'lance'), indexAbove: 1_000_000 } } : {}),
      ...(kind.name === 'pgvector' ? { pgvector: {} } : {}),
      ...(records === 'PostgreSQL' ? { database: await cluster!.createDatabase() } : {}),
      ...(records === 'PGlite' ? { database: await lite.createDatabase() } : {}),
    };
    let server = await startServer(options);
    cleanups.push(() => server.app.close());
    const anon = new CoragClient(server.url);
    const created = await anon.createSession({ name: 'p', models: MODELS, passages: { embeddingCheck: 'off' } });
    const sid = created.session.id;
    const token = (await anon.join(created.joinCode)).token;
    const client = () => new CoragClient(server.url).withToken(token);
    const r = seeded(6);
    const added = await client().addPassages(
      sid,
      Array.from({ length: 20 }, (_, i) => input(i, vector(r))),
    );
    expect(added.results.every((x) => !x.duplicate)).toBe(true);
    const q = vector(r);
    const hits = await client().search(sid, q, 5, { withEmbeddings: true });
    for (const [body, path] of [
      ['{"embedding": [1, 2', 'passages/search'],
      [JSON.stringify({ embedding: 'abc', k: 5 }), 'passages/search'],
      [JSON.stringify({ embedding: vector(r), k: -1 }), 'passages/search'],
      [JSON.stringify({ embedding: vector(r), k: 1e9 }), 'passages/search'],
      // 1e400 parses to Infinity.
      [JSON.stringify({ passages: [{ ...input(30, vector(r)), embedding: [...vector(r, DIM - 1), 0] }] }).replace(/,0\]/, ',1e400]'), 'passages'],
      [JSON.stringify({ passages: [{ ...input(30, vector(r)), embedding: vector(r, DIM + 3) }] }), 'passages'],
      ['\u0000\u00ff\u0001garbage', 'passages'],
    ]) {
      const res = await fetch(`${server.url}/api/sessions/${sid}/${path}`, {
        method: 'POST',
        body,
        headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      });
      expect(res.status, body).toBeGreaterThanOrEqual(400);
      expect(res.status, body).toBeLessThan(500);
      expect(await res.json()).toHaveProperty('error');
    }
    const del = await fetch(`${server.url}/api/sessions/${sid}/passages/99999`, { method: 'DELETE', headers: { authorization: `Bearer ${token}` } });
    expect(del.status).toBe(404);
    expect((await client().session(sid)).passages).toBe(20);
    await server.app.close();
    server = await startServer(options);
    expect(await client().search(sid, q, 5, { withEmbeddings: true })).toEqual(hits);
    await client().deletePassage(sid, hits[0].id);
    const left = (await client().search(sid, q, 5)).map((h) => h.id);
    expect(left.slice(0, 4)).toEqual(hits.slice(1).map((h) => h.id));
    expect(left).not.toContain(hits[0].id);
    const err = await client()
      .search(sid, vector(r, 3), 5)
      .then(
        () => undefined,
        (e: unknown) => e as CoragHttpError,
      );
    expect(err?.code).toBe('wrong_embedding_dimension');
  });
});

const TWO_PROCESSES = [
  ...KINDS.map((kind) => ({ kind, name: kind.name, backend: BACKENDS[1] })),
  // PGlite runs one statement at a time: the two pools' transactions interleave, never overlap.
  { kind: PGVECTOR, name: PGVECTOR.name, backend: PGLITE },
];
describe.each(TWO_PROCESSES)('$name passage store, records in PostgreSQL, two processes at once', ({ kind, backend }) => {
  if (backend.skip) return void it.skip('needs PostgreSQL (initdb)', () => undefined);
  /** Two stores on one database and one LanceDB folder, each with its own pool: two coordinator processes. */
  async function twoProcesses() {
    const dir = tempDir();
    cleanups.push(dir.remove);
    const shared: Kind =
      kind.name === 'lancedb'
        ? {
            name: 'lancedb',
            make: (records, d) => new LancePassageStore(records, { uri: join(d, 'lance'), indexAbove: 1_000_000, shared: true }, async () => ['s']),
          }
        : kind;
    const a = await opened(shared, dir, backend);
    const b = await opened(shared, dir, backend);
    // As the coordinator does when it creates a session: its table exists before any add.
    await a.store.createSession('s', MODELS);
    return [a.store, b.store] as const;
  }

  it('store each passage once when both add the same batches, and credit both contributors', async () => {
    const [a, b] = await twoProcesses();
    const r = seeded(21);
    const batches = Array.from({ length: 6 }, (_, j) => Array.from({ length: 40 }, (_, i) => input(j * 20 + i, vector(r))));
    const outcomes = await Promise.all([
      ...batches.map((batch) => a.add('s', MODELS, 'alice', batch)),
      ...batches.map((batch) => b.add('s', MODELS, 'bob', [...batch].reverse())),
    ]);
    // 6 overlapping batches of 40 cover 140 distinct texts: each stored once, under one id.
    expect(await a.count('s')).toBe(140);
    expect(await b.count('s')).toBe(140);
    const idOf = new Map<string, number>();
    for (const [j, out] of outcomes.entries()) {
      const batch = j < 6 ? batches[j] : [...batches[j - 6]].reverse();
      out.forEach((x, i) => {
        const text = batch[i].text;
        expect(idOf.get(text) ?? x.id).toBe(x.id);
        idOf.set(text, x.id);
      });
    }
    expect(outcomes.flat().filter((x) => !x.duplicate)).toHaveLength(140);
    // Both contributed every passage: one withdrawal each removes it.
    const someId = idOf.get('passage 0')!;
    expect(await a.withdraw('s', MODELS, 'alice', someId)).toEqual({ deleted: false, contributorsLeft: 1 });
    expect(await b.withdraw('s', MODELS, 'bob', someId)).toEqual({ deleted: true, contributorsLeft: 0 });
    const q = batches[0][0].embedding;
    for (const store of [a, b]) expect((await store.search('s', MODELS, q, 200)).map((h) => h.id)).not.toContain(someId);
    expect(await a.search('s', MODELS, q, 200)).toHaveLength(139);
  });

  it('hold a quota across both: concurrent batches that together pass the limit are refused, not stored', async () => {
    const [a, b] = await twoProcesses();
    const r = seeded(22);
    const quota = { session: { maxPassages: 50, maxBytes: 1e9 } };
    const settled = await Promise.allSettled(
      Array.from({ length: 8 }, (_, j) =>
        (j % 2 ? a : b).add(
          's',
          MODELS,
          `c${j}`,
          Array.from({ length: 10 }, (_, i) => input(j * 10 + i, vector(r))),
          quota,
        ),
      ),
    );
    expect(settled.filter((x) => x.status === 'fulfilled')).toHaveLength(5);
    for (const x of settled) if (x.status === 'rejected') expect((x.reason as ApiError).code).toBe('passage_quota_exceeded');
    expect(await a.count('s')).toBe(50);
    expect((await b.search('s', MODELS, vector(r), 100)).length).toBe(50);
  });

  it('withdraw a passage once when both withdraw it at the same time', async () => {
    const [a, b] = await twoProcesses();
    const r = seeded(23);
    const [{ id }] = await a.add('s', MODELS, 'alice', [input(0, vector(r))]);
    const settled = await Promise.allSettled([a.withdraw('s', MODELS, 'alice', id), b.withdraw('s', MODELS, 'alice', id)]);
    expect(settled.filter((x) => x.status === 'fulfilled').map((x) => (x as PromiseFulfilledResult<unknown>).value)).toEqual([
      { deleted: true, contributorsLeft: 0 },
    ]);
    const refused = settled.find((x) => x.status === 'rejected') as PromiseRejectedResult;
    expect((refused.reason as ApiError).code).toBe('passage_not_found');
    expect(await b.count('s')).toBe(0);
  });
});

/** A Gaussian mixture (64 centres): clustered like real embeddings, so IVF and HNSW have structure to find. */
function clustered(n: number, dim: number, random: () => number): number[][] {
  const centres = Array.from({ length: 64 }, () => vector(random, dim));
  return Array.from({ length: n }, (_, i) => centres[i % 64].map((c) => c + 0.35 * (random() * 2 - 1)));
}

describe('LanceDB passage store', () => {
  it('past the crossover builds an IVF-PQ index in the background, searching exactly meanwhile; recall@40 ≥ 0.99 after', async () => {
    const dim = 32;
    const models = { ...MODELS, embeddingDim: dim };
    const lines: string[] = [];
    const kind: Kind = {
      name: 'lancedb',
      make: (records, dir) =>
        new LancePassageStore(
          records,
          {
            uri: join(dir, 'lance'),
            indexAbove: 3000,
            numPartitions: 32,
            numSubVectors: 8,
            reindexEvery: 400,
            log: (l) => lines.push(l),
          },
          async () => ['s'],
        ),
    };
    const { store, dir, close } = await opened(kind);
    const lance = store as LancePassageStore;
    const r = seeded(7);
    const data = clustered(4000, dim, r);
    const rows = new Map<number, readonly number[]>();
    const addRange = async (from: number, to: number) => {
      const batch = data.slice(from, to).map((v, i) => input(from + i, v));
      (await store.add('s', models, 'c', batch)).forEach((x, i) => rows.set(x.id, batch[i].embedding));
    };
    for (let i = 0; i < 2500; i += 500) await addRange(i, i + 500);
    expect(await lance.searchMode('s', dim)).toBe('exact');
    await addRange(2500, 3000); // reaches the crossover: the build starts
    expect(await lance.searchMode('s', dim)).toBe('building');
    // While it builds: searches are answered (exactly), adds and withdrawals go on.
    const q0 = vector(r, dim);
    expect((await store.search('s', models, q0, 40)).map((h) => h.id)).toEqual(exactTop(rows, q0, 40));
    await addRange(3000, 3500);
    const withdrawn = [...rows.keys()].filter((_, i) => i % 50 === 0);
    for (const id of withdrawn) {
      await store.withdraw('s', models, 'c', id);
      rows.delete(id);
    }
    await lance.settled('s', dim);
    expect(await lance.searchMode('s', dim)).toBe('ivf-pq');
    expect(lines.some((l) => l.includes('index built'))).toBe(true);
    await addRange(3500, 4000); // after the build: searched flat beside the index, then folded in (reindexEvery)
    await lance.settled('s', dim);
    expect(lines.some((l) => /index updated to \d+ passages/.test(l))).toBe(true);
    const recall = async (s: PassageStore) => {
      let found = 0;
      let asked = 0;
      for (let t = 0; t < 20; t++) {
        const q = data[(t * 97) % data.length].map((x) => x + 0.1 * (r() * 2 - 1));
        const want = new Set(exactTop(rows, q, 40));
        const hits = await s.search('s', models, q, 40);
        expect(hits).toHaveLength(40);
        for (const h of hits) expect(withdrawn).not.toContain(h.id);
        found += hits.filter((h) => want.has(h.id)).length;
        asked += want.size;
      }
      return found / asked;
    };
    expect(await recall(store)).toBeGreaterThanOrEqual(0.99);
    // A restart finds the index (no rebuild) and the same passages.
    await close();
    const again = await opened(kind, dir);
    expect(await (again.store as LancePassageStore).searchMode('s', dim)).toBe('ivf-pq');
    expect(await again.store.count('s')).toBe(rows.size);
    expect(await recall(again.store)).toBeGreaterThanOrEqual(0.99);
    dir.remove();
  }, 60_000);

  it.each(BACKENDS)(
    'on open deletes vectors whose records never committed, and refuses records whose vectors are missing (records in $records)',
    async (backend) => {
      if (backend.skip) return;
      const kind = KINDS[1];
      const first = await opened(kind, undefined, backend);
      const r = seeded(8);
      await first.store.add(
        's',
        MODELS,
        'c',
        Array.from({ length: 5 }, (_, i) => input(i, vector(r))),
      );
      await first.close();
      // A crash between the vectors' commit and the records' commit leaves vectors under unrecorded ids.
      const { connect } = await import('@lancedb/lancedb');
      const conn = await connect(join(first.dir.path, 'lance'));
      const table = await conn.openTable('passages_s');
      await table.add([
        { id: 6, vector: vector(r) },
        { id: 7, vector: vector(r) },
      ]);
      expect(await table.countRows()).toBe(7);
      const again = await opened(kind, first.dir, backend);
      await table.checkoutLatest(); // this handle reads the version it opened until told otherwise
      expect(await table.countRows()).toBe(5);
      expect((await again.store.search('s', MODELS, vector(r), 10)).length).toBe(5);
      // The next add takes the ids the strays had: they are gone, so nothing mixes.
      const [{ id }] = await again.store.add('s', MODELS, 'c', [input(9, vector(r))]);
      expect(id).toBe(6);
      await again.close();
      await table.delete('id = 1');
      const err = await opened(kind, first.dir, backend).then(
        () => undefined,
        (e: unknown) => e as Error,
      );
      expect(err?.message).toMatch(/1 of its 6 passages have no vector in this store \(e\.g\. passage 1\).*--passage-store/);
      conn.close();
      first.dir.remove();
    },
  );

  it.each(BACKENDS)('moves the embeddings of records the embedded store wrote; the embedded store then refuses them (records in $records)', async (backend) => {
    if (backend.skip) return;
    const embedded = await opened(KINDS[0], undefined, backend);
    const r = seeded(9);
    const batch = Array.from({ length: 30 }, (_, i) => input(i, vector(r)));
    await embedded.store.add('s', MODELS, 'c', batch);
    const q = vector(r);
    const before = await embedded.store.search('s', MODELS, q, 10, true);
    await embedded.close();
    const lance = await opened(KINDS[1], embedded.dir, backend);
    expect(await lance.store.search('s', MODELS, q, 10, true)).toEqual(before);
    expect((await lance.records.recordIds('s')).filter((r) => r.hasEmbedding)).toEqual([]);
    expect((await lance.records.embeddings('s')).size).toBe(0);
    await lance.close();
    const err = await opened(KINDS[0], embedded.dir, backend).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(err?.message).toMatch(/session s are in a LanceDB or pgvector passage store.*--passage-store/);
    embedded.dir.remove();
  });

  it.skipIf(!cluster)('moves the embeddings of PostgreSQL records once when two processes open together', async () => {
    const dir = tempDir();
    cleanups.push(dir.remove);
    const embedded = await opened(KINDS[0], dir, BACKENDS[1]);
    const r = seeded(24);
    await embedded.store.add(
      's',
      MODELS,
      'c',
      Array.from({ length: 30 }, (_, i) => input(i, vector(r))),
    );
    const q = vector(r);
    const before = await embedded.store.search('s', MODELS, q, 10, true);
    await embedded.close();
    const shared: Kind = {
      name: 'lancedb',
      make: (records, d) => new LancePassageStore(records, { uri: join(d, 'lance'), indexAbove: 1_000_000, shared: true }, async () => ['s']),
    };
    const [a, b] = await Promise.all([opened(shared, dir, BACKENDS[1]), opened(shared, dir, BACKENDS[1])]);
    const { connect } = await import('@lancedb/lancedb');
    const conn = await connect(join(dir.path, 'lance'));
    expect(await (await conn.openTable('passages_s')).countRows()).toBe(30);
    conn.close();
    expect(await a.store.search('s', MODELS, q, 10, true)).toEqual(before);
    expect(await b.store.search('s', MODELS, q, 10, true)).toEqual(before);
  });

  it('validates --passage-store / CORAG_PASSAGE_STORE with a clear error', () => {
    const dir = tempDir();
    cleanups.push(dir.remove);
    expect(parsePassageStoreLocation('lance', dir.path)).toBe(join(dir.path, 'lance'));
    expect(parsePassageStoreLocation('s3://my-bucket/corag/passages/')).toBe('s3://my-bucket/corag/passages');
    expect(() => parsePassageStoreLocation('  ')).toThrow(/empty value/);
    expect(() => parsePassageStoreLocation('http://example.org/x')).toThrow(/"http:\/\/" is not supported/);
    expect(() => parsePassageStoreLocation('s3://A_Bucket')).toThrow(/not an s3:\/\/bucket\/prefix URI/);
    const file = join(dir.path, 'file.txt');
    writeFileSync(file, 'x');
    expect(() => parsePassageStoreLocation(file)).toThrow(/exists and is not a folder/);
    const cli = spawnSync(
      process.execPath,
      ['--import', 'tsx', 'server/main.ts', '--no-demo', '--port', '0', '--data-dir', join(dir.path, 'data'), '--passage-store', 'gs://bucket/x'],
      { encoding: 'utf8', timeout: 30_000 },
    );
    expect(cli.status).toBe(1);
    expect(cli.stderr).toContain('coordinator: --passage-store: "gs://" is not supported');
    const env = spawnSync(process.execPath, ['--import', 'tsx', 'server/main.ts', '--no-demo', '--port', '0', '--data-dir', join(dir.path, 'data')], {
      encoding: 'utf8',
      timeout: 30_000,
      env: { ...process.env, CORAG_PASSAGE_STORE: file },
    });
    expect(env.status).toBe(1);
    expect(env.stderr).toContain('is not a folder');
  }, 60_000);
});

describe.each(BACKENDS)('LanceDB passage store: SIGKILL between its two commits (records in $records)', ({ records, skip }) => {
  const ROOT = new URL('../../', import.meta.url).pathname;
  let database: string[] = [];
  /** `npm start` with a LanceDB store in a child process, optionally killed at a crash point. */
  async function child(dataDir: string, store: string, crashAt = ''): Promise<{ url: string; exited: Promise<unknown>; kill: () => void }> {
    const { spawn } = await import('node:child_process');
    const args = ['--import', 'tsx', 'server/main.ts', '--port', '0', '--no-demo', '--data-dir', dataDir, '--passage-store', store, ...database];
    const proc = spawn(process.execPath, args, {
      cwd: ROOT,
      env: { ...process.env, CORAG_CRASH_AT: crashAt },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const exited = new Promise((res) => proc.once('exit', res));
    const kill = () => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    };
    cleanups.push(kill);
    const url = await new Promise<string>((resolve, reject) => {
      let out = '';
      proc.stdout!.on('data', (b: Buffer) => {
        out += b.toString();
        const m = /listening on (http:\/\/\S+)/.exec(out);
        if (m) resolve(m[1]);
      });
      proc.stderr!.on('data', (b: Buffer) => {
        out += b.toString();
      });
      proc.once('exit', () => reject(new Error(`coordinator exited before listening:\n${out}`)));
    });
    return { url, exited, kill };
  }

  // With PostgreSQL the store is shared (several processes may use it): strays go only while no process is between its two commits.
  it.skipIf(skip)(
    'loses no committed passage, keeps no stray vector, reuses nothing wrongly',
    async () => {
      database = records === 'PostgreSQL' ? ['--database', await cluster!.createDatabase()] : [];
      const dir = tempDir();
      cleanups.push(dir.remove);
      const data = join(dir.path, 'data');
      const store = join(dir.path, 'lance');
      const r = seeded(10);
      const vectorsIn = async () => {
        const { connect } = await import('@lancedb/lancedb');
        const conn = await connect(store);
        const table = await conn.openTable(`passages_${sid}`);
        const n = await table.countRows();
        conn.close();
        return n;
      };

      let c = await child(data, store);
      const anon = new CoragClient(c.url);
      const created = await anon.createSession({ name: 'crash', models: MODELS, passages: { embeddingCheck: 'off' } });
      const sid = created.session.id;
      const token = (await anon.join(created.joinCode)).token;
      const as = () => new CoragClient(c.url).withToken(token);
      const first = await as().addPassages(sid, [input(0, vector(r)), input(1, vector(r))]);
      c.kill();
      await c.exited;

      // Killed after the vectors' commit, before the records': the client never got an answer.
      c = await child(data, store, 'passages:vectors-committed');
      const batch = [input(2, vector(r)), input(3, vector(r)), input(0, vector(r))];
      await expect(as().addPassages(sid, batch)).rejects.toThrow();
      await c.exited;
      expect(await vectorsIn()).toBe(4); // two committed, two strays
      c = await child(data, store);
      expect(await vectorsIn()).toBe(2); // the strays went on open
      expect((await as().session(sid)).passages).toBe(2);
      // The retry stores them (once); the duplicate of passage 0 stays a duplicate.
      const retry = await as().addPassages(sid, batch);
      expect(retry.results.map((x) => x.duplicate)).toEqual([false, false, true]);
      expect(retry.results[2].id).toBe(first.results[0].id);
      const hit = await as().search(sid, batch[1].embedding, 1, { withEmbeddings: true });
      expect([hit[0].id, hit[0].embedding]).toEqual([retry.results[1].id, Array.from(Float32Array.from(batch[1].embedding))]);
      c.kill();
      await c.exited;

      // Killed after a withdrawal's records commit, before its vector is deleted.
      c = await child(data, store, 'passages:records-withdrawn');
      await expect(as().deletePassage(sid, retry.results[0].id)).rejects.toThrow();
      await c.exited;
      expect(await vectorsIn()).toBe(4);
      c = await child(data, store);
      expect(await vectorsIn()).toBe(3);
      expect((await as().session(sid)).passages).toBe(3);
      expect((await as().search(sid, batch[0].embedding, 10)).map((h) => h.id)).not.toContain(retry.results[0].id);
      const err = await as()
        .deletePassage(sid, retry.results[0].id)
        .then(
          () => undefined,
          (e: unknown) => e as CoragHttpError,
        );
      expect(err?.status).toBe(404);
      c.kill();
      await c.exited;
    },
    120_000,
  );
});

describe('pgvector passage store (PGlite: PostgreSQL with pgvector)', () => {
  it('past the crossover builds an HNSW index in the background; through it the planner uses the index, recall@40 ≥ 0.99, scores exact', async () => {
    const dim = 32;
    const models = { ...MODELS, embeddingDim: dim };
    const lines: string[] = [];
    const kind = pgvectorKind({ indexAbove: 2000, log: (l) => lines.push(l) });
    const { store, dir, close, pg } = await opened(kind, undefined, PGLITE);
    const pgv = store as PgvectorPassageStore;
    const r = seeded(31);
    const data = clustered(3000, dim, r);
    const rows = new Map<number, readonly number[]>();
    const addRange = async (from: number, to: number) => {
      const batch = data.slice(from, to).map((v, i) => input(from + i, v));
      (await store.add('s', models, 'c', batch)).forEach((x, i) => rows.set(x.id, batch[i].embedding));
    };
    for (let i = 0; i < 1500; i += 500) await addRange(i, i + 500);
    expect(await pgv.searchMode('s')).toBe('exact');
    await addRange(1500, 2000); // reaches the crossover: the build starts
    // Meanwhile (PGlite runs one statement at a time, so these queue behind the build; a real server runs them beside it).
    const q0 = vector(r, dim);
    expect((await store.search('s', models, q0, 40)).map((h) => h.id)).toEqual(exactTop(rows, q0, 40));
    const withdrawn = [...rows.keys()].filter((_, i) => i % 50 === 0);
    for (const id of withdrawn) {
      await store.withdraw('s', models, 'c', id);
      rows.delete(id);
    }
    await pgv.settled('s');
    expect(await pgv.searchMode('s')).toBe('hnsw');
    expect(lines.some((l) => l.includes('HNSW index built'))).toBe(true);
    await addRange(2000, 3000); // after the build: inserted into the index by pgvector
    // The search's statement, as the store sends it, goes through the session's partial index.
    const c = await pg!.pool.connect();
    const plan = (
      await c.query<{ 'QUERY PLAN': string }>(
        `EXPLAIN SELECT passage_id FROM passage_vectors WHERE session_id = 's' ORDER BY embedding::vector(${dim}) <#> $1::vector(${dim}) LIMIT 48`,
        [`[${q0.join(',')}]`],
      )
    ).rows
      .map((x) => x['QUERY PLAN'])
      .join('\n');
    c.release();
    expect(plan).toMatch(/Index Scan using passage_vectors_hnsw_/);
    const recall = async (s: PassageStore) => {
      let found = 0;
      let asked = 0;
      for (let t = 0; t < 20; t++) {
        const q = data[(t * 97) % data.length].map((x) => x + 0.1 * (r() * 2 - 1));
        const want = new Set(exactTop(rows, q, 40));
        const hits = await s.search('s', models, q, 40, true);
        expect(hits).toHaveLength(40);
        for (const [i, h] of hits.entries()) {
          expect(withdrawn).not.toContain(h.id);
          // Scores are recomputed exactly from the stored float32 vector, best first.
          let dot = 0;
          for (let j = 0; j < dim; j++) dot += Math.fround(q[j]) * Math.fround(rows.get(h.id)![j]);
          expect(h.score).toBe(dot);
          if (i > 0) expect(h.score).toBeLessThanOrEqual(hits[i - 1].score);
        }
        found += hits.filter((h) => want.has(h.id)).length;
        asked += want.size;
      }
      return found / asked;
    };
    expect(await recall(store)).toBeGreaterThanOrEqual(0.99);
    // A restart finds the index (no rebuild) and the same passages.
    await close();
    const again = await opened(kind, dir, PGLITE);
    expect(await (again.store as PgvectorPassageStore).searchMode('s')).toBe('hnsw');
    expect(await again.store.count('s')).toBe(rows.size);
    const q1 = data[5];
    expect((await again.store.search('s', models, q1, 10)).map((h) => h.id)).toEqual(exactTop(rows, q1, 10));
    expect(lines.filter((l) => l.includes('building an HNSW index'))).toHaveLength(1);
    dir.remove();
  }, 60_000);

  it('keeps every vector with its record: a refused batch writes none, a duplicate none, a withdrawal takes it along', async () => {
    const { store, pg } = await opened(PGVECTOR, undefined, PGLITE);
    const vectorsStored = async () => (await pg!.pool.query<{ n: number }>('SELECT COUNT(*)::int AS n FROM passage_vectors')).rows[0].n;
    const r = seeded(32);
    const e = vector(r);
    const [{ id }] = await store.add('s', MODELS, 'alice', [input(0, e), input(1, vector(r))]);
    expect(await vectorsStored()).toBe(2);
    await store.add('s', MODELS, 'bob', [input(0, vector(r))]); // a duplicate: its vector is not stored again
    expect(await vectorsStored()).toBe(2);
    const refused = await apiError(store.add('s', MODELS, 'carol', [input(2, vector(r)), input(3, vector(r))], { client: { maxPassages: 1, maxBytes: 1e9 } }));
    expect(refused.code).toBe('passage_quota_exceeded');
    expect(await vectorsStored()).toBe(2);
    await store.withdraw('s', MODELS, 'alice', id);
    expect(await vectorsStored()).toBe(2); // bob still contributes it
    await store.withdraw('s', MODELS, 'bob', id);
    expect(await vectorsStored()).toBe(1);
    expect((await store.search('s', MODELS, e, 5)).map((h) => h.id)).not.toContain(id);
    // NaN and wrong dimensions never reach pgvector: refused by validation, nothing stored.
    expect((await apiError(store.add('s', MODELS, 'c', [input(4, [...vector(r, DIM - 1), Number.NaN])]))).code).toBe('non_finite');
    expect((await apiError(store.search('s', MODELS, [...vector(r, DIM - 1), Number.NaN], 5))).code).toBe('non_finite');
    expect((await apiError(store.search('s', MODELS, vector(r, 3), 5))).code).toBe('wrong_embedding_dimension');
    expect(await vectorsStored()).toBe(1);
  });

  it('moves the embeddings of records the embedded store wrote into pgvector; the embedded store then refuses them', async () => {
    const embedded = await opened(KINDS[0], undefined, PGLITE);
    const r = seeded(33);
    await embedded.store.add(
      's',
      MODELS,
      'c',
      Array.from({ length: 30 }, (_, i) => input(i, vector(r))),
    );
    const q = vector(r);
    const before = await embedded.store.search('s', MODELS, q, 10, true);
    await embedded.close();
    const lines: string[] = [];
    const moved = await opened(pgvectorKind({ log: (l) => lines.push(l) }), embedded.dir, PGLITE);
    expect(lines).toContain('passage store: moved 30 embeddings from the passage records into pgvector');
    expect(await moved.store.search('s', MODELS, q, 10, true)).toEqual(before);
    expect((await moved.records.embeddings('s')).size).toBe(0);
    await moved.close();
    const err = await opened(KINDS[0], embedded.dir, PGLITE).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(err?.message).toMatch(/session s are in a LanceDB or pgvector passage store.*--passage-store/);
    embedded.dir.remove();
  });

  it('refuses to start on records whose vectors are in a LanceDB store', async () => {
    const lance = await opened(KINDS[1], undefined, PGLITE);
    await lance.store.add('s', MODELS, 'c', [input(0, vector(seeded(34)))]);
    await lance.close();
    const err = await opened(PGVECTOR, lance.dir, PGLITE).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(err?.message).toMatch(/session s has 1 passages whose vectors are neither in their records nor in pgvector.*LanceDB store/);
    lance.dir.remove();
  });

  it('is detected: the start-up line says pgvector is available where it is, and not where it is not', async () => {
    expect(await describePgvector(await lite.createDatabase(), false)).toMatch(/^available in this database \(pgvector 0\.8\.\d+\): --passage-store pgvector/);
    if (cluster) expect(await describePgvector(await cluster.createDatabase(), false)).toMatch(/^not available \(PostgreSQL 15\.\d+ has no "vector" extension/);
  });

  it.skipIf(!cluster)('refuses to open on a PostgreSQL without pgvector (Debian 12), naming what to install', async () => {
    const err = await opened(PGVECTOR, undefined, BACKENDS[1]).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(err?.message).toMatch(
      /--passage-store pgvector: the PostgreSQL server of postgresql:\/\/corag@.* \(version 15\.\d+.*\) does not have the pgvector extension \("vector"\)\. Install it on the database server \(.*apt install postgresql-15-pgvector/,
    );
  });

  it('--passage-store pgvector: refused without --database or on a PostgreSQL without pgvector; started on one with it, the log says so', async () => {
    const dir = tempDir();
    cleanups.push(dir.remove);
    const main = (args: string[]) =>
      spawnSync(process.execPath, ['--import', 'tsx', 'server/main.ts', '--no-demo', '--port', '0', '--data-dir', join(dir.path, 'data'), ...args], {
        encoding: 'utf8',
        timeout: 30_000,
      });
    const alone = main(['--passage-store', 'pgvector']);
    expect(alone.status).toBe(1);
    expect(alone.stderr).toContain('coordinator: --passage-store pgvector keeps the vectors in PostgreSQL: give --database');
    if (cluster) {
      const debian = main(['--database', await cluster.createDatabase(), '--passage-store', 'pgvector']);
      expect(debian.status).toBe(1);
      expect(debian.stderr).toMatch(/coordinator: --passage-store pgvector: .* does not have the pgvector extension .*apt install postgresql-15-pgvector/);
    }
    // PGlite serves from this process: the child runs asynchronously.
    const { spawn } = await import('node:child_process');
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        'server/main.ts',
        '--no-demo',
        '--port',
        '0',
        '--data-dir',
        join(dir.path, 'lite'),
        '--database',
        await lite.createDatabase(),
        '--passage-store',
        'pgvector',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const exited = new Promise((resolve) => child.once('exit', resolve));
    cleanups.push(async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    });
    const out = await new Promise<string>((resolve, reject) => {
      let text = '';
      child.stdout.on('data', (b: Buffer) => {
        text += b.toString();
        if (text.includes('API docs:')) resolve(text);
      });
      child.stderr.on('data', (b: Buffer) => (text += b.toString()));
      child.once('exit', () => reject(new Error(`the coordinator exited:\n${text}`)));
    });
    expect(out).toMatch(/passages: +records in PostgreSQL, vectors in PostgreSQL \(pgvector; exact search, an HNSW index per session past 10,000 passages\)/);
    expect(out).toMatch(/pgvector: +pgvector 0\.8\.\d+, holding the passage vectors/);
  }, 90_000);
});
