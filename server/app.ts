/**
 * The HTTP edge: a Fastify app factory over a Coordinator. Every JSON body is schema-validated,
 * every binary body size-limited per route, every refusal is `{error, message}` with a 4xx status.
 * Uploads are authenticated and admitted from their headers before a byte of body is read, then
 * streamed under an idle timeout; rate limits are keyed by the verified caller (unverified callers
 * share their IP's bucket); tokens never reach the log. Tests build it on 127.0.0.1 with an
 * ephemeral port and a temp data folder.
 */
import { existsSync, rmSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import rateLimit from '@fastify/rate-limit';
import swagger from '@fastify/swagger';
import fastifyStatic from '@fastify/static';
import { peersSchema } from '../src/federated/protocol';
import { Coordinator, type Principal } from './coordinator';
import type { BlobStoreKind } from './blob-store';
import type { LanceStoreOptions } from './lance-passages';
import type { PgvectorStoreOptions } from './pgvector-passages';
import { addressBucket } from './address-bucket';
import { ApiError, badRequest, forbidden, unauthorized } from './errors';
import { redactingSink, serializeRequest, type LogSink } from './log-redaction';
import { serverKeyMatches } from './server-key';
import { bearer } from './tokens';
import { statusPage } from './status-page';
import { peerOrigins, registerPeerCors } from './peer-cors';
import { errorResponses, EVENTS_ROUTE, SESSION_ID, UPDATE_UPLOAD_ROUTE, UPLOAD_ROUTES, type RouteContext, type SessionReq } from './routes/context';
import { registerEventRoutes } from './routes/events';
import { registerModelRoutes } from './routes/models';
import { registerPassageRoutes } from './routes/passages';
import { registerRoundRoutes } from './routes/rounds';
import { registerSessionRoutes } from './routes/sessions';
import {
  checkDeclaredLength,
  declaredLength,
  pacedStream,
  readUploadBody,
  receiveUploadToFile,
  safetensorsHeaderBound,
  type UploadBodyLimits,
  type UploadedFile,
} from './upload-body';

export interface AppOptions {
  readonly dataDir: string;
  /** Keep the passage embeddings in LanceDB (server/lance-passages.ts); absent: the embedded store. */
  readonly passageStore?: LanceStoreOptions;
  /** Keep the passage vectors in PostgreSQL with pgvector (server/pgvector-passages.ts; needs `database`). */
  readonly pgvector?: PgvectorStoreOptions;
  /** A PostgreSQL URL for the coordinator state (server/pg-state.ts); absent: the data folder's SQLite database. */
  readonly database?: string;
  /** With `database`: how long a process's presence rows count without a refresh (server/pg-presence.ts). */
  readonly presenceTtlMs?: number;
  /** Where model versions, partial sums and deltas are shared: the data folder (default) or, with `database`, PostgreSQL (server/blob-store.ts). */
  readonly blobStore?: BlobStoreKind;
  /**
   * If set, creating sessions requires `Authorization: Bearer <serverKey>` (server/main.ts sets one
   * whenever it listens beyond loopback: server/server-key.ts).
   */
  readonly serverKey?: string;
  readonly maxUpdateBytes?: number;
  readonly maxModelBytes?: number;
  readonly maxJsonBytes?: number;
  readonly maxPassageBytes?: number;
  /**
   * Uploads (updates and models) received at the same time, all clients together; more get 429
   * (each holds one body in memory). Each authenticated client or admin has one in flight at most.
   */
  readonly maxConcurrentUploads?: number;
  /** An upload whose body sends no byte for this long is cut off with 408 `body_timeout`. */
  readonly bodyIdleTimeoutMs?: number;
  /** An upload slower than this on average (once it has run longer than the idle timeout) gets 408 `body_too_slow`. */
  readonly minUploadBytesPerSecond?: number;
  /** Requests per minute per verified token (callers without one, or with one that does not verify, share their IP's bucket). */
  readonly rateLimitPerMinute?: number;
  /** POST /api/join requests per minute per IP address. */
  readonly joinsPerMinutePerIp?: number;
  /** Built web app to serve at / (falls back to a status page when absent). */
  readonly staticDir?: string;
  /**
   * Serve the web app cross-origin isolated (COOP same-origin + COEP require-corp), so the wasm
   * backend may run threads (SharedArrayBuffer). Default true; false only to measure without.
   */
  readonly crossOriginIsolation?: boolean;
  readonly random?: () => number;
  /** Log every request as JSON lines to stdout (tokens redacted). */
  readonly logger?: boolean;
  /** Log to this sink instead of stdout (implies logging; tokens redacted). */
  readonly logSink?: LogSink;
  /**
   * Base URLs at which other devices can reach this server (src/platform/node/lan-urls.ts), for
   * the dashboard's join QR code; known only once the server listens, hence a function.
   */
  readonly networkUrls?: () => readonly string[];
  /**
   * The session anyone who opens the app may join (npm start's demo session): its join code is
   * served at GET /api/public-session so the join page can offer it. Other sessions stay reachable
   * only through their own join codes.
   */
  readonly publicSession?: () => string | undefined;
  /**
   * Base URLs of the other coordinator processes serving these sessions (they share the state:
   * docs/DEPLOY.md §6). Advertised at GET /api/peers for clients to fail over to, and their
   * origins may call this API cross-origin (server/peer-cors.ts).
   */
  readonly peerUrls?: readonly string[];
}

export const DEFAULT_LIMITS = {
  maxUpdateBytes: 512 * 2 ** 20,
  maxModelBytes: 2 * 2 ** 30 - 1,
  maxJsonBytes: 64 * 2 ** 10,
  maxPassageBytes: 8 * 2 ** 20,
  maxConcurrentUploads: 4,
  bodyIdleTimeoutMs: 30_000,
  minUploadBytesPerSecond: 4096,
  rateLimitPerMinute: 600,
  joinsPerMinutePerIp: 20,
} as const;

/** Model uploads may hold this many tensors (header bound: server/upload-body.ts safetensorsHeaderBound). */
export const MAX_MODEL_TENSORS = 16_384;

/** How long a connection whose request body was refused unread may linger before it is closed. */
const REFUSED_BODY_LINGER_MS = 2_000;

export interface CoordinatorApp {
  readonly app: FastifyInstance;
  readonly coordinator: Coordinator;
}

export async function buildApp(options: AppOptions): Promise<CoordinatorApp> {
  const limits = { ...DEFAULT_LIMITS, ...Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) } as typeof DEFAULT_LIMITS;
  const coordinator = new Coordinator({
    dataDir: options.dataDir,
    random: options.random,
    passageStore: options.passageStore,
    pgvector: options.pgvector,
    database: options.database,
    presenceTtlMs: options.presenceTtlMs,
    blobStore: options.blobStore,
  });
  // The passage store connects (and reconciles with the database) before anything is served.
  await coordinator.passages.open().catch(async (e: unknown) => {
    await coordinator.close();
    throw e;
  });
  await coordinator.resume();

  const logging = options.logSink !== undefined || options.logger === true;
  const app = Fastify({
    // Every line passes through the redacting sink; the request serializer redacts URLs as well.
    logger: logging ? { level: 'info', stream: redactingSink(options.logSink ?? process.stdout), serializers: { req: serializeRequest } } : false,
    bodyLimit: limits.maxJsonBytes,
    ajv: { customOptions: { allErrors: false, coerceTypes: true, removeAdditional: false } },
  }).withTypeProvider<TypeBoxTypeProvider>();
  // Response schemas document the answers (/api/openapi.json) and type the handlers' return values
  // (the type provider); the bytes are plain JSON.stringify, as for routes without one: a compiled
  // serializer would silently drop a field a schema does not list. The client checks every answer
  // against the same schemas (src/federated/wire-check.ts).
  app.setSerializerCompiler(() => (data) => JSON.stringify(data));
  // Event streams never end on their own: close them so app.close() can finish.
  const eventStreams = new Set<ServerResponse>();
  app.addHook('preClose', async () => {
    for (const res of eventStreams) res.end();
  });
  app.addHook('onClose', async () => coordinator.close());

  // ------------------------------------------------------------ who is calling
  // The verified identity behind a request (never throws): used to key rate limits and upload
  // slots. A token that does not authenticate for the session counts as no token at all.
  type Caller = { readonly key: string; readonly principal?: Principal };
  /** The bearer token, or on the event stream (an EventSource cannot set headers) `?token=`. */
  const tokenOf = (req: FastifyRequest): string | undefined => {
    const fromQuery = req.routeOptions.url === EVENTS_ROUTE ? (req.query as { token?: unknown } | undefined)?.token : undefined;
    return bearer(req.headers.authorization) ?? (typeof fromQuery === 'string' ? fromQuery : undefined);
  };
  const callers = new WeakMap<FastifyRequest, Caller>();
  // Resolved once per request, in the first onRequest hook (before the rate limiter's, which keys on it).
  const resolveCaller = async (req: FastifyRequest): Promise<void> => {
    const params = req.params as { sessionId?: unknown } | undefined;
    const sessionId = typeof params?.sessionId === 'string' && SESSION_ID.test(params.sessionId) ? params.sessionId : undefined;
    const token = tokenOf(req);
    let caller: Caller = { key: `ip:${addressBucket(req.ip)}` };
    if (token && sessionId) {
      try {
        const principal = await coordinator.authenticate(sessionId, token);
        caller = { key: principal.role === 'admin' ? `admin:${sessionId}` : `client:${sessionId}:${principal.clientId}`, principal };
      } catch (e) {
        // Not valid here: the IP's bucket. A store that cannot answer is an error, not "no token".
        if (!(e instanceof ApiError)) throw e;
      }
    } else if (token && options.serverKey && req.routeOptions.url === '/api/sessions' && serverKeyMatches(token, options.serverKey)) {
      caller = { key: 'server-key' };
    }
    callers.set(req, caller);
  };
  const callerOf = (req: FastifyRequest): Caller => callers.get(req) ?? { key: `ip:${addressBucket(req.ip)}` };
  // Before the caller is resolved: a preflight from a peer's page carries no token.
  registerPeerCors(app, peerOrigins(options.peerUrls ?? []));
  app.addHook('onRequest', resolveCaller);

  // A sender that asks first (`Expect: 100-continue`) is told to go on only once its request was
  // admitted (Node would answer 100 at once); a refused one never sends its body at all.
  app.server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => app.server.emit('request', req, res));
  const allowBody = (req: FastifyRequest, reply: FastifyReply): void => {
    if (/^100-continue$/i.test(req.headers.expect ?? '')) reply.raw.writeContinue();
  };

  // How slowly any body may arrive (server/upload-body.ts watchPace).
  const pace = { idleTimeoutMs: limits.bodyIdleTimeoutMs, minBytesPerSecond: limits.minUploadBytesPerSecond };

  // Every session route needs a token valid for that session, and session creation the server
  // key when one is set: both are checked here, before any body is read, so an unauthenticated
  // sender never gets a body buffered (the handlers check again, for the role).
  app.addHook('preParsing', async (req, reply, payload) => {
    const route = req.routeOptions.url ?? '';
    if (route.includes(':sessionId') && !callerOf(req).principal) {
      await coordinator.authenticate((req.params as { sessionId: string }).sessionId, tokenOf(req));
    }
    if (route === '/api/sessions' && req.method === 'POST') requireServerKey(req);
    if (!UPLOAD_ROUTES.has(route)) allowBody(req, reply);
    // JSON bodies are read by Fastify's own parser: paced like uploads (idle timeout, minimum rate).
    const hasBody = req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0;
    if (hasBody && !UPLOAD_ROUTES.has(route)) return pacedStream(payload as unknown as Readable, pace);
    return payload;
  });
  const requireServerKey = (req: FastifyRequest): void => {
    if (options.serverKey && !serverKeyMatches(bearer(req.headers.authorization), options.serverKey)) {
      throw unauthorized('creating a session needs the server key (Authorization: Bearer <key>)');
    }
  };

  // ------------------------------------------------------------ uploads
  // Admission runs in preParsing, from the request line and headers: authentication, role, the
  // round (or model) state, content type and declared length, then an upload slot (one per
  // authenticated caller, `maxConcurrentUploads` in all). Only then is the body read, by the
  // octet-stream parser below, under the idle timeout and the route's byte and header limits.
  const uploadLimits = new WeakMap<FastifyRequest, UploadBodyLimits>();
  const uploadsByCaller = new Set<string>();
  let uploadsInFlight = 0;
  const takeUploadSlot = (req: FastifyRequest, reply: FastifyReply, callerKey: string): void => {
    if (uploadsByCaller.has(callerKey)) {
      throw new ApiError(429, 'too_many_uploads', 'this token already has an upload in progress; wait for its answer', { 'retry-after': '1' });
    }
    if (uploadsInFlight >= limits.maxConcurrentUploads) {
      throw new ApiError(429, 'too_many_uploads', `the coordinator is receiving ${uploadsInFlight} uploads; retry shortly`, { 'retry-after': '1' });
    }
    uploadsInFlight++;
    uploadsByCaller.add(callerKey);
    let held = true;
    const release = () => {
      if (!held) return;
      held = false;
      uploadsInFlight--;
      uploadsByCaller.delete(callerKey);
    };
    reply.raw.once('close', release);
    reply.raw.once('finish', release);
  };
  const admitUpload = (kind: 'update' | 'model') => async (request: FastifyRequest, reply: FastifyReply, payload: NodeJS.ReadableStream) => {
    const { sessionId, round: rawRound } = request.params as { sessionId: string; round?: string };
    if (!SESSION_ID.test(sessionId)) throw badRequest('invalid_request', 'params/sessionId must match pattern "^[A-Za-z0-9_-]{1,64}$"');
    const who = await principal(request as SessionReq);
    let maxBytes: number;
    let tensors: number;
    if (kind === 'update') {
      const round = Number(rawRound);
      if (!/^\d{1,13}$/.test(rawRound ?? '') || round < 1 || round > 1e12)
        throw badRequest('invalid_request', 'params/round must be an integer from 1 to 1e12');
      if (who.role !== 'client') throw forbidden('client_only', 'this action needs a client token (join the session first)');
      tensors = (await coordinator.admitUpdate(sessionId, round, who.clientId)).expectedTensors;
      maxBytes = limits.maxUpdateBytes;
    } else {
      if (who.role !== 'admin') throw forbidden('admin_only', 'this action needs the session admin token');
      await coordinator.admitModel(sessionId);
      tensors = MAX_MODEL_TENSORS;
      maxBytes = limits.maxModelBytes;
    }
    if (!/^application\/octet-stream\s*(;|$)/i.test(request.headers['content-type'] ?? '')) {
      throw badRequest('expected_octet_stream', 'send the safetensors body with Content-Type: application/octet-stream');
    }
    checkDeclaredLength(declaredLength(request.headers['content-length']), maxBytes);
    takeUploadSlot(request, reply, callerOf(request).key);
    allowBody(request, reply);
    uploadLimits.set(request, {
      maxBytes,
      ...pace,
      maxSafetensorsHeaderBytes: safetensorsHeaderBound(tensors),
    });
    return payload;
  };
  // An admitted update body is streamed into a temp file under the data folder (tmp/) as it
  // arrives, never held whole; acceptUpdate validates and aggregates it from there in chunks and
  // deletes it. One the handler never took (a request refused after its body was in) is deleted
  // when the response is sent; one a crash left behind, on the next start.
  const updateFiles = new WeakMap<FastifyRequest, UploadedFile>();
  app.addContentTypeParser('application/octet-stream', async (req: FastifyRequest, payload: IncomingMessage) => {
    // Upload routes were admitted above; an octet-stream body sent anywhere else gets that route's limit.
    const routeLimits = uploadLimits.get(req) ?? { maxBytes: req.routeOptions.bodyLimit ?? limits.maxJsonBytes, ...pace };
    const declared = declaredLength(req.headers['content-length']);
    if (req.routeOptions.url !== UPDATE_UPLOAD_ROUTE || !uploadLimits.has(req)) return readUploadBody(payload, declared, routeLimits);
    const file = await receiveUploadToFile(payload, declared, routeLimits, coordinator.uploadTempPath());
    updateFiles.set(req, file);
    return file;
  });
  app.addHook('onResponse', async (req) => {
    const file = updateFiles.get(req);
    if (file) rmSync(file.path, { force: true });
  });
  // A request answered before its body was read (refused upload, cut-off trickle): the connection
  // is not reused, and it is closed after a short linger (time for the sender to read the answer),
  // so a refused sender cannot keep pushing bytes at the coordinator.
  app.addHook('onSend', async (req, reply) => {
    if (!req.raw.complete) reply.header('connection', 'close');
  });
  app.addHook('onResponse', async (req) => {
    const socket = req.raw.socket;
    if (req.raw.complete || socket.destroyed) return;
    setTimeout(() => socket.destroy(), REFUSED_BODY_LINGER_MS).unref();
  });

  app.setErrorHandler((err: FastifyError | ApiError, _req, reply) => {
    if (err instanceof ApiError) {
      return reply.code(err.status).headers(err.headers).send({ error: err.code, message: err.message });
    }
    const fe = err as FastifyError;
    if (fe.validation) return reply.code(400).send({ error: 'invalid_request', message: fe.message });
    if (fe.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return reply.code(413).send({ error: 'body_too_large', message: fe.message });
    if (fe.statusCode && fe.statusCode >= 400 && fe.statusCode < 500) {
      return reply.code(fe.statusCode).send({ error: (fe.code ?? 'bad_request').toLowerCase(), message: fe.message });
    }
    // Always reported, logger or not: a 5xx is a coordinator bug.
    process.stderr.write(`coordinator: internal error: ${(err as Error).stack ?? String(err)}\n`);
    return reply.code(500).send({ error: 'internal', message: 'internal error; see the coordinator log' });
  });
  app.setNotFoundHandler((req, reply) => reply.code(404).send({ error: 'not_found', message: `no route ${req.method} ${req.url.split('?')[0]}` }));

  await app.register(swagger, {
    openapi: {
      // 3.1: our schemas are JSON Schema 2020-style (numeric exclusiveMinimum), which 3.0 does not allow.
      openapi: '3.1.0',
      info: { title: 'CoRAG coordinator', version: '1', description: 'FedAvg rounds and the collaborative passage store (docs/COORDINATOR.md)' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
    },
  });
  // The rate-limit plugin throws what errorResponseBuilder returns; an ApiError keeps its code
  // (a plain object fell through to the generic 4xx branch above and read `bad_request`).
  const rateLimited = (message: string, ttlMs: number) =>
    new ApiError(429, 'rate_limited', message, { 'retry-after': String(Math.max(1, Math.ceil(ttlMs / 1000))) });
  await app.register(rateLimit, {
    global: true,
    max: limits.rateLimitPerMinute,
    timeWindow: 60_000,
    keyGenerator: (req) => callerOf(req).key,
    errorResponseBuilder: (req, ctx) =>
      rateLimited(
        `more than ${ctx.max} requests per minute ${callerOf(req).principal ? 'with this token' : 'from this address without a valid token'}; retry in ${ctx.after}`,
        ctx.ttl,
      ),
  });
  // Joins get their own, smaller bucket per IP: each join mints a client (a sybil otherwise).
  const joinRateLimit = {
    max: limits.joinsPerMinutePerIp,
    timeWindow: 60_000,
    keyGenerator: (req: FastifyRequest) => `join:${addressBucket(req.ip)}`,
    errorResponseBuilder: (_req: FastifyRequest, ctx: { max: number; ttl: number; after: string }) =>
      rateLimited(`more than ${ctx.max} joins per minute from this address; retry in ${ctx.after}`, ctx.ttl),
  };

  const principal = async (req: SessionReq): Promise<Principal> =>
    callerOf(req).principal ?? (await coordinator.authenticate(req.params.sessionId, bearer(req.headers.authorization)));
  const requireAdmin = async (req: SessionReq): Promise<void> => {
    if ((await principal(req)).role !== 'admin') throw forbidden('admin_only', 'this action needs the session admin token');
  };
  const requireClient = async (req: SessionReq): Promise<string> => {
    const p = await principal(req);
    if (p.role !== 'client') throw forbidden('client_only', 'this action needs a client token (join the session first)');
    return p.clientId;
  };

  const binaryBody = (req: FastifyRequest): Uint8Array => {
    if (!Buffer.isBuffer(req.body)) throw badRequest('expected_octet_stream', 'send the safetensors body with Content-Type: application/octet-stream');
    return req.body;
  };

  // ---------------------------------------------------------------- routes
  app.get('/api/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  app.get('/api/health', async () => ({ ok: true }));
  app.get('/api/network', async () => ({ urls: options.networkUrls?.() ?? [] }));
  app.get('/api/peers', { schema: { response: { 200: peersSchema, ...errorResponses } } }, async () => ({ peers: [...(options.peerUrls ?? [])] }));
  const routes: RouteContext = {
    app,
    coordinator,
    limits,
    principal,
    requireAdmin,
    requireClient,
    requireServerKey,
    binaryBody,
    admitUpload,
    updateFiles,
    joinRateLimit,
    eventStreams,
  };
  registerSessionRoutes(routes, options.publicSession);
  registerModelRoutes(routes);
  registerRoundRoutes(routes);
  registerPassageRoutes(routes);
  registerEventRoutes(routes);

  // ---------------------------------------------------------------- web app or status page
  if (options.staticDir && existsSync(options.staticDir)) {
    // Cross-origin isolation lets tfjs-backend-wasm use its threaded SIMD build in the page's
    // workers. Everything the app loads is same-origin (bundles, workers, .wasm, pdf.js, models).
    const isolate = options.crossOriginIsolation ?? true;
    await app.register(fastifyStatic, {
      root: options.staticDir,
      prefix: '/',
      setHeaders: isolate
        ? (reply) => {
            reply.header('cross-origin-opener-policy', 'same-origin');
            reply.header('cross-origin-embedder-policy', 'require-corp');
          }
        : undefined,
    });
  } else {
    app.get('/', { schema: { hide: true } }, async (_req, reply) => {
      const sessions = await Promise.all((await coordinator.sessionIds()).map((id) => coordinator.sessionInfo(id)));
      return reply.type('text/html; charset=utf-8').send(statusPage(sessions));
    });
  }

  return { app, coordinator };
}
