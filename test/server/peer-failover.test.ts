/**
 * Two coordinator processes told of each other (`--peer-url`), as a browser tab meets them: the
 * tab's page comes from A, and its client runtime (FederatedCoragClient over clientWithPeers, as
 * workers/train.worker.ts builds it) fails over to A's advertised peer B when A is killed. Also:
 * B lets A's pages call its API cross-origin (and no one else's), a token minted by one process is
 * valid on the other (also checked in headless Chromium, which enforces CORS), and who is online
 * is counted across both (the shared presence table).
 */
import type { ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FederatedCoragClient } from '../../src/corag/federated-client';
import type { ModelBundle } from '../../src/corag/model-bundle';
import { CoordinatorPassageSource } from '../../src/corag/retrieve';
import { CoragClient, CoragHttpError } from '../../src/federated/client';
import { decodeModel, encodeUpdate } from '../../src/federated/codec';
import { clientWithPeers } from '../../src/federated/peers';
import type { ServerEvent } from '../../src/federated/protocol';
import { initBackend } from '../../src/model/backend';
import { CHROMIUM_FLAGS, chromiumPath } from '../browser/harness';
import { tinyBundle } from '../corag/helpers';
import { freePorts, startCoordinator, waitFor, type CoordinatorProcess } from './coordinator-process';
import { maxRelativeError, tempDir } from './helpers';
import { startTestPostgres } from './postgres';

const cluster = await startTestPostgres();
afterAll(() => cluster?.stop());

/** Follows `client`'s event stream in the background, recording its events, until close(). */
function follow(client: CoragClient, sessionId: string): { events: ServerEvent[]; close: () => void } {
  const stop = new AbortController();
  const events: ServerEvent[] = [];
  void (async () => {
    for await (const e of client.events(sessionId, stop.signal)) events.push(e);
  })().catch(() => undefined);
  return { events, close: () => stop.abort() };
}

describe.skipIf(!cluster)('coordinators told of each other: peers, CORS, shared presence, a tab runtime failing over', () => {
  const dir = tempDir();
  let a: CoordinatorProcess;
  let b: CoordinatorProcess;
  let bundle: ModelBundle;
  let sid: string;
  let joinCode: string;
  let adminToken: string;
  beforeAll(async () => {
    await initBackend('wasm');
    const database = await cluster!.createDatabase();
    const dataDir = join(dir.path, 'data');
    mkdirSync(dataDir);
    const lance = join(dir.path, 'lance');
    const [pa, pb] = await freePorts(2);
    // A 2 s presence TTL: a killed process's clients leave the count within the test.
    const peer = (port: number) => ['--peer-url', `http://127.0.0.1:${port}`, '--presence-ttl', '2'];
    [a, b] = await Promise.all([
      startCoordinator(dataDir, database, lance, { port: pa, args: peer(pb) }),
      startCoordinator(dataDir, database, lance, { port: pb, args: peer(pa) }),
    ]);
    bundle = await tinyBundle();
    const created = await new CoragClient(a.url).createSession({
      name: 'peers',
      models: { reader: 'corag/tiny-t5', passageEncoder: 'corag/tiny-contriever (random, seed 2)', embeddingDim: bundle.embeddingDim },
      training: { learningRate: 1e-3, localSteps: 1, passagesPerQuestion: 1, maxLength: 32, batchSize: 1, seed: 3 },
      roundPolicy: { minClients: 1, minUpdates: 1, deadlineSeconds: 300, autoStart: false },
      trainedPrefixes: ['reader.'],
      passages: { embeddingCheck: 'off' },
    });
    [sid, joinCode, adminToken] = [created.session.id, created.joinCode, created.adminToken];
    await new CoragClient(a.url, adminToken).uploadModel(sid, await bundle.exportGlobal());
  }, 120_000);
  afterAll(() => {
    for (const c of [a?.child, b?.child] as ChildProcess[]) if (c && c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    bundle?.dispose();
    dir.remove();
  });

  it("advertises the peers, lets only their pages call cross-origin, and accepts either process's tokens on both", async () => {
    expect(await new CoragClient(a.url).peers()).toEqual([b.url]);
    expect(await new CoragClient(b.url).peers()).toEqual([a.url]);
    const doc = await (await fetch(`${a.url}/api/openapi.json`)).json();
    expect(doc.paths['/api/peers'].get.responses['200'].content['application/json'].schema.required).toEqual(['peers']);

    // A token minted by A (the join) is valid on B: the processes share the state.
    const joined = await new CoragClient(a.url).join(joinCode, 'cors');
    const events = `${b.url}/api/sessions/${sid}/events`;
    const preflight = (origin: string) =>
      fetch(events, { method: 'OPTIONS', headers: { origin, 'access-control-request-method': 'GET', 'access-control-request-headers': 'authorization' } });
    const allowed = await preflight(a.url);
    expect(allowed.status).toBe(204);
    expect(allowed.headers.get('access-control-allow-origin')).toBe(a.url);
    expect(allowed.headers.get('access-control-allow-headers')).toMatch(/authorization/);
    const refused = await preflight('http://evil.example');
    expect(refused.headers.get('access-control-allow-origin')).toBeNull();

    // The event stream (hijacked by its route) carries the header too, and the token works on B.
    const stop = new AbortController();
    const stream = await fetch(events, { headers: { origin: a.url, authorization: `Bearer ${joined.token}` }, signal: stop.signal });
    expect(stream.status).toBe(200);
    expect(stream.headers.get('access-control-allow-origin')).toBe(a.url);
    stop.abort();
    const info = await fetch(`${b.url}/api/sessions/${sid}`, { headers: { origin: 'http://evil.example', authorization: `Bearer ${joined.token}` } });
    expect(info.status).toBe(200);
    expect(info.headers.get('access-control-allow-origin')).toBeNull();
  });

  it("a page from A reads B's API and event stream in a real browser; a page from another origin cannot", async () => {
    const joined = await new CoragClient(a.url).join(joinCode, 'browser');
    const browser = await chromium.launch({ executablePath: chromiumPath(), args: [...CHROMIUM_FLAGS] });
    try {
      const page = await browser.newPage();
      // What the tab's worker does after failing over: a cross-origin call with the token (preflighted), then the stream.
      const callB = (from: string) =>
        page.goto(from).then(() =>
          page.evaluate(
            async ({ url, token }) => {
              try {
                const headers = { authorization: `Bearer ${token}` };
                const info = await (await fetch(url, { headers })).json();
                const stream = await fetch(`${url}/events`, { headers });
                const reader = stream.body!.getReader();
                const first = new TextDecoder().decode((await reader.read()).value);
                await reader.cancel();
                return { id: info.id as string, first };
              } catch (e) {
                return { error: String(e) };
              }
            },
            { url: `${b.url}/api/sessions/${sid}`, token: joined.token },
          ),
        );
      expect(await callB(`${a.url}/`)).toMatchObject({ id: sid, first: expect.stringMatching(/^event: hello/) });
      // localhost and 127.0.0.1 are different origins: B names only A's 127.0.0.1 one.
      expect(await callB(a.url.replace('127.0.0.1', 'localhost'))).toMatchObject({ error: expect.stringMatching(/Failed to fetch/) });
    } finally {
      await browser.close();
    }
  });

  it('counts the clients connected to either process on both, and pushes each change to both', async () => {
    const [x, y] = await Promise.all(['x', 'y'].map(async (name) => (await new CoragClient(a.url).join(joinCode, name)).token));
    const onA = (t: string) => new CoragClient(a.url, t);
    const onB = (t: string) => new CoragClient(b.url, t);
    const online = async () => [(await onA(adminToken).session(sid)).online, (await onB(adminToken).session(sid)).online];
    await waitFor('nobody online', async () => (await online()).every((n) => n === 0), 10);
    const watchA = follow(onA(adminToken), sid);
    const watchB = follow(onB(adminToken), sid);
    const xStream = follow(onA(x), sid);
    await waitFor('x online on both', async () => (await online()).every((n) => n === 1), 10);
    const yStream = follow(onB(y), sid);
    await waitFor('x and y online on both', async () => (await online()).every((n) => n === 2), 10);
    // Both dashboards heard it: x connected to A, y to B.
    const heard = (w: { events: ServerEvent[] }, n: number) => w.events.some((e) => e.type === 'presence' && e.online === n);
    await waitFor('both admin streams to hear 2 online', () => heard(watchA, 2) && heard(watchB, 2), 10);
    yStream.close();
    await waitFor('y offline on both', async () => (await online()).every((n) => n === 1), 10);
    const lastHeard = (w: { events: ServerEvent[] }) => w.events.filter((e) => e.type === 'presence').at(-1);
    await waitFor("A's admin stream to hear y leave B", () => lastHeard(watchA)?.online === 1, 10);
    xStream.close();
    await waitFor('nobody online again', async () => (await online()).every((n) => n === 0), 10);
    watchA.close();
    watchB.close();
  });

  it('refuses an update sent again through the other process (a resend after failover) and keeps only the first', async () => {
    const d = await new CoragClient(a.url).join(joinCode, 'resender');
    const adminA = new CoragClient(a.url, adminToken);
    const opened = await adminA.openRound(sid);
    expect(opened.participants).toContain(d.clientId);
    // A zero delta of every trained tensor of the round's base version (the session trains reader.*).
    const base = decodeModel(await adminA.downloadModel(sid, opened.baseVersion));
    const delta = (scale: number) =>
      encodeUpdate(
        new Map([...base].filter(([n]) => n.startsWith('reader.')).map(([n, t]) => [n, { shape: t.shape, data: new Float32Array(t.data.length).fill(scale) }])),
        {
          round: opened.round,
          baseVersion: opened.baseVersion,
          numExamples: 1,
          metrics: {},
        },
      );
    const body = delta(0);
    expect((await new CoragClient(a.url, d.token).uploadUpdate(sid, opened.round, body)).accepted).toBe(1);
    for (const again of [body, delta(0.5)]) {
      const refused = await new CoragClient(b.url, d.token).uploadUpdate(sid, opened.round, again).catch((e: unknown) => e);
      expect(refused).toBeInstanceOf(CoragHttpError);
      expect([(refused as CoragHttpError).status, (refused as CoragHttpError).code]).toEqual([409, 'duplicate_update']);
    }
    const closed = await new CoragClient(b.url, adminToken).closeRound(sid, opened.round);
    expect([closed.state, closed.accepted]).toEqual(['closed', 1]);
    // The published version is the first (zero) delta's: the refused 0.5 left no trace in B's partial sum.
    const after = decodeModel(await adminA.downloadModel(sid, closed.resultVersion!));
    for (const [n, t] of base) expect(maxRelativeError(after.get(n)!.data, t.data), n).toBe(0);
  });

  it('a join A committed but whose answer was lost is resent to B and adds one client, not two', async () => {
    let lost = false;
    // The connection to A drops after A answered the join: failoverFetch sends it to B.
    const dropping: typeof fetch = async (input, init) => {
      const res = await fetch(input, init);
      if (!lost && String(input) === `${a.url}/api/join`) {
        lost = true;
        await res.arrayBuffer();
        throw new TypeError('fetch failed: connection reset');
      }
      return res;
    };
    const clients = async () => (await new CoragClient(b.url, adminToken).session(sid)).clients;
    const before = await clients();
    const tab = await clientWithPeers(a.url, dropping);
    const joined = await tab.join(joinCode, 'lost answer');
    expect(lost).toBe(true);
    expect(await clients()).toBe(before + 1);
    expect((await new CoragClient(a.url, joined.token).session(sid)).clients).toBe(before + 1);
  });

  it("the tab's runtime goes on with the peer when its page's coordinator is killed; the dead process's clients leave the count", async () => {
    // As workers/train.worker.ts connects: a client of the page's coordinator with its peers.
    const switched: string[] = [];
    const server = await clientWithPeers(a.url, undefined, { onSwitch: (_from, to) => switched.push(to) });
    const runtime = await FederatedCoragClient.join(server, joinCode, 'tab', {
      bundle,
      qaPairs: [{ question: 'where does alice live?', answers: ['paris'] }],
      passageSource: (c, s) => new CoordinatorPassageSource(c, s),
      reconnectDelayMs: 50,
    });
    await runtime.contributePassages([{ title: 'alice', text: 'alice lives in paris.' }]);
    const run = runtime.run({ maxRounds: 1 });
    // Another client on A that will not reconnect (a tab whose page is closed with A).
    const other = await new CoragClient(a.url).join(joinCode, 'gone');
    const otherStream = follow(new CoragClient(a.url, other.token), sid);
    const adminB = new CoragClient(b.url, adminToken);
    await waitFor('the tab and the other online', async () => (await adminB.session(sid)).online === 2, 10);

    a.child.kill('SIGKILL');
    await a.exited;
    otherStream.close();
    // The tab follows the session again on B; the other client's row on A expires (2 s TTL).
    await waitFor('only the tab online, on B', async () => (await adminB.session(sid)).online === 1, 20);
    const opened = await adminB.openRound(sid);
    expect(opened.participants).toContain(runtime.clientId);
    await run;
    expect(runtime.roundsTrained).toBe(1);
    expect(switched).toEqual([b.url]);
    expect((await adminB.round(sid, opened.round)).accepted).toBe(1);
    b.child.kill('SIGTERM');
    await b.exited;
  }, 300_000);
});
