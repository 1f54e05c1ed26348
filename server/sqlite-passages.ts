/**
 * The passage records in the data folder's SQLite database (server/db.ts: tables `passages`,
 * `passage_contributors`, `passage_checks`): the default, and the only place they lived before
 * PostgreSQL could hold them (server/pg-passages.ts). better-sqlite3 is synchronous; the methods are
 * asynchronous only to share the `PassageRecords` interface with PostgreSQL.
 *
 * Writes are IMMEDIATE transactions: the write lock from the start, so the hash checks and the
 * inserts see one state even when several processes on one host share the database (a deferred
 * transaction reads first and cannot upgrade to a write after another process's commit).
 */
import type { Db } from './db';
import { nowIso } from './db';
import { forbidden, notFound } from './errors';
import { embeddingOf, enforceQuota, type AddResult, type PassageQuota, type PassageRecords, type PreparedPassage, type QuotaView } from './passages';
import type { ContributionCount, Passage } from '../src/federated/protocol';

interface PassageRow {
  id: number;
  client_id: string;
  hash: string;
  title: string;
  text: string;
}

const toPassage = (r: PassageRow): Passage => ({ id: r.id, title: r.title, text: r.text, clientId: r.client_id, hash: r.hash });
const EMPTY = Buffer.alloc(0);

export class SqlitePassageRecords implements PassageRecords {
  readonly kind = 'sqlite';

  constructor(private readonly db: Db) {
    // Created here rather than in db.ts's schema: data folders from before issue 17 lack it.
    db.exec(`CREATE TABLE IF NOT EXISTS passage_checks (
      session_id TEXT NOT NULL,
      client_id TEXT NOT NULL,
      batches INTEGER NOT NULL DEFAULT 0,
      mismatches INTEGER NOT NULL DEFAULT 0,
      PRIMARY KEY (session_id, client_id)
    )`);
  }

  async open(): Promise<void> {}

  async count(sessionId: string): Promise<number> {
    return (this.db.prepare('SELECT COUNT(*) AS n FROM passages WHERE session_id = ?').get(sessionId) as { n: number }).n;
  }

  async existingHashes(sessionId: string, hashes: readonly string[]): Promise<Set<string>> {
    return this.known(sessionId, hashes);
  }

  private known(sessionId: string, hashes: readonly string[]): Set<string> {
    const find = this.db.prepare('SELECT 1 FROM passages WHERE session_id = ? AND hash = ?');
    return new Set(hashes.filter((h) => find.get(sessionId, h) !== undefined));
  }

  async get(sessionId: string, ids: readonly number[]): Promise<Passage[]> {
    if (ids.length === 0) return [];
    const rows = this.db
      .prepare(`SELECT id, client_id, hash, title, text FROM passages WHERE session_id = ? AND id IN (${ids.map(() => '?').join(',')})`)
      .all(sessionId, ...ids) as PassageRow[];
    const byId = new Map(rows.map((r) => [r.id, toPassage(r)]));
    return ids.filter((id) => byId.has(id)).map((id) => byId.get(id)!);
  }

  async contributions(sessionId: string): Promise<ContributionCount[]> {
    const rows = this.db
      .prepare('SELECT client_id, COUNT(*) AS n FROM passages WHERE session_id = ? GROUP BY client_id ORDER BY n DESC, client_id')
      .all(sessionId) as Array<{ client_id: string; n: number }>;
    return rows.map((r) => ({ clientId: r.client_id, passages: r.n }));
  }

  private quotaView(sessionId: string, clientId: string, prepared: readonly PreparedPassage[]): QuotaView {
    const hashes = prepared.map((p) => p.hash);
    const isContributor = this.db.prepare(
      'SELECT 1 FROM passage_contributors c JOIN passages p ON p.id = c.passage_id WHERE p.session_id = ? AND p.hash = ? AND c.client_id = ?',
    );
    const size = 'COUNT(*) AS passages, COALESCE(SUM(length(CAST(p.title AS BLOB)) + length(CAST(p.text AS BLOB))), 0) AS textBytes';
    return {
      known: this.known(sessionId, hashes),
      contributed: new Set(hashes.filter((h) => isContributor.get(sessionId, h, clientId) !== undefined)),
      client: this.db
        .prepare(`SELECT ${size} FROM passage_contributors c JOIN passages p ON p.id = c.passage_id WHERE p.session_id = ? AND c.client_id = ?`)
        .get(sessionId, clientId) as QuotaView['client'],
      session: this.db.prepare(`SELECT ${size} FROM passages p WHERE p.session_id = ?`).get(sessionId) as QuotaView['session'],
    };
  }

  async checkQuota(sessionId: string, clientId: string, prepared: readonly PreparedPassage[], quota: PassageQuota): Promise<void> {
    this.db.transaction(() => enforceQuota(prepared, quota, this.quotaView(sessionId, clientId, prepared)))();
  }

  /**
   * A write transaction on the records' database moving AUTOINCREMENT's high-water mark: no other
   * process sharing the database, and no later insert, gets the same ids.
   */
  async reserveIds(n: number): Promise<number[]> {
    const first = this.db
      .transaction(() => {
        const row = this.db
          .prepare("SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'passages'), 0), COALESCE((SELECT MAX(id) FROM passages), 0)) AS last")
          .get() as { last: number };
        if (n > 0) {
          const moved = this.db.prepare("UPDATE sqlite_sequence SET seq = ? WHERE name = 'passages'").run(row.last + n).changes;
          if (moved === 0) this.db.prepare("INSERT INTO sqlite_sequence (name, seq) VALUES ('passages', ?)").run(row.last + n);
        }
        return row.last + 1;
      })
      .immediate();
    return Array.from({ length: n }, (_, i) => first + i);
  }

  async commit(
    sessionId: string,
    clientId: string,
    prepared: readonly PreparedPassage[],
    quota: PassageQuota | undefined,
    options: { withEmbeddings: boolean; idOf?: (p: PreparedPassage) => number },
  ): Promise<{ results: AddResult[]; added: Array<{ id: number; embedding: Float32Array }> }> {
    const find = this.db.prepare('SELECT id FROM passages WHERE session_id = ? AND hash = ?');
    const insert = this.db.prepare(
      'INSERT INTO passages (id, session_id, client_id, hash, title, text, embedding, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
    );
    const contributor = this.db.prepare('INSERT OR IGNORE INTO passage_contributors (passage_id, client_id) VALUES (?, ?)');
    const added: Array<{ id: number; embedding: Float32Array }> = [];
    const results = this.db
      .transaction(() => {
        if (quota) enforceQuota(prepared, quota, this.quotaView(sessionId, clientId, prepared));
        return prepared.map((p) => {
          const existing = find.get(sessionId, p.hash) as { id: number } | undefined;
          if (existing) {
            contributor.run(existing.id, clientId);
            return { id: existing.id, duplicate: true };
          }
          const blob = options.withEmbeddings ? Buffer.from(p.embedding.buffer, p.embedding.byteOffset, p.embedding.byteLength) : EMPTY;
          const id = Number(insert.run(options.idOf ? options.idOf(p) : null, sessionId, clientId, p.hash, p.title, p.text, blob, nowIso()).lastInsertRowid);
          contributor.run(id, clientId);
          added.push({ id, embedding: p.embedding });
          return { id, duplicate: false };
        });
      })
      .immediate();
    return { results, added };
  }

  async removeContribution(sessionId: string, clientId: string, id: number): Promise<{ deleted: boolean; contributorsLeft: number }> {
    return this.db
      .transaction(() => {
        const row = this.db.prepare('SELECT 1 FROM passages WHERE session_id = ? AND id = ?').get(sessionId, id);
        if (!row) throw notFound('passage_not_found', `passage ${id} does not exist in this session`);
        const removed = this.db.prepare('DELETE FROM passage_contributors WHERE passage_id = ? AND client_id = ?').run(id, clientId).changes;
        if (removed === 0)
          throw forbidden('not_your_passage', `passage ${id} was contributed by other clients, not by this one; only its contributors can withdraw it`);
        const left = (this.db.prepare('SELECT COUNT(*) AS n FROM passage_contributors WHERE passage_id = ?').get(id) as { n: number }).n;
        if (left === 0) this.db.prepare('DELETE FROM passages WHERE session_id = ? AND id = ?').run(sessionId, id);
        // The passage is credited (contributions, Passage.clientId) to its earliest remaining contributor.
        else
          this.db
            .prepare('UPDATE passages SET client_id = (SELECT client_id FROM passage_contributors WHERE passage_id = ? ORDER BY rowid LIMIT 1) WHERE id = ?')
            .run(id, id);
        return { deleted: left === 0, contributorsLeft: left };
      })
      .immediate();
  }

  async recordIds(sessionId: string): Promise<Array<{ id: number; hasEmbedding: boolean }>> {
    const rows = this.db.prepare('SELECT id, length(embedding) > 0 AS has FROM passages WHERE session_id = ? ORDER BY id').all(sessionId) as Array<{
      id: number;
      has: number;
    }>;
    return rows.map((r) => ({ id: r.id, hasEmbedding: r.has === 1 }));
  }

  async embeddings(sessionId: string, ids?: readonly number[]): Promise<Map<number, Float32Array>> {
    const out = new Map<number, Float32Array>();
    const rows = (
      ids === undefined
        ? this.db.prepare('SELECT id, embedding FROM passages WHERE session_id = ? AND length(embedding) > 0').iterate(sessionId)
        : ids.map((id) => this.db.prepare('SELECT id, embedding FROM passages WHERE session_id = ? AND id = ? AND length(embedding) > 0').get(sessionId, id))
    ) as Iterable<{ id: number; embedding: Buffer } | undefined>;
    for (const r of rows) if (r) out.set(r.id, embeddingOf(r.embedding));
    return out;
  }

  async clearEmbeddings(ids: readonly number[]): Promise<void> {
    const empty = this.db.prepare('UPDATE passages SET embedding = ? WHERE id = ?');
    this.db.transaction(() => {
      for (const id of ids) empty.run(EMPTY, id);
    })();
  }

  async changeMark(sessionId: string): Promise<string> {
    const { n, last } = this.db.prepare('SELECT COUNT(*) AS n, COALESCE(MAX(id), 0) AS last FROM passages WHERE session_id = ?').get(sessionId) as {
      n: number;
      last: number;
    };
    return `${n}:${last}`;
  }

  /** One process uses an SQLite data folder: nobody else writes between this process's two commits. */
  asWriter<T>(fn: () => Promise<T>): Promise<T> {
    return fn();
  }

  withoutWriters<T>(fn: () => Promise<T>): Promise<T | undefined> {
    return fn();
  }

  async sessionWithoutEmbeddings(): Promise<string | undefined> {
    return (this.db.prepare('SELECT session_id FROM passages WHERE length(embedding) = 0 LIMIT 1').get() as { session_id: string } | undefined)?.session_id;
  }

  async checkHistory(sessionId: string, clientId: string): Promise<{ batches: number; mismatches: number }> {
    const row = this.db.prepare('SELECT batches, mismatches FROM passage_checks WHERE session_id = ? AND client_id = ?').get(sessionId, clientId) as
      { batches: number; mismatches: number } | undefined;
    return row ?? { batches: 0, mismatches: 0 };
  }

  async recordCheck(sessionId: string, clientId: string, outcome: 'batches' | 'mismatches'): Promise<void> {
    this.db
      .prepare(
        `INSERT INTO passage_checks (session_id, client_id, ${outcome}) VALUES (?, ?, 1) ON CONFLICT (session_id, client_id) DO UPDATE SET ${outcome} = ${outcome} + 1`,
      )
      .run(sessionId, clientId);
  }
}
