/**
 * The session's event stream (Server-Sent Events): a hello with the session's state, then every
 * event in order, a keep-alive comment every 15 s. A client's open stream counts as its presence.
 */
import { Type } from 'typebox';
import type { ServerEvent } from '../../src/federated/protocol';
import { bearer } from '../tokens';
import { EVENTS_ROUTE, sessionParams, type RouteContext } from './context';

export function registerEventRoutes(ctx: RouteContext): void {
  const { app, coordinator, eventStreams } = ctx;
  // SSE: the token may also come as ?token= because a browser EventSource cannot set headers.
  app.get(
    EVENTS_ROUTE,
    { schema: { params: sessionParams, querystring: Type.Object({ token: Type.Optional(Type.String({ maxLength: 200 })) }) } },
    async (req, reply) => {
      const sessionId = req.params.sessionId;
      const who = await coordinator.authenticate(sessionId, bearer(req.headers.authorization) ?? req.query.token);
      reply.hijack();
      const res = reply.raw;
      // Hijacked: the headers hooks set (a peer page's CORS headers) are written here by hand.
      const hooked = Object.fromEntries(Object.entries(reply.getHeaders()).filter(([, v]) => v !== undefined)) as Record<string, string | number | string[]>;
      res.writeHead(200, { ...hooked, 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive', 'x-accel-buffering': 'no' });
      const send = (e: ServerEvent) => res.write(`event: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`);
      const heartbeat = setInterval(() => res.write(': keep-alive\n\n'), 15_000);
      heartbeat.unref();
      let gone = false;
      let unsubscribe = () => {};
      let closeStream = () => {};
      eventStreams.add(res);
      // Registered before anything is awaited: a caller that hangs up meanwhile is still cleaned up.
      res.on('close', () => {
        gone = true;
        clearInterval(heartbeat);
        unsubscribe();
        closeStream();
        eventStreams.delete(res);
      });
      // Presence first (the other streams hear it), so this stream's hello already counts itself.
      if (who.role === 'client') {
        const close = await coordinator.presence.open(sessionId, who.clientId);
        if (gone) return close();
        closeStream = close;
      }
      // Events emitted while the hello is being read wait for it, in order.
      let pending: ServerEvent[] | undefined = [];
      unsubscribe = coordinator.events.subscribe(sessionId, (e) => (pending ? pending.push(e) : send(e)));
      send({ type: 'hello', session: await coordinator.sessionInfo(sessionId) });
      for (const e of pending) send(e);
      pending = undefined;
    },
  );
}
