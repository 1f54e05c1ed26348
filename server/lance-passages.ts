/**
 * The LanceDB passage store (`npm start -- --passage-store <dir | s3://bucket/prefix>`, issue 22):
 * the passage records (title, text, hash, contributors, quotas) stay in the coordinator's records
 * exactly as with the embedded store (server/passages.ts `PassageRecords`: SQLite, or PostgreSQL
 * with `--database`); the embeddings live in LanceDB, one table per session (server/lance-vectors.ts:
 * `passages_<sessionId>`, `id` int64 = the passage id, `vector` float32[dim]).
 *
 * Search: below `indexAbove` passages a session is searched exactly by our own scan
 * (ExactVectorIndex, loaded from LanceDB once; faster than LanceDB's flat search, see
 * docs/BENCH-SERVER.md). When a session's store reaches `indexAbove`, an IVF-PQ index (metric
 * `dot`) is built in the background while the exact scan keeps answering; once it is committed the
 * session is searched through it (`nprobes`, `refineFactor`: the top candidates are re-ranked with
 * their stored vectors) and the in-memory copy is dropped. Every hit's score is recomputed exactly
 * from its stored vector, so scores match the exact index. Passages added after the build are
 * searched flat by LanceDB beside the index until `optimize` folds them in (after `reindexEvery`).
 * HNSW-SQ is not used: with `dot` it has a recall bug in lancedb 0.31 (recall@40 0.40–0.60).
 *
 * Durability and atomicity (the same whichever database holds the records). All writes of a process
 * go through one queue. An add validates and checks quotas, reserves the ids of the new passages
 * from the records' id counter (never handed out again, to any process), commits their vectors to
 * LanceDB (one atomic LanceDB version), then commits the records in one transaction (re-checking
 * duplicates and the quota under the session's write lock); if that transaction fails the vectors
 * are deleted again. A withdrawal commits the records first, then deletes the vector. So a crash
 * leaves at most vectors without records; `open` (every start) deletes them before anything else
 * (one process; shared, they are left: one may be another process's add in flight), and searches
 * ignore them meanwhile (hits are joined with the records). A record without a vector cannot arise
 * from a crash; `open` refuses to start on one (the store is not the one these records used) with
 * the count. Records whose embeddings are still in them (the embedded store's) are migrated on
 * open: the vectors are copied to LanceDB, then the records' embeddings emptied.
 */
import { existsSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Connection, Table } from '@lancedb/lancedb';
import { crashPoint } from './crash-points';
import { ApiError } from './errors';
import { allTableNames, loadLance, scanVectors, vectorDim, vectorRows, vectorSchema, vectorsOf, vectorTableName, type Lance } from './lance-vectors';
import {
  checkQuery,
  freshPassages,
  PassageStoreOverRecords,
  searchHits,
  storeUnavailable,
  type AddResult,
  type PassageQuota,
  type PassageRecords,
  type PassageStore,
  type PreparedPassage,
} from './passages';
import { ExactVectorIndex } from '../src/retrieval/vector-index';
import type { PassageInput, SearchHit, SessionModels } from '../src/federated/protocol';

export interface LanceStoreOptions {
  /** A local folder (absolute) or an object-store URI (`s3://bucket/prefix`); see parsePassageStoreLocation. */
  readonly uri: string;
  /** A session's store is indexed (IVF-PQ) once it holds this many passages (default LANCE_DEFAULTS.indexAbove). */
  readonly indexAbove?: number;
  /** IVF partitions; default round(sqrt(rows)), at least 1. */
  readonly numPartitions?: number;
  /** PQ sub-vectors; default dim / 16 (dim / 8 … 1, whichever divides dim first). */
  readonly numSubVectors?: number;
  readonly nprobes?: number;
  readonly refineFactor?: number;
  /** Passages added since the index was built (or last optimized) after which `optimize` runs (default 10% of the indexed rows, at least 1,000). */
  readonly reindexEvery?: number;
  /** Progress lines (index builds). */
  readonly log?: (line: string) => void;
  /**
   * Several coordinator processes use this store and the records' database (docs/DEPLOY.md): every
   * read checks for versions another process committed, and a process's cached exact index is
   * reloaded when the table moved on.
   */
  readonly shared?: boolean;
}

/**
 * Measured on this 2-core machine (docs/BENCH-SERVER.md, "Passage search: exact vs LanceDB
 * IVF-PQ", 768-d, top-40): at 10,000 passages the exact scan (12 ms) is as fast as IVF-PQ
 * (11–16 ms); at 20,000 it takes 24–34 ms against 14–16 ms, at 100,000 124–178 ms against
 * 28–34 ms. So a session is indexed from 20,000 passages. nprobes 40 (of √n partitions) with
 * refineFactor 10: recall@40 0.994–0.998 in the store runs (nprobes 20: 0.985–0.996), same latency.
 */
export const LANCE_DEFAULTS = { indexAbove: 20_000, nprobes: 40, refineFactor: 10 } as const;

/**
 * `--passage-store` / CORAG_PASSAGE_STORE: a local folder (created if absent; an existing path
 * must be a folder) or `s3://bucket[/prefix]` (credentials from the usual AWS_* variables). Throws
 * a one-line reason for anything else.
 */
export function parsePassageStoreLocation(raw: string, cwd = process.cwd()): string {
  const value = raw.trim();
  if (value === '') throw new Error('--passage-store needs a folder or an s3://bucket/prefix URI, got an empty value');
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//.exec(value);
  if (scheme) {
    if (scheme[1].toLowerCase() !== 's3')
      throw new Error(`--passage-store: "${scheme[1]}://" is not supported; give a local folder or an s3://bucket/prefix URI`);
    if (!/^s3:\/\/[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](\/[^\s]*)?$/.test(value))
      throw new Error(`--passage-store: "${value}" is not an s3://bucket/prefix URI (bucket names: 3–63 lowercase letters, digits, dots, hyphens)`);
    return value.replace(/\/+$/, '');
  }
  if (/[\0\n\r]/.test(value)) throw new Error('--passage-store: the folder name holds a control character');
  const path = resolve(cwd, value);
  if (existsSync(path) && !statSync(path).isDirectory()) throw new Error(`--passage-store: ${path} exists and is not a folder`);
  return path;
}

type Arrow = Awaited<ReturnType<typeof loadLance>>['arrow'];

interface SessionVectors {
  readonly table: Table;
  readonly dim: number;
  /** The exact index, while the session is searched exactly (loaded on first search). */
  exact?: ExactVectorIndex;
  loadingExact?: Promise<ExactVectorIndex>;
  /** The table version `exact` was read at (several processes: a newer one means other processes' writes). */
  exactVersion?: number;
  /** An IVF-PQ index on `vector` is committed: searches go through it. */
  indexed: boolean;
  building?: Promise<void>;
  /** When the last build failed (retried on a later add, not sooner than a minute). */
  failedAt?: number;
  /** Rows the index had when built or last optimized, and rows added since. */
  indexedRows: number;
  addedSince: number;
  /** Ids deleted from the records whose vectors could not be deleted yet (retried on the next write). */
  readonly orphans: Set<number>;
}

export class LancePassageStore extends PassageStoreOverRecords implements PassageStore {
  readonly kind = 'lancedb';
  private lance?: Lance;
  private arrow?: Arrow;
  private conn?: Connection;
  private opening?: Promise<void>;
  private readonly sessions = new Map<string, Promise<SessionVectors | undefined>>();
  private queue: Promise<unknown> = Promise.resolve();
  private closed = false;
  private readonly indexAbove: number;

  /** `sessionIds`: every session's id (the state store's), reconciled on open. */
  constructor(
    records: PassageRecords,
    readonly options: LanceStoreOptions,
    private readonly sessionIds: () => Promise<readonly string[]>,
  ) {
    super(records);
    this.indexAbove = options.indexAbove ?? LANCE_DEFAULTS.indexAbove;
    if (!Number.isInteger(this.indexAbove) || this.indexAbove < 1)
      throw new Error(`passage store: indexAbove must be a positive integer, got ${options.indexAbove}`);
  }

  // ------------------------------------------------------------------ lifecycle

  open(): Promise<void> {
    this.opening ??= this.connectAndReconcile().catch((e: unknown) => {
      this.opening = undefined;
      throw new Error(`passage store ${this.options.uri}: ${(e as Error).message}`);
    });
    return this.opening;
  }

  private async connectAndReconcile(): Promise<void> {
    await this.records.open();
    ({ lance: this.lance, arrow: this.arrow } = await loadLance());
    // Shared: each read first looks for versions other processes committed (0 s: always).
    this.conn = await this.lance.connect(this.options.uri, this.options.shared ? { readConsistencyInterval: 0 } : {});
    for (const id of await this.sessionIds()) await this.reconcile(id);
  }

  /** Waits for queued writes. Index builds in flight are not waited for: a restart rebuilds one that did not commit. */
  async close(): Promise<void> {
    this.closed = true;
    await this.queue.catch(() => undefined);
    this.conn?.close();
  }

  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn, fn);
    this.queue = next.catch(() => undefined);
    return next;
  }

  // ------------------------------------------------------------------ tables

  private async tableExists(name: string): Promise<boolean> {
    return (await allTableNames(this.conn!)).has(name);
  }

  private schema(dim: number) {
    return vectorSchema(this.arrow!, dim);
  }

  private rows(ids: readonly number[], vectors: readonly Float32Array[], dim: number) {
    return vectorRows(this.arrow!, ids, vectors, dim);
  }

  private async hasVectorIndex(table: Table): Promise<boolean> {
    return (await table.listIndices()).some((i) => i.columns.includes('vector'));
  }

  /**
   * Brings a session's vectors in line with its records (on open, before any other use): vectors
   * without a record are deleted; embeddings still kept in the records are moved to
   * LanceDB; a record with neither is an error.
   */
  private async reconcile(sessionId: string): Promise<void> {
    const name = vectorTableName(sessionId);
    const recorded = await this.records.recordIds(sessionId);
    const exists = await this.tableExists(name);
    if (!exists && recorded.length === 0) return;
    let table: Table;
    let dim: number;
    if (exists) {
      table = await this.conn!.openTable(name);
      dim = await vectorDim(table);
    } else {
      const first = recorded.find((r) => r.hasEmbedding);
      dim = first ? ((await this.records.embeddings(sessionId, [first.id])).get(first.id)?.length ?? 0) : 0;
      if (dim < 1) throw new Error(`session ${sessionId}: its records name no embedding dimension`);
      // existOk: another process starting beside this one may create it at the same moment.
      table = await this.conn!.createEmptyTable(name, this.schema(dim), { mode: 'create', existOk: true });
    }
    const stored = new Set((await scanVectors(table, dim, false)).ids);
    const records = new Set(recorded.map((r) => r.id));
    const strays = [...stored].filter((id) => !records.has(id));
    if (strays.length > 0 && !this.options.shared) await table.delete(`id IN (${strays.join(',')})`);
    // Shared by several processes, a vector without a record may be another process's add in
    // flight (vectors are written before records): deleted only while no process is between its
    // two commits (looked at again then), else left for a later start; never returned by a search.
    if (strays.length > 0 && this.options.shared) {
      const removed = await this.records.withoutWriters(async () => {
        const now = new Set((await this.records.recordIds(sessionId)).map((r) => r.id));
        const gone = (await scanVectors(table, dim, false)).ids.filter((id) => !now.has(id));
        if (gone.length > 0) await table.delete(`id IN (${gone.join(',')})`);
        return gone.length;
      });
      if (removed) this.options.log?.(`passage store: session ${sessionId}: deleted ${removed} vectors whose records never committed`);
    }
    const missing = recorded.filter((r) => !stored.has(r.id) && !r.hasEmbedding);
    if (missing.length > 0) {
      throw new Error(
        `session ${sessionId}: ${missing.length} of its ${recorded.length} passages have no vector in this store (e.g. passage ${missing[0].id}); is --passage-store the store this data folder was used with?`,
      );
    }
    if (!recorded.some((r) => r.hasEmbedding)) return;
    // Embeddings still in the records (a deployment the embedded store wrote): copied, then emptied
    // there. With no writer anywhere (processes starting together would each copy them), reading
    // the records and the vectors again first.
    const moved = await this.records.withoutWriters(() => this.moveEmbeddings(sessionId, table, dim), { wait: true });
    if (moved) this.options.log?.(`passage store: moved ${moved} embeddings of session ${sessionId} from the passage records to ${this.options.uri}`);
  }

  /** Copies the embeddings still kept in a session's records into its table, then empties them in the records; returns how many. */
  private async moveEmbeddings(sessionId: string, table: Table, dim: number): Promise<number> {
    const toMove = (await this.records.recordIds(sessionId)).filter((r) => r.hasEmbedding);
    const stored = new Set((await scanVectors(table, dim, false)).ids);
    for (let i = 0; i < toMove.length; i += 5000) {
      const chunk = toMove
        .slice(i, i + 5000)
        .filter((r) => !stored.has(r.id))
        .map((r) => r.id);
      if (chunk.length === 0) continue;
      const vectors = await this.records.embeddings(sessionId, chunk);
      await table.add(
        this.rows(
          chunk,
          chunk.map((id) => vectors.get(id)!),
          dim,
        ),
      );
    }
    if (toMove.length > 0) await this.records.clearEmbeddings(toMove.map((r) => r.id));
    return toMove.length;
  }

  /** The session's vectors; `create` makes the table when absent (else undefined: no passages yet). */
  private session(sessionId: string, dim: number, create: boolean): Promise<SessionVectors | undefined> {
    let s = this.sessions.get(sessionId);
    if (!s) {
      s = (async () => {
        const name = vectorTableName(sessionId);
        let table: Table;
        if (await this.tableExists(name)) table = await this.conn!.openTable(name);
        // existOk: another process may create the same session's table at the same moment.
        else if (create) table = await this.conn!.createEmptyTable(name, this.schema(dim), { mode: 'create', existOk: true });
        else return undefined;
        const stored = await vectorDim(table);
        if (stored !== dim) throw new Error(`session ${sessionId}: the store's vectors have ${stored} values, the session's dimension is ${dim}`);
        const indexed = await this.hasVectorIndex(table);
        const rows = await table.countRows();
        const vectors: SessionVectors = { table, dim, indexed, indexedRows: indexed ? rows : 0, addedSince: 0, orphans: new Set() };
        this.maybeIndex(sessionId, vectors, rows);
        return vectors;
      })();
      this.sessions.set(sessionId, s);
      // A failure (store unreachable) is not remembered: the next call tries again.
      s.then(
        (v) => {
          if (!v) this.sessions.delete(sessionId);
        },
        () => this.sessions.delete(sessionId),
      );
    }
    return s;
  }

  private exactIndex(s: SessionVectors): Promise<ExactVectorIndex> {
    if (s.exact) return Promise.resolve(s.exact);
    // Loaded inside the write queue, so no add or withdrawal runs while it is read.
    s.loadingExact ??= this.exclusive(async () => {
      const version = this.options.shared ? await s.table.version() : undefined;
      const { ids, vectors } = await scanVectors(s.table, s.dim, true);
      const index = new ExactVectorIndex(s.dim, ids.length);
      index.add(ids, vectors);
      s.exact = index;
      s.exactVersion = version;
      return index;
    }).finally(() => {
      s.loadingExact = undefined;
    });
    return s.loadingExact;
  }

  // ------------------------------------------------------------------ index

  private indexParams(rows: number, dim: number): { numPartitions: number; numSubVectors: number } {
    const numPartitions = this.options.numPartitions ?? Math.max(1, Math.round(Math.sqrt(rows)));
    const numSubVectors = this.options.numSubVectors ?? [16, 8, 4, 2, 1].map((d) => dim / d).find((n) => Number.isInteger(n) && n >= 1) ?? 1;
    return { numPartitions, numSubVectors };
  }

  /** Starts a background build (or optimize) when due. Searches keep using what they use until it commits. */
  private maybeIndex(sessionId: string, s: SessionVectors, rows: number): void {
    if (this.closed || s.building) return;
    if (!s.indexed) {
      if (rows < this.indexAbove || (s.failedAt !== undefined && Date.now() - s.failedAt < 60_000)) return;
      s.building = this.build(sessionId, s, rows);
      return;
    }
    const every = this.options.reindexEvery ?? Math.max(1_000, Math.ceil(0.1 * s.indexedRows));
    if (s.addedSince >= every) {
      // Folding new rows into the index rewrites fragments: inside the write queue, so no
      // add or delete commits against them meanwhile (searches go on).
      s.building = this.exclusive(async () => {
        const started = performance.now();
        await s.table.optimize();
        s.indexedRows = await s.table.countRows();
        s.addedSince = 0;
        this.options.log?.(
          `passage store: session ${sessionId}: index updated to ${s.indexedRows} passages in ${((performance.now() - started) / 1000).toFixed(1)} s`,
        );
      })
        .catch((e: unknown) => {
          this.options.log?.(`passage store: session ${sessionId}: optimize failed (${(e as Error).message}); new passages stay searched flat`);
        })
        .finally(() => {
          s.building = undefined;
        });
    }
  }

  private async build(sessionId: string, s: SessionVectors, rows: number): Promise<void> {
    const { numPartitions, numSubVectors } = this.indexParams(rows, s.dim);
    const started = performance.now();
    this.options.log?.(
      `passage store: session ${sessionId}: ${rows} passages, building an IVF-PQ index (${numPartitions} partitions, ${numSubVectors} sub-vectors) in the background; exact search meanwhile`,
    );
    try {
      await s.table.createIndex('vector', { config: this.lance!.Index.ivfPq({ distanceType: 'dot', numPartitions, numSubVectors }), replace: true });
      s.indexedRows = rows;
      s.addedSince = Math.max(0, (await s.table.countRows()) - rows);
      s.indexed = true;
      s.exact = undefined; // searches go through the index from now on: free the copy
      this.options.log?.(`passage store: session ${sessionId}: index built in ${((performance.now() - started) / 1000).toFixed(1)} s`);
    } catch (e) {
      s.failedAt = Date.now();
      if (!this.closed)
        this.options.log?.(`passage store: session ${sessionId}: index build failed (${(e as Error).message}); exact search goes on, retried later`);
    } finally {
      s.building = undefined;
    }
  }

  async createSession(sessionId: string, models: SessionModels): Promise<void> {
    await this.open();
    await this.session(sessionId, models.embeddingDim, true);
  }

  /** 'exact' | 'building' (exact meanwhile) | 'ivf-pq'; 'empty' without a table. For tests, the bench and logs. */
  async searchMode(sessionId: string, dim: number): Promise<'empty' | 'exact' | 'building' | 'ivf-pq'> {
    await this.open();
    const s = await this.session(sessionId, dim, false);
    if (!s) return 'empty';
    return s.indexed ? 'ivf-pq' : s.building ? 'building' : 'exact';
  }

  /** Resolves when no build or optimize is running for the session. */
  async settled(sessionId: string, dim: number): Promise<void> {
    await this.open();
    const s = await this.session(sessionId, dim, false);
    while (s?.building) await s.building;
  }

  // ------------------------------------------------------------------ the store

  async add(sessionId: string, models: SessionModels, clientId: string, inputs: readonly PassageInput[], quota?: PassageQuota): Promise<AddResult[]> {
    const prepared = this.validate(models, inputs);
    await this.open();
    return this.exclusive(() => this.records.asWriter(() => this.addVectorsThenRecords(sessionId, models, clientId, prepared, quota)));
  }

  /** An add, between its two commits a writer (PassageRecords.asWriter): vectors first, then the records. */
  private async addVectorsThenRecords(
    sessionId: string,
    models: SessionModels,
    clientId: string,
    prepared: readonly PreparedPassage[],
    quota: PassageQuota | undefined,
  ): Promise<AddResult[]> {
    const fresh = freshPassages(
      prepared,
      await this.records.existingHashes(
        sessionId,
        prepared.map((p) => p.hash),
      ),
    );
    // Refused before any vector is written (and checked again inside the commit).
    if (quota) await this.records.checkQuota(sessionId, clientId, prepared, quota);
    let s: SessionVectors;
    const reserved = await this.records.reserveIds(fresh.length);
    const ids = new Map(fresh.map((p, i) => [p.hash, reserved[i]]));
    try {
      s = (await this.session(sessionId, models.embeddingDim, true))!;
      await this.retryOrphans(s);
      if (fresh.length > 0)
        await s.table.add(
          this.rows(
            fresh.map((p) => ids.get(p.hash)!),
            fresh.map((p) => p.embedding),
            s.dim,
          ),
        );
    } catch (e) {
      if (e instanceof ApiError) throw e;
      throw storeUnavailable('store the embeddings', e);
    }
    if (fresh.length > 0) crashPoint('passages:vectors-committed');
    let added: Array<{ id: number; embedding: Float32Array }>;
    let results: AddResult[];
    try {
      ({ results, added } = await this.records.commit(sessionId, clientId, prepared, quota, {
        withEmbeddings: false,
        idOf: (p: PreparedPassage) => ids.get(p.hash)!,
      }));
    } catch (e) {
      // The records were not committed: their vectors go too (if this fails, the next open removes them).
      if (fresh.length > 0) await s.table.delete(`id IN (${reserved.join(',')})`).catch(() => undefined);
      throw e;
    }
    // Another process committed some of the same passages between `fresh` and the commit: their
    // vectors written here under reserved ids have no record; they go (else the next open removes them).
    const unused = fresh.map((p) => ids.get(p.hash)!).filter((id) => !added.some((a) => a.id === id));
    if (unused.length > 0) {
      for (const id of unused) s.orphans.add(id);
      await this.retryOrphans(s).catch(() => undefined);
    }
    s.exact?.add(
      added.map((a) => a.id),
      added.map((a) => a.embedding),
    );
    s.addedSince += added.length;
    this.maybeIndex(sessionId, s, await this.records.count(sessionId));
    return results;
  }

  private async retryOrphans(s: SessionVectors): Promise<void> {
    if (s.orphans.size === 0) return;
    const ids = [...s.orphans];
    await s.table.delete(`id IN (${ids.join(',')})`);
    for (const id of ids) s.orphans.delete(id);
  }

  async search(sessionId: string, models: SessionModels, query: readonly number[], k: number, withEmbeddings = false): Promise<SearchHit[]> {
    const q = checkQuery(models, query);
    // Vectors without a record (a crashed add, another process's add in flight, a withdrawal whose
    // vector is not deleted yet) take places among the candidates and are dropped by the join with
    // the records: ask for twice as many until k hits are found or the candidates run out.
    for (let want = k; ; want *= 2) {
      const top = await this.candidates(sessionId, models, q, want, withEmbeddings);
      const hits = await searchHits(this.records, sessionId, top, k, withEmbeddings);
      if (hits.length >= k || top.length < want) return hits;
    }
  }

  /** The `n` vectors with the largest inner product with `q`, best first (exact scores), records or not. */
  private async candidates(
    sessionId: string,
    models: SessionModels,
    q: Float32Array,
    n: number,
    withEmbeddings: boolean,
  ): Promise<Array<{ id: number; score: number; embedding?: Float32Array }>> {
    try {
      await this.open();
      const s = await this.session(sessionId, models.embeddingDim, false);
      if (!s) return [];
      if (this.options.shared) await this.followOtherWriters(s);
      if (!s.indexed) {
        const index = await this.exactIndex(s);
        return index.search(q, n).map((t) => ({ ...t, ...(withEmbeddings ? { embedding: index.embedding(t.id) } : {}) }));
      }
      // Vectors this process knows have lost their records may still be found: ask for that many more.
      const result = await s.table
        .vectorSearch(q)
        .distanceType('dot')
        .nprobes(this.options.nprobes ?? LANCE_DEFAULTS.nprobes)
        .refineFactor(this.options.refineFactor ?? LANCE_DEFAULTS.refineFactor)
        .limit(n + s.orphans.size)
        .select(['id', 'vector', '_distance'])
        .toArrow();
      const top: Array<{ id: number; score: number; embedding: Float32Array }> = [];
      for (const batch of result.batches) {
        const idColumn = batch.getChild('id')!;
        const vectors = vectorsOf(batch, s.dim);
        for (let i = 0; i < batch.numRows; i++) {
          const v = vectors.slice(i * s.dim, (i + 1) * s.dim);
          let dot = 0;
          for (let j = 0; j < v.length; j++) dot += q[j] * v[j];
          top.push({ id: Number(idColumn.get(i) as bigint), score: dot, embedding: v });
        }
      }
      return top.sort((a, b) => b.score - a.score || a.id - b.id).slice(0, n);
    } catch (e) {
      if (e instanceof ApiError) throw e;
      throw storeUnavailable('be searched', e);
    }
  }

  /**
   * Several processes: a table version this process did not read (another process's add, withdrawal
   * or index build) makes its cached exact index stale, so it is read again; an index another
   * process built is used from now on.
   */
  private async followOtherWriters(s: SessionVectors): Promise<void> {
    const version = await s.table.version();
    if (s.exact && s.exactVersion !== version) s.exact = undefined;
    if (!s.indexed && !s.building && s.exactVersion !== version && (await this.hasVectorIndex(s.table))) {
      s.indexed = true;
      s.indexedRows = await s.table.countRows();
      s.exact = undefined;
    }
  }

  async withdraw(sessionId: string, models: SessionModels, clientId: string, id: number): Promise<{ deleted: boolean; contributorsLeft: number }> {
    await this.open().catch((e: unknown) => {
      throw storeUnavailable('be opened', e);
    });
    return this.exclusive(() =>
      this.records.asWriter(async () => {
        const outcome = await this.records.removeContribution(sessionId, clientId, id);
        if (!outcome.deleted) return outcome;
        crashPoint('passages:records-withdrawn');
        // Committed: the record is gone, so no search returns it; then the vector goes.
        const s = await this.session(sessionId, models.embeddingDim, false).catch(() => undefined);
        if (!s) return outcome; // the next open removes the stray vector
        s.exact?.remove([id]);
        s.orphans.add(id);
        await this.retryOrphans(s).catch(() => undefined);
        return outcome;
      }),
    );
  }
}
