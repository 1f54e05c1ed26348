/**
 * A tab's identity across reloads and a dead coordinator (src/federated/rejoin.ts), against real
 * coordinators: a reload in the middle of a join sends it again with the kept key (one client),
 * and when the page's coordinator is down, a reloaded tab resumes its stored client and the
 * organiser's controls work through the peer it advertised (two coordinators on one PostgreSQL).
 * The tab's storage is a Map here; in the browser it is IndexedDB (src/platform/browser/idb-store.ts).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { CoragClient } from '../../src/federated/client';
import {
  handoffUrl,
  joinOrResume,
  knownCoordinators,
  PENDING_JOIN_MS,
  readHandoff,
  TAB_KEYS,
  tabCoordinator,
  type TabMemory,
} from '../../src/federated/rejoin';
import { encodeModel } from '../../src/federated/codec';
import { MODEL_SHAPES, randomTensors, seeded, startServer, tempDir, TRAINED_PREFIXES } from '../server/helpers';
import { startTestPostgres } from '../server/postgres';

const cluster = await startTestPostgres();
afterAll(() => cluster?.stop());

function mapMemory(): TabMemory & { records: Map<string, unknown> } {
  const records = new Map<string, unknown>();
  return {
    records,
    get: async <T>(key: string) => structuredClone(records.get(key)) as T | undefined,
    set: async (key, value) => void records.set(key, structuredClone(value)),
    delete: async (key) => void records.delete(key),
  };
}

/** A fetch whose join requests reach the coordinator, which commits, but whose answers are lost while `dropping` is set. */
function droppingJoinAnswers(): { fetch: typeof fetch; dropping: boolean } {
  const state = {
    dropping: true,
    fetch: (async (input, init) => {
      const res = await fetch(input, init);
      if (state.dropping && String(input).endsWith('/api/join')) {
        await res.arrayBuffer();
        throw new TypeError('fetch failed: the tab reloaded');
      }
      return res;
    }) as typeof fetch,
  };
  return state;
}

const config = {
  name: 'tabs',
  models: { reader: 'r', passageEncoder: 'p', embeddingDim: 8 },
  trainedPrefixes: TRAINED_PREFIXES,
  roundPolicy: { minClients: 1, autoStart: false },
};

describe('a tab joining', () => {
  it('that reloaded before its join was answered joins again as the same client; another name is another client', async () => {
    const dir = tempDir();
    const server = await startServer({ dataDir: dir.path, random: seeded(1) });
    try {
      const created = await new CoragClient(server.url).createSession(config);
      const clients = async () => (await new CoragClient(server.url, created.adminToken).session(created.session.id)).clients;
      const memory = mapMemory();
      const net = droppingJoinAnswers();
      // The first try: committed by the coordinator, the answer never reached the tab.
      await expect(joinOrResume(new CoragClient(server.url, undefined, net.fetch), memory, created.joinCode, 'ada')).rejects.toThrow(/fetch failed/);
      expect(memory.records.has(TAB_KEYS.credentials)).toBe(false);
      expect(await clients()).toBe(1);
      // After the reload the participant joins again with the link's code.
      net.dropping = false;
      const first = await joinOrResume(new CoragClient(server.url, undefined, net.fetch), memory, created.joinCode, 'ada');
      expect(await clients()).toBe(1);
      expect(memory.records.get(TAB_KEYS.credentials)).toEqual(first);
      expect(memory.records.has(TAB_KEYS.pendingJoin)).toBe(false);
      expect((await new CoragClient(server.url, first.token).session(first.sessionId)).clients).toBe(1);
      // A reload now resumes the stored client without joining.
      expect(await joinOrResume(new CoragClient(server.url), memory, undefined, 'ada')).toEqual(first);
      expect(await joinOrResume(new CoragClient(server.url), memory, created.joinCode, 'ada')).toEqual(first);

      // A pending join under another name, or older than PENDING_JOIN_MS, is not sent again: a new client.
      const other = mapMemory();
      net.dropping = true;
      await expect(joinOrResume(new CoragClient(server.url, undefined, net.fetch), other, created.joinCode, 'bob')).rejects.toThrow();
      net.dropping = false;
      const renamed = await joinOrResume(new CoragClient(server.url), other, created.joinCode, 'bo');
      expect(await clients()).toBe(3);
      const late = mapMemory();
      net.dropping = true;
      await expect(joinOrResume(new CoragClient(server.url, undefined, net.fetch), late, created.joinCode, 'cy')).rejects.toThrow();
      net.dropping = false;
      const stale = await joinOrResume(new CoragClient(server.url), late, created.joinCode, 'cy', Date.now() + PENDING_JOIN_MS);
      expect(new Set([first.clientId, renamed.clientId, stale.clientId]).size).toBe(3);
      expect(await clients()).toBe(5);
    } finally {
      await server.app.close();
      dir.remove();
    }
  });
});

describe.skipIf(!cluster)("a tab whose page's coordinator is down", () => {
  it('resumes its stored client through the peer it advertised, and the organiser controls reach that peer', async () => {
    const dir = tempDir();
    const database = await cluster!.createDatabase();
    const b = await startServer({ dataDir: dir.path, database, random: seeded(2) });
    const a = await startServer({ dataDir: dir.path, database, random: seeded(1), peerUrls: [b.url] });
    let aOpen = true;
    try {
      const created = await new CoragClient(a.url).createSession(config);
      const memory = mapMemory();
      // The first visit: the page's coordinator (A) answers and names B; the tab joins.
      const joined = await joinOrResume(await tabCoordinator(a.url, memory), memory, created.joinCode, 'ada');
      expect(memory.records.get(TAB_KEYS.peers)).toEqual([b.url]);

      await a.app.close();
      aOpen = false;
      // A reload (the page from the browser's cache) or a reconnect: A gives no answer.
      const switched: string[] = [];
      const server = await tabCoordinator(a.url, memory, undefined, { onSwitch: (_from, to) => switched.push(to) });
      const resumed = await joinOrResume(server, memory, undefined, 'ada');
      expect(resumed).toEqual(joined);
      const info = await server.withToken(resumed.token).session(resumed.sessionId);
      expect([info.id, info.clients]).toEqual([created.session.id, 1]);
      expect(switched).toEqual([b.url]);

      // The organiser's page (the dashboard's ctx.api): install a model, open and close a round while A is down.
      const admin = (await knownCoordinators(a.url, memory)).withToken(created.adminToken);
      expect(await admin.uploadModel(created.session.id, encodeModel(randomTensors(MODEL_SHAPES, seeded(3))))).toEqual({ version: 0 });
      const opened = await admin.openRound(created.session.id);
      expect(opened.participants).toEqual([joined.clientId]);
      const closed = await admin.closeRound(created.session.id, opened.round);
      expect([closed.round, closed.state]).toEqual([1, 'failed']);
      // Without the kept peers the same page reaches nobody (what it did before).
      await expect(new CoragClient(a.url, created.adminToken).session(created.session.id)).rejects.toThrow(/fetch failed/);
    } finally {
      if (aOpen) await a.app.close();
      await b.app.close();
      dir.remove();
    }
  });
});

describe('a handoff link to a peer', () => {
  const credentials = { sessionId: 's-1', clientId: 'c_2', token: 'tok+/=', joinCode: 'ABCD2345', name: 'Zoë 名前' };

  it("carries the tab's credentials in the fragment only, and the peer's page reads them back exactly", () => {
    const url = new URL(handoffUrl('http://b.example:8788/', credentials));
    expect([url.origin, url.pathname, url.search]).toEqual(['http://b.example:8788', '/', '']);
    expect(url.hash).toMatch(/^#resume=[A-Za-z0-9_-]+$/);
    expect(readHandoff(url.hash)).toEqual(credentials);
  });

  it('reads nothing from other or malformed fragments', () => {
    const good = new URL(handoffUrl('http://b', credentials)).hash;
    const encode = (v: unknown) => `#resume=${Buffer.from(JSON.stringify(v)).toString('base64url')}`;
    for (const hash of [
      '',
      '#/passages',
      '#resume=',
      '#resume=***',
      `${good}!`,
      '#resume=bm90IGpzb24',
      encode(null),
      encode([credentials]),
      encode({ ...credentials, token: 42 }),
      encode({ ...credentials, token: '' }),
      encode({ ...credentials, name: 'x'.repeat(300) }),
      `#resume=${Buffer.from([0xff, 0xfe, 0x7b]).toString('base64url')}`,
      `#resume=${'A'.repeat(5000)}`,
    ])
      expect(readHandoff(hash), hash.slice(0, 40)).toBeUndefined();
  });
});
