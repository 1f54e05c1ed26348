/**
 * PostgreSQL WITH pgvector for tests, where Debian's PostgreSQL has none: PGlite (PostgreSQL 17
 * compiled to wasm, in this process) with the real pgvector extension, served over the PostgreSQL
 * wire protocol by @electric-sql/pglite-socket on a free loopback port, so the coordinator's own
 * `pg` pool connects to it as to any server.
 *
 * What PGlite is: ONE backend. pglite-socket's own server queues every protocol message of every
 * connection in one line, so two connections' extended-protocol exchanges (Parse, Bind, Execute,
 * Sync, sent together) interleave and one can bind the other's unnamed statement: measured, a
 * second pool's COUNT(*) got another statement's empty result. So the server here gives PGlite to
 * one connection at a time from its first message until PGlite answers ReadyForQuery "idle" (the
 * end of a Sync or simple query outside a transaction, or the end of its transaction): each
 * connection then sees a server of its own whose transactions serialise. Nothing runs in
 * parallel, advisory locks never block (every connection is the same backend) and CREATE INDEX
 * CONCURRENTLY is only sequential: enough for the pgvector store's behaviour (SQL, transactions,
 * recall), not for its timings.
 *
 * Starting a PGlite takes seconds (wasm), so a test file starts one and `createDatabase` empties
 * it for the next test (its schema dropped, the extension with it): one database at a time.
 */
import { createServer, type Server } from 'node:net';
import { PGlite } from '@electric-sql/pglite';
import { vector } from '@electric-sql/pglite-pgvector';
import { PGLiteSocketHandler, type PGLiteSocketHandlerOptions } from '@electric-sql/pglite-socket';

export interface TestPglite {
  /**
   * The database, emptied (the previous test's pools must be closed): pgvector available, not yet
   * created in it; its URL.
   */
  createDatabase(): Promise<string>;
  stop(): Promise<void>;
}

/** ReadyForQuery: 'Z', length 5, then the transaction status ('I' idle, 'T' in a transaction, 'E' failed one). */
const READY = 0x5a;
const IDLE = 0x49;

/**
 * PGlite for one connection at a time (see above), in place of pglite-socket's message queue:
 * `enqueue` is what its connection handler calls for each complete protocol message.
 */
class OneConnectionAtATime {
  private owner: number | null = null;
  private waiting: Array<{ handlerId: number; go: () => void }> = [];

  constructor(private readonly db: PGlite) {}

  private acquire(handlerId: number): Promise<void> {
    if (this.owner === null || this.owner === handlerId) {
      this.owner = handlerId;
      return Promise.resolve();
    }
    return new Promise((go) => this.waiting.push({ handlerId, go }));
  }

  private release(): void {
    this.owner = null;
    const next = this.waiting.shift();
    if (!next) return;
    this.owner = next.handlerId;
    // The others of the same connection go too (its messages arrive in order, one at a time).
    next.go();
  }

  async enqueue(handlerId: number, message: Uint8Array, onData: (data: Uint8Array) => void): Promise<number> {
    await this.acquire(handlerId);
    let bytes = 0;
    let tail = new Uint8Array(0);
    try {
      await this.db.runExclusive(() =>
        this.db.execProtocolRawStream(message, {
          onRawData: (data) => {
            bytes += data.length;
            const joined = new Uint8Array(tail.length + data.length);
            joined.set(tail);
            joined.set(data, tail.length);
            tail = joined.slice(-6);
            onData(data);
          },
        }),
      );
    } finally {
      const t = tail;
      const idle = t.length === 6 && t[0] === READY && t[4] === 5 && t[5] === IDLE;
      if (idle) this.release();
    }
    return bytes;
  }

  /** The connection closed: its waiting messages are dropped, its transaction rolled back, PGlite handed on. */
  clearQueueForHandler(handlerId: number): void {
    this.waiting = this.waiting.filter((w) => w.handlerId !== handlerId);
  }

  async clearTransactionIfNeeded(handlerId: number): Promise<void> {
    if (this.owner !== handlerId) return;
    if (this.db.isInTransaction()) await this.db.exec('ROLLBACK');
    this.release();
  }

  getQueueLength(): number {
    return this.waiting.length;
  }
}

export async function startTestPglite(): Promise<TestPglite> {
  const db = await PGlite.create({ extensions: { vector } });
  const queue = new OneConnectionAtATime(db);
  const handlers = new Set<PGLiteSocketHandler>();
  const server: Server = createServer((socket) => {
    const handler = new PGLiteSocketHandler({ queryQueue: queue as unknown as PGLiteSocketHandlerOptions['queryQueue'], closeOnDetach: true });
    handlers.add(handler);
    handler.addEventListener('close', () => handlers.delete(handler));
    handler.addEventListener('error', () => handlers.delete(handler));
    void handler.attach(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
  return {
    async createDatabase() {
      await db.exec('DROP SCHEMA public CASCADE; CREATE SCHEMA public;');
      return url;
    },
    async stop() {
      for (const h of handlers) await h.detach(true);
      await new Promise((resolve) => server.close(resolve));
      await db.close();
    },
  };
}
