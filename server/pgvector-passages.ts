/**
 * The pgvector passage store (`npm start -- --database postgres://… --passage-store pgvector`,
 * issue 22): for a PostgreSQL server that has the pgvector extension. The passage records stay in
 * PostgreSQL exactly as with the other stores (server/pg-passages.ts); each new passage's embedding
 * goes into `passage_vectors` (a `vector` column, one row per passage, deleted with its record by
 * ON DELETE CASCADE) in the SAME transaction as its record. So there is nothing to reconcile: no
 * vector without a record, no record without a vector, no crash ordering between two commits (the
 * LanceDB store's problem), and several coordinator processes need no writer lock beyond the
 * records' own.
 *
 * Search is by inner product (`<#>`, the retriever's dot product). Below `indexAbove` passages a
 * session is scanned exactly (pgvector's sequential scan of the session's rows). When a session
 * reaches `indexAbove`, an HNSW index (`vector_ip_ops`, partial: that session's rows, on
 * `embedding::vector(dim)` since sessions differ in dimension) is built in the background with
 * CREATE INDEX CONCURRENTLY (adds and searches go on, exactly, meanwhile); once valid, searches go
 * through it with `hnsw.ef_search` = max(efSearch, candidates). HNSW rather than IVFFlat: IVFFlat's
 * lists are k-means centres computed once from the rows present at build time, so a store that
 * keeps growing drifts away from them (recall drops until a rebuild); HNSW is maintained by every
 * insert and needs no training data, at the price of a slower build. Every candidate's score is
 * recomputed here in double precision from its stored float32 vector (pgvector sums in float32),
 * and candidates are re-ranked (score, then smaller id), so scores and tie order are the exact
 * index's; a few more candidates than asked are fetched so that float32 rounding at the boundary
 * cannot drop a passage the exact order keeps.
 *
 * Schema: its own migration track (`pgvector_migrations`, server/pg-state.ts applyMigrations),
 * applied only by coordinators started with this store, so a PostgreSQL without pgvector keeps
 * working with the other stores. Started on records whose embeddings are still in them (the
 * embedded store's, or `npm run migrate` without a LanceDB store), the store moves them into
 * `passage_vectors` on open, in transactions of 1,000; records with neither (a LanceDB store's)
 * make it refuse to start.
 */
import { createHash } from 'node:crypto';
import pg from 'pg';
import { ApiError } from './errors';
import {
  checkQuery,
  embeddingOf,
  PassageStoreOverRecords,
  searchHits,
  storeUnavailable,
  type AddResult,
  type PassageQuota,
  type PassageStore,
} from './passages';
import type { PgPassageRecords } from './pg-passages';
import { applyMigrations, redactUrl, type Migration } from './pg-state';
import { inTransaction } from './pg-transaction';
import type { PassageInput, SearchHit, SessionModels } from '../src/federated/protocol';

/** `--passage-store pgvector`: the word that selects this store (a folder of that name is `./pgvector`). */
export const PGVECTOR_STORE = 'pgvector';

export function isPgvectorStore(raw: string): boolean {
  return raw.trim() === PGVECTOR_STORE;
}

/**
 * indexAbove: where our exact scan (ExactVectorIndex, the same O(n·dim) work as pgvector's
 * sequential scan) measured 12 ms per top-40 at 10,000 × 768 on this 2-core machine
 * (docs/BENCH-SERVER.md); past it a query's scan grows linearly while an HNSW search stays at a few
 * ms. No native pgvector server was available to measure its own crossover (PGlite's wasm build is
 * not representative): it is an option. efSearch 100 keeps recall@40 ≥ 0.99 against exact on
 * clustered vectors (test/server/passage-store.test.ts measures it); m and ef_construction are
 * pgvector's defaults.
 */
export const PGVECTOR_DEFAULTS = { indexAbove: 10_000, efSearch: 100, m: 16, efConstruction: 64 } as const;
/** pgvector's HNSW indexes vectors of at most 2,000 dimensions: larger sessions are searched exactly. */
const HNSW_MAX_DIM = 2000;
/** hnsw.ef_search's largest value: asking for more candidates than this is done exactly. */
const EF_SEARCH_MAX = 1000;
/** Candidates fetched beyond k, so that float32 rounding in pgvector's scores cannot drop a passage the exact order keeps. */
const SLACK = 8;
const CHUNK = 1000;

const MIGRATIONS: readonly Migration[] = [
  {
    // One row per passage that has its vector here; the dimension is the session's (not fixed per
    // column: sessions differ), so the HNSW indexes are per session on embedding::vector(dim).
    name: 'passage-vectors',
    sql: `
CREATE EXTENSION IF NOT EXISTS vector;
CREATE TABLE passage_vectors (
  passage_id BIGINT PRIMARY KEY REFERENCES passages(id) ON DELETE CASCADE,
  session_id TEXT NOT NULL,
  embedding vector NOT NULL
);
CREATE INDEX passage_vectors_by_session ON passage_vectors(session_id);`,
  },
];

export interface PgvectorStoreOptions {
  /** A session is indexed (HNSW) once it holds this many passages (default PGVECTOR_DEFAULTS.indexAbove). */
  readonly indexAbove?: number;
  /** hnsw.ef_search for searches through the index (at least the candidates asked for). */
  readonly efSearch?: number;
  /** Progress lines (index builds, moved embeddings). */
  readonly log?: (line: string) => void;
}

export type PgvectorAvailability =
  | { readonly available: false; readonly server: string }
  | { readonly available: true; readonly server: string; readonly version: string; readonly installed: boolean };

/** Whether the database's server offers the `vector` extension (installed in this database or not), and its version. */
export async function pgvectorAvailability(on: pg.Pool | pg.ClientBase): Promise<PgvectorAvailability> {
  // "15.18 (Debian 15.18-0+deb12u1)": the version number is enough.
  const server = (await on.query<{ v: string }>("SELECT current_setting('server_version') AS v")).rows[0].v.split(' ')[0];
  const [row] = (
    await on.query<{ default_version: string; installed_version: string | null }>(
      "SELECT default_version, installed_version FROM pg_available_extensions WHERE name = 'vector'",
    )
  ).rows;
  if (!row) return { available: false, server };
  return { available: true, server, version: row.installed_version ?? row.default_version, installed: row.installed_version !== null };
}

/** The start-up log's line about pgvector for a coordinator with `--database` (one connection, closed again); `inUse`: started with this store. */
export async function describePgvector(url: string, inUse: boolean): Promise<string> {
  const client = new pg.Client({ connectionString: url });
  try {
    await client.connect();
    const a = await pgvectorAvailability(client);
    if (!a.available) return `not available (PostgreSQL ${a.server} has no "vector" extension; --passage-store ${PGVECTOR_STORE} would need it)`;
    return inUse
      ? `pgvector ${a.version}, holding the passage vectors`
      : `available in this database (pgvector ${a.version}): --passage-store ${PGVECTOR_STORE} would keep the passage vectors in PostgreSQL`;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** The refusal when the extension is missing: what to install, where. */
export function missingPgvector(url: string, server: string): Error {
  const major = server.split('.')[0];
  return new Error(
    `--passage-store ${PGVECTOR_STORE}: the PostgreSQL server of ${redactUrl(url)} (version ${server}) does not have the pgvector extension ("vector"). Install it on the database server (Debian/Ubuntu with the PostgreSQL apt repository: apt install postgresql-${major}-pgvector; else https://github.com/pgvector/pgvector), or choose another passage store (docs/DEPLOY.md)`,
  );
}

/** A float32 vector in pgvector's text form; float32 → double → shortest decimal parses back (strtof) to the same float32. */
function vectorLiteral(v: Float32Array | readonly number[]): string {
  return `[${Array.from(v).join(',')}]`;
}

/** pgvector's text output (shortest round-trip decimals) back to float32. */
function parseVector(text: string): Float32Array {
  return Float32Array.from(JSON.parse(text) as number[]);
}

/** The HNSW index of one session (a name PostgreSQL accepts whatever the session id holds). */
function indexName(sessionId: string): string {
  return `passage_vectors_hnsw_${createHash('sha256').update(sessionId, 'utf8').digest('hex').slice(0, 24)}`;
}

interface SessionIndex {
  /** The session's HNSW index is built and valid: searches go through it. */
  valid: boolean;
  building?: Promise<void>;
  /** When the last build failed (retried on a later add, not sooner than a minute). */
  failedAt?: number;
}

export class PgvectorPassageStore extends PassageStoreOverRecords<PgPassageRecords> implements PassageStore {
  readonly kind = 'pgvector';
  private opening?: Promise<void>;
  private closed = false;
  private readonly indexes = new Map<string, SessionIndex>();
  private readonly indexAbove: number;
  private readonly efSearch: number;
  /** The connection building an index (cancelled on close). */
  private buildingPid?: number;

  /** `pool`: the state's pool (server/pg-state.ts), which the records share; `url` names the database in messages. */
  constructor(
    records: PgPassageRecords,
    private readonly pool: pg.Pool,
    private readonly url: string,
    private readonly options: PgvectorStoreOptions = {},
  ) {
    super(records);
    this.indexAbove = options.indexAbove ?? PGVECTOR_DEFAULTS.indexAbove;
    this.efSearch = options.efSearch ?? PGVECTOR_DEFAULTS.efSearch;
    if (!Number.isInteger(this.indexAbove) || this.indexAbove < 1)
      throw new Error(`pgvector store: indexAbove must be a positive integer, got ${options.indexAbove}`);
    if (!Number.isInteger(this.efSearch) || this.efSearch < 1 || this.efSearch > EF_SEARCH_MAX)
      throw new Error(`pgvector store: efSearch must be an integer from 1 to ${EF_SEARCH_MAX}, got ${options.efSearch}`);
  }

  // ------------------------------------------------------------------ lifecycle

  open(): Promise<void> {
    this.opening ??= this.migrateAndMove().catch((e: unknown) => {
      this.opening = undefined;
      throw e;
    });
    return this.opening;
  }

  private async migrateAndMove(): Promise<void> {
    await this.records.open();
    const availability = await pgvectorAvailability(this.pool);
    if (!availability.available) throw missingPgvector(this.url, availability.server);
    try {
      await inTransaction(this.pool, (c) => applyMigrations(c, 'pgvector_migrations', MIGRATIONS));
    } catch (e) {
      // pgvector is a trusted extension (0.5+): a database owner may create it; an older one needs a superuser.
      if (!availability.installed && /permission denied|must be (superuser|owner)/i.test((e as Error).message)) {
        throw new Error(
          `--passage-store ${PGVECTOR_STORE}: this database user may not create the "vector" extension (${(e as Error).message}): have a superuser run CREATE EXTENSION vector; in that database, then start again`,
        );
      }
      throw new Error(`--passage-store ${PGVECTOR_STORE}: PostgreSQL ${redactUrl(this.url)}: ${(e as Error).message}`);
    }
    const [orphan] = (
      await this.pool.query<{ session_id: string; n: number; id: string }>(
        `SELECT p.session_id, COUNT(*) OVER (PARTITION BY p.session_id)::int AS n, p.id FROM passages p
         WHERE octet_length(p.embedding) = 0 AND NOT EXISTS (SELECT 1 FROM passage_vectors v WHERE v.passage_id = p.id) ORDER BY p.id LIMIT 1`,
      )
    ).rows;
    if (orphan) {
      throw new Error(
        `--passage-store ${PGVECTOR_STORE}: session ${orphan.session_id} has ${orphan.n} passages whose vectors are neither in their records nor in pgvector (e.g. passage ${orphan.id}): they are in a LanceDB store; start with that --passage-store`,
      );
    }
    const moved = await this.moveEmbeddings();
    if (moved) this.options.log?.(`passage store: moved ${moved} embeddings from the passage records into pgvector`);
  }

  /**
   * Embeddings still in the records go into passage_vectors, 1,000 per transaction: the rows are
   * locked (FOR UPDATE), their vectors written and the records' copies emptied together, so
   * processes starting together move each once and a crash leaves every passage in one place.
   */
  private async moveEmbeddings(): Promise<number> {
    let moved = 0;
    for (;;) {
      const n = await inTransaction(this.pool, async (c) => {
        const rows = (
          await c.query<{ id: string; session_id: string; embedding: Buffer }>(
            `SELECT id, session_id, embedding FROM passages WHERE octet_length(embedding) > 0 ORDER BY id LIMIT ${CHUNK} FOR UPDATE`,
          )
        ).rows;
        if (rows.length === 0) return 0;
        await c.query(
          'INSERT INTO passage_vectors (passage_id, session_id, embedding) SELECT id, s, e::vector FROM unnest($1::int8[], $2::text[], $3::text[]) AS u(id, s, e)',
          [rows.map((r) => r.id), rows.map((r) => r.session_id), rows.map((r) => vectorLiteral(embeddingOf(r.embedding)))],
        );
        await c.query("UPDATE passages SET embedding = ''::bytea WHERE id = ANY($1::int8[])", [rows.map((r) => r.id)]);
        return rows.length;
      });
      if (n === 0) return moved;
      moved += n;
    }
  }

  /** Cancels an index build in flight (a restart finds it invalid and builds it again). */
  async close(): Promise<void> {
    this.closed = true;
    const building = [...this.indexes.values()].map((s) => s.building).filter((b) => b !== undefined);
    if (building.length === 0) return;
    if (this.buildingPid !== undefined) await this.pool.query('SELECT pg_cancel_backend($1)', [this.buildingPid]).catch(() => undefined);
    await Promise.allSettled(building);
  }

  // ------------------------------------------------------------------ index

  private session(sessionId: string): SessionIndex {
    let s = this.indexes.get(sessionId);
    if (!s) this.indexes.set(sessionId, (s = { valid: false }));
    return s;
  }

  /** Whether the session's HNSW index is built and valid (another process may have built it). */
  private async indexValid(sessionId: string): Promise<boolean> {
    const s = this.session(sessionId);
    if (s.valid) return true;
    const [row] = (
      await this.pool.query<{ valid: boolean }>('SELECT i.indisvalid AS valid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = $1', [
        indexName(sessionId),
      ])
    ).rows;
    s.valid = row?.valid === true;
    return s.valid;
  }

  /** Starts a background build when the session passed the crossover and has no index yet. */
  private maybeIndex(sessionId: string, dim: number, count: number): void {
    const s = this.session(sessionId);
    // The dimension is written into the index's SQL: a positive integer only.
    if (this.closed || s.valid || s.building || count < this.indexAbove || !Number.isSafeInteger(dim) || dim < 1 || dim > HNSW_MAX_DIM) return;
    if (s.failedAt !== undefined && Date.now() - s.failedAt < 60_000) return;
    s.building = this.build(sessionId, dim, count, s).finally(() => {
      s.building = undefined;
    });
  }

  private async build(sessionId: string, dim: number, count: number, s: SessionIndex): Promise<void> {
    const name = indexName(sessionId);
    const started = performance.now();
    const c = await this.pool.connect();
    try {
      if (await this.indexValid(sessionId)) return;
      this.buildingPid = (await c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0].pid;
      // An invalid index is a build that died (or one in progress in another process: left to it).
      const [leftover] = (
        await c.query<{ building: boolean }>(
          'SELECT EXISTS (SELECT 1 FROM pg_stat_progress_create_index p WHERE p.index_relid = i.indexrelid) AS building FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = $1',
          [name],
        )
      ).rows;
      if (leftover?.building) return;
      if (leftover) await c.query(`DROP INDEX CONCURRENTLY IF EXISTS ${name}`);
      this.options.log?.(`passage store: session ${sessionId}: ${count} passages, building an HNSW index (pgvector) in the background; exact search meanwhile`);
      // CONCURRENTLY: adds, withdrawals and (exact) searches go on while it builds.
      await c.query(
        `CREATE INDEX CONCURRENTLY IF NOT EXISTS ${name} ON passage_vectors USING hnsw ((embedding::vector(${dim})) vector_ip_ops)
         WITH (m = ${PGVECTOR_DEFAULTS.m}, ef_construction = ${PGVECTOR_DEFAULTS.efConstruction}) WHERE session_id = ${pg.escapeLiteral(sessionId)}`,
      );
      // Fresh statistics, so that the planner sees the session's rows and picks the index (autovacuum would, later).
      await c.query('ANALYZE passage_vectors');
      s.valid = await this.indexValid(sessionId);
      this.options.log?.(`passage store: session ${sessionId}: HNSW index built in ${((performance.now() - started) / 1000).toFixed(1)} s`);
    } catch (e) {
      s.failedAt = Date.now();
      if (!this.closed)
        this.options.log?.(`passage store: session ${sessionId}: index build failed (${(e as Error).message}); exact search goes on, retried later`);
    } finally {
      this.buildingPid = undefined;
      c.release();
    }
  }

  /** 'exact' | 'building' (exact meanwhile) | 'hnsw'. For tests, the bench and logs. */
  async searchMode(sessionId: string): Promise<'exact' | 'building' | 'hnsw'> {
    await this.open();
    if (await this.indexValid(sessionId)) return 'hnsw';
    return this.session(sessionId).building ? 'building' : 'exact';
  }

  /** Resolves when no index build is running for the session. */
  async settled(sessionId: string): Promise<void> {
    await this.session(sessionId).building;
  }

  // ------------------------------------------------------------------ the store

  async createSession(): Promise<void> {
    await this.open();
  }

  async add(sessionId: string, models: SessionModels, clientId: string, inputs: readonly PassageInput[], quota?: PassageQuota): Promise<AddResult[]> {
    const prepared = this.validate(models, inputs);
    await this.open();
    let results: AddResult[];
    try {
      ({ results } = await this.records.commit(sessionId, clientId, prepared, quota, {
        withEmbeddings: false,
        // In the records' transaction: the vectors commit with their records or not at all.
        alsoWrite: async (c, added) => {
          for (let i = 0; i < added.length; i += CHUNK) {
            const chunk = added.slice(i, i + CHUNK);
            await c.query(
              'INSERT INTO passage_vectors (passage_id, session_id, embedding) SELECT id, $1, e::vector FROM unnest($2::int8[], $3::text[]) AS u(id, e)',
              [sessionId, chunk.map((a) => a.id), chunk.map((a) => vectorLiteral(a.embedding))],
            );
          }
        },
      }));
    } catch (e) {
      if (e instanceof ApiError) throw e;
      throw storeUnavailable('store the passages', e);
    }
    if (results.some((r) => !r.duplicate)) this.maybeIndex(sessionId, models.embeddingDim, await this.records.count(sessionId));
    return results;
  }

  async search(sessionId: string, models: SessionModels, query: readonly number[], k: number, withEmbeddings = false): Promise<SearchHit[]> {
    const q = checkQuery(models, query);
    let top: Array<{ id: number; score: number; embedding: Float32Array }>;
    try {
      await this.open();
      top = await this.candidates(sessionId, models.embeddingDim, q, k + SLACK);
    } catch (e) {
      if (e instanceof ApiError) throw e;
      throw storeUnavailable('be searched', e);
    }
    // A passage withdrawn between the two reads is dropped by the join with the records.
    return searchHits(this.records, sessionId, top, k, withEmbeddings);
  }

  /** The `n` vectors with the largest inner product with `q`, best first, scored exactly here. */
  private async candidates(sessionId: string, dim: number, q: Float32Array, n: number): Promise<Array<{ id: number; score: number; embedding: Float32Array }>> {
    // The dimension is written into the SQL (a type modifier cannot be a parameter).
    if (!Number.isSafeInteger(dim) || dim < 1) throw new Error(`session ${sessionId}: embedding dimension ${dim} is not a positive integer`);
    const literal = vectorLiteral(q);
    let rows: Array<{ id: string; embedding: string }>;
    if (n <= EF_SEARCH_MAX && (await this.indexValid(sessionId))) {
      // The index's expression and predicate, literally: the planner matches them to the partial index.
      rows = await inTransaction(this.pool, async (c) => {
        await c.query("SELECT set_config('hnsw.ef_search', $1, true)", [String(Math.max(this.efSearch, n))]);
        return (
          await c.query<{ id: string; embedding: string }>(
            `SELECT passage_id AS id, embedding::text AS embedding FROM passage_vectors WHERE session_id = ${pg.escapeLiteral(sessionId)}
             ORDER BY embedding::vector(${dim}) <#> $1::vector(${dim}) LIMIT $2`,
            [literal, n],
          )
        ).rows;
      });
    } else {
      // Not the index's expression: a scan of the session's rows, exact.
      rows = (
        await this.pool.query<{ id: string; embedding: string }>(
          'SELECT passage_id AS id, embedding::text AS embedding FROM passage_vectors WHERE session_id = $1 ORDER BY embedding <#> $2::vector LIMIT $3',
          [sessionId, literal, n],
        )
      ).rows;
    }
    return rows
      .map((r) => {
        const v = parseVector(r.embedding);
        let dot = 0;
        for (let j = 0; j < v.length; j++) dot += q[j] * v[j];
        return { id: Number(r.id), score: dot, embedding: v };
      })
      .sort((a, b) => b.score - a.score || a.id - b.id);
  }

  async withdraw(sessionId: string, _models: SessionModels, clientId: string, id: number): Promise<{ deleted: boolean; contributorsLeft: number }> {
    try {
      await this.open();
      // The vector goes with its record (ON DELETE CASCADE), in the records' transaction.
      return await this.records.removeContribution(sessionId, clientId, id);
    } catch (e) {
      if (e instanceof ApiError) throw e;
      throw storeUnavailable('withdraw the passage', e);
    }
  }
}
