/**
 * In-process fan-out of ServerEvents to the SSE connections of each session, and presence: a
 * client is online while it holds at least one open event stream for the session.
 */
import type { ServerEvent } from '../src/federated/protocol';

export type Listener = (event: ServerEvent) => void;

export class EventHub {
  private readonly listeners = new Map<string, Set<Listener>>();
  /** sessionId → clientId → open event streams of that client (a client may have several tabs). */
  private readonly streams = new Map<string, Map<string, number>>();

  subscribe(sessionId: string, listener: Listener): () => void {
    let set = this.listeners.get(sessionId);
    if (!set) this.listeners.set(sessionId, (set = new Set()));
    set.add(listener);
    return () => {
      set!.delete(listener);
      if (set!.size === 0) this.listeners.delete(sessionId);
    };
  }

  emit(sessionId: string, event: ServerEvent): void {
    for (const l of this.listeners.get(sessionId) ?? []) l(event);
  }

  /** Distinct clients of `sessionId` holding an open event stream. */
  online(sessionId: string): number {
    return this.streams.get(sessionId)?.size ?? 0;
  }

  /**
   * Records an open event stream of `clientId`; the returned function records its close (calling
   * it again does nothing). A `presence` event goes out only when the number of distinct online
   * clients changes, so a second tab of the same client is silent.
   */
  openStream(sessionId: string, clientId: string): () => void {
    let perClient = this.streams.get(sessionId);
    if (!perClient) this.streams.set(sessionId, (perClient = new Map()));
    const before = perClient.get(clientId) ?? 0;
    perClient.set(clientId, before + 1);
    if (before === 0) this.emit(sessionId, { type: 'presence', online: perClient.size });
    let open = true;
    return () => {
      if (!open) return;
      open = false;
      const left = perClient!.get(clientId)! - 1;
      if (left > 0) {
        perClient!.set(clientId, left);
        return;
      }
      perClient!.delete(clientId);
      if (perClient!.size === 0 && this.streams.get(sessionId) === perClient) this.streams.delete(sessionId);
      this.emit(sessionId, { type: 'presence', online: perClient!.size });
    };
  }
}
