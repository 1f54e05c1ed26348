/**
 * The HTTP edge: a Fastify app factory over a Coordinator. Every JSON body is schema-validated,
 * every binary body size-limited per route, every refusal is `{error, message}` with a 4xx status.
 * Tests build it on 127.0.0.1 with an ephemeral port and a temp data folder.
 */
import { createReadStream, existsSync, statSync } from 'node:fs';
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import rateLimit from '@fastify/rate-limit';
import swagger from '@fastify/swagger';
import fastifyStatic from '@fastify/static';
import {
  addPassagesSchema, createSessionSchema, errorBodySchema, joinSchema, MAX_SEARCH_K_WITH_EMBEDDINGS, searchSchema, sessionInfoSchema, type PassageInput, type ServerEvent,
} from '../src/federated/protocol';
import { Coordinator, type Principal, type SessionConfigInput } from './coordinator';
import { crashPoint } from './crash-points';
import { ApiError, badRequest, forbidden, notFound, unauthorized } from './errors';
import { bearer, hashToken } from './tokens';
import { statusPage } from './status-page';

export interface AppOptions {
  readonly dataDir: string;
  /** If set, creating sessions requires `Authorization: Bearer <serverKey>`. */
  readonly serverKey?: string;
  readonly maxUpdateBytes?: number;
  readonly maxModelBytes?: number;
  readonly maxJsonBytes?: number;
  readonly maxPassageBytes?: number;
  /** Updates received at the same time; more get 429 (each holds one body in memory). */
  readonly maxConcurrentUploads?: number;
  /** Requests per minute per token (or per IP without a token). */
  readonly rateLimitPerMinute?: number;
  /** Built web app to serve at / (falls back to a status page when absent). */
  readonly staticDir?: string;
  readonly random?: () => number;
  readonly logger?: boolean;
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
}

export const DEFAULT_LIMITS = {
  maxUpdateBytes: 512 * 2 ** 20,
  maxModelBytes: 2 * 2 ** 30 - 1,
  maxJsonBytes: 64 * 2 ** 10,
  maxPassageBytes: 8 * 2 ** 20,
  maxConcurrentUploads: 4,
  rateLimitPerMinute: 600,
} as const;

const sessionParams = {
  type: 'object',
  required: ['sessionId'],
  properties: { sessionId: { type: 'string', pattern: '^[A-Za-z0-9_-]{1,64}$' } },
} as const;
const roundParams = {
  type: 'object',
  required: ['sessionId', 'round'],
  properties: { sessionId: sessionParams.properties.sessionId, round: { type: 'integer', minimum: 1, maximum: 1e12 } },
} as const;
const errorResponses = { '4xx': errorBodySchema };

type SessionReq = FastifyRequest<{ Params: { sessionId: string } }>;
type RoundReq = FastifyRequest<{ Params: { sessionId: string; round: number } }>;

export interface CoordinatorApp {
  readonly app: FastifyInstance;
  readonly coordinator: Coordinator;
}

export async function buildApp(options: AppOptions): Promise<CoordinatorApp> {
  const limits = { ...DEFAULT_LIMITS, ...Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) } as typeof DEFAULT_LIMITS;
  const coordinator = new Coordinator({ dataDir: options.dataDir, random: options.random });
  await coordinator.resume();

  const app = Fastify({
    logger: options.logger ?? false,
    bodyLimit: limits.maxJsonBytes,
    ajv: { customOptions: { allErrors: false, coerceTypes: true, removeAdditional: false } },
  });
  // Event streams never end on their own: close them so app.close() can finish.
  const eventStreams = new Set<import('node:http').ServerResponse>();
  app.addHook('preClose', async () => {
    for (const res of eventStreams) res.end();
  });
  app.addHook('onClose', async () => coordinator.close());

  app.addContentTypeParser('application/octet-stream', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));

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
      info: { title: 'CoRAG coordinator', version: '1', description: 'FedAvg rounds and the collaborative passage store (docs/COORDINATOR.md)' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
    },
  });
  await app.register(rateLimit, {
    global: true,
    max: limits.rateLimitPerMinute,
    timeWindow: 60_000,
    keyGenerator: (req) => {
      const token = bearer(req.headers.authorization);
      return token ? `t:${hashToken(token)}` : `ip:${req.ip}`;
    },
    errorResponseBuilder: (_req, ctx) => ({ statusCode: 429, error: 'rate_limited', message: `more than ${ctx.max} requests per minute with this token; retry in ${ctx.after}` }),
  });

  const principal = (req: SessionReq): Principal => coordinator.authenticate(req.params.sessionId, bearer(req.headers.authorization));
  const requireAdmin = (req: SessionReq): void => {
    if (principal(req).role !== 'admin') throw forbidden('admin_only', 'this action needs the session admin token');
  };
  const requireClient = (req: SessionReq): string => {
    const p = principal(req);
    if (p.role !== 'client') throw forbidden('client_only', 'this action needs a client token (join the session first)');
    return p.clientId;
  };

  // Bounded concurrent uploads: counted from the first byte, before the body is buffered.
  let uploadsInFlight = 0;
  const uploadSlot = {
    onRequest: async (req: FastifyRequest, reply: FastifyReply) => {
      if (uploadsInFlight >= limits.maxConcurrentUploads) {
        throw new ApiError(429, 'too_many_uploads', `the coordinator is receiving ${uploadsInFlight} uploads; retry shortly`, { 'retry-after': '1' });
      }
      uploadsInFlight++;
      (req as FastifyRequest & { holdsUploadSlot?: boolean }).holdsUploadSlot = true;
      const release = () => {
        const r = req as FastifyRequest & { holdsUploadSlot?: boolean };
        if (r.holdsUploadSlot) {
          r.holdsUploadSlot = false;
          uploadsInFlight--;
        }
      };
      reply.raw.once('close', release);
    },
  };

  const binaryBody = (req: FastifyRequest): Uint8Array => {
    if (!Buffer.isBuffer(req.body)) throw badRequest('expected_octet_stream', 'send the safetensors body with Content-Type: application/octet-stream');
    return req.body;
  };

  // ---------------------------------------------------------------- routes
  app.get('/api/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  app.get('/api/health', async () => ({ ok: true }));
  app.get('/api/network', async () => ({ urls: options.networkUrls?.() ?? [] }));
  app.get('/api/public-session', async () => {
    const id = options.publicSession?.();
    if (!id || !coordinator.sessionIds().includes(id)) throw notFound('no_public_session', 'this coordinator offers no session to join without a code');
    return { joinCode: coordinator.joinCode(id), name: coordinator.config(id).name };
  });

  app.post('/api/sessions', { schema: { body: createSessionSchema, response: errorResponses } }, async (req, reply) => {
    if (options.serverKey && bearer(req.headers.authorization) !== options.serverKey) {
      throw unauthorized('creating a session needs the server key (Authorization: Bearer <key>)');
    }
    return reply.code(201).send(coordinator.createSession(req.body as SessionConfigInput));
  });

  app.post('/api/join', { schema: { body: joinSchema, response: errorResponses } }, async (req, reply) => {
    const { code, name } = req.body as { code: string; name?: string };
    return reply.code(201).send(coordinator.join(code, name));
  });

  app.get('/api/sessions/:sessionId', { schema: { params: sessionParams, response: { 200: sessionInfoSchema, ...errorResponses } } }, async (req: SessionReq) => {
    principal(req);
    return coordinator.sessionInfo(req.params.sessionId);
  });

  app.put(
    '/api/sessions/:sessionId/model',
    { bodyLimit: limits.maxModelBytes, ...uploadSlot, schema: { params: sessionParams, response: errorResponses } },
    async (request) => {
      const req = request as SessionReq;
      requireAdmin(req);
      return coordinator.replaceModel(req.params.sessionId, binaryBody(req));
    },
  );

  app.get(
    '/api/sessions/:sessionId/model/:version',
    { schema: { params: { type: 'object', required: ['sessionId', 'version'], properties: { sessionId: sessionParams.properties.sessionId, version: { type: 'integer', minimum: 0, maximum: 1e12 } } } } },
    async (req: FastifyRequest<{ Params: { sessionId: string; version: number } }>, reply) => {
      principal(req);
      const path = coordinator.modelFile(req.params.sessionId, req.params.version);
      return reply
        .header('content-type', 'application/octet-stream')
        .header('content-length', statSync(path).size)
        .header('cache-control', 'private, max-age=31536000, immutable')
        .send(createReadStream(path));
    },
  );

  app.post('/api/sessions/:sessionId/rounds', { schema: { params: sessionParams, response: errorResponses } }, async (req: SessionReq, reply) => {
    requireAdmin(req);
    return reply.code(201).send(await coordinator.openRound(req.params.sessionId));
  });

  app.get(
    '/api/sessions/:sessionId/rounds/current',
    { schema: { params: sessionParams, response: errorResponses } },
    async (req: SessionReq) => {
      principal(req);
      return coordinator.round(req.params.sessionId, 'current');
    },
  );

  app.get('/api/sessions/:sessionId/rounds/:round', { schema: { params: roundParams, response: errorResponses } }, async (req: RoundReq) => {
    principal(req);
    return coordinator.round(req.params.sessionId, req.params.round);
  });

  app.post('/api/sessions/:sessionId/rounds/:round/close', { schema: { params: roundParams, response: errorResponses } }, async (req: RoundReq) => {
    requireAdmin(req);
    return coordinator.closeRound(req.params.sessionId, req.params.round, 'admin');
  });

  app.put(
    '/api/sessions/:sessionId/rounds/:round/update',
    { bodyLimit: limits.maxUpdateBytes, ...uploadSlot, schema: { params: roundParams, response: errorResponses } },
    async (request) => {
      const req = request as RoundReq;
      const clientId = requireClient(req);
      return coordinator.acceptUpdate(req.params.sessionId, req.params.round, clientId, binaryBody(req));
    },
  );

  app.post(
    '/api/sessions/:sessionId/passages',
    { bodyLimit: limits.maxPassageBytes, schema: { params: sessionParams, body: addPassagesSchema, response: errorResponses } },
    async (req: SessionReq, reply) => {
      const clientId = requireClient(req);
      const sessionId = req.params.sessionId;
      const { passages } = req.body as { passages: PassageInput[] };
      // Embeddings spot-checked against the frozen passage encoder, quotas enforced (server/passage-intake.ts).
      const results = await coordinator.passageIntake.add(sessionId, clientId, passages);
      const added = results.filter((r) => !r.duplicate).length;
      if (added) coordinator.events.emit(sessionId, { type: 'passages-changed', total: coordinator.passages.count(sessionId), added, removed: 0 });
      crashPoint('passages:committed');
      return reply.code(201).send({ results });
    },
  );

  app.post(
    '/api/sessions/:sessionId/passages/search',
    { bodyLimit: limits.maxPassageBytes, schema: { params: sessionParams, body: searchSchema, response: errorResponses } },
    async (req: SessionReq) => {
      principal(req);
      const { embedding, k = 10, withEmbeddings = false } = req.body as { embedding: number[]; k?: number; withEmbeddings?: boolean };
      if (withEmbeddings && k > MAX_SEARCH_K_WITH_EMBEDDINGS) {
        throw badRequest('k_too_large', `k is at most ${MAX_SEARCH_K_WITH_EMBEDDINGS} when embeddings are returned (asked ${k})`);
      }
      return { hits: coordinator.passages.search(req.params.sessionId, coordinator.config(req.params.sessionId).models, embedding, k, withEmbeddings) };
    },
  );

  app.get(
    '/api/sessions/:sessionId/passages',
    {
      schema: {
        params: sessionParams,
        querystring: { type: 'object', required: ['ids'], properties: { ids: { type: 'string', pattern: '^\\d{1,15}(,\\d{1,15}){0,999}$' } } },
        response: errorResponses,
      },
    },
    async (req: FastifyRequest<{ Params: { sessionId: string }; Querystring: { ids: string } }>) => {
      principal(req);
      return { passages: coordinator.passages.get(req.params.sessionId, req.query.ids.split(',').map(Number)) };
    },
  );

  app.delete(
    '/api/sessions/:sessionId/passages/:id',
    { schema: { params: { type: 'object', required: ['sessionId', 'id'], properties: { sessionId: sessionParams.properties.sessionId, id: { type: 'integer', minimum: 1 } } }, response: errorResponses } },
    async (req: FastifyRequest<{ Params: { sessionId: string; id: number } }>) => {
      const clientId = requireClient(req);
      const sessionId = req.params.sessionId;
      const { deleted, contributorsLeft } = coordinator.passages.withdraw(sessionId, coordinator.config(sessionId).models, clientId, req.params.id);
      if (deleted) coordinator.events.emit(sessionId, { type: 'passages-changed', total: coordinator.passages.count(sessionId), added: 0, removed: 1 });
      return { id: req.params.id, deleted, contributorsLeft };
    },
  );

  app.get('/api/sessions/:sessionId/contributions', { schema: { params: sessionParams, response: errorResponses } }, async (req: SessionReq) => {
    principal(req);
    return { counts: coordinator.passages.contributions(req.params.sessionId) };
  });

  // SSE: the token may also come as ?token= because a browser EventSource cannot set headers.
  app.get(
    '/api/sessions/:sessionId/events',
    { schema: { params: sessionParams, querystring: { type: 'object', properties: { token: { type: 'string', maxLength: 200 } } } } },
    async (req: FastifyRequest<{ Params: { sessionId: string }; Querystring: { token?: string } }>, reply) => {
      const sessionId = req.params.sessionId;
      const who = coordinator.authenticate(sessionId, bearer(req.headers.authorization) ?? req.query.token);
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive', 'x-accel-buffering': 'no' });
      const send = (e: ServerEvent) => res.write(`event: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`);
      // Presence first (the other streams hear it), so this stream's hello already counts itself.
      const closeStream = who.role === 'client' ? coordinator.events.openStream(sessionId, who.clientId) : () => {};
      send({ type: 'hello', session: coordinator.sessionInfo(sessionId) });
      const unsubscribe = coordinator.events.subscribe(sessionId, send);
      eventStreams.add(res);
      const heartbeat = setInterval(() => res.write(': keep-alive\n\n'), 15_000);
      heartbeat.unref();
      res.on('close', () => {
        clearInterval(heartbeat);
        unsubscribe();
        closeStream();
        eventStreams.delete(res);
      });
    },
  );

  // ---------------------------------------------------------------- web app or status page
  if (options.staticDir && existsSync(options.staticDir)) {
    await app.register(fastifyStatic, { root: options.staticDir, prefix: '/' });
  } else {
    app.get('/', { schema: { hide: true } }, async (req, reply) => {
      const base = `${req.protocol}://${req.host}`;
      const sessions = coordinator.sessionIds().map((id) => ({ info: coordinator.sessionInfo(id), joinCode: coordinator.joinCode(id) }));
      return reply.type('text/html; charset=utf-8').send(statusPage(base, sessions));
    });
  }

  return { app, coordinator };
}
