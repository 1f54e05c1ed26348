/**
 * Presence across coordinator processes that share one PostgreSQL database: each process records
 * in the `presence` table the clients holding an event stream on it (a row per process, session
 * and client) and refreshes its rows every heartbeat; a client is online while one of its rows is
 * fresher than the time to live. A process that dies without closing its streams (SIGKILL, a lost
 * host) stops refreshing, and its rows stop counting once older than the TTL — meanwhile its
 * clients reconnect to another process and are counted there.
 *
 * A change travels as a bare "presence changed" notice over the event relay (server/event-relay.ts);
 * each process counts again from the table and tells its own streams when its number changed. The
 * heartbeat counts again too: that is how a dead process's clients leave the count.
 *
 * The table is ephemeral: UNLOGGED, outside the schema migrations (server/pg-state.ts), rebuilt by
 * the heartbeats after a PostgreSQL restart empties it. Times are the database's (`now()`), so the
 * processes' clocks need not agree.
 */
import pg from 'pg';
import type { ServerEvent } from '../src/federated/protocol';
import { inTransaction } from './pg-transaction';
import { StreamCounts, type Presence } from './presence';

export const DEFAULT_PRESENCE_TTL_MS = 30_000;
/** pg_advisory_xact_lock key for creating the table ("pres" in ASCII): processes starting together create it once. */
const TABLE_LOCK = 0x70726573;

export interface PgPresenceOptions {
  readonly url: string;
  /** This process's node id (server/coordinator.ts). */
  readonly node: string;
  /** A row not refreshed for this long no longer counts; rows are refreshed every third of it. */
  readonly ttlMs?: number;
  /** Sends an event to this process's own streams. */
  readonly tell: (sessionId: string, event: ServerEvent) => void;
  /** Tells the other processes that `sessionId`'s presence changed (they count again). */
  readonly announce: (sessionId: string) => void;
  readonly log: (line: string) => void;
}

export class PgPresence implements Presence {
  private readonly pool: pg.Pool;
  private readonly counts = new StreamCounts();
  /** The number this process last told its streams, per session it has counted. */
  private readonly told = new Map<string, number>();
  /** Writes and counts one at a time, in order: a close never overtakes its open. */
  private chain: Promise<unknown> = Promise.resolve();
  private timer?: NodeJS.Timeout;
  private tableReady?: Promise<void>;
  private readonly ttlSeconds: number;

  constructor(private readonly options: PgPresenceOptions) {
    this.pool = new pg.Pool({ connectionString: options.url, max: 2 });
    this.pool.on('error', (e) => options.log(`coordinator: presence's PostgreSQL connection lost: ${e.message}`));
    this.ttlSeconds = (options.ttlMs ?? DEFAULT_PRESENCE_TTL_MS) / 1000;
  }

  /** Creates the table when absent (once; see `table`) and starts the heartbeat. */
  async start(): Promise<void> {
    await this.table();
    this.timer ??= setInterval(() => void this.serial(() => this.heartbeat()).catch((e: unknown) => this.report('heartbeat', e)), (this.ttlSeconds * 1000) / 3);
    this.timer.unref();
  }

  /**
   * The `presence` table, created on first use: a coordinator used before `resume()` (its
   * constructor returns at once; createSession answers with the online count) must find it too.
   */
  private table(): Promise<void> {
    this.tableReady ??= this.createTable().catch((e: unknown) => {
      this.tableReady = undefined;
      throw e;
    });
    return this.tableReady;
  }

  private async createTable(): Promise<void> {
    await inTransaction(this.pool, async (c) => {
      await c.query('SELECT pg_advisory_xact_lock($1)', [TABLE_LOCK]);
      await c.query(`CREATE UNLOGGED TABLE IF NOT EXISTS presence (
  session_id TEXT NOT NULL,
  client_id TEXT NOT NULL,
  node TEXT NOT NULL,
  seen_at TIMESTAMPTZ NOT NULL,
  PRIMARY KEY (session_id, client_id, node)
)`);
    });
  }

  async open(sessionId: string, clientId: string): Promise<() => void> {
    if (this.counts.add(sessionId, clientId)) {
      await this.serial(async () => {
        await this.table();
        await this.pool.query(
          `INSERT INTO presence (session_id, client_id, node, seen_at) VALUES ($1, $2, $3, now())
           ON CONFLICT (session_id, client_id, node) DO UPDATE SET seen_at = now()`,
          [sessionId, clientId, this.options.node],
        );
        await this.recount(sessionId);
      });
      this.options.announce(sessionId);
    }
    let open = true;
    return () => {
      if (!open) return;
      open = false;
      if (!this.counts.remove(sessionId, clientId)) return;
      void this.serial(async () => {
        await this.pool.query('DELETE FROM presence WHERE session_id = $1 AND client_id = $2 AND node = $3', [sessionId, clientId, this.options.node]);
        await this.recount(sessionId);
        this.options.announce(sessionId);
      }).catch((e: unknown) => this.report('closed stream', e));
    };
  }

  async online(sessionId: string): Promise<number> {
    await this.table();
    const { rows } = await this.pool.query<{ n: number }>(
      'SELECT COUNT(DISTINCT client_id)::int AS n FROM presence WHERE session_id = $1 AND seen_at > now() - make_interval(secs => $2)',
      [sessionId, this.ttlSeconds],
    );
    return rows[0].n;
  }

  /** Another process's streams changed: count again (in order with this process's own changes). */
  changedElsewhere(sessionId: string): void {
    void this.serial(() => this.recount(sessionId)).catch((e: unknown) => this.report('relayed change', e));
  }

  /** Stops the heartbeat and removes this process's rows, so the others drop its clients now rather than after the TTL. */
  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.chain.catch(() => undefined);
    try {
      const { rows } = await this.pool.query<{ session_id: string }>('DELETE FROM presence WHERE node = $1 RETURNING session_id', [this.options.node]);
      for (const s of new Set(rows.map((r) => r.session_id))) this.options.announce(s);
    } catch (e) {
      this.report('close', e);
    }
    await this.pool.end();
  }

  /** Refreshes this process's rows (writing back any a PostgreSQL restart lost), drops expired ones, and counts again. */
  private async heartbeat(): Promise<void> {
    const held = this.counts.held();
    if (held.length > 0) {
      await this.pool.query(
        `INSERT INTO presence (session_id, client_id, node, seen_at) SELECT s, c, $1, now() FROM unnest($2::text[], $3::text[]) AS t(s, c)
         ON CONFLICT (session_id, client_id, node) DO UPDATE SET seen_at = now()`,
        [this.options.node, held.map((h) => h.sessionId), held.map((h) => h.clientId)],
      );
    }
    await this.pool.query('DELETE FROM presence WHERE seen_at < now() - make_interval(secs => $1)', [this.ttlSeconds]);
    for (const sessionId of this.told.keys()) await this.recount(sessionId);
  }

  /** Counts `sessionId`'s online clients and tells this process's streams when the number changed. */
  private async recount(sessionId: string): Promise<void> {
    const online = await this.online(sessionId);
    if (this.told.get(sessionId) === online) return;
    this.told.set(sessionId, online);
    this.options.tell(sessionId, { type: 'presence', online });
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.chain.then(fn, fn);
    this.chain = next.catch(() => undefined);
    return next;
  }

  private report(what: string, e: unknown): void {
    this.options.log(`coordinator: presence (${what}) failed: ${(e as Error).message}`);
  }
}
