/**
 * In-process fan-out of ServerEvents to the SSE connections of each session. Who is online is
 * server/presence.ts; other processes' events arrive through server/event-relay.ts.
 */
import type { ServerEvent } from '../src/federated/protocol';

export type Listener = (event: ServerEvent) => void;

export class EventHub {
  private readonly listeners = new Map<string, Set<Listener>>();

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
}
