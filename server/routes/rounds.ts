/**
 * Round routes: the organiser opens and closes rounds, participants read them, and a selected
 * client uploads its update (admitted from its headers, streamed to a temp file, validated and
 * summed by Coordinator.acceptUpdate).
 */
import { roundInfoSchema, updateReceiptSchema } from '../../src/federated/protocol';
import { badRequest } from '../errors';
import { errorResponses, roundParams, sessionParams, UPDATE_UPLOAD_ROUTE, type RouteContext } from './context';

export function registerRoundRoutes(ctx: RouteContext): void {
  const { app, coordinator, limits, principal, requireAdmin, requireClient, admitUpload, updateFiles } = ctx;
  const roundResponses = { 200: roundInfoSchema, ...errorResponses };
  app.post(
    '/api/sessions/:sessionId/rounds',
    { schema: { params: sessionParams, response: { 201: roundInfoSchema, ...errorResponses } } },
    async (req, reply) => {
      await requireAdmin(req);
      return reply.code(201).send(await coordinator.openRound(req.params.sessionId));
    },
  );

  app.get('/api/sessions/:sessionId/rounds/current', { schema: { params: sessionParams, response: roundResponses } }, async (req) => {
    await principal(req);
    return await coordinator.round(req.params.sessionId, 'current');
  });

  app.get('/api/sessions/:sessionId/rounds/:round', { schema: { params: roundParams, response: roundResponses } }, async (req) => {
    await principal(req);
    return await coordinator.round(req.params.sessionId, req.params.round);
  });

  app.post('/api/sessions/:sessionId/rounds/:round/close', { schema: { params: roundParams, response: roundResponses } }, async (req) => {
    await requireAdmin(req);
    return coordinator.closeRound(req.params.sessionId, req.params.round, 'admin');
  });

  app.put(
    UPDATE_UPLOAD_ROUTE,
    {
      bodyLimit: limits.maxUpdateBytes,
      preParsing: admitUpload('update'),
      schema: { params: roundParams, response: { 200: updateReceiptSchema, ...errorResponses } },
    },
    async (req) => {
      const clientId = await requireClient(req);
      const file = updateFiles.get(req);
      if (!file) throw badRequest('expected_octet_stream', 'send the safetensors body with Content-Type: application/octet-stream');
      updateFiles.delete(req); // acceptUpdate deletes it when it settles
      return coordinator.acceptUpdate(req.params.sessionId, req.params.round, clientId, file);
    },
  );
}
