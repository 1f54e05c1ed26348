/**
 * What every route module (server/routes/*.ts) gets from buildApp (server/app.ts): the typed
 * Fastify instance, the coordinator, the limits, and the edge's checks (who is calling, upload
 * admission), plus the route paths and parameter schemas the edge and the routes share. The edge
 * owns identity, admission, pacing and errors; a route module only declares its resource's routes.
 */
import type {
  FastifyBaseLogger,
  FastifyInstance,
  FastifyReply,
  FastifyRequest,
  RawReplyDefaultExpression,
  RawRequestDefaultExpression,
  RawServerDefault,
} from 'fastify';
import type { ServerResponse } from 'node:http';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { errorBodySchema } from '../../src/federated/protocol';
import type { Coordinator, Principal } from '../coordinator';
import type { UploadedFile } from '../upload-body';

/** The app with TypeBox as its type provider: route handlers get typed params, bodies and answers. */
export type TypedApp = FastifyInstance<RawServerDefault, RawRequestDefaultExpression, RawReplyDefaultExpression, FastifyBaseLogger, TypeBoxTypeProvider>;

export const SESSION_ID = /^[A-Za-z0-9_-]{1,64}$/;
export const EVENTS_ROUTE = '/api/sessions/:sessionId/events';
export const MODEL_UPLOAD_ROUTE = '/api/sessions/:sessionId/model';
export const UPDATE_UPLOAD_ROUTE = '/api/sessions/:sessionId/rounds/:round/update';
/** Routes whose bodies `admitUpload` admits and `readUploadBody` reads. */
export const UPLOAD_ROUTES = new Set([MODEL_UPLOAD_ROUTE, UPDATE_UPLOAD_ROUTE]);

// Route parameters and queries: TypeBox like the bodies (src/federated/protocol.ts), so handlers
// get them typed through the type provider.
export const sessionIdSchema = Type.String({ pattern: SESSION_ID.source });
export const sessionParams = Type.Object({ sessionId: sessionIdSchema });
export const roundParams = Type.Object({ sessionId: sessionIdSchema, round: Type.Integer({ minimum: 1, maximum: 1e12 }) });
export const errorResponses = { '4xx': errorBodySchema };

/** A request to a session route (its params validated). */
export type SessionReq = FastifyRequest & { readonly params: { readonly sessionId: string } };

/** Route-level rate-limit settings (@fastify/rate-limit's per-route `config.rateLimit`). */
export interface RouteRateLimit {
  readonly max: number;
  readonly timeWindow: number;
  readonly keyGenerator: (req: FastifyRequest) => string;
  readonly errorResponseBuilder: (req: FastifyRequest, ctx: { max: number; ttl: number; after: string }) => Error;
}

export interface RouteContext {
  readonly app: TypedApp;
  readonly coordinator: Coordinator;
  readonly limits: { readonly maxModelBytes: number; readonly maxUpdateBytes: number; readonly maxPassageBytes: number };
  /** The caller's verified role in the session (401 without a valid token). */
  readonly principal: (req: SessionReq) => Promise<Principal>;
  readonly requireAdmin: (req: SessionReq) => Promise<void>;
  /** The calling client's id (403 for an admin token). */
  readonly requireClient: (req: SessionReq) => Promise<string>;
  readonly requireServerKey: (req: FastifyRequest) => void;
  /** A model upload's bytes (400 unless it came as application/octet-stream). */
  readonly binaryBody: (req: FastifyRequest) => Uint8Array;
  /** The preParsing hook that admits an upload from its headers before its body is read. */
  readonly admitUpload: (
    kind: 'update' | 'model',
  ) => (request: FastifyRequest, reply: FastifyReply, payload: NodeJS.ReadableStream) => Promise<NodeJS.ReadableStream>;
  /** Update bodies streamed to temp files by the octet-stream parser, by request. */
  readonly updateFiles: WeakMap<FastifyRequest, UploadedFile>;
  readonly joinRateLimit: RouteRateLimit;
  /** Open event streams, closed when the app closes. */
  readonly eventStreams: Set<ServerResponse>;
}
