/**
 * Passage routes of the collaborative store: contributing (embeddings spot-checked, quotas),
 * searching by embedding, reading passages by id, withdrawing a contribution, and the per-client
 * contribution counts. Changes are announced on the session's event stream.
 */
import { Type } from 'typebox';
import {
  addPassagesResultSchema,
  addPassagesSchema,
  contributionsResultSchema,
  MAX_SEARCH_K_WITH_EMBEDDINGS,
  passagesResultSchema,
  searchResultSchema,
  searchSchema,
  withdrawResultSchema,
} from '../../src/federated/protocol';
import { crashPoint } from '../crash-points';
import { badRequest } from '../errors';
import { errorResponses, sessionIdSchema, sessionParams, type RouteContext } from './context';

export function registerPassageRoutes(ctx: RouteContext): void {
  const { app, coordinator, limits, principal, requireClient } = ctx;
  app.post(
    '/api/sessions/:sessionId/passages',
    {
      bodyLimit: limits.maxPassageBytes,
      schema: { params: sessionParams, body: addPassagesSchema, response: { 201: addPassagesResultSchema, ...errorResponses } },
    },
    async (req, reply) => {
      const clientId = await requireClient(req);
      const sessionId = req.params.sessionId;
      // Embeddings spot-checked against the frozen passage encoder, quotas enforced (server/passage-intake.ts).
      const results = await coordinator.passageIntake.add(sessionId, clientId, req.body.passages);
      const added = results.filter((r) => !r.duplicate).length;
      if (added) coordinator.publish(sessionId, { type: 'passages-changed', total: await coordinator.passages.count(sessionId), added, removed: 0 });
      crashPoint('passages:committed');
      return reply.code(201).send({ results });
    },
  );

  app.post(
    '/api/sessions/:sessionId/passages/search',
    {
      bodyLimit: limits.maxPassageBytes,
      schema: { params: sessionParams, body: searchSchema, response: { 200: searchResultSchema, ...errorResponses } },
    },
    async (req) => {
      await principal(req);
      const { embedding, k = 10, withEmbeddings = false } = req.body;
      if (withEmbeddings && k > MAX_SEARCH_K_WITH_EMBEDDINGS) {
        throw badRequest('k_too_large', `k is at most ${MAX_SEARCH_K_WITH_EMBEDDINGS} when embeddings are returned (asked ${k})`);
      }
      return {
        hits: await coordinator.passages.search(req.params.sessionId, (await coordinator.config(req.params.sessionId)).models, embedding, k, withEmbeddings),
      };
    },
  );

  app.get(
    '/api/sessions/:sessionId/passages',
    {
      schema: {
        params: sessionParams,
        querystring: Type.Object({ ids: Type.String({ pattern: '^\\d{1,15}(,\\d{1,15}){0,999}$' }) }),
        response: { 200: passagesResultSchema, ...errorResponses },
      },
    },
    async (req) => {
      await principal(req);
      return { passages: await coordinator.passages.get(req.params.sessionId, req.query.ids.split(',').map(Number)) };
    },
  );

  app.delete(
    '/api/sessions/:sessionId/passages/:id',
    {
      schema: {
        params: Type.Object({ sessionId: sessionIdSchema, id: Type.Integer({ minimum: 1 }) }),
        response: { 200: withdrawResultSchema, ...errorResponses },
      },
    },
    async (req) => {
      const clientId = await requireClient(req);
      const sessionId = req.params.sessionId;
      const { deleted, contributorsLeft } = await coordinator.passages.withdraw(
        sessionId,
        (await coordinator.config(sessionId)).models,
        clientId,
        req.params.id,
      );
      if (deleted) coordinator.publish(sessionId, { type: 'passages-changed', total: await coordinator.passages.count(sessionId), added: 0, removed: 1 });
      return { id: req.params.id, deleted, contributorsLeft };
    },
  );

  app.get(
    '/api/sessions/:sessionId/contributions',
    { schema: { params: sessionParams, response: { 200: contributionsResultSchema, ...errorResponses } } },
    async (req) => {
      await principal(req);
      return { counts: await coordinator.passages.contributions(req.params.sessionId) };
    },
  );
}
