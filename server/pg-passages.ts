/**
 * The passage records in PostgreSQL (with `--database`; tables `passages`, `passage_contributors`,
 * `passage_checks` of pg-state.ts's 'passage-records' migration), so that coordinator processes on
 * several hosts share them: with LanceDB on shared storage (or S3) for the vectors, nothing about
 * passages is host-local any more.
 *
 * Several processes. Every write to a session's passages (add, withdrawal) is one transaction that
 * first takes the session's passage lock (`pg_advisory_xact_lock` on a hash of the session id,
 * released at COMMIT or ROLLBACK): the duplicate check, the quota check and the inserts then see
 * one state, as SQLite's IMMEDIATE transactions give. The unique (session_id, hash) constraint
 * backs the dedupe up: a writer that skipped the lock would fail, not store a passage twice. Ids
 * come from a sequence, so ids reserved before the records commit (the LanceDB store writes vectors
 * first) are never handed out again, by any process.
 */
import type pg from 'pg';
import { forbidden, notFound } from './errors';
import { inTransaction } from './pg-transaction';
import { embeddingOf, enforceQuota, type AddResult, type PassageQuota, type PassageRecords, type PreparedPassage, type QuotaView } from './passages';
import type { ContributionCount, Passage } from '../src/federated/protocol';

/** Rows per bulk statement (unnest arrays). */
const CHUNK = 1000;
/** pg_advisory_lock key held shared by every write spanning records and vectors, exclusively by a stray-vector cleanup. */
const WRITERS_LOCK = "hashtextextended('corag passage writers', 0)";
const EMPTY = Buffer.alloc(0);

export class PgPassageRecords implements PassageRecords {
  readonly kind = 'postgres';

  /** `ready`: resolves once the schema is migrated (PostgresState.open, which owns `pool`). */
  constructor(
    private readonly pool: pg.Pool,
    private readonly ready: () => Promise<void>,
  ) {}

  open(): Promise<void> {
    return this.ready();
  }

  private async rows<R extends pg.QueryResultRow>(sql: string, params: unknown[] = [], on: pg.Pool | pg.PoolClient = this.pool): Promise<R[]> {
    await this.ready();
    return (await on.query<R>(sql, params)).rows;
  }

  /** One transaction holding the session's passage lock: COMMIT when `fn` resolves, ROLLBACK when it throws. */
  private async locked<T>(sessionId: string, fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    await this.ready();
    return inTransaction(this.pool, async (c) => {
      await c.query("SELECT pg_advisory_xact_lock(hashtextextended('corag passages ' || $1, 0))", [sessionId]);
      return fn(c);
    });
  }

  async count(sessionId: string): Promise<number> {
    return (await this.rows<{ n: number }>('SELECT COUNT(*)::int AS n FROM passages WHERE session_id = $1', [sessionId]))[0].n;
  }

  async existingHashes(sessionId: string, hashes: readonly string[], on?: pg.PoolClient): Promise<Set<string>> {
    if (hashes.length === 0) return new Set();
    const rows = await this.rows<{ hash: string }>('SELECT hash FROM passages WHERE session_id = $1 AND hash = ANY($2::text[])', [sessionId, hashes], on);
    return new Set(rows.map((r) => r.hash));
  }

  async get(sessionId: string, ids: readonly number[]): Promise<Passage[]> {
    if (ids.length === 0) return [];
    const rows = await this.rows<{ id: string; client_id: string; hash: string; title: string; text: string }>(
      'SELECT id, client_id, hash, title, text FROM passages WHERE session_id = $1 AND id = ANY($2::int8[])',
      [sessionId, ids.filter(Number.isSafeInteger)],
    );
    const byId = new Map(rows.map((r) => [Number(r.id), { id: Number(r.id), title: r.title, text: r.text, clientId: r.client_id, hash: r.hash }]));
    return ids.filter((id) => byId.has(id)).map((id) => byId.get(id)!);
  }

  async contributions(sessionId: string): Promise<ContributionCount[]> {
    const rows = await this.rows<{ client_id: string; n: number }>(
      'SELECT client_id, COUNT(*)::int AS n FROM passages WHERE session_id = $1 GROUP BY client_id ORDER BY n DESC, client_id COLLATE "C"',
      [sessionId],
    );
    return rows.map((r) => ({ clientId: r.client_id, passages: r.n }));
  }

  private async quotaView(c: pg.PoolClient, sessionId: string, clientId: string, prepared: readonly PreparedPassage[]): Promise<QuotaView> {
    const hashes = prepared.map((p) => p.hash);
    const contributed = await c.query<{ hash: string }>(
      'SELECT p.hash FROM passage_contributors c JOIN passages p ON p.id = c.passage_id WHERE p.session_id = $1 AND c.client_id = $2 AND p.hash = ANY($3::text[])',
      [sessionId, clientId, hashes],
    );
    const size = 'COUNT(*)::int AS passages, COALESCE(SUM(octet_length(p.title) + octet_length(p.text)), 0)::float8 AS "textBytes"';
    const client = await c.query<QuotaView['client']>(
      `SELECT ${size} FROM passage_contributors c JOIN passages p ON p.id = c.passage_id WHERE p.session_id = $1 AND c.client_id = $2`,
      [sessionId, clientId],
    );
    const session = await c.query<QuotaView['session']>(`SELECT ${size} FROM passages p WHERE p.session_id = $1`, [sessionId]);
    return {
      known: await this.existingHashes(sessionId, hashes, c),
      contributed: new Set(contributed.rows.map((r) => r.hash)),
      client: client.rows[0],
      session: session.rows[0],
    };
  }

  async checkQuota(sessionId: string, clientId: string, prepared: readonly PreparedPassage[], quota: PassageQuota): Promise<void> {
    await this.ready();
    const c = await this.pool.connect();
    try {
      // One snapshot for the four reads (no lock: commit checks again under it).
      await c.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      enforceQuota(prepared, quota, await this.quotaView(c, sessionId, clientId, prepared));
    } finally {
      await c.query('ROLLBACK').catch(() => undefined);
      c.release();
    }
  }

  async reserveIds(n: number): Promise<number[]> {
    if (n === 0) return [];
    // nextval is never rolled back and never repeats, across every connection.
    const rows = await this.rows<{ id: string }>("SELECT nextval('passages_id_seq') AS id FROM generate_series(1, $1)", [n]);
    return rows.map((r) => Number(r.id));
  }

  async commit(
    sessionId: string,
    clientId: string,
    prepared: readonly PreparedPassage[],
    quota: PassageQuota | undefined,
    options: {
      withEmbeddings: boolean;
      idOf?: (p: PreparedPassage) => number;
      /** Runs inside the transaction once the new records are in (the pgvector store writes their vectors there). */
      alsoWrite?: (c: pg.PoolClient, added: ReadonlyArray<{ id: number; embedding: Float32Array }>) => Promise<void>;
    },
  ): Promise<{ results: AddResult[]; added: Array<{ id: number; embedding: Float32Array }> }> {
    return this.locked(sessionId, async (c) => {
      if (quota) enforceQuota(prepared, quota, await this.quotaView(c, sessionId, clientId, prepared));
      const stored = new Map(
        (
          await c.query<{ id: string; hash: string }>('SELECT id, hash FROM passages WHERE session_id = $1 AND hash = ANY($2::text[])', [
            sessionId,
            prepared.map((p) => p.hash),
          ])
        ).rows.map((r) => [r.hash, Number(r.id)]),
      );
      const known = new Set(stored.keys());
      const fresh = prepared.filter((p, i) => !known.has(p.hash) && prepared.findIndex((q) => q.hash === p.hash) === i);
      const now = new Date().toISOString();
      for (let i = 0; i < fresh.length; i += CHUNK) {
        const chunk = fresh.slice(i, i + CHUNK);
        const ids = options.idOf ? chunk.map((p) => options.idOf!(p)) : null;
        const blobs = chunk.map((p) => (options.withEmbeddings ? Buffer.from(p.embedding.buffer, p.embedding.byteOffset, p.embedding.byteLength) : EMPTY));
        // Without reserved ids the sequence numbers them in batch order (ORDER BY ord).
        const inserted = await c.query<{ id: string; hash: string }>(
          `INSERT INTO passages (id, session_id, client_id, hash, title, text, embedding, created_at)
           SELECT COALESCE(u.id, nextval('passages_id_seq')), $1, $2, u.hash, u.title, u.text, u.embedding, $3
           FROM unnest($4::int8[], $5::text[], $6::text[], $7::text[], $8::bytea[]) WITH ORDINALITY AS u(id, hash, title, text, embedding, ord)
           ORDER BY u.ord
           RETURNING id, hash`,
          [sessionId, clientId, now, ids ?? chunk.map(() => null), chunk.map((p) => p.hash), chunk.map((p) => p.title), chunk.map((p) => p.text), blobs],
        );
        for (const r of inserted.rows) stored.set(r.hash, Number(r.id));
      }
      const credited = [...new Set(prepared.map((p) => stored.get(p.hash)!))];
      for (let i = 0; i < credited.length; i += CHUNK) {
        await c.query(
          'INSERT INTO passage_contributors (passage_id, client_id) SELECT id, $2 FROM unnest($1::int8[]) AS u(id) ON CONFLICT (passage_id, client_id) DO NOTHING',
          [credited.slice(i, i + CHUNK), clientId],
        );
      }
      const freshHashes = new Set(fresh.map((p) => p.hash));
      const firstOf = new Map<string, number>();
      const results = prepared.map((p, i) => {
        if (!firstOf.has(p.hash)) firstOf.set(p.hash, i);
        return { id: stored.get(p.hash)!, duplicate: !(freshHashes.has(p.hash) && firstOf.get(p.hash) === i) };
      });
      const added = fresh.map((p) => ({ id: stored.get(p.hash)!, embedding: p.embedding }));
      if (options.alsoWrite && added.length > 0) await options.alsoWrite(c, added);
      return { results, added };
    });
  }

  async removeContribution(sessionId: string, clientId: string, id: number): Promise<{ deleted: boolean; contributorsLeft: number }> {
    if (!Number.isSafeInteger(id)) throw notFound('passage_not_found', `passage ${id} does not exist in this session`);
    return this.locked(sessionId, async (c) => {
      const row = await c.query('SELECT 1 FROM passages WHERE session_id = $1 AND id = $2', [sessionId, id]);
      if (row.rowCount === 0) throw notFound('passage_not_found', `passage ${id} does not exist in this session`);
      const removed = await c.query('DELETE FROM passage_contributors WHERE passage_id = $1 AND client_id = $2', [id, clientId]);
      if (removed.rowCount === 0)
        throw forbidden('not_your_passage', `passage ${id} was contributed by other clients, not by this one; only its contributors can withdraw it`);
      const left = (await c.query<{ n: number }>('SELECT COUNT(*)::int AS n FROM passage_contributors WHERE passage_id = $1', [id])).rows[0].n;
      if (left === 0) await c.query('DELETE FROM passages WHERE session_id = $1 AND id = $2', [sessionId, id]);
      // The passage is credited (contributions, Passage.clientId) to its earliest remaining contributor.
      else
        await c.query('UPDATE passages SET client_id = (SELECT client_id FROM passage_contributors WHERE passage_id = $1 ORDER BY seq LIMIT 1) WHERE id = $1', [
          id,
        ]);
      return { deleted: left === 0, contributorsLeft: left };
    });
  }

  async recordIds(sessionId: string): Promise<Array<{ id: number; hasEmbedding: boolean }>> {
    const rows = await this.rows<{ id: string; has: boolean }>(
      'SELECT id, octet_length(embedding) > 0 AS has FROM passages WHERE session_id = $1 ORDER BY id',
      [sessionId],
    );
    return rows.map((r) => ({ id: Number(r.id), hasEmbedding: r.has }));
  }

  async embeddings(sessionId: string, ids?: readonly number[]): Promise<Map<number, Float32Array>> {
    const rows =
      ids === undefined
        ? await this.rows<{ id: string; embedding: Buffer }>('SELECT id, embedding FROM passages WHERE session_id = $1 AND octet_length(embedding) > 0', [
            sessionId,
          ])
        : await this.rows<{ id: string; embedding: Buffer }>(
            'SELECT id, embedding FROM passages WHERE session_id = $1 AND id = ANY($2::int8[]) AND octet_length(embedding) > 0',
            [sessionId, ids],
          );
    return new Map(rows.map((r) => [Number(r.id), embeddingOf(r.embedding)]));
  }

  async clearEmbeddings(ids: readonly number[]): Promise<void> {
    for (let i = 0; i < ids.length; i += CHUNK)
      await this.rows("UPDATE passages SET embedding = ''::bytea WHERE id = ANY($1::int8[])", [ids.slice(i, i + CHUNK)]);
  }

  async changeMark(sessionId: string): Promise<string> {
    const [row] = await this.rows<{ n: number; last: string }>('SELECT COUNT(*)::int AS n, COALESCE(MAX(id), 0) AS last FROM passages WHERE session_id = $1', [
      sessionId,
    ]);
    return `${row.n}:${row.last}`;
  }

  /**
   * A session-level advisory lock, shared, on a connection held for the write: a process that dies
   * mid-write loses its connection and with it the lock.
   */
  async asWriter<T>(fn: () => Promise<T>): Promise<T> {
    await this.ready();
    const c = await this.pool.connect();
    let locked = false;
    try {
      await c.query(`SELECT pg_advisory_lock_shared(${WRITERS_LOCK})`);
      locked = true;
      return await fn();
    } finally {
      if (locked) await c.query(`SELECT pg_advisory_unlock_shared(${WRITERS_LOCK})`).catch(() => undefined);
      c.release();
    }
  }

  async withoutWriters<T>(fn: () => Promise<T>, options: { wait?: boolean } = {}): Promise<T | undefined> {
    await this.ready();
    const c = await this.pool.connect();
    try {
      if (options.wait) await c.query(`SELECT pg_advisory_lock(${WRITERS_LOCK})`);
      else if (!(await c.query<{ ok: boolean }>(`SELECT pg_try_advisory_lock(${WRITERS_LOCK}) AS ok`)).rows[0].ok) return undefined;
      try {
        return await fn();
      } finally {
        await c.query(`SELECT pg_advisory_unlock(${WRITERS_LOCK})`).catch(() => undefined);
      }
    } finally {
      c.release();
    }
  }

  async sessionWithoutEmbeddings(): Promise<string | undefined> {
    return (await this.rows<{ session_id: string }>('SELECT session_id FROM passages WHERE octet_length(embedding) = 0 LIMIT 1'))[0]?.session_id;
  }

  async checkHistory(sessionId: string, clientId: string): Promise<{ batches: number; mismatches: number }> {
    const [row] = await this.rows<{ batches: number; mismatches: number }>(
      'SELECT batches, mismatches FROM passage_checks WHERE session_id = $1 AND client_id = $2',
      [sessionId, clientId],
    );
    return row ?? { batches: 0, mismatches: 0 };
  }

  async recordCheck(sessionId: string, clientId: string, outcome: 'batches' | 'mismatches'): Promise<void> {
    await this.rows(
      `INSERT INTO passage_checks (session_id, client_id, ${outcome}) VALUES ($1, $2, 1) ON CONFLICT (session_id, client_id) DO UPDATE SET ${outcome} = passage_checks.${outcome} + 1`,
      [sessionId, clientId],
    );
  }
}
