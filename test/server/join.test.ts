/**
 * POST /api/join with an idempotency key (server/coordinator.ts join), with the state in SQLite and
 * in PostgreSQL: a join whose answer was lost after the coordinator committed it, and that the
 * failover fetch (src/federated/failover.ts) sends again — to the same process, or with PostgreSQL
 * to another coordinator on the same state — adds one client, not a ghost that counts toward the
 * round policy's minClients. Keys that are not 22–64 base64url characters are refused.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { CoragClient, CoragHttpError, newJoinKey } from '../../src/federated/client';
import { answersAResend, failoverFetch } from '../../src/federated/failover';
import { seeded, startServer, tempDir } from './helpers';
import { stateBackends, startTestPostgres } from './postgres';

const cluster = await startTestPostgres();
afterAll(() => cluster?.stop());

/**
 * A fetch whose first POST /api/join reaches the coordinator, which commits and answers, but whose
 * answer is lost on the way back (the connection dropped): the caller sees a network error.
 */
function losingFirstJoinAnswer(): typeof fetch {
  let lost = false;
  return async (input, init) => {
    const res = await fetch(input, init);
    if (!lost && String(input).endsWith('/api/join')) {
      lost = true;
      await res.arrayBuffer();
      throw new TypeError('fetch failed: the connection was reset');
    }
    return res;
  };
}

for (const backend of stateBackends(cluster))
  describe.skipIf(backend.skip)(`joining with an idempotency key (state in ${backend.name})`, () => {
    async function coordinators(count: number) {
      const dir = tempDir();
      const database = await backend.database();
      // With SQLite one process owns the state: the resend reaches that process again.
      const servers: Array<Awaited<ReturnType<typeof startServer>>> = [];
      for (let i = 0; i < (database ? count : 1); i++) servers.push(await startServer({ dataDir: dir.path, database, random: seeded(i + 1) }));
      const created = await new CoragClient(servers[0]!.url).createSession({
        name: 'join',
        models: { reader: 'r', passageEncoder: 'p', embeddingDim: 8 },
        roundPolicy: { minClients: 2, autoStart: false },
      });
      const admin = new CoragClient(servers[0]!.url, created.adminToken);
      return {
        urls: servers.map((s) => s.url),
        coordinator: servers[0]!.coordinator,
        joinCode: created.joinCode,
        clients: async () => (await admin.session(created.session.id)).clients,
        done: async () => {
          for (const s of servers) await s.app.close();
          dir.remove();
        },
      };
    }

    it('a join resent after its answer was lost adds exactly one client, whose resent token works', async () => {
      const c = await coordinators(2);
      try {
        const urls = c.urls.length > 1 ? c.urls : [c.urls[0]!, c.urls[0]!];
        const failover = failoverFetch(urls, losingFirstJoinAnswer());
        let resent = false;
        const tab = new CoragClient(urls[0]!, undefined, async (input, init) => {
          const res = await failover(input, init);
          resent ||= answersAResend(res);
          return res;
        });
        const joined = await tab.join(c.joinCode, 'tab');
        expect(resent).toBe(true);
        expect(await c.clients()).toBe(1);
        // The resend's token is the client's token now, on every coordinator.
        for (const url of c.urls) expect((await new CoragClient(url, joined.token).session(joined.sessionId)).clients).toBe(1);
        // A join with a new key is a new client.
        const other = await new CoragClient(urls[0]!).join(c.joinCode, 'tab');
        expect(other.clientId).not.toBe(joined.clientId);
        expect(await c.clients()).toBe(2);
      } finally {
        await c.done();
      }
    });

    it('the same key on another coordinator answers with the same client; with another name it is refused (409)', async () => {
      const c = await coordinators(2);
      try {
        const key = newJoinKey();
        const first = await new CoragClient(c.urls[0]!).join(c.joinCode, 'tab', key);
        const again = await new CoragClient(c.urls.at(-1)!).join(c.joinCode.toLowerCase(), 'tab', key);
        expect(again.clientId).toBe(first.clientId);
        expect(again.token).not.toBe(first.token);
        const reused = await new CoragClient(c.urls[0]!).join(c.joinCode, 'someone else', key).catch((e: unknown) => e);
        expect(reused).toBeInstanceOf(CoragHttpError);
        expect((reused as CoragHttpError).status).toBe(409);
        expect((reused as CoragHttpError).code).toBe('idempotency_key_reused');
        expect(await c.clients()).toBe(1);
      } finally {
        await c.done();
      }
    });

    it('refuses keys that are too short, too long or outside base64url with 400, adding no client', async () => {
      const c = await coordinators(1);
      try {
        const bad = ['short', 'a'.repeat(65), `${'a'.repeat(21)}=`, `${'a'.repeat(21)}/`, `${'a'.repeat(22)} `, 'é'.repeat(22), 42, null];
        for (const idempotencyKey of bad) {
          const res = await fetch(`${c.urls[0]}/api/join`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ code: c.joinCode, idempotencyKey }),
          });
          expect(res.status, JSON.stringify(idempotencyKey)).toBe(400);
          expect((await res.json()).error).toBe('invalid_request');
        }
        // The coordinator checks too (a caller other than the route).
        await expect(c.coordinator.join(c.joinCode, 'x', 'a'.repeat(21))).rejects.toMatchObject({ status: 400, code: 'invalid_idempotency_key' });
        expect(await c.clients()).toBe(0);
      } finally {
        await c.done();
      }
    });
  });
