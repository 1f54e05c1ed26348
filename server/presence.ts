/**
 * Presence: a client is online while it holds at least one open event stream for the session.
 * With one process the count is the streams it holds (LocalPresence); with several processes on
 * one PostgreSQL database it is every process's (server/pg-presence.ts), so a dashboard on any of
 * them shows the clients connected to all. A `presence` event goes out when the number changes.
 */
import type { EventHub } from './events';

export interface Presence {
  /**
   * Records an open event stream of `clientId`; resolves once it counts (the stream's hello, sent
   * after, includes it). The returned function records its close (calling it again does nothing).
   */
  open(sessionId: string, clientId: string): Promise<() => void>;
  /** Distinct clients of `sessionId` holding an open event stream. */
  online(sessionId: string): Promise<number>;
  close(): Promise<void>;
}

/** Open event streams of one process: sessionId → clientId → streams (a client may have several tabs). */
export class StreamCounts {
  private readonly streams = new Map<string, Map<string, number>>();

  /** Counts a stream; true when it is the client's first here. */
  add(sessionId: string, clientId: string): boolean {
    let perClient = this.streams.get(sessionId);
    if (!perClient) this.streams.set(sessionId, (perClient = new Map()));
    const before = perClient.get(clientId) ?? 0;
    perClient.set(clientId, before + 1);
    return before === 0;
  }

  /** Uncounts a stream; true when it was the client's last here. */
  remove(sessionId: string, clientId: string): boolean {
    const perClient = this.streams.get(sessionId);
    const left = (perClient?.get(clientId) ?? 0) - 1;
    if (!perClient || left < 0) return false;
    if (left > 0) {
      perClient.set(clientId, left);
      return false;
    }
    perClient.delete(clientId);
    if (perClient.size === 0) this.streams.delete(sessionId);
    return true;
  }

  /** Distinct clients of `sessionId` with a stream here. */
  clients(sessionId: string): number {
    return this.streams.get(sessionId)?.size ?? 0;
  }

  /** Every (session, client) with a stream here. */
  held(): Array<{ sessionId: string; clientId: string }> {
    return [...this.streams].flatMap(([sessionId, perClient]) => [...perClient.keys()].map((clientId) => ({ sessionId, clientId })));
  }
}

/** One coordinator process: the streams it holds are all there are; each change is told to its streams. */
export class LocalPresence implements Presence {
  private readonly counts = new StreamCounts();

  constructor(private readonly hub: EventHub) {}

  async open(sessionId: string, clientId: string): Promise<() => void> {
    // A second tab of the same client is silent: the number of distinct clients did not change.
    if (this.counts.add(sessionId, clientId)) this.hub.emit(sessionId, { type: 'presence', online: this.counts.clients(sessionId) });
    let open = true;
    return () => {
      if (!open) return;
      open = false;
      if (this.counts.remove(sessionId, clientId)) this.hub.emit(sessionId, { type: 'presence', online: this.counts.clients(sessionId) });
    };
  }

  async online(sessionId: string): Promise<number> {
    return this.counts.clients(sessionId);
  }

  async close(): Promise<void> {}
}
