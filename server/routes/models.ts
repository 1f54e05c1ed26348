/**
 * Model routes: the organiser replaces the session's global model (an admitted octet-stream
 * upload), and any participant downloads a global version (immutable, so cached for a year).
 */
import { createReadStream, statSync } from 'node:fs';
import { Type } from 'typebox';
import { modelVersionSchema } from '../../src/federated/protocol';
import { errorResponses, MODEL_UPLOAD_ROUTE, sessionIdSchema, sessionParams, type RouteContext } from './context';

export function registerModelRoutes(ctx: RouteContext): void {
  const { app, coordinator, limits, principal, requireAdmin, binaryBody, admitUpload } = ctx;
  app.put(
    MODEL_UPLOAD_ROUTE,
    {
      bodyLimit: limits.maxModelBytes,
      preParsing: admitUpload('model'),
      schema: { params: sessionParams, response: { 200: modelVersionSchema, ...errorResponses } },
    },
    async (req) => {
      await requireAdmin(req);
      return coordinator.replaceModel(req.params.sessionId, binaryBody(req));
    },
  );

  app.get(
    '/api/sessions/:sessionId/model/:version',
    { schema: { params: Type.Object({ sessionId: sessionIdSchema, version: Type.Integer({ minimum: 0, maximum: 1e12 }) }) } },
    async (req, reply) => {
      await principal(req);
      const path = await coordinator.modelFile(req.params.sessionId, req.params.version);
      return reply
        .header('content-type', 'application/octet-stream')
        .header('content-length', statSync(path).size)
        .header('cache-control', 'private, max-age=31536000, immutable')
        .send(createReadStream(path));
    },
  );
}
