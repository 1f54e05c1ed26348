/**
 * The collaborative passage store of one coordinator, behind one interface (`PassageStore`):
 * passages with client-computed embeddings, deduplicated by content hash per session, committed
 * before the response, searchable by inner product. Embeddings are checked against the session's
 * frozen passage encoder before they get here (server/passage-intake.ts); quotas are enforced here,
 * inside the insert transaction.
 *
 * Two implementations share the passage records (`PassageRecords`: title, text, hash,
 * contributors, quotas: SQLite, one transaction per batch):
 * - `EmbeddedPassageStore` (the default, `npm start`): the embeddings in SQLite beside the text,
 *   searched exactly by an in-memory index rebuilt from SQLite on start;
 * - `LancePassageStore` (server/lance-passages.ts, `--passage-store <dir | s3://…>`): the
 *   embeddings in LanceDB, searched exactly below a crossover size and through an IVF-PQ index
 *   above it.
 */
import { createHash } from 'node:crypto';
import type { Db } from './db';
import { nowIso } from './db';
import { ApiError, badRequest, forbidden, notFound } from './errors';
import { ExactVectorIndex } from '../src/retrieval/vector-index';
import type { ContributionCount, Passage, PassageInput, SearchHit, SessionModels } from '../src/federated/protocol';

interface PassageRow {
  id: number;
  client_id: string;
  hash: string;
  title: string;
  text: string;
}

/** A validated passage: its embedding as float32 and its content hash. */
export interface PreparedPassage {
  readonly title: string;
  readonly text: string;
  readonly embedding: Float32Array;
  readonly hash: string;
}

/** Limits a batch must stay within (count and bytes), per contributing client and per session. */
export interface PassageQuota {
  readonly client?: { readonly maxPassages: number; readonly maxBytes: number };
  readonly session?: { readonly maxPassages: number; readonly maxBytes: number };
}

const toPassage = (r: PassageRow): Passage => ({ id: r.id, title: r.title, text: r.text, clientId: r.client_id, hash: r.hash });

/** SHA-256 of title and text: the identity of a passage's content. */
export function contentHash(title: string, text: string): string {
  return createHash('sha256')
    .update(JSON.stringify([title, text]), 'utf8')
    .digest('hex');
}

/** A passage's outcome in an add: its id, and whether the same content was stored already. */
export interface AddResult {
  readonly id: number;
  readonly duplicate: boolean;
}

/**
 * What the coordinator asks of a passage store. Reads of the records (count, get, hashes,
 * contributions) are synchronous: both implementations keep the records in the coordinator's SQLite
 * database. Writes and searches are asynchronous (LanceDB is). Every method refuses bad input with
 * an ApiError (4xx) and leaves the store as it was.
 */
export interface PassageStore {
  /** 'embedded' (SQLite + exact in-memory index) or 'lancedb'. */
  readonly kind: 'embedded' | 'lancedb';
  /** Connects and reconciles (LanceDB); resolves at once for the embedded store. Throws with the reason. */
  open(): Promise<void>;
  /** Waits for writes in flight; the database itself is closed by its owner. */
  close(): Promise<void>;
  count(sessionId: string): number;
  /**
   * Prepares a new session's storage when it is created (LanceDB: its table), so that processes
   * sharing the store never race to create it on their first adds.
   */
  createSession(sessionId: string, models: SessionModels): Promise<void>;
  /** Checks every passage (encoder, dimension, finiteness, text) and computes its content hash; throws the first 400. */
  validate(models: SessionModels, inputs: readonly PassageInput[]): PreparedPassage[];
  /** The subset of `hashes` already stored in the session. */
  existingHashes(sessionId: string, hashes: readonly string[]): Set<string>;
  /**
   * Validates every passage first (all or nothing), then stores the new ones and makes `clientId` a
   * contributor of every one (a passage already stored is a duplicate: its stored embedding stays);
   * with `quota`, a batch that would take the client or the session past a limit is refused whole
   * (413 `passage_quota_exceeded`).
   */
  add(sessionId: string, models: SessionModels, clientId: string, inputs: readonly PassageInput[], quota?: PassageQuota): Promise<AddResult[]>;
  /** The k passages with the largest inner product with `query`, best first (ties: smaller id first). */
  search(sessionId: string, models: SessionModels, query: readonly number[], k: number, withEmbeddings?: boolean): Promise<SearchHit[]>;
  /** The passages of `ids` that exist in the session, in the order asked. */
  get(sessionId: string, ids: readonly number[]): Passage[];
  /**
   * Withdraws the caller's contribution of a passage. The passage leaves the store (and the index)
   * when no contributor is left; while others still contribute the same text it stays
   * (`deleted: false`). A client that never contributed it is refused.
   */
  withdraw(sessionId: string, models: SessionModels, clientId: string, id: number): Promise<{ deleted: boolean; contributorsLeft: number }>;
  contributions(sessionId: string): ContributionCount[];
}

/** A query embedding of the session's dimension, all finite, as float32 (else 400). */
export function checkQuery(models: SessionModels, query: readonly number[]): Float32Array {
  if (query.length !== models.embeddingDim) {
    throw badRequest('wrong_embedding_dimension', `query embedding has ${query.length} values but this session's dimension is ${models.embeddingDim}`);
  }
  const q = Float32Array.from(query);
  if (!q.every(Number.isFinite)) throw badRequest('non_finite', 'query embedding holds a non-finite value');
  return q;
}

/**
 * The passage records both stores share, in the coordinator's SQLite database: title, text, hash,
 * first contributor (table `passages`) and every contributor (`passage_contributors`). What the
 * `embedding` column holds is the implementation's: the float32 bytes (embedded store) or nothing
 * (LanceDB store: the vector lives in LanceDB under the same id).
 */
export abstract class PassageRecords {
  constructor(protected readonly db: Db) {}

  count(sessionId: string): number {
    return (this.db.prepare('SELECT COUNT(*) AS n FROM passages WHERE session_id = ?').get(sessionId) as { n: number }).n;
  }

  validate(models: SessionModels, inputs: readonly PassageInput[]): PreparedPassage[] {
    return inputs.map((p, i) => {
      const where = `passages[${i}]`;
      if (p.encoder !== models.passageEncoder) {
        throw badRequest('wrong_encoder', `${where}: embedding computed with "${p.encoder}" but this session's passage encoder is "${models.passageEncoder}"`);
      }
      if (p.embedding.length !== models.embeddingDim) {
        throw badRequest(
          'wrong_embedding_dimension',
          `${where}: embedding has ${p.embedding.length} values but this session's dimension is ${models.embeddingDim}`,
        );
      }
      const embedding = Float32Array.from(p.embedding);
      if (!embedding.every(Number.isFinite)) throw badRequest('non_finite', `${where}: embedding holds a non-finite value (or one beyond float32 range)`);
      const title = p.title ?? '';
      if (p.text.trim() === '') throw badRequest('empty_text', `${where}: passage text is empty`);
      return { title, text: p.text, embedding, hash: contentHash(title, p.text) };
    });
  }

  existingHashes(sessionId: string, hashes: readonly string[]): Set<string> {
    const find = this.db.prepare('SELECT 1 FROM passages WHERE session_id = ? AND hash = ?');
    return new Set(hashes.filter((h) => find.get(sessionId, h) !== undefined));
  }

  /** The passages of a batch a commit would store as new: first occurrences of hashes not stored yet, in order. */
  protected fresh(sessionId: string, prepared: readonly PreparedPassage[]): PreparedPassage[] {
    const unique = prepared.filter((p, i) => prepared.findIndex((q) => q.hash === p.hash) === i);
    const known = this.existingHashes(
      sessionId,
      unique.map((p) => p.hash),
    );
    return unique.filter((p) => !known.has(p.hash));
  }

  /**
   * Passages and bytes (UTF-8 title + text + 4 per embedding value) stored in a session, or
   * contributed by one client there.
   */
  protected usage(sessionId: string, embeddingDim: number, clientId?: string): { passages: number; bytes: number } {
    const size = 'length(CAST(p.title AS BLOB)) + length(CAST(p.text AS BLOB))';
    const row =
      clientId === undefined
        ? this.db.prepare(`SELECT COUNT(*) AS n, COALESCE(SUM(${size}), 0) AS b FROM passages p WHERE p.session_id = ?`).get(sessionId)
        : this.db
            .prepare(
              `SELECT COUNT(*) AS n, COALESCE(SUM(${size}), 0) AS b FROM passage_contributors c JOIN passages p ON p.id = c.passage_id WHERE p.session_id = ? AND c.client_id = ?`,
            )
            .get(sessionId, clientId);
    const { n, b } = row as { n: number; b: number };
    return { passages: n, bytes: b + n * 4 * embeddingDim };
  }

  /**
   * One transaction: the quota check, then every passage inserted (new) or credited to `clientId`
   * (duplicate). `blob` is what the `embedding` column gets; `idOf`, when given, names the id of
   * each new passage (the LanceDB store writes the vectors first, under ids chosen before).
   */
  protected commit(
    sessionId: string,
    clientId: string,
    prepared: readonly PreparedPassage[],
    quota: PassageQuota | undefined,
    blob: (p: PreparedPassage) => Buffer,
    idOf?: (p: PreparedPassage) => number,
  ): { results: AddResult[]; added: Array<{ id: number; embedding: Float32Array }> } {
    const find = this.db.prepare('SELECT id FROM passages WHERE session_id = ? AND hash = ?');
    const insert = this.db.prepare(
      'INSERT INTO passages (id, session_id, client_id, hash, title, text, embedding, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
    );
    const contributor = this.db.prepare('INSERT OR IGNORE INTO passage_contributors (passage_id, client_id) VALUES (?, ?)');
    const added: Array<{ id: number; embedding: Float32Array }> = [];
    // IMMEDIATE: the write lock from the start, so the hash checks and the inserts see one state
    // even when several coordinator processes share this database (a deferred transaction reads
    // first and cannot upgrade to a write after another process's commit).
    const results = this.db
      .transaction(() => {
        if (quota) this.enforceQuota(sessionId, clientId, prepared, quota);
        return prepared.map((p) => {
          const existing = find.get(sessionId, p.hash) as { id: number } | undefined;
          if (existing) {
            contributor.run(existing.id, clientId);
            return { id: existing.id, duplicate: true };
          }
          const id = Number(insert.run(idOf ? idOf(p) : null, sessionId, clientId, p.hash, p.title, p.text, blob(p), nowIso()).lastInsertRowid);
          contributor.run(id, clientId);
          added.push({ id, embedding: p.embedding });
          return { id, duplicate: false };
        });
      })
      .immediate();
    return { results, added };
  }

  /** Throws 413 when storing `prepared` would take the client or the session past `quota`. */
  protected enforceQuota(sessionId: string, clientId: string, prepared: readonly PreparedPassage[], quota: PassageQuota): void {
    const bytesOf = (p: PreparedPassage) => Buffer.byteLength(p.title, 'utf8') + Buffer.byteLength(p.text, 'utf8') + p.embedding.byteLength;
    const isContributor = this.db.prepare(
      'SELECT 1 FROM passage_contributors c JOIN passages p ON p.id = c.passage_id WHERE p.session_id = ? AND p.hash = ? AND c.client_id = ?',
    );
    const unique = prepared.filter((p, i) => prepared.findIndex((q) => q.hash === p.hash) === i);
    const known = this.existingHashes(
      sessionId,
      unique.map((p) => p.hash),
    );
    const forSession = unique.filter((p) => !known.has(p.hash));
    const forClient = unique.filter((p) => isContributor.get(sessionId, p.hash, clientId) === undefined);
    const dim = prepared[0]?.embedding.length ?? 0;
    const check = (
      who: string,
      limit: { maxPassages: number; maxBytes: number } | undefined,
      used: { passages: number; bytes: number },
      adding: readonly PreparedPassage[],
    ) => {
      if (!limit || adding.length === 0) return;
      const bytes = adding.reduce((a, p) => a + bytesOf(p), 0);
      if (used.passages + adding.length > limit.maxPassages) {
        throw new ApiError(
          413,
          'passage_quota_exceeded',
          `${who} holds ${used.passages} passages and this batch adds ${adding.length}, past the limit of ${limit.maxPassages}; nothing was stored (withdraw passages, or ask the session owner for a larger quota)`,
        );
      }
      if (used.bytes + bytes > limit.maxBytes) {
        throw new ApiError(
          413,
          'passage_quota_exceeded',
          `${who} holds ${used.bytes} bytes of passages and this batch adds ${bytes}, past the limit of ${limit.maxBytes} bytes; nothing was stored (withdraw passages, or ask the session owner for a larger quota)`,
        );
      }
    };
    check('this client', quota.client, this.usage(sessionId, dim, clientId), forClient);
    check('this session', quota.session, this.usage(sessionId, dim), forSession);
  }

  get(sessionId: string, ids: readonly number[]): Passage[] {
    if (ids.length === 0) return [];
    const rows = this.db
      .prepare(`SELECT id, client_id, hash, title, text FROM passages WHERE session_id = ? AND id IN (${ids.map(() => '?').join(',')})`)
      .all(sessionId, ...ids) as PassageRow[];
    const byId = new Map(rows.map((r) => [r.id, toPassage(r)]));
    return ids.filter((id) => byId.has(id)).map((id) => byId.get(id)!);
  }

  /** The records' side of a withdrawal, in one transaction (see PassageStore.withdraw). */
  protected removeContribution(sessionId: string, clientId: string, id: number): { deleted: boolean; contributorsLeft: number } {
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

  /** Hits (id, exact score, embedding) joined with their records; ids no longer recorded are dropped. */
  protected hits(
    sessionId: string,
    top: ReadonlyArray<{ id: number; score: number; embedding?: Float32Array }>,
    k: number,
    withEmbeddings: boolean,
  ): SearchHit[] {
    const byId = new Map(
      this.get(
        sessionId,
        top.map((t) => t.id),
      ).map((p) => [p.id, p]),
    );
    return top
      .filter((t) => byId.has(t.id))
      .slice(0, k)
      .map((t) => ({
        id: t.id,
        score: t.score,
        passage: byId.get(t.id)!,
        // float32 → double is exact and JSON prints the shortest round-trip form: the client's
        // Float32Array.from gives back the stored values bit for bit.
        ...(withEmbeddings && t.embedding ? { embedding: Array.from(t.embedding) } : {}),
      }));
  }

  contributions(sessionId: string): ContributionCount[] {
    const rows = this.db
      .prepare('SELECT client_id, COUNT(*) AS n FROM passages WHERE session_id = ? GROUP BY client_id ORDER BY n DESC, client_id')
      .all(sessionId) as Array<{ client_id: string; n: number }>;
    return rows.map((r) => ({ clientId: r.client_id, passages: r.n }));
  }
}

/**
 * The default store: embeddings in SQLite beside their records (one transaction), searched exactly
 * by an in-memory index per session, rebuilt from SQLite on first use.
 */
export class EmbeddedPassageStore extends PassageRecords implements PassageStore {
  readonly kind = 'embedded';
  private readonly indexes = new Map<string, ExactVectorIndex>();

  async open(): Promise<void> {
    // A folder whose embeddings were moved to LanceDB cannot be searched from SQLite alone.
    const moved = this.db.prepare('SELECT session_id FROM passages WHERE length(embedding) = 0 LIMIT 1').get() as { session_id: string } | undefined;
    if (moved) {
      throw new Error(
        `the passage embeddings of session ${moved.session_id} are in a LanceDB passage store, not in this data folder's database: start the coordinator with --passage-store <that store's folder or s3:// URI>`,
      );
    }
  }

  async close(): Promise<void> {}

  async createSession(): Promise<void> {}

  private index(sessionId: string, dim: number): ExactVectorIndex {
    let idx = this.indexes.get(sessionId);
    if (!idx) {
      idx = new ExactVectorIndex(dim);
      const rows = this.db.prepare('SELECT id, embedding FROM passages WHERE session_id = ? ORDER BY id').iterate(sessionId) as Iterable<{
        id: number;
        embedding: Buffer;
      }>;
      for (const r of rows)
        idx.add([r.id], [new Float32Array(r.embedding.buffer.slice(r.embedding.byteOffset, r.embedding.byteOffset + r.embedding.byteLength))]);
      this.indexes.set(sessionId, idx);
    }
    return idx;
  }

  async add(sessionId: string, models: SessionModels, clientId: string, inputs: readonly PassageInput[], quota?: PassageQuota): Promise<AddResult[]> {
    const prepared = this.validate(models, inputs);
    const { results, added } = this.commit(sessionId, clientId, prepared, quota, (p) => Buffer.from(p.embedding.buffer));
    // Committed: only now does the in-memory index learn about them.
    this.index(sessionId, models.embeddingDim).add(
      added.map((a) => a.id),
      added.map((a) => a.embedding),
    );
    return results;
  }

  async search(sessionId: string, models: SessionModels, query: readonly number[], k: number, withEmbeddings = false): Promise<SearchHit[]> {
    const q = checkQuery(models, query);
    const index = this.index(sessionId, models.embeddingDim);
    const top = index.search(q, k).map((t) => ({ ...t, ...(withEmbeddings ? { embedding: index.embedding(t.id) } : {}) }));
    return this.hits(sessionId, top, k, withEmbeddings);
  }

  async withdraw(sessionId: string, models: SessionModels, clientId: string, id: number): Promise<{ deleted: boolean; contributorsLeft: number }> {
    const outcome = this.removeContribution(sessionId, clientId, id);
    // Committed: only now does the in-memory index forget it.
    if (outcome.deleted) this.index(sessionId, models.embeddingDim).remove([id]);
    return outcome;
  }
}
