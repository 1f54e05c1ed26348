/**
 * The collaborative passage store of one coordinator, behind one interface (`PassageStore`):
 * passages with client-computed embeddings, deduplicated by content hash per session, committed
 * before the response, searchable by inner product. Embeddings are checked against the session's
 * frozen passage encoder before they get here (server/passage-intake.ts); quotas are enforced here,
 * inside the insert transaction.
 *
 * A store is its passage records (`PassageRecords`: title, text, hash, contributors, quotas; in
 * SQLite, server/sqlite-passages.ts, or PostgreSQL, server/pg-passages.ts) plus where the vectors
 * live and how they are searched:
 * - `EmbeddedPassageStore` (the default, `npm start`): the embeddings in the records beside the
 *   text, searched exactly by an in-memory index rebuilt from the records on first use;
 * - `LancePassageStore` (server/lance-passages.ts, `--passage-store <dir | s3://…>`): the
 *   embeddings in LanceDB, searched exactly below a crossover size and through an IVF-PQ index
 *   above it;
 * - `PgvectorPassageStore` (server/pgvector-passages.ts, `--passage-store pgvector` with
 *   `--database`): the embeddings in a pgvector column beside the PostgreSQL records (one
 *   transaction), searched exactly below a crossover and through an HNSW index above it.
 */
import { createHash } from 'node:crypto';
import { ApiError, badRequest } from './errors';
import { ExactVectorIndex } from '../src/retrieval/vector-index';
import type { ContributionCount, Passage, PassageInput, SearchHit, SessionModels } from '../src/federated/protocol';

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
 * What the coordinator asks of a passage store. Everything but `validate` is asynchronous (the
 * records may be in PostgreSQL, the vectors in LanceDB). Every method refuses bad input with an
 * ApiError (4xx) and leaves the store as it was.
 */
export interface PassageStore {
  /** 'embedded' (embeddings in the records + exact in-memory index), 'lancedb' or 'pgvector'. */
  readonly kind: 'embedded' | 'lancedb' | 'pgvector';
  /** The records, which the coordinator also reads (the embedding-check history). */
  readonly records: PassageRecords;
  /** Opens the records, then connects and reconciles (LanceDB). Throws with the reason. */
  open(): Promise<void>;
  /** Waits for writes in flight; the records' database itself is closed by its owner. */
  close(): Promise<void>;
  count(sessionId: string): Promise<number>;
  /**
   * Prepares a new session's storage when it is created (LanceDB: its table), so that processes
   * sharing the store never race to create it on their first adds.
   */
  createSession(sessionId: string, models: SessionModels): Promise<void>;
  /** Checks every passage (encoder, dimension, finiteness, text) and computes its content hash; throws the first 400. */
  validate(models: SessionModels, inputs: readonly PassageInput[]): PreparedPassage[];
  /** The subset of `hashes` already stored in the session. */
  existingHashes(sessionId: string, hashes: readonly string[]): Promise<Set<string>>;
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
  get(sessionId: string, ids: readonly number[]): Promise<Passage[]>;
  /**
   * Withdraws the caller's contribution of a passage. The passage leaves the store (and the index)
   * when no contributor is left; while others still contribute the same text it stays
   * (`deleted: false`). A client that never contributed it is refused.
   */
  withdraw(sessionId: string, models: SessionModels, clientId: string, id: number): Promise<{ deleted: boolean; contributorsLeft: number }>;
  contributions(sessionId: string): Promise<ContributionCount[]>;
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
 * Where the passage records live (title, text, hash, first contributor, every contributor, the
 * embedding-check history): the data folder's SQLite database (server/sqlite-passages.ts, with the
 * SQLite state) or PostgreSQL (server/pg-passages.ts, with `--database`), so that coordinators on
 * several hosts share them. A record's embedding is the vector store's business: the embedded store
 * keeps it in the record, the LanceDB store keeps it in LanceDB under the record's id (the record's
 * embedding is then empty).
 *
 * Every write is one transaction that serialises with the session's other passage writes (SQLite:
 * IMMEDIATE; PostgreSQL: the session's advisory lock), so the duplicate check, the quota check and
 * the inserts see one state even when several coordinator processes share the records.
 */
export interface PassageRecords {
  readonly kind: 'sqlite' | 'postgres';
  /** Ready for use (PostgreSQL: the schema migrated). Throws with the reason. */
  open(): Promise<void>;
  count(sessionId: string): Promise<number>;
  /** The subset of `hashes` already stored in the session. */
  existingHashes(sessionId: string, hashes: readonly string[]): Promise<Set<string>>;
  /** The passages of `ids` that exist in the session, in the order asked. */
  get(sessionId: string, ids: readonly number[]): Promise<Passage[]>;
  contributions(sessionId: string): Promise<ContributionCount[]>;
  /** Throws 413 when `prepared` would take the client or the session past `quota` (a check before vectors are written; `commit` checks again). */
  checkQuota(sessionId: string, clientId: string, prepared: readonly PreparedPassage[], quota: PassageQuota): Promise<void>;
  /**
   * `n` passage ids no record has or will get (ids are never reused), for vectors written before
   * their records (the LanceDB store): a reservation other processes sharing the records respect.
   */
  reserveIds(n: number): Promise<number[]>;
  /**
   * One transaction: the quota check, then every passage inserted (new) or credited to `clientId`
   * (duplicate). `withEmbeddings`: the record keeps the embedding (embedded store), else it is
   * left empty; `idOf` names each new passage's id (reserved before; else the records choose).
   */
  commit(
    sessionId: string,
    clientId: string,
    prepared: readonly PreparedPassage[],
    quota: PassageQuota | undefined,
    options: { withEmbeddings: boolean; idOf?: (p: PreparedPassage) => number },
  ): Promise<{ results: AddResult[]; added: Array<{ id: number; embedding: Float32Array }> }>;
  /** The records' side of a withdrawal, in one transaction (see PassageStore.withdraw). */
  removeContribution(sessionId: string, clientId: string, id: number): Promise<{ deleted: boolean; contributorsLeft: number }>;
  /** Every record's id in the session, and whether its embedding is in the record. */
  recordIds(sessionId: string): Promise<Array<{ id: number; hasEmbedding: boolean }>>;
  /** The embeddings kept in the records, of `ids` (default: the whole session), by id. */
  embeddings(sessionId: string, ids?: readonly number[]): Promise<Map<number, Float32Array>>;
  /** Empties the records' embeddings of `ids` (they were moved to a vector store). */
  clearEmbeddings(ids: readonly number[]): Promise<void>;
  /**
   * Changes whenever the session's records change, in any process: their count and largest id
   * (ids only grow, so an add raises the largest and a withdrawal lowers the count).
   */
  changeMark(sessionId: string): Promise<string>;
  /**
   * Runs a write that spans the records and a vector store (vectors first, then records; records,
   * then the vector) as one of possibly many writers: `withoutWriters` waits for none of them.
   */
  asWriter<T>(fn: () => Promise<T>): Promise<T>;
  /**
   * Runs `fn` while no writer of any process sharing the records is between its two commits, so
   * that a vector without a record is known to be a leftover, not an add in flight; undefined (and
   * `fn` not run) when some writer is, unless `wait` (then it waits for them; new writers wait for `fn`).
   */
  withoutWriters<T>(fn: () => Promise<T>, options?: { wait?: boolean }): Promise<T | undefined>;
  /** A session one of whose records has no embedding (it lives in a vector store), if any. */
  sessionWithoutEmbeddings(): Promise<string | undefined>;
  /** How many embedding-checked batches a client sent, and how many failed the check (server/passage-intake.ts). */
  checkHistory(sessionId: string, clientId: string): Promise<{ batches: number; mismatches: number }>;
  recordCheck(sessionId: string, clientId: string, outcome: 'batches' | 'mismatches'): Promise<void>;
}

/** Float32 values of a stored embedding (copied: the bytes may be a view into a larger buffer). */
export function embeddingOf(bytes: Uint8Array): Float32Array {
  return new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
}

/** The passages of a batch a commit would store as new: first occurrences of hashes not stored yet, in order. */
export function freshPassages(prepared: readonly PreparedPassage[], known: ReadonlySet<string>): PreparedPassage[] {
  return uniquePassages(prepared).filter((p) => !known.has(p.hash));
}

function uniquePassages(prepared: readonly PreparedPassage[]): PreparedPassage[] {
  const seen = new Set<string>();
  return prepared.filter((p) => !seen.has(p.hash) && (seen.add(p.hash), true));
}

/** What a quota check needs to know, read by the records inside their transaction. */
export interface QuotaView {
  /** Hashes of the batch already stored in the session. */
  readonly known: ReadonlySet<string>;
  /** Hashes of the batch the client already contributes. */
  readonly contributed: ReadonlySet<string>;
  /** Passages and UTF-8 title + text bytes the client contributes, and the session holds. */
  readonly client: { readonly passages: number; readonly textBytes: number };
  readonly session: { readonly passages: number; readonly textBytes: number };
}

/**
 * Throws 413 when storing `prepared` would take the client or the session past `quota`. Bytes are
 * UTF-8 title + text + 4 per embedding value, in both record stores.
 */
export function enforceQuota(prepared: readonly PreparedPassage[], quota: PassageQuota, view: QuotaView): void {
  const bytesOf = (p: PreparedPassage) => Buffer.byteLength(p.title, 'utf8') + Buffer.byteLength(p.text, 'utf8') + p.embedding.byteLength;
  const unique = uniquePassages(prepared);
  const dim = prepared[0]?.embedding.length ?? 0;
  const used = (u: { passages: number; textBytes: number }) => ({ passages: u.passages, bytes: u.textBytes + u.passages * 4 * dim });
  const check = (
    who: string,
    limit: { maxPassages: number; maxBytes: number } | undefined,
    usage: { passages: number; bytes: number },
    adding: readonly PreparedPassage[],
  ) => {
    if (!limit || adding.length === 0) return;
    const bytes = adding.reduce((a, p) => a + bytesOf(p), 0);
    if (usage.passages + adding.length > limit.maxPassages) {
      throw new ApiError(
        413,
        'passage_quota_exceeded',
        `${who} holds ${usage.passages} passages and this batch adds ${adding.length}, past the limit of ${limit.maxPassages}; nothing was stored (withdraw passages, or ask the session owner for a larger quota)`,
      );
    }
    if (usage.bytes + bytes > limit.maxBytes) {
      throw new ApiError(
        413,
        'passage_quota_exceeded',
        `${who} holds ${usage.bytes} bytes of passages and this batch adds ${bytes}, past the limit of ${limit.maxBytes} bytes; nothing was stored (withdraw passages, or ask the session owner for a larger quota)`,
      );
    }
  };
  check(
    'this client',
    quota.client,
    used(view.client),
    unique.filter((p) => !view.contributed.has(p.hash)),
  );
  check(
    'this session',
    quota.session,
    used(view.session),
    unique.filter((p) => !view.known.has(p.hash)),
  );
}

/** Checks every passage (encoder, dimension, finiteness, text) and computes its content hash; throws the first 400. */
export function validatePassages(models: SessionModels, inputs: readonly PassageInput[]): PreparedPassage[] {
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

/** Hits (id, exact score, embedding) joined with their records; ids no longer recorded are dropped. */
export async function searchHits(
  records: PassageRecords,
  sessionId: string,
  top: ReadonlyArray<{ id: number; score: number; embedding?: Float32Array }>,
  k: number,
  withEmbeddings: boolean,
): Promise<SearchHit[]> {
  const byId = new Map(
    (
      await records.get(
        sessionId,
        top.map((t) => t.id),
      )
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

/** The 503 a store with an external engine (LanceDB, pgvector) answers when that engine fails: nothing changed, retry. */
export function storeUnavailable(what: string, e: unknown): ApiError {
  return new ApiError(503, 'passage_store_unavailable', `the passage store could not ${what} (${(e as Error).message}); nothing was changed, try again later`, {
    'retry-after': '10',
  });
}

/**
 * What every passage store answers from its records alone (counts, content hashes, texts,
 * contributions) and the validation all share; each store adds where its vectors live and how it
 * searches them.
 */
export abstract class PassageStoreOverRecords<R extends PassageRecords = PassageRecords> {
  constructor(readonly records: R) {}

  count(sessionId: string): Promise<number> {
    return this.records.count(sessionId);
  }

  validate(models: SessionModels, inputs: readonly PassageInput[]): PreparedPassage[] {
    return validatePassages(models, inputs);
  }

  existingHashes(sessionId: string, hashes: readonly string[]): Promise<Set<string>> {
    return this.records.existingHashes(sessionId, hashes);
  }

  get(sessionId: string, ids: readonly number[]): Promise<Passage[]> {
    return this.records.get(sessionId, ids);
  }

  contributions(sessionId: string): Promise<ContributionCount[]> {
    return this.records.contributions(sessionId);
  }
}

/**
 * The default store: embeddings in the records beside their text (one transaction), searched
 * exactly by an in-memory index per session, rebuilt from the records on first use. With records
 * in PostgreSQL other processes may write the session too: each search first compares the
 * records' change mark with the one the index was loaded at, and reloads the index when another
 * process (or this one) wrote since (an O(passages) read; LanceDB with its shared reads is the
 * store for write-heavy sessions served by several processes).
 */
export class EmbeddedPassageStore extends PassageStoreOverRecords implements PassageStore {
  readonly kind = 'embedded';
  private readonly indexes = new Map<string, Promise<{ index: ExactVectorIndex; mark?: string }>>();

  async open(): Promise<void> {
    await this.records.open();
    // A deployment whose embeddings were moved to LanceDB or pgvector cannot be searched from the records alone.
    const moved = await this.records.sessionWithoutEmbeddings();
    if (moved) {
      throw new Error(
        `the passage embeddings of session ${moved} are in a LanceDB or pgvector passage store, not in the passage records: start the coordinator with the --passage-store it used (that store's folder or s3:// URI, or pgvector)`,
      );
    }
  }

  async close(): Promise<void> {}

  async createSession(): Promise<void> {}

  /** Other processes may write the same records (PostgreSQL). */
  private get shared(): boolean {
    return this.records.kind === 'postgres';
  }

  private async index(sessionId: string, dim: number, fresh = false): Promise<ExactVectorIndex> {
    let entry = this.indexes.get(sessionId);
    if (entry && fresh && this.shared) {
      const loaded = await entry;
      if (loaded.mark === undefined || loaded.mark !== (await this.records.changeMark(sessionId))) {
        if (this.indexes.get(sessionId) === entry) this.indexes.delete(sessionId);
        entry = this.indexes.get(sessionId);
      }
    }
    if (!entry) {
      entry = (async () => {
        // The mark first: a write landing between the two reads makes the next search reload.
        const mark = this.shared ? await this.records.changeMark(sessionId) : undefined;
        const stored = await this.records.embeddings(sessionId);
        const index = new ExactVectorIndex(dim);
        const ids = [...stored.keys()].sort((a, b) => a - b);
        index.add(
          ids,
          ids.map((id) => stored.get(id)!),
        );
        return { index, ...(mark === undefined ? {} : { mark }) };
      })();
      this.indexes.set(sessionId, entry);
      // A failed load (records unreachable) is not remembered: the next search tries again.
      const failed = entry;
      failed.catch(() => {
        if (this.indexes.get(sessionId) === failed) this.indexes.delete(sessionId);
      });
    }
    return (await entry).index;
  }

  /** After this process's own write: the mark moved, so a shared index is checked again at the next search. */
  private forgetMark(sessionId: string): void {
    const entry = this.indexes.get(sessionId);
    if (this.shared && entry)
      void entry.then(
        (e) => delete e.mark,
        () => undefined,
      );
  }

  async add(sessionId: string, models: SessionModels, clientId: string, inputs: readonly PassageInput[], quota?: PassageQuota): Promise<AddResult[]> {
    const prepared = this.validate(models, inputs);
    // Loaded before the commit: a load after it would read the new rows and then add them again.
    const index = await this.index(sessionId, models.embeddingDim);
    const { results, added } = await this.records.commit(sessionId, clientId, prepared, quota, { withEmbeddings: true });
    // Committed: only now does the in-memory index learn about them.
    index.add(
      added.map((a) => a.id),
      added.map((a) => a.embedding),
    );
    if (added.length > 0) this.forgetMark(sessionId);
    return results;
  }

  async search(sessionId: string, models: SessionModels, query: readonly number[], k: number, withEmbeddings = false): Promise<SearchHit[]> {
    const q = checkQuery(models, query);
    const index = await this.index(sessionId, models.embeddingDim, true);
    const top = index.search(q, k).map((t) => ({ ...t, ...(withEmbeddings ? { embedding: index.embedding(t.id) } : {}) }));
    return searchHits(this.records, sessionId, top, k, withEmbeddings);
  }

  async withdraw(sessionId: string, models: SessionModels, clientId: string, id: number): Promise<{ deleted: boolean; contributorsLeft: number }> {
    const index = await this.index(sessionId, models.embeddingDim);
    const outcome = await this.records.removeContribution(sessionId, clientId, id);
    // Committed: only now does the in-memory index forget it.
    if (outcome.deleted) {
      index.remove([id]);
      this.forgetMark(sessionId);
    }
    return outcome;
  }
}
