import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CoragClient } from '../../src/federated/client';
import type { ServerEvent } from '../../src/federated/protocol';
import { seeded, startServer, tempDir } from './helpers';

/** An open SSE stream: its hello, every later event, and a way to hang up. */
interface OpenStream {
  readonly hello: ServerEvent;
  readonly events: ServerEvent[];
  close(): void;
}

async function openStream(client: CoragClient, sessionId: string): Promise<OpenStream> {
  const abort = new AbortController();
  const stream = client.events(sessionId, abort.signal);
  const first = await stream.next();
  if (first.done) throw new Error('the event stream ended before its hello');
  const events: ServerEvent[] = [];
  void (async () => {
    for await (const e of stream) events.push(e);
  })().catch(() => undefined); // the abort below ends the loop with an AbortError
  return { hello: first.value, events, close: () => abort.abort() };
}

/** Polls `check` until it holds; fails with `what` after the deadline instead of hanging. */
async function until(what: string, check: () => boolean | Promise<boolean>, deadlineMs = 5000): Promise<void> {
  const deadline = Date.now() + deadlineMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('presence: clients online = distinct clients holding an open event stream', () => {
  const dir = tempDir();
  let server: Awaited<ReturnType<typeof startServer>>;
  beforeAll(async () => {
    server = await startServer({ dataDir: dir.path, random: seeded(3) });
  });
  afterAll(async () => {
    await server.app.close();
    dir.remove();
  });

  it('counts each client once while it has a stream open, ignores the admin, and pushes every change', async () => {
    const anon = new CoragClient(server.url);
    const created = await anon.createSession({ name: 'presence', models: { reader: 'r', passageEncoder: 'p', embeddingDim: 8 } });
    const sid = created.session.id;
    expect(created.session.online).toBe(0);
    const admin = anon.withToken(created.adminToken);
    const [a, b] = await Promise.all(['a', 'b'].map(async (name) => anon.withToken((await anon.join(created.joinCode, name)).token)));
    const online = async () => (await admin.session(sid)).online;

    // The admin's own stream is not a client's: nobody is online yet.
    const adminStream = await openStream(admin, sid);
    expect(adminStream.hello).toMatchObject({ type: 'hello', session: { clients: 2, online: 0 } });
    expect(await online()).toBe(0);

    // A stream is registered before its hello is written, so each hello counts its own client.
    const a1 = await openStream(a, sid);
    expect(a1.hello).toMatchObject({ type: 'hello', session: { online: 1 } });
    const b1 = await openStream(b, sid);
    expect(b1.hello).toMatchObject({ type: 'hello', session: { online: 2 } });
    expect(await online()).toBe(2);

    // A second tab of the same client does not count twice.
    const a2 = await openStream(a, sid);
    expect(a2.hello).toMatchObject({ type: 'hello', session: { online: 2 } });
    expect(await online()).toBe(2);

    // Closing one of a's two tabs keeps a online; closing b's only stream takes b offline.
    a2.close();
    b1.close();
    await until('online to drop to 1', async () => (await online()) === 1);

    // a's last stream closes: only then is a offline (so a2's close was counted, not lost).
    a1.close();
    await until('online to drop to 0', async () => (await online()) === 0);

    // The admin heard one presence event per change of the count, and none for a's second tab.
    await until('the last presence event on the admin stream', () => adminStream.events.filter((e) => e.type === 'presence').length >= 4);
    expect(adminStream.events.filter((e) => e.type === 'presence')).toEqual([
      { type: 'presence', online: 1 },
      { type: 'presence', online: 2 },
      { type: 'presence', online: 1 },
      { type: 'presence', online: 0 },
    ]);
    adminStream.close();
  });

  it('publishes online in the OpenAPI schema of GET /api/sessions/{sessionId} without dropping other fields', async () => {
    const anon = new CoragClient(server.url);
    const created = await anon.createSession({ name: 'schema', models: { reader: 'r', passageEncoder: 'p', embeddingDim: 8 }, training: { lr: 0.5 } });
    const info = await anon.withToken(created.adminToken).session(created.session.id);
    expect(info).toEqual(created.session);
    expect(info.config.training).toEqual({ lr: 0.5 });

    const doc = await (await fetch(`${server.url}/api/openapi.json`)).json();
    const schema = doc.paths['/api/sessions/{sessionId}'].get.responses['200'].content['application/json'].schema;
    expect(schema.required).toContain('online');
    expect(schema.properties.online.type).toBe('integer');
  });
});
