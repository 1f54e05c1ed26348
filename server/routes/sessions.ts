/**
 * Session routes: the session offered without a code, creating a session (server key), joining
 * with a code (its own rate limit: each join mints a client, or for a replayed idempotency key a
 * token), a session's info, and a client's shard of the session's training questions.
 */
import {
  createdSessionSchema,
  createSessionSchema,
  joinResultSchema,
  joinSchema,
  sessionInfoSchema,
  trainingQuestionsResponseSchema,
} from '../../src/federated/protocol';
import { notFound } from '../errors';
import { errorResponses, sessionParams, type RouteContext } from './context';

export function registerSessionRoutes(ctx: RouteContext, publicSession: (() => string | undefined) | undefined): void {
  const { app, coordinator, principal, requireClient, requireServerKey, joinRateLimit } = ctx;
  app.get('/api/public-session', async () => {
    const id = publicSession?.();
    if (!id || !(await coordinator.sessionIds()).includes(id)) throw notFound('no_public_session', 'this coordinator offers no session to join without a code');
    return { joinCode: await coordinator.joinCode(id), name: (await coordinator.config(id)).name };
  });

  app.post('/api/sessions', { schema: { body: createSessionSchema, response: { 201: createdSessionSchema, ...errorResponses } } }, async (req, reply) => {
    requireServerKey(req);
    return reply.code(201).send(await coordinator.createSession(req.body));
  });

  app.post(
    '/api/join',
    { config: { rateLimit: joinRateLimit }, schema: { body: joinSchema, response: { 201: joinResultSchema, ...errorResponses } } },
    async (req, reply) => reply.code(201).send(await coordinator.join(req.body.code, req.body.name, req.body.idempotencyKey)),
  );

  app.get('/api/sessions/:sessionId', { schema: { params: sessionParams, response: { 200: sessionInfoSchema, ...errorResponses } } }, async (req) => {
    await principal(req);
    return coordinator.sessionInfo(req.params.sessionId);
  });

  // This client's shard of the session's training questions and the held-out evaluation set
  // (server/training-questions.ts); 404 `no_training_questions` when the session hands out none.
  app.get(
    '/api/sessions/:sessionId/training-questions',
    { schema: { params: sessionParams, response: { 200: trainingQuestionsResponseSchema, ...errorResponses } } },
    async (req) => await coordinator.trainingQuestionsFor(req.params.sessionId, await requireClient(req)),
  );
}
