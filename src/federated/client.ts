/**
 * The HTTP client every participant uses — browser tabs and Node simulated clients alike (fetch +
 * an SSE reader, no Node or DOM specifics). Weights go up and down as safetensors bytes; JSON is
 * only for small control messages, and every JSON answer and event is checked against its schema
 * in ./protocol before it is returned (./wire-check: a CoragProtocolError otherwise).
 */
import type { Static, TSchema } from 'typebox';
import {
  addPassagesResultSchema,
  contributionsResultSchema,
  createdSessionSchema,
  joinResultSchema,
  MAX_PASSAGES_PER_REQUEST,
  modelVersionSchema,
  passagesResultSchema,
  peersSchema,
  roundInfoSchema,
  searchResultSchema,
  sessionInfoSchema,
  trainingQuestionsResponseSchema,
  updateReceiptSchema,
  withdrawResultSchema,
  type AddPassagesResult,
  type ContributionCount,
  type CreatedSession,
  type ErrorBody,
  type JoinResult,
  type NewSession,
  type Passage,
  type PassageInput,
  type RoundInfo,
  type SearchHit,
  type ServerEvent,
  type SessionInfo,
  type TrainingQuestionsResponse,
  type UpdateReceipt,
} from './protocol';
import { answersAResend } from './failover';
import { readSse } from './sse';
import { checkWire, CoragProtocolError, parseServerEvent } from './wire-check';

export type { NewSession } from './protocol';
export { CoragProtocolError };

/** A refused request: the server's status, stable error code and message. */
export class CoragHttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    /** The refusal answers a request sent again to another coordinator after a lost connection (./failover): its first send may have landed. */
    readonly resent = false,
  ) {
    super(`${status} ${code}: ${message}`);
    this.name = 'CoragHttpError';
  }
}

export type FetchLike = typeof fetch;

/** A new join idempotency key: 128 random bits, base64url (22 characters; ./protocol JOIN_KEY). */
export function newJoinKey(): string {
  const bytes = globalThis.crypto.getRandomValues(new Uint8Array(16));
  let binary = '';
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/** Progress of a model download (bytes; `total` undefined when the server sends no length). */
export type DownloadProgress = (loaded: number, total: number | undefined) => void;

export class CoragClient {
  private readonly base: string;

  /** `token` is a session admin token or a client token (or a server key when creating sessions). */
  constructor(
    baseUrl: string,
    readonly token?: string,
    private readonly fetchImpl: FetchLike = globalThis.fetch.bind(globalThis),
  ) {
    this.base = baseUrl.replace(/\/+$/, '');
  }

  /** The same server, another identity. */
  withToken(token: string): CoragClient {
    return new CoragClient(this.base, token, this.fetchImpl);
  }

  private async request(method: string, path: string, body?: unknown): Promise<Response> {
    const headers: Record<string, string> = {};
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    let payload: BodyInit | undefined;
    if (body instanceof Uint8Array) {
      headers['content-type'] = 'application/octet-stream';
      payload = body as unknown as BodyInit;
    } else if (body !== undefined) {
      headers['content-type'] = 'application/json';
      payload = JSON.stringify(body);
    }
    const res = await this.fetchImpl(`${this.base}${path}`, { method, headers, body: payload });
    if (!res.ok) throw await httpError(res);
    return res;
  }

  /** The JSON answer, checked against `schema` (the route's response schema in ./protocol). */
  private async json<T extends TSchema>(schema: T, method: string, path: string, body?: unknown, tolerate?: (value: unknown) => void): Promise<Static<T>> {
    const res = await this.request(method, path, body);
    const what = `${method} ${path.split('?')[0]} answer`;
    let value: unknown;
    try {
      value = await res.json();
    } catch {
      throw new CoragProtocolError(what, '', 'is not JSON');
    }
    tolerate?.(value);
    return checkWire(schema, value, what);
  }

  /** A JSON answer read field by field by its caller (the informational routes). */
  private async looseJson(path: string): Promise<Record<string, unknown>> {
    const value: unknown = await (await this.request('GET', path)).json();
    return typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : {};
  }

  /** Base URLs at which other devices reach this coordinator (none when it listens on loopback only). */
  async network(): Promise<string[]> {
    const { urls } = await this.looseJson('/api/network');
    return Array.isArray(urls) ? urls.filter((u): u is string => typeof u === 'string' && /^https?:\/\//.test(u)) : [];
  }

  /** The other coordinator processes serving this one's sessions (GET /api/peers), as base URLs. */
  async peers(): Promise<string[]> {
    return [...(await this.json(peersSchema, 'GET', '/api/peers')).peers];
  }

  /** The session anyone may join without a code (npm start's demo session), or null when none is offered. */
  async publicSession(): Promise<{ joinCode: string; name: string } | null> {
    try {
      const open = await this.looseJson('/api/public-session');
      return typeof open.joinCode === 'string' && typeof open.name === 'string' ? { joinCode: open.joinCode, name: open.name } : null;
    } catch (e) {
      if (e instanceof CoragHttpError && e.code === 'no_public_session') return null;
      throw e;
    }
  }

  createSession(config: NewSession): Promise<CreatedSession> {
    return this.json(createdSessionSchema, 'POST', '/api/sessions', config);
  }

  /**
   * Joins with `code`. The join carries `idempotencyKey` (a new random one unless given): a resend
   * of this request (./failover, after a lost connection) carries the same body, so a coordinator
   * that had committed the first send answers with the same client instead of creating another.
   * A caller that retries a join itself (a reloaded tab) passes the key it used before.
   */
  join(code: string, name?: string, idempotencyKey: string = newJoinKey()): Promise<JoinResult> {
    return this.json(joinResultSchema, 'POST', '/api/join', name === undefined ? { code, idempotencyKey } : { code, name, idempotencyKey });
  }

  session(sessionId: string): Promise<SessionInfo> {
    return this.json(sessionInfoSchema, 'GET', `/api/sessions/${encodeURIComponent(sessionId)}`);
  }

  /** Admin: upload the initial (or a replacement) global model; returns its version. */
  async uploadModel(sessionId: string, safetensors: Uint8Array): Promise<{ version: number }> {
    return this.json(modelVersionSchema, 'PUT', `/api/sessions/${encodeURIComponent(sessionId)}/model`, safetensors);
  }

  /**
   * Global model version `version` as safetensors bytes (immutable: cache by version). With
   * `onProgress` the body is read as a stream and reported after each chunk (`total` is undefined
   * when the server sends no content-length).
   */
  async downloadModel(sessionId: string, version: number, onProgress?: DownloadProgress): Promise<Uint8Array> {
    const res = await this.request('GET', `/api/sessions/${encodeURIComponent(sessionId)}/model/${version}`);
    if (!onProgress || !res.body) return new Uint8Array(await res.arrayBuffer());
    const header = res.headers.get('content-length');
    const total = header && /^\d+$/.test(header) ? Number(header) : undefined;
    const chunks: Uint8Array[] = [];
    let loaded = 0;
    const reader = res.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      loaded += value.byteLength;
      onProgress(loaded, total);
    }
    const bytes = new Uint8Array(loaded);
    let at = 0;
    for (const c of chunks) {
      bytes.set(c, at);
      at += c.byteLength;
    }
    return bytes;
  }

  /** Admin: open the next round. */
  openRound(sessionId: string): Promise<RoundInfo> {
    return this.json(roundInfoSchema, 'POST', `/api/sessions/${encodeURIComponent(sessionId)}/rounds`);
  }

  /** Admin: close a round now (aggregates what arrived, or fails it when below minUpdates). */
  closeRound(sessionId: string, round: number): Promise<RoundInfo> {
    return this.json(roundInfoSchema, 'POST', `/api/sessions/${encodeURIComponent(sessionId)}/rounds/${round}/close`);
  }

  round(sessionId: string, round: number | 'current'): Promise<RoundInfo> {
    return this.json(roundInfoSchema, 'GET', `/api/sessions/${encodeURIComponent(sessionId)}/rounds/${round}`);
  }

  /** One delta per client per round (see encodeUpdate). */
  uploadUpdate(sessionId: string, round: number, update: Uint8Array): Promise<UpdateReceipt> {
    return this.json(updateReceiptSchema, 'PUT', `/api/sessions/${encodeURIComponent(sessionId)}/rounds/${round}/update`, update);
  }

  /** One request: at most MAX_PASSAGES_PER_REQUEST passages (the server refuses more). */
  addPassages(sessionId: string, passages: readonly PassageInput[]): Promise<AddPassagesResult> {
    return this.json(addPassagesResultSchema, 'POST', `/api/sessions/${encodeURIComponent(sessionId)}/passages`, { passages });
  }

  /**
   * Any number of passages, sent in requests of MAX_PASSAGES_PER_REQUEST, one after another;
   * `passageAt(i)` builds passage i only when its batch is sent (embeddings are large). Returns
   * one result per passage, in order. A failed batch throws; the earlier batches stay stored
   * (contributing is idempotent: a retry reports them as duplicates).
   */
  async addPassagesInBatches(sessionId: string, count: number, passageAt: (i: number) => PassageInput): Promise<AddPassagesResult['results']> {
    const results: Array<AddPassagesResult['results'][number]> = [];
    for (let start = 0; start < count; start += MAX_PASSAGES_PER_REQUEST) {
      const batch = Array.from({ length: Math.min(MAX_PASSAGES_PER_REQUEST, count - start) }, (_, i) => passageAt(start + i));
      results.push(...(await this.addPassages(sessionId, batch)).results);
    }
    return results;
  }

  /** Top-k of the session store; `withEmbeddings` adds each hit's stored embedding (k ≤ MAX_SEARCH_K_WITH_EMBEDDINGS). */
  async search(sessionId: string, embedding: ArrayLike<number>, k = 10, options: { withEmbeddings?: boolean } = {}): Promise<SearchHit[]> {
    const r = await this.json(
      searchResultSchema,
      'POST',
      `/api/sessions/${encodeURIComponent(sessionId)}/passages/search`,
      { embedding: Array.from(embedding), k, ...(options.withEmbeddings ? { withEmbeddings: true } : {}) },
      dropMalformedEmbeddings,
    );
    return r.hits;
  }

  async passages(sessionId: string, ids: readonly number[]): Promise<Passage[]> {
    const r = await this.json(passagesResultSchema, 'GET', `/api/sessions/${encodeURIComponent(sessionId)}/passages?ids=${ids.join(',')}`);
    return r.passages;
  }

  /**
   * Withdraws this client's contribution of passage `id`: it leaves the store once no contributor
   * is left (`deleted`), else it stays for the clients that contributed the same text too.
   */
  deletePassage(sessionId: string, id: number): Promise<{ id: number; deleted: boolean; contributorsLeft: number }> {
    return this.json(withdrawResultSchema, 'DELETE', `/api/sessions/${encodeURIComponent(sessionId)}/passages/${id}`);
  }

  /**
   * Takes this client's passages back out of the session store, one DELETE each. Per id:
   * `withdrawn` (no longer in the store); `kept` when other clients contributed the same text too
   * (the store holds one copy, which stays for them); `gone` when it was no longer there. Any other
   * failure (connection, server) throws; ids before it were withdrawn.
   */
  async withdrawPassages(sessionId: string, ids: readonly number[]): Promise<Array<{ id: number; outcome: 'withdrawn' | 'kept' | 'gone' }>> {
    const out: Array<{ id: number; outcome: 'withdrawn' | 'kept' | 'gone' }> = [];
    for (const id of ids) {
      try {
        out.push({ id, outcome: (await this.deletePassage(sessionId, id)).deleted ? 'withdrawn' : 'kept' });
      } catch (e) {
        if (e instanceof CoragHttpError && e.code === 'not_your_passage') out.push({ id, outcome: 'kept' });
        else if (e instanceof CoragHttpError && e.code === 'passage_not_found') out.push({ id, outcome: 'gone' });
        else throw e;
      }
    }
    return out;
  }

  /** This client's shard of the session's training questions and the held-out evaluation set (404 `no_training_questions` when it hands out none). */
  trainingQuestions(sessionId: string): Promise<TrainingQuestionsResponse> {
    return this.json(trainingQuestionsResponseSchema, 'GET', `/api/sessions/${encodeURIComponent(sessionId)}/training-questions`);
  }

  async contributions(sessionId: string): Promise<ContributionCount[]> {
    const r = await this.json(contributionsResultSchema, 'GET', `/api/sessions/${encodeURIComponent(sessionId)}/contributions`);
    return r.counts;
  }

  /**
   * Round and store events until `signal` aborts; the first event is a `hello` snapshot. Each is
   * checked against its schema: a malformed one ends the stream with a CoragProtocolError (nothing
   * acts on it); types this client does not know are skipped.
   */
  async *events(sessionId: string, signal?: AbortSignal): AsyncGenerator<ServerEvent> {
    const headers: Record<string, string> = { accept: 'text/event-stream' };
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    const res = await this.fetchImpl(`${this.base}/api/sessions/${encodeURIComponent(sessionId)}/events`, { headers, signal });
    if (!res.ok || !res.body) throw await httpError(res);
    for await (const m of readSse(res.body, signal)) {
      const event = parseServerEvent(m.event, m.data);
      if (event) yield event;
    }
  }
}

/**
 * A hit's embedding only spares the caller re-embedding the passage (src/corag/retrieve.ts
 * recomputes one that is missing or of the wrong dimension): one that is not an array of numbers is
 * dropped before the answer is checked, instead of refusing the whole search. Anything else in the
 * answer must match its schema.
 */
function dropMalformedEmbeddings(value: unknown): void {
  const hits = typeof value === 'object' && value !== null ? (value as { hits?: unknown }).hits : undefined;
  if (!Array.isArray(hits)) return;
  for (const hit of hits) {
    if (typeof hit !== 'object' || hit === null || !('embedding' in hit)) continue;
    const e = (hit as { embedding?: unknown }).embedding;
    if (!Array.isArray(e) || !e.every((x) => typeof x === 'number')) delete (hit as { embedding?: unknown }).embedding;
  }
}

/** A refused request's CoragHttpError: the `{error, message}` body when there is one, else the status line. */
async function httpError(res: Response): Promise<CoragHttpError> {
  const body: unknown = await res.json().catch(() => undefined);
  const field = (key: keyof ErrorBody): string | undefined => {
    const v = typeof body === 'object' && body !== null ? (body as Record<string, unknown>)[key] : undefined;
    return typeof v === 'string' ? v : undefined;
  };
  return new CoragHttpError(res.status, field('error') ?? 'http_error', field('message') ?? res.statusText, answersAResend(res));
}
