import SwaggerParser from '@apidevtools/swagger-parser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
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
});
