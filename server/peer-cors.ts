/**
 * Cross-origin API access for the pages of this coordinator's peers. A tab loaded from one
 * coordinator process fails over to the others (src/federated/peers.ts): its requests to them are
 * cross-origin, with an Authorization header, so the browser asks first (a preflight) and reads
 * the answer only when it names the tab's origin. Exactly the peers' origins are allowed, never
 * `*`: a page from anywhere else still cannot use a participant's token against the API here
 * (the token stays in that origin's storage; this limits which pages may even try).
 */
import type { FastifyInstance } from 'fastify';

/** The origins (scheme://host:port) of the peers' base URLs. */
export function peerOrigins(peerUrls: readonly string[]): Set<string> {
  return new Set(peerUrls.map((u) => new URL(u).origin));
}

/**
 * Adds the CORS headers to API answers for a request from an allowed origin, and answers its
 * preflights (204). Requests from other origins get no CORS header, so their browsers refuse to
 * hand the answer to the page. Register before the hooks that authenticate or rate-limit: a
 * preflight carries no token and is answered here.
 */
export function registerPeerCors(app: FastifyInstance, origins: ReadonlySet<string>): void {
  if (origins.size === 0) return;
  app.addHook('onRequest', async (req, reply) => {
    if (!req.url.startsWith('/api/')) return;
    // The answer depends on the Origin header: caches must key on it.
    reply.header('vary', 'Origin');
    const origin = req.headers.origin;
    if (origin === undefined || !origins.has(origin)) return;
    reply.header('access-control-allow-origin', origin);
    // Read by the client: the wait before a retry (429), and the download's size (progress).
    reply.header('access-control-expose-headers', 'retry-after, content-length');
    if (req.method === 'OPTIONS' && req.headers['access-control-request-method'] !== undefined) {
      reply.header('access-control-allow-methods', 'GET, POST, PUT, DELETE');
      reply.header('access-control-allow-headers', 'authorization, content-type, accept');
      reply.header('access-control-max-age', '600');
      return reply.code(204).send();
    }
  });
}
