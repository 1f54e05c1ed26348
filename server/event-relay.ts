/**
 * Session events across coordinator processes that share one PostgreSQL database: each process
 * NOTIFYs what it emits on one channel and LISTENs for the others', so a client's event stream
 * hears about a round opened, an update accepted or a round closed by any process.
 *
 * A NOTIFY payload is limited (8,000 bytes by default) and a round's record grows with its
 * participants, so only ids and small numbers travel: a round event names its session and number
 * and the listening process reads the round from the shared state (`Relayed.hydrate`). Presence
 * travels as a bare notice that it changed: each process counts again from the shared presence
 * table (server/pg-presence.ts).
 */
import pg from 'pg';
import type { ServerEvent } from '../src/federated/protocol';

const CHANNEL = 'corag_events';

/** What travels in a NOTIFY: the sender's node id, the session, and the event without its round record. */
type Wire =
  | { o: string; s: string; t: 'round-opened' | 'round-closed'; r: number }
  | { o: string; s: string; t: 'update-accepted'; r: number; c: string; a: number }
  | { o: string; s: string; t: 'passages-changed'; n: number; a: number; d: number }
  | { o: string; s: string; t: 'presence' };

export interface RelayHandlers {
  /** A round event's full form, read from the shared state. */
  hydrate(sessionId: string, type: 'round-opened' | 'round-closed', round: number): Promise<ServerEvent>;
  /** Another process's event, in the order that process sent them. */
  deliver(sessionId: string, event: ServerEvent): void;
  /** Another process's streams of `sessionId` changed (announcePresence): count who is online again. */
  presenceChanged(sessionId: string): void;
  log(line: string): void;
}

export class PgEventRelay {
  private client?: pg.Client;
  private closed = false;
  /** Delivery in arrival order, although hydrating a round event reads the database. */
  private chain: Promise<void> = Promise.resolve();

  constructor(
    private readonly url: string,
    readonly node: string,
    private readonly handlers: RelayHandlers,
  ) {}

  /** Connects and LISTENs; a lost connection is re-established (events sent meanwhile are missed, as a dropped SSE stream misses them). */
  async start(): Promise<void> {
    const client = new pg.Client({ connectionString: this.url });
    client.on('notification', (m) => {
      if (m.channel === CHANNEL && m.payload) this.receive(m.payload);
    });
    client.on('error', (e) => {
      this.handlers.log(`coordinator: the event relay's PostgreSQL connection failed (${e.message}); reconnecting`);
      void client.end().catch(() => undefined);
      if (this.client === client) this.client = undefined;
      this.reconnect();
    });
    await client.connect();
    await client.query(`LISTEN ${CHANNEL}`);
    if (this.closed) {
      await client.end();
      return;
    }
    this.client = client;
  }

  private reconnect(): void {
    if (this.closed) return;
    setTimeout(() => {
      this.start().catch((e: unknown) => {
        this.handlers.log(`coordinator: the event relay could not reconnect (${(e as Error).message}); retrying`);
        this.reconnect();
      });
    }, 1000).unref();
  }

  /** Sends a locally emitted event to the other processes (hello and presence counts stay local: announcePresence). */
  publish(sessionId: string, event: ServerEvent): void {
    const wire = toWire(this.node, sessionId, event);
    if (wire) this.send(wire, event.type);
  }

  /** Tells the other processes that this one's streams of `sessionId` changed. */
  announcePresence(sessionId: string): void {
    this.send({ o: this.node, s: sessionId, t: 'presence' }, 'presence');
  }

  private send(wire: Wire, what: string): void {
    if (!this.client) return;
    this.client.query('SELECT pg_notify($1, $2)', [CHANNEL, JSON.stringify(wire)]).catch((e: unknown) => {
      this.handlers.log(`coordinator: could not relay a ${what} event (${(e as Error).message})`);
    });
  }

  private receive(payload: string): void {
    let wire: Wire;
    try {
      wire = JSON.parse(payload) as Wire;
    } catch {
      return; // not ours: whoever else NOTIFYs on the channel is ignored
    }
    if (typeof wire !== 'object' || wire === null || wire.o === this.node || typeof wire.s !== 'string') return;
    if (wire.t === 'presence') {
      this.handlers.presenceChanged(wire.s);
      return;
    }
    this.chain = this.chain
      .then(async () => {
        const event = await fromWire(wire, this.handlers);
        if (event) this.handlers.deliver(wire.s, event);
      })
      .catch((e: unknown) => this.handlers.log(`coordinator: a relayed ${String(wire.t)} event was dropped (${(e as Error).message})`));
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.chain;
    await this.client?.end().catch(() => undefined);
    this.client = undefined;
  }
}

function toWire(o: string, s: string, e: ServerEvent): Wire | undefined {
  switch (e.type) {
    case 'round-opened':
    case 'round-closed':
      return { o, s, t: e.type, r: e.round.round };
    case 'update-accepted':
      return { o, s, t: e.type, r: e.round, c: e.clientId, a: e.accepted };
    case 'passages-changed':
      return { o, s, t: e.type, n: e.total, a: e.added, d: e.removed };
    default:
      return undefined;
  }
}

async function fromWire(w: Wire, handlers: RelayHandlers): Promise<ServerEvent | undefined> {
  switch (w.t) {
    case 'round-opened':
    case 'round-closed':
      return Number.isInteger(w.r) ? handlers.hydrate(w.s, w.t, w.r) : undefined;
    case 'update-accepted':
      return { type: 'update-accepted', round: w.r, clientId: w.c, accepted: w.a };
    case 'passages-changed':
      return { type: 'passages-changed', total: w.n, added: w.a, removed: w.d };
    default:
      return undefined;
  }
}
