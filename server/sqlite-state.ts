/**
 * The default CoordinatorState: the data folder's SQLite database (server/db.ts), the same tables
 * and rows as before the interface existed. better-sqlite3 is synchronous, so each method runs to
 * completion (a transaction as one `BEGIN IMMEDIATE … COMMIT`) before its promise settles; the
 * checks inside the transactions are the same as PostgreSQL's (server/pg-state.ts).
 */
import type { Db } from './db';
import { conflict } from './errors';
import type { CoordinatorState, NewClient, NewSession, NewUpdate, Principal, RoundPlan, RoundRecord, SessionRecord, UpdateRecord } from './state';
import type { RoundState, TrainingQuestion } from '../src/federated/protocol';

interface RoundRow {
  session_id: string;
  number: number;
  state: RoundState;
  base_version: number;
  result_version: number | null;
  participants: string;
  config: string;
  opened_at: string;
  deadline_at: string;
  closed_at: string | null;
  sum_seq: number;
  weight_total: number;
  metric_sums: string;
  metrics: string;
  failure_reason: string | null;
}

/** A rounds row (either database's: column names and JSON-as-text are the same) as a record. */
export function roundRecord(r: RoundRow): RoundRecord {
  return {
    sessionId: r.session_id,
    number: Number(r.number),
    state: r.state,
    baseVersion: Number(r.base_version),
    resultVersion: r.result_version === null ? null : Number(r.result_version),
    participants: JSON.parse(r.participants) as string[],
    config: JSON.parse(r.config) as Record<string, string | number | boolean>,
    openedAt: r.opened_at,
    deadlineAt: r.deadline_at,
    closedAt: r.closed_at,
    sumSeq: Number(r.sum_seq),
    weightTotal: Number(r.weight_total),
    metricSums: JSON.parse(r.metric_sums) as Record<string, number>,
    metrics: JSON.parse(r.metrics) as Record<string, number>,
    failureReason: r.failure_reason ?? null,
  };
}

export class SqliteState implements CoordinatorState {
  readonly kind = 'sqlite';

  constructor(private readonly db: Db) {}

  async open(): Promise<void> {}

  /** The database is the data folder's; its owner (the coordinator) closes it. */
  async close(): Promise<void> {}

  async createSession(s: NewSession): Promise<void> {
    this.db.transaction(() => {
      this.db
        .prepare('INSERT INTO sessions (id, config, admin_token_hash, join_code, current_version, created_at) VALUES (?, ?, ?, ?, ?, ?)')
        .run(s.id, s.config, s.adminTokenHash, s.joinCode, s.withModel ? 0 : null, s.createdAt);
      if (s.withModel)
        this.db
          .prepare('INSERT INTO model_versions (session_id, version, file, round, created_at) VALUES (?, 0, ?, NULL, ?)')
          .run(s.id, 'v0.safetensors', s.createdAt);
      const insert = this.db.prepare('INSERT INTO training_questions (session_id, position, question, answers) VALUES (?, ?, ?, ?)');
      s.questions?.forEach((q, i) => insert.run(s.id, i, q.question, JSON.stringify(q.answers)));
    })();
  }

  async session(id: string): Promise<SessionRecord | undefined> {
    const row = this.db.prepare('SELECT config, current_version, join_code FROM sessions WHERE id = ?').get(id) as
      { config: string; current_version: number | null; join_code: string } | undefined;
    return row && { id, config: row.config, currentVersion: row.current_version, joinCode: row.join_code };
  }

  async sessionIds(): Promise<string[]> {
    return (this.db.prepare('SELECT id FROM sessions ORDER BY created_at').all() as Array<{ id: string }>).map((r) => r.id);
  }

  async sessionIdByJoinCode(joinCode: string): Promise<string | undefined> {
    return (this.db.prepare('SELECT id FROM sessions WHERE join_code = ?').get(joinCode) as { id: string } | undefined)?.id;
  }

  async principal(sessionId: string, tokenHash: string): Promise<Principal | undefined> {
    if (this.db.prepare('SELECT id FROM sessions WHERE id = ? AND admin_token_hash = ?').get(sessionId, tokenHash)) return { role: 'admin' };
    const client = this.db.prepare('SELECT id FROM clients WHERE session_id = ? AND token_hash = ?').get(sessionId, tokenHash) as { id: string } | undefined;
    return client && { role: 'client', clientId: client.id };
  }

  async addClient(c: NewClient): Promise<void> {
    this.db
      .prepare('INSERT INTO clients (id, session_id, name, token_hash, joined_at) VALUES (?, ?, ?, ?, ?)')
      .run(c.id, c.sessionId, c.name, c.tokenHash, c.joinedAt);
  }

  async addClientOnce(c: NewClient, key: { hash: string; since: string }): Promise<string> {
    // IMMEDIATE: the write lock is taken before the key is looked up, so two joins with one key
    // (this process has one writer; SQLite state is never shared) cannot both miss it.
    return this.db
      .transaction(() => {
        this.db.prepare('DELETE FROM join_keys WHERE session_id = ? AND created_at < ?').run(c.sessionId, key.since);
        const held = this.db
          .prepare('SELECT k.client_id, c.name FROM join_keys k JOIN clients c ON c.id = k.client_id WHERE k.session_id = ? AND k.key_hash = ?')
          .get(c.sessionId, key.hash) as { client_id: string; name: string } | undefined;
        if (held) {
          checkSameJoin(held.name, c.name);
          this.db.prepare('UPDATE clients SET token_hash = ? WHERE id = ?').run(c.tokenHash, held.client_id);
          return held.client_id;
        }
        this.db
          .prepare('INSERT INTO clients (id, session_id, name, token_hash, joined_at) VALUES (?, ?, ?, ?, ?)')
          .run(c.id, c.sessionId, c.name, c.tokenHash, c.joinedAt);
        this.db.prepare('INSERT INTO join_keys (session_id, key_hash, client_id, created_at) VALUES (?, ?, ?, ?)').run(c.sessionId, key.hash, c.id, c.joinedAt);
        return c.id;
      })
      .immediate();
  }

  async clientCount(sessionId: string): Promise<number> {
    return (this.db.prepare('SELECT COUNT(*) AS n FROM clients WHERE session_id = ?').get(sessionId) as { n: number }).n;
  }

  async joinOrder(sessionId: string, clientId: string): Promise<number> {
    const row = this.db
      .prepare('SELECT COUNT(*) AS n FROM clients WHERE session_id = ? AND rowid < (SELECT rowid FROM clients WHERE id = ? AND session_id = ?)')
      .get(sessionId, clientId, sessionId) as { n: number };
    return row.n;
  }

  async trainingQuestions(sessionId: string, from: number, count: number): Promise<TrainingQuestion[]> {
    const rows = this.db
      .prepare('SELECT question, answers FROM training_questions WHERE session_id = ? AND position >= ? AND position < ? ORDER BY position')
      .all(sessionId, from, from + count) as Array<{ question: string; answers: string }>;
    return rows.map((r) => ({ question: r.question, answers: JSON.parse(r.answers) as string[] }));
  }

  async installModel(sessionId: string, expectedCurrent: number | null, version: number, createdAt: string): Promise<void> {
    this.db
      .transaction(() => {
        const row = this.db.prepare('SELECT current_version FROM sessions WHERE id = ?').get(sessionId) as { current_version: number | null } | undefined;
        if (!row || row.current_version !== expectedCurrent) throw conflict('model_changed', 'the global model changed meanwhile; retry');
        if (this.db.prepare("SELECT 1 FROM rounds WHERE session_id = ? AND state IN ('open','closing')").get(sessionId)) {
          throw conflict('round_open', 'the global model cannot be replaced while a round is open');
        }
        this.db
          .prepare('INSERT INTO model_versions (session_id, version, file, round, created_at) VALUES (?, ?, ?, NULL, ?)')
          .run(sessionId, version, `v${version}.safetensors`, createdAt);
        this.db.prepare('UPDATE sessions SET current_version = ? WHERE id = ?').run(version, sessionId);
      })
      .immediate();
  }

  async hasModelVersion(sessionId: string, version: number): Promise<boolean> {
    return this.db.prepare('SELECT 1 FROM model_versions WHERE session_id = ? AND version = ?').get(sessionId, version) !== undefined;
  }

  async latestInstalledVersion(sessionId: string): Promise<number | undefined> {
    const row = this.db.prepare('SELECT version FROM model_versions WHERE session_id = ? AND round IS NULL ORDER BY version DESC LIMIT 1').get(sessionId) as
      { version: number } | undefined;
    return row?.version;
  }

  async round(sessionId: string, number: number): Promise<RoundRecord | undefined> {
    const row = this.db.prepare('SELECT * FROM rounds WHERE session_id = ? AND number = ?').get(sessionId, number) as RoundRow | undefined;
    return row && roundRecord(row);
  }

  async lastRound(sessionId: string): Promise<RoundRecord | undefined> {
    const row = this.db.prepare('SELECT * FROM rounds WHERE session_id = ? ORDER BY number DESC LIMIT 1').get(sessionId) as RoundRow | undefined;
    return row && roundRecord(row);
  }

  async activeRounds(): Promise<RoundRecord[]> {
    return (this.db.prepare("SELECT * FROM rounds WHERE state IN ('open','closing') ORDER BY session_id, number").all() as RoundRow[]).map(roundRecord);
  }

  async openRound(sessionId: string, baseVersion: number, plan: (number: number, candidates: string[]) => RoundPlan): Promise<RoundRecord> {
    return this.db
      .transaction(() => {
        const open = this.db.prepare("SELECT number FROM rounds WHERE session_id = ? AND state IN ('open','closing')").get(sessionId) as
          { number: number } | undefined;
        if (open) throw conflict('round_open', `round ${open.number} is still open`);
        const candidates = (this.db.prepare('SELECT id FROM clients WHERE session_id = ? ORDER BY joined_at, id').all(sessionId) as Array<{ id: string }>).map(
          (r) => r.id,
        );
        const last = this.db.prepare('SELECT MAX(number) AS n FROM rounds WHERE session_id = ?').get(sessionId) as { n: number | null };
        const number = (last.n ?? 0) + 1;
        const p = plan(number, candidates);
        this.db
          .prepare('INSERT INTO rounds (session_id, number, state, base_version, participants, config, opened_at, deadline_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)')
          .run(sessionId, number, 'open', baseVersion, JSON.stringify(p.participants), JSON.stringify(p.config), p.openedAt, p.deadlineAt);
        return roundRecord(this.db.prepare('SELECT * FROM rounds WHERE session_id = ? AND number = ?').get(sessionId, number) as RoundRow);
      })
      .immediate();
  }

  async updates(sessionId: string, round: number): Promise<UpdateRecord[]> {
    const rows = this.db
      .prepare('SELECT client_id, weight, norm, sum_seq FROM updates WHERE session_id = ? AND round = ? ORDER BY sum_seq')
      .all(sessionId, round) as Array<{ client_id: string; weight: number; norm: number | null; sum_seq: number }>;
    return rows.map((r) => ({ clientId: r.client_id, weight: r.weight, norm: r.norm, sumSeq: r.sum_seq }));
  }

  async updateCount(sessionId: string, round: number): Promise<number> {
    return (this.db.prepare('SELECT COUNT(*) AS n FROM updates WHERE session_id = ? AND round = ?').get(sessionId, round) as { n: number }).n;
  }

  async hasUpdate(sessionId: string, round: number, clientId: string): Promise<boolean> {
    return this.db.prepare('SELECT 1 FROM updates WHERE session_id = ? AND round = ? AND client_id = ?').get(sessionId, round, clientId) !== undefined;
  }

  async acceptUpdate(u: NewUpdate): Promise<number> {
    return this.db
      .transaction(() => {
        const row = this.db.prepare('SELECT state, sum_seq, weight_total FROM rounds WHERE session_id = ? AND number = ?').get(u.sessionId, u.round) as
          { state: RoundState; sum_seq: number; weight_total: number } | undefined;
        checkAcceptable(u, row, this.hasUpdateSync(u));
        const weightTotal = row!.weight_total + u.weight;
        this.db
          .prepare(
            'INSERT INTO updates (session_id, round, client_id, num_examples, weight, sum_seq, bytes, accepted_at, norm) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)',
          )
          .run(u.sessionId, u.round, u.clientId, u.numExamples, u.weight, u.sumSeq, u.bytes, u.acceptedAt, u.norm);
        this.db
          .prepare('UPDATE rounds SET sum_seq = ?, weight_total = ?, metric_sums = ? WHERE session_id = ? AND number = ?')
          .run(u.sumSeq, weightTotal, JSON.stringify(u.metricSums), u.sessionId, u.round);
        return weightTotal;
      })
      .immediate();
  }

  private hasUpdateSync(u: NewUpdate): boolean {
    return this.db.prepare('SELECT 1 FROM updates WHERE session_id = ? AND round = ? AND client_id = ?').get(u.sessionId, u.round, u.clientId) !== undefined;
  }

  async markClosing(sessionId: string, round: number): Promise<boolean> {
    return this.db.prepare("UPDATE rounds SET state = 'closing' WHERE session_id = ? AND number = ? AND state = 'open'").run(sessionId, round).changes === 1;
  }

  async failRound(sessionId: string, round: number, closedAt: string, reason: string): Promise<void> {
    this.db
      .prepare("UPDATE rounds SET state = 'failed', closed_at = ?, failure_reason = ? WHERE session_id = ? AND number = ?")
      .run(closedAt, reason, sessionId, round);
  }

  async publishRound(sessionId: string, round: number, version: number, closedAt: string, metrics: Record<string, number>): Promise<void> {
    this.db
      .transaction(() => {
        this.db
          .prepare('INSERT OR REPLACE INTO model_versions (session_id, version, file, round, created_at) VALUES (?, ?, ?, ?, ?)')
          .run(sessionId, version, `v${version}.safetensors`, round, closedAt);
        this.db
          .prepare("UPDATE rounds SET state = 'closed', result_version = ?, closed_at = ?, metrics = ? WHERE session_id = ? AND number = ?")
          .run(version, closedAt, JSON.stringify(metrics), sessionId, round);
        this.db.prepare('UPDATE sessions SET current_version = ? WHERE id = ?').run(version, sessionId);
      })
      .immediate();
  }
}

/**
 * The checks an accept's transaction makes on the locked round row (both databases): still open,
 * still at the running state the update was added to, and no update of this client yet.
 */
export function checkAcceptable(u: NewUpdate, row: { state: RoundState; sum_seq: number } | undefined, duplicate: boolean): void {
  if (!row) throw conflict('round_closed', `round ${u.round} does not exist`);
  if (duplicate) throw conflict('duplicate_update', `this client's update for round ${u.round} was already accepted`);
  if (row.state !== 'open') throw conflict('round_closed', `round ${u.round} is ${row.state}; updates for it are refused — wait for the next round`);
  if (Number(row.sum_seq) !== u.sumSeq - 1) {
    throw conflict('round_changed', `round ${u.round} accepted another update meanwhile (at ${row.sum_seq}, expected ${u.sumSeq - 1}); retry`);
  }
}

/** A join key replayed with another name is another join, not a resend of the first: refused (both databases). */
export function checkSameJoin(heldName: string, name: string): void {
  if (heldName !== name) throw conflict('idempotency_key_reused', 'this idempotency key was used by a join with another name; send a new key for a new join');
}
