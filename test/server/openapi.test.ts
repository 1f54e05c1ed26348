import SwaggerParser from '@apidevtools/swagger-parser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JOIN_KEY } from '../../src/federated/protocol';
import { seeded, startServer, tempDir } from './helpers';

/**
 * /api/openapi.json is what client generators and API explorers read, so it must be a document a
 * standard validator accepts — not just something that looks like one. Our JSON schemas are
 * draft-2020-style (numeric exclusiveMinimum), which only OpenAPI 3.1 allows.
 */
describe('the served OpenAPI document', () => {
  const dir = tempDir();
  let server: Awaited<ReturnType<typeof startServer>>;
  beforeAll(async () => {
    server = await startServer({ dataDir: dir.path, random: seeded(5) });
  });
  afterAll(async () => {
    await server.app.close();
    dir.remove();
  });

  it('passes swagger-parser validation as OpenAPI 3.1', async () => {
    const doc = await (await fetch(`${server.url}/api/openapi.json`)).json();
    expect(doc.openapi).toMatch(/^3\.1\./);
    // validate() dereferences in place: hand it a copy so the assertions below see the original.
    await expect(SwaggerParser.validate(structuredClone(doc))).resolves.toBeTruthy();
  });

  it('documents only operations the coordinator really serves, /api/join among them', async () => {
    const doc = await (await fetch(`${server.url}/api/openapi.json`)).json();
    const operations = Object.entries(doc.paths as Record<string, Record<string, unknown>>).flatMap(([path, item]) =>
      Object.keys(item).map((method) => ({ method: method.toUpperCase(), url: path.replace(/\{(\w+)\}/g, ':$1') })),
    );
    expect(operations).toContainEqual({ method: 'POST', url: '/api/join' });
    for (const op of operations) expect(server.app.hasRoute(op as Parameters<typeof server.app.hasRoute>[0]), `${op.method} ${op.url}`).toBe(true);
  });

  it("documents the JSON answer of every session route (src/federated/protocol.ts's response schemas), and error bodies", async () => {
    const doc = await (await fetch(`${server.url}/api/openapi.json`)).json();
    type Operation = { responses: Record<string, { content?: Record<string, { schema?: { properties?: Record<string, unknown> } }> }> };
    const paths = doc.paths as Record<string, Record<string, Operation>>;
    // Binary answers (the model download) and the event stream have no JSON schema; health, network and public-session are informational.
    const noJson = new Set([
      'GET /api/sessions/{sessionId}/model/{version}',
      'GET /api/sessions/{sessionId}/events',
      'GET /api/health',
      'GET /api/network',
      'GET /api/public-session',
    ]);
    const documented: string[] = [];
    for (const [path, item] of Object.entries(paths)) {
      for (const [method, op] of Object.entries(item)) {
        const key = `${method.toUpperCase()} ${path}`;
        if (noJson.has(key)) continue;
        const ok = Object.entries(op.responses).find(([code]) => /^2\d\d$/.test(code));
        expect(ok?.[1].content?.['application/json']?.schema?.properties, `${key}: a 2xx JSON schema`).toBeDefined();
        expect(op.responses['4XX']?.content?.['application/json']?.schema?.properties, `${key}: the error body`).toHaveProperty('error');
        documented.push(key);
      }
    }
    expect(documented).toContain('GET /api/sessions/{sessionId}');
    expect(documented).toContain('PUT /api/sessions/{sessionId}/rounds/{round}/update');
    expect(documented.length).toBeGreaterThanOrEqual(15);
    const session = paths['/api/sessions/{sessionId}'].get.responses['200'].content!['application/json'].schema!;
    expect(Object.keys(session.properties!).sort()).toEqual(['clients', 'config', 'currentVersion', 'id', 'online', 'passages', 'round']);
  });

  it("documents the join's idempotency key with the pattern the coordinator enforces", async () => {
    const doc = await (await fetch(`${server.url}/api/openapi.json`)).json();
    const body = doc.paths['/api/join'].post.requestBody.content['application/json'].schema;
    expect(body.properties.idempotencyKey).toMatchObject({ type: 'string', pattern: JOIN_KEY.source });
    expect(body.required).toEqual(['code']);
  });
});
