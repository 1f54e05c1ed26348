/**
 * CoordinatorState in PostgreSQL (`--database postgres://…` / CORAG_DATABASE_URL), through `pg`
 * (node-postgres). The tables are the SQLite ones (server/db.ts) with PostgreSQL types; clients get
 * a `seq` (identity) for their join order.
 *
 * Round transitions and update acceptance are transactions that first lock the row they depend on
 * (`SELECT … FOR UPDATE`: the session's row to open a round or install a model, the round's row to
 * accept an update) and re-check the state under the lock, so several coordinator processes on one
 * database cannot both open a round, accept two updates at one running-sum position, or accept a
 * client twice. Schema versions are in `schema_migrations`; migrations run in one transaction under
 * an advisory lock, so coordinators starting together migrate once.
 */
import pg from 'pg';
import { conflict } from './errors';
import { BLOBS_SCHEMA } from './pg-blob-store';
import { inTransaction } from './pg-transaction';
import { checkAcceptable, checkSameJoin, roundRecord } from './sqlite-state';
import type {
  CoordinatorState,
  NewClient,
  NewSession,
  NewUpdate,
  PartialRecord,
  Principal,
  RoundPlan,
  RoundRecord,
  SessionRecord,
  SharedRoundState,
  UpdateRecord,
} from './state';
import type { RoundState, TrainingQuestion } from '../src/federated/protocol';

/** One schema version: its name (recorded with it) and the statements that make it. */
export interface Migration {
  readonly name: string;
  readonly sql: string;
}

/** Schema versions in order: version i + 1 is MIGRATIONS[i]. */
const MIGRATIONS: readonly Migration[] = [
  {
    name: 'initial',
    sql: `
CREATE TABLE sessions (
  id TEXT PRIMARY KEY,
  config TEXT NOT NULL,
  admin_token_hash TEXT NOT NULL UNIQUE,
  join_code TEXT NOT NULL UNIQUE,
  current_version INTEGER,
  created_at TEXT NOT NULL
);
CREATE TABLE clients (
  id TEXT PRIMARY KEY,
  seq BIGINT GENERATED ALWAYS AS IDENTITY,
  session_id TEXT NOT NULL REFERENCES sessions(id),
  name TEXT NOT NULL,
  token_hash TEXT NOT NULL UNIQUE,
  joined_at TEXT NOT NULL
);
CREATE INDEX clients_by_session ON clients(session_id, joined_at);
CREATE TABLE model_versions (
  session_id TEXT NOT NULL REFERENCES sessions(id),
  version INTEGER NOT NULL,
  file TEXT NOT NULL,
  round INTEGER,
  created_at TEXT NOT NULL,
  PRIMARY KEY (session_id, version)
);
CREATE TABLE rounds (
  session_id TEXT NOT NULL REFERENCES sessions(id),
  number INTEGER NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('open','closing','closed','failed')),
  base_version INTEGER NOT NULL,
  result_version INTEGER,
  participants TEXT NOT NULL,
  config TEXT NOT NULL,
  opened_at TEXT NOT NULL,
  deadline_at TEXT NOT NULL,
  closed_at TEXT,
  sum_seq INTEGER NOT NULL DEFAULT 0,
  weight_total DOUBLE PRECISION NOT NULL DEFAULT 0,
  metric_sums TEXT NOT NULL DEFAULT '{}',
  metrics TEXT NOT NULL DEFAULT '{}',
  failure_reason TEXT,
  PRIMARY KEY (session_id, number)
);
CREATE TABLE updates (
  session_id TEXT NOT NULL,
  round INTEGER NOT NULL,
  client_id TEXT NOT NULL REFERENCES clients(id),
  num_examples INTEGER NOT NULL,
  weight DOUBLE PRECISION NOT NULL,
  sum_seq INTEGER NOT NULL,
  bytes BIGINT NOT NULL,
  accepted_at TEXT NOT NULL,
  norm DOUBLE PRECISION,
  PRIMARY KEY (session_id, round, client_id),
  FOREIGN KEY (session_id, round) REFERENCES rounds(session_id, number)
);
CREATE TABLE training_questions (
  session_id TEXT NOT NULL REFERENCES sessions(id),
  position INTEGER NOT NULL,
  question TEXT NOT NULL,
  answers TEXT NOT NULL,
  PRIMARY KEY (session_id, position)
);`,
  },
  {
    // Several coordinator processes on one database: each keeps its own running sum of a round
    // (a partial sum, its files named by the process's node id) and records which node accepted
    // each update; the closing process merges the partials. accept_seq is the commit order across
    // processes (accepts are serialised by the round's row lock).
    name: 'partial-sums',
    sql: `
ALTER TABLE updates ADD COLUMN node TEXT;
ALTER TABLE updates ADD COLUMN accept_seq BIGINT GENERATED ALWAYS AS IDENTITY;
CREATE TABLE round_partials (
  session_id TEXT NOT NULL,
  round INTEGER NOT NULL,
  node TEXT NOT NULL,
  sum_seq INTEGER NOT NULL,
  weight_total DOUBLE PRECISION NOT NULL,
  metric_sums TEXT NOT NULL,
  PRIMARY KEY (session_id, round, node),
  FOREIGN KEY (session_id, round) REFERENCES rounds(session_id, number)
);`,
  },
  {
    // The passage records (server/pg-passages.ts), so that coordinators on several hosts share
    // them: SQLite's tables (server/db.ts) with PostgreSQL types. Ids come from passages_id_seq
    // (never reused: the LanceDB store names vectors by id); an empty embedding means the vector
    // lives in LanceDB. passage_contributors.seq is the contribution order (a withdrawal credits
    // the earliest remaining contributor, as SQLite's rowid order does).
    name: 'passage-records',
    sql: `
CREATE TABLE passages (
  id BIGSERIAL PRIMARY KEY,
  session_id TEXT NOT NULL REFERENCES sessions(id),
  client_id TEXT NOT NULL,
  hash TEXT NOT NULL,
  title TEXT NOT NULL,
  text TEXT NOT NULL,
  embedding BYTEA NOT NULL,
  created_at TEXT NOT NULL,
  UNIQUE (session_id, hash)
);
CREATE INDEX passages_by_client ON passages(session_id, client_id);
CREATE TABLE passage_contributors (
  passage_id BIGINT NOT NULL REFERENCES passages(id) ON DELETE CASCADE,
  client_id TEXT NOT NULL,
  seq BIGINT GENERATED ALWAYS AS IDENTITY,
  PRIMARY KEY (passage_id, client_id)
);
CREATE INDEX passage_contributors_by_client ON passage_contributors(client_id);
CREATE TABLE passage_checks (
  session_id TEXT NOT NULL REFERENCES sessions(id),
  client_id TEXT NOT NULL,
  batches INTEGER NOT NULL DEFAULT 0,
  mismatches INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (session_id, client_id)
);`,
  },
  {
    // Idempotent joins (server/coordinator.ts join): SQLite's join_keys (server/db.ts). The
    // primary key is what makes two processes receiving one key create one client.
    name: 'join-keys',
    sql: `
CREATE TABLE join_keys (
  session_id TEXT NOT NULL REFERENCES sessions(id),
  key_hash TEXT NOT NULL,
  client_id TEXT NOT NULL REFERENCES clients(id),
  created_at TEXT NOT NULL,
  PRIMARY KEY (session_id, key_hash)
);
CREATE INDEX join_keys_by_age ON join_keys(session_id, created_at);`,
  },
  {
    // Model versions, partial sums and deltas in the database (`--blob-store database`,
    // server/pg-blob-store.ts): coordinators on several hosts then need no shared mount.
    name: 'blobs',
    sql: BLOBS_SCHEMA,
  },
];
/** pg_advisory_xact_lock key for migrations ("corag" in ASCII). */
const MIGRATION_LOCK = 0x636f726167;

type Queryable = pg.Pool | pg.PoolClient;

/**
 * Brings one track of schema versions up to date inside the caller's transaction `c`: the
 * versions `table` does not record yet are applied in order and recorded, under an advisory lock,
 * so processes starting together migrate once. The state's track is `schema_migrations`; an
 * optional part of the schema (the pgvector passage store's, server/pgvector-passages.ts) keeps
 * its own track, applied only by the processes that use it.
 */
export async function applyMigrations(c: pg.PoolClient, table: string, migrations: readonly Migration[]): Promise<void> {
  await c.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
  await c.query(`CREATE TABLE IF NOT EXISTS ${table} (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)`);
  const at = Number((await c.query<{ v: number }>(`SELECT COALESCE(MAX(version), 0) AS v FROM ${table}`)).rows[0].v);
  if (at > migrations.length) {
    throw new Error(`the database's schema is version ${at}, newer than this coordinator's (${migrations.length}, ${table}): run a newer coordinator`);
  }
  for (let v = at + 1; v <= migrations.length; v++) {
    const m = migrations[v - 1];
    await c.query(m.sql);
    await c.query(`INSERT INTO ${table} (version, name, applied_at) VALUES ($1, $2, $3)`, [v, m.name, new Date().toISOString()]);
  }
}

export class PostgresState implements CoordinatorState, SharedRoundState {
  readonly kind = 'postgres';
  /** Shared with the passage records (server/pg-passages.ts): one pool per process. */
  readonly pool: pg.Pool;
  private opening?: Promise<void>;

  constructor(readonly url: string) {
    this.pool = new pg.Pool({ connectionString: url, max: 8 });
    // An idle client's connection dropping (the server restarted) is reported, not fatal.
    this.pool.on('error', (e) => process.stderr.write(`coordinator: PostgreSQL connection lost: ${e.message}\n`));
  }

  open(): Promise<void> {
    this.opening ??= this.transaction(async (c) => {
      await applyMigrations(c, 'schema_migrations', MIGRATIONS);
    }).catch((e: unknown) => {
      this.opening = undefined;
      throw new Error(`PostgreSQL ${redactUrl(this.url)}: ${(e as Error).message}`);
    });
    return this.opening;
  }

  async close(): Promise<void> {
    await this.pool.end();
  }

  /** Runs `fn` in one transaction on one connection: COMMIT when it resolves, ROLLBACK when it throws. */
  private transaction<T>(fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    return inTransaction(this.pool, fn);
  }

  private async rows<R extends pg.QueryResultRow>(sql: string, params: unknown[] = [], on: Queryable = this.pool): Promise<R[]> {
    await this.open();
    return (await on.query<R>(sql, params)).rows;
  }

  async createSession(s: NewSession): Promise<void> {
    await this.open();
    await this.transaction(async (c) => {
      await c.query('INSERT INTO sessions (id, config, admin_token_hash, join_code, current_version, created_at) VALUES ($1, $2, $3, $4, $5, $6)', [
        s.id,
        s.config,
        s.adminTokenHash,
        s.joinCode,
        s.withModel ? 0 : null,
        s.createdAt,
      ]);
      if (s.withModel)
        await c.query('INSERT INTO model_versions (session_id, version, file, round, created_at) VALUES ($1, 0, $2, NULL, $3)', [
          s.id,
          'v0.safetensors',
          s.createdAt,
        ]);
      const questions = s.questions ?? [];
      // One statement per 1,000 questions (a pool has at most a few thousand).
      for (let i = 0; i < questions.length; i += 1000) {
        const chunk = questions.slice(i, i + 1000);
        await c.query('INSERT INTO training_questions (session_id, position, question, answers) SELECT $1, * FROM unnest($2::int[], $3::text[], $4::text[])', [
          s.id,
          chunk.map((_, j) => i + j),
          chunk.map((q) => q.question),
          chunk.map((q) => JSON.stringify(q.answers)),
        ]);
      }
    });
  }

  async session(id: string): Promise<SessionRecord | undefined> {
    const [row] = await this.rows<{ config: string; current_version: number | null; join_code: string }>(
      'SELECT config, current_version, join_code FROM sessions WHERE id = $1',
      [id],
    );
    return row && { id, config: row.config, currentVersion: row.current_version, joinCode: row.join_code };
  }

  async sessionIds(): Promise<string[]> {
    return (await this.rows<{ id: string }>('SELECT id FROM sessions ORDER BY created_at')).map((r) => r.id);
  }

  async sessionIdByJoinCode(joinCode: string): Promise<string | undefined> {
    return (await this.rows<{ id: string }>('SELECT id FROM sessions WHERE join_code = $1', [joinCode]))[0]?.id;
  }

  async principal(sessionId: string, tokenHash: string): Promise<Principal | undefined> {
    if ((await this.rows('SELECT 1 FROM sessions WHERE id = $1 AND admin_token_hash = $2', [sessionId, tokenHash])).length) return { role: 'admin' };
    const [client] = await this.rows<{ id: string }>('SELECT id FROM clients WHERE session_id = $1 AND token_hash = $2', [sessionId, tokenHash]);
    return client && { role: 'client', clientId: client.id };
  }

  async addClientOnce(c: NewClient, key: { hash: string; since: string }): Promise<string> {
    await this.open();
    const attempt = () =>
      this.transaction(async (q) => {
        await q.query('DELETE FROM join_keys WHERE session_id = $1 AND created_at < $2', [c.sessionId, key.since]);
        const [held] = (
          await q.query<{ client_id: string; name: string }>(
            'SELECT k.client_id, c.name FROM join_keys k JOIN clients c ON c.id = k.client_id WHERE k.session_id = $1 AND k.key_hash = $2 FOR UPDATE OF k',
            [c.sessionId, key.hash],
          )
        ).rows;
        if (held) {
          checkSameJoin(held.name, c.name);
          await q.query('UPDATE clients SET token_hash = $1 WHERE id = $2', [c.tokenHash, held.client_id]);
          return held.client_id;
        }
        await q.query('INSERT INTO clients (id, session_id, name, token_hash, joined_at) VALUES ($1, $2, $3, $4, $5)', [
          c.id,
          c.sessionId,
          c.name,
          c.tokenHash,
          c.joinedAt,
        ]);
        await q.query('INSERT INTO join_keys (session_id, key_hash, client_id, created_at) VALUES ($1, $2, $3, $4)', [c.sessionId, key.hash, c.id, c.joinedAt]);
        return c.id;
      });
    try {
      return await attempt();
    } catch (e) {
      // Another process inserted the same key between our look-up and our insert (its insert
      // held the key's index entry until it committed): our client was rolled back with the
      // transaction, and a second attempt finds the key and answers with that process's client.
      if ((e as { code?: string; constraint?: string }).code === '23505' && (e as { constraint?: string }).constraint === 'join_keys_pkey') return attempt();
      throw e;
    }
  }

  async addClient(c: NewClient): Promise<void> {
    await this.rows('INSERT INTO clients (id, session_id, name, token_hash, joined_at) VALUES ($1, $2, $3, $4, $5)', [
      c.id,
      c.sessionId,
      c.name,
      c.tokenHash,
      c.joinedAt,
    ]);
  }

  async clientCount(sessionId: string): Promise<number> {
    return (await this.rows<{ n: number }>('SELECT COUNT(*)::int AS n FROM clients WHERE session_id = $1', [sessionId]))[0].n;
  }

  async joinOrder(sessionId: string, clientId: string): Promise<number> {
    const sql = 'SELECT COUNT(*)::int AS n FROM clients WHERE session_id = $1 AND seq < (SELECT seq FROM clients WHERE id = $2 AND session_id = $1)';
    return (await this.rows<{ n: number }>(sql, [sessionId, clientId]))[0].n;
  }

  async trainingQuestions(sessionId: string, from: number, count: number): Promise<TrainingQuestion[]> {
    const rows = await this.rows<{ question: string; answers: string }>(
      'SELECT question, answers FROM training_questions WHERE session_id = $1 AND position >= $2 AND position < $3 ORDER BY position',
      [sessionId, from, from + count],
    );
    return rows.map((r) => ({ question: r.question, answers: JSON.parse(r.answers) as string[] }));
  }

  async installModel(sessionId: string, expectedCurrent: number | null, version: number, createdAt: string): Promise<void> {
    await this.open();
    await this.transaction(async (c) => {
      const [row] = (await c.query<{ current_version: number | null }>('SELECT current_version FROM sessions WHERE id = $1 FOR UPDATE', [sessionId])).rows;
      if (!row || row.current_version !== expectedCurrent) throw conflict('model_changed', 'the global model changed meanwhile; retry');
      if ((await c.query("SELECT 1 FROM rounds WHERE session_id = $1 AND state IN ('open','closing')", [sessionId])).rowCount) {
        throw conflict('round_open', 'the global model cannot be replaced while a round is open');
      }
      await c.query('INSERT INTO model_versions (session_id, version, file, round, created_at) VALUES ($1, $2, $3, NULL, $4)', [
        sessionId,
        version,
        `v${version}.safetensors`,
        createdAt,
      ]);
      await c.query('UPDATE sessions SET current_version = $1 WHERE id = $2', [version, sessionId]);
    });
  }

  async hasModelVersion(sessionId: string, version: number): Promise<boolean> {
    return (await this.rows('SELECT 1 FROM model_versions WHERE session_id = $1 AND version = $2', [sessionId, version])).length > 0;
  }

  async latestInstalledVersion(sessionId: string): Promise<number | undefined> {
    const [row] = await this.rows<{ version: number }>(
      'SELECT version FROM model_versions WHERE session_id = $1 AND round IS NULL ORDER BY version DESC LIMIT 1',
      [sessionId],
    );
    return row?.version;
  }

  async round(sessionId: string, number: number): Promise<RoundRecord | undefined> {
    const [row] = await this.rows<RoundRow>('SELECT * FROM rounds WHERE session_id = $1 AND number = $2', [sessionId, number]);
    return row && roundRecord(row);
  }

  async lastRound(sessionId: string): Promise<RoundRecord | undefined> {
    const [row] = await this.rows<RoundRow>('SELECT * FROM rounds WHERE session_id = $1 ORDER BY number DESC LIMIT 1', [sessionId]);
    return row && roundRecord(row);
  }

  async activeRounds(): Promise<RoundRecord[]> {
    return (await this.rows<RoundRow>("SELECT * FROM rounds WHERE state IN ('open','closing') ORDER BY session_id, number")).map(roundRecord);
  }

  async openRound(sessionId: string, baseVersion: number, plan: (number: number, candidates: string[]) => RoundPlan): Promise<RoundRecord> {
    await this.open();
    return this.transaction(async (c) => {
      // The session's row serialises round openings across processes.
      await c.query('SELECT 1 FROM sessions WHERE id = $1 FOR UPDATE', [sessionId]);
      const [open] = (await c.query<{ number: number }>("SELECT number FROM rounds WHERE session_id = $1 AND state IN ('open','closing')", [sessionId])).rows;
      if (open) throw conflict('round_open', `round ${open.number} is still open`);
      const candidates = (await c.query<{ id: string }>('SELECT id FROM clients WHERE session_id = $1 ORDER BY joined_at, id', [sessionId])).rows.map(
        (r) => r.id,
      );
      const last = (await c.query<{ n: number | null }>('SELECT MAX(number) AS n FROM rounds WHERE session_id = $1', [sessionId])).rows[0];
      const number = (last.n ?? 0) + 1;
      const p = plan(number, candidates);
      const [row] = (
        await c.query<RoundRow>(
          'INSERT INTO rounds (session_id, number, state, base_version, participants, config, opened_at, deadline_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *',
          [sessionId, number, 'open', baseVersion, JSON.stringify(p.participants), JSON.stringify(p.config), p.openedAt, p.deadlineAt],
        )
      ).rows;
      return roundRecord(row);
    });
  }

  async updates(sessionId: string, round: number): Promise<UpdateRecord[]> {
    const rows = await this.rows<{ client_id: string; weight: number; norm: number | null; sum_seq: number; node: string | null }>(
      'SELECT client_id, weight, norm, sum_seq, node FROM updates WHERE session_id = $1 AND round = $2 ORDER BY accept_seq',
      [sessionId, round],
    );
    // `node` only where a process of several accepted it: one process's rows read as SQLite's do.
    return rows.map((r) => ({ clientId: r.client_id, weight: r.weight, norm: r.norm, sumSeq: r.sum_seq, ...(r.node === null ? {} : { node: r.node }) }));
  }

  async updateCount(sessionId: string, round: number): Promise<number> {
    return (await this.rows<{ n: number }>('SELECT COUNT(*)::int AS n FROM updates WHERE session_id = $1 AND round = $2', [sessionId, round]))[0].n;
  }

  async hasUpdate(sessionId: string, round: number, clientId: string): Promise<boolean> {
    return (await this.rows('SELECT 1 FROM updates WHERE session_id = $1 AND round = $2 AND client_id = $3', [sessionId, round, clientId])).length > 0;
  }

  async acceptUpdate(u: NewUpdate): Promise<number> {
    await this.open();
    return this.transaction(async (c) => {
      const [row] = (
        await c.query<{ state: RoundState; sum_seq: number; weight_total: number }>(
          'SELECT state, sum_seq, weight_total FROM rounds WHERE session_id = $1 AND number = $2 FOR UPDATE',
          [u.sessionId, u.round],
        )
      ).rows;
      const duplicate =
        (await c.query('SELECT 1 FROM updates WHERE session_id = $1 AND round = $2 AND client_id = $3', [u.sessionId, u.round, u.clientId])).rowCount! > 0;
      checkAcceptable(u, row, duplicate);
      const weightTotal = row.weight_total + u.weight;
      await c.query(
        'INSERT INTO updates (session_id, round, client_id, num_examples, weight, sum_seq, bytes, accepted_at, norm) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)',
        [u.sessionId, u.round, u.clientId, u.numExamples, u.weight, u.sumSeq, u.bytes, u.acceptedAt, u.norm],
      );
      await c.query('UPDATE rounds SET sum_seq = $1, weight_total = $2, metric_sums = $3 WHERE session_id = $4 AND number = $5', [
        u.sumSeq,
        weightTotal,
        JSON.stringify(u.metricSums),
        u.sessionId,
        u.round,
      ]);
      return weightTotal;
    });
  }

  async acceptPartialUpdate(u: NewUpdate, node: string): Promise<{ weightTotal: number; accepted: number }> {
    await this.open();
    return this.transaction(async (c) => {
      // The round's row serialises accepts and transitions across processes.
      const [row] = (
        await c.query<{ state: RoundState; weight_total: number; metric_sums: string }>(
          'SELECT state, weight_total, metric_sums FROM rounds WHERE session_id = $1 AND number = $2 FOR UPDATE',
          [u.sessionId, u.round],
        )
      ).rows;
      const duplicate =
        (await c.query('SELECT 1 FROM updates WHERE session_id = $1 AND round = $2 AND client_id = $3', [u.sessionId, u.round, u.clientId])).rowCount! > 0;
      const [partial] = (
        await c.query<{ sum_seq: number; metric_sums: string }>(
          'SELECT sum_seq, metric_sums FROM round_partials WHERE session_id = $1 AND round = $2 AND node = $3',
          [u.sessionId, u.round, node],
        )
      ).rows;
      // The position checked is this node's own: other processes' accepts do not move it.
      checkAcceptable(u, row && { state: row.state, sum_seq: partial?.sum_seq ?? 0 }, duplicate);
      const weightTotal = row.weight_total + u.weight;
      // The round's metric sums: everything committed so far plus what this update added to its node's partial.
      const before = JSON.parse(partial?.metric_sums ?? '{}') as Record<string, number>;
      const roundSums = JSON.parse(row.metric_sums) as Record<string, number>;
      for (const [k, v] of Object.entries(u.metricSums)) roundSums[k] = (roundSums[k] ?? 0) + v - (before[k] ?? 0);
      await c.query(
        'INSERT INTO updates (session_id, round, client_id, num_examples, weight, sum_seq, bytes, accepted_at, norm, node) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)',
        [u.sessionId, u.round, u.clientId, u.numExamples, u.weight, u.sumSeq, u.bytes, u.acceptedAt, u.norm, node],
      );
      await c.query(
        `INSERT INTO round_partials (session_id, round, node, sum_seq, weight_total, metric_sums) VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (session_id, round, node) DO UPDATE SET sum_seq = EXCLUDED.sum_seq, weight_total = round_partials.weight_total + $7, metric_sums = EXCLUDED.metric_sums`,
        [u.sessionId, u.round, node, u.sumSeq, u.weight, JSON.stringify(u.metricSums), u.weight],
      );
      await c.query('UPDATE rounds SET weight_total = $1, metric_sums = $2 WHERE session_id = $3 AND number = $4', [
        weightTotal,
        JSON.stringify(roundSums),
        u.sessionId,
        u.round,
      ]);
      const accepted = (await c.query<{ n: number }>('SELECT COUNT(*)::int AS n FROM updates WHERE session_id = $1 AND round = $2', [u.sessionId, u.round]))
        .rows[0].n;
      return { weightTotal, accepted };
    });
  }

  async partials(sessionId: string, round: number): Promise<PartialRecord[]> {
    const rows = await this.rows<{ node: string; sum_seq: number; weight_total: number; metric_sums: string }>(
      'SELECT node, sum_seq, weight_total, metric_sums FROM round_partials WHERE session_id = $1 AND round = $2 ORDER BY node',
      [sessionId, round],
    );
    return rows.map((r) => ({ node: r.node, sumSeq: r.sum_seq, weightTotal: r.weight_total, metricSums: JSON.parse(r.metric_sums) as Record<string, number> }));
  }

  async claimClose(sessionId: string, round: number): Promise<(() => Promise<void>) | undefined> {
    await this.open();
    const c = await this.pool.connect();
    let locked = false;
    try {
      // A session-level advisory lock, held on this connection while the round is aggregated: if
      // this process dies, PostgreSQL drops its connection and the lock, so another process can
      // take over a round left 'closing'; while it lives, nobody else aggregates the round.
      locked = (await c.query<{ ok: boolean }>('SELECT pg_try_advisory_lock(hashtext($1), $2) AS ok', [sessionId, round])).rows[0].ok;
      if (locked) {
        const moved = await c.query("UPDATE rounds SET state = 'closing' WHERE session_id = $1 AND number = $2 AND state IN ('open','closing')", [
          sessionId,
          round,
        ]);
        if (moved.rowCount === 1) {
          return async () => {
            try {
              await c.query('SELECT pg_advisory_unlock(hashtext($1), $2)', [sessionId, round]);
            } finally {
              c.release();
            }
          };
        }
        await c.query('SELECT pg_advisory_unlock(hashtext($1), $2)', [sessionId, round]);
      }
      c.release();
      return undefined;
    } catch (e) {
      // The connection's state (a lock?) is unknown: destroy it rather than hand it back to the pool.
      c.release(e as Error);
      throw e;
    }
  }

  async markClosing(sessionId: string, round: number): Promise<boolean> {
    await this.open();
    const result = await this.pool.query("UPDATE rounds SET state = 'closing' WHERE session_id = $1 AND number = $2 AND state = 'open'", [sessionId, round]);
    return result.rowCount === 1;
  }

  async failRound(sessionId: string, round: number, closedAt: string, reason: string): Promise<void> {
    await this.rows("UPDATE rounds SET state = 'failed', closed_at = $1, failure_reason = $2 WHERE session_id = $3 AND number = $4", [
      closedAt,
      reason,
      sessionId,
      round,
    ]);
  }

  async publishRound(sessionId: string, round: number, version: number, closedAt: string, metrics: Record<string, number>): Promise<void> {
    await this.open();
    await this.transaction(async (c) => {
      await c.query('SELECT 1 FROM rounds WHERE session_id = $1 AND number = $2 FOR UPDATE', [sessionId, round]);
      await c.query(
        `INSERT INTO model_versions (session_id, version, file, round, created_at) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (session_id, version) DO UPDATE SET file = EXCLUDED.file, round = EXCLUDED.round, created_at = EXCLUDED.created_at`,
        [sessionId, version, `v${version}.safetensors`, round, closedAt],
      );
      await c.query("UPDATE rounds SET state = 'closed', result_version = $1, closed_at = $2, metrics = $3 WHERE session_id = $4 AND number = $5", [
        version,
        closedAt,
        JSON.stringify(metrics),
        sessionId,
        round,
      ]);
      await c.query('UPDATE sessions SET current_version = $1 WHERE id = $2', [version, sessionId]);
    });
  }
}

type RoundRow = Parameters<typeof roundRecord>[0];

/** Checks `--database` / CORAG_DATABASE_URL: a postgres:// or postgresql:// URL (else one line saying why). */
export function parseDatabaseUrl(raw: string): string {
  const value = raw.trim();
  if (value === '') throw new Error('--database needs a postgres://user:password@host:port/database URL, got an empty value');
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//.exec(value)?.[1];
  if (!scheme || !/^postgres(ql)?$/i.test(scheme)) {
    throw new Error(
      `--database: ${scheme ? `"${scheme}://" is not supported` : 'not a URL'}; give postgres://user:password@host:port/database (a Unix socket: postgres://user@/database?host=/run/postgresql)`,
    );
  }
  return value;
}

/** The URL without its password, for messages. */
export function redactUrl(url: string): string {
  return url.replace(/^([^:]+:\/\/[^:@/]*):[^@/]*@/, '$1:***@');
}
