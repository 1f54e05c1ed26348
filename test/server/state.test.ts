/**
 * The CoordinatorState contract (server/state.ts), run against both implementations: the data
 * folder's SQLite database and a real PostgreSQL (a throwaway cluster, test/server/postgres.ts).
 * Then what only a shared database has to survive: several connection pools (as several
 * coordinator processes would hold) racing to accept updates and open rounds.
 */
import { afterAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { openDatabase } from '../../server/db';
import { ApiError } from '../../server/errors';
import { parseDatabaseUrl, PostgresState, redactUrl } from '../../server/pg-state';
import { SqliteState } from '../../server/sqlite-state';
import type { CoordinatorState, NewUpdate } from '../../server/state';
import { tempDir } from './helpers';
import { startTestPostgres } from './postgres';
import { join } from 'node:path';

const cluster = await startTestPostgres();
afterAll(() => cluster?.stop());

interface Backend {
  name: string;
  skip: boolean;
  /** A fresh, empty state; `reopen` opens another handle on the same database (a restart, or a second process). */
  make(): Promise<{ state: CoordinatorState; reopen(): CoordinatorState; exec(sql: string): Promise<void>; done(): Promise<void> }>;
}

const backends: Backend[] = [
  {
    name: 'SQLite',
    skip: false,
    async make() {
      const dir = tempDir();
      const path = join(dir.path, 'coordinator.sqlite');
      const handles = [openDatabase(path)];
      return {
        state: new SqliteState(handles[0]),
        reopen: () => {
          handles.push(openDatabase(path));
          return new SqliteState(handles.at(-1)!);
        },
        exec: async (sql) => void handles[0].exec(sql),
        done: async () => {
          for (const h of handles) h.close();
          dir.remove();
        },
      };
    },
  },
  {
    name: 'PostgreSQL',
    skip: !cluster,
    async make() {
      const url = await cluster!.createDatabase();
      const states = [new PostgresState(url)];
      return {
        state: states[0],
        reopen: () => {
          states.push(new PostgresState(url));
          return states.at(-1)!;
        },
        exec: async (sql) => {
          const c = new pg.Client({ connectionString: url });
          await c.connect();
          await c.query(sql).finally(() => c.end());
        },
        done: async () => {
          for (const s of states) await s.close();
        },
      };
    },
  },
];

const now = () => new Date().toISOString();
const later = () => new Date(Date.now() + 60_000).toISOString();
const codeOf = async (p: Promise<unknown>): Promise<string> => {
  try {
    await p;
  } catch (e) {
    if (e instanceof ApiError) return e.code;
    throw e;
  }
  return 'ok';
};

async function sessionWithClients(state: CoordinatorState, clients: number): Promise<string[]> {
  await state.open();
  await state.createSession({
    id: 's1',
    config: '{"name":"s"}',
    adminTokenHash: 'admin-hash',
    joinCode: 'JOIN01',
    withModel: true,
    questions: [0, 1, 2, 3, 4].map((i) => ({ question: `q${i}`, answers: [`a${i}`] })),
    createdAt: now(),
  });
  const ids: string[] = [];
  for (let i = 0; i < clients; i++) {
    const id = `c${String(i).padStart(3, '0')}`;
    await state.addClient({ id, sessionId: 's1', name: `n${i}`, tokenHash: `t${i}`, joinedAt: now() });
    ids.push(id);
  }
  return ids;
}

const planAll = (_n: number, candidates: string[]) => ({ participants: candidates, config: { localSteps: 1 }, openedAt: now(), deadlineAt: later() });

const update = (clientId: string, sumSeq: number, weight = 2): NewUpdate => ({
  sessionId: 's1',
  round: 1,
  clientId,
  numExamples: weight,
  weight,
  sumSeq,
  bytes: 100,
  norm: 0.5,
  metricSums: { loss: sumSeq },
  acceptedAt: now(),
});

for (const backend of backends) {
  describe.skipIf(backend.skip)(`coordinator state in ${backend.name}`, () => {
    it('stores sessions, tokens, clients in join order and training questions', async () => {
      const t = await backend.make();
      try {
        const [a, b] = await sessionWithClients(t.state, 3);
        expect(await t.state.session('s1')).toEqual({ id: 's1', config: '{"name":"s"}', currentVersion: 0, joinCode: 'JOIN01' });
        expect(await t.state.session('nope')).toBeUndefined();
        expect(await t.state.sessionIds()).toEqual(['s1']);
        expect(await t.state.sessionIdByJoinCode('JOIN01')).toBe('s1');
        expect(await t.state.principal('s1', 'admin-hash')).toEqual({ role: 'admin' });
        expect(await t.state.principal('s1', 't1')).toEqual({ role: 'client', clientId: b });
        expect(await t.state.principal('other', 't1')).toBeUndefined();
        expect([await t.state.clientCount('s1'), await t.state.joinOrder('s1', a), await t.state.joinOrder('s1', 'c002')]).toEqual([3, 0, 2]);
        expect(await t.state.trainingQuestions('s1', 3, 5)).toEqual([
          { question: 'q3', answers: ['a3'] },
          { question: 'q4', answers: ['a4'] },
        ]);
        expect([await t.state.hasModelVersion('s1', 0), await t.state.hasModelVersion('s1', 1), await t.state.latestInstalledVersion('s1')]).toEqual([
          true,
          false,
          0,
        ]);
      } finally {
        await t.done();
      }
    });

    it('adds one client per join key: the same key again re-tokens that client, another name is refused, an expired key is forgotten', async () => {
      const t = await backend.make();
      try {
        await sessionWithClients(t.state, 1);
        const client = (id: string, tokenHash: string, name = 'tab', joinedAt = now()) => ({ id, sessionId: 's1', name, tokenHash, joinedAt });
        const key = (since = new Date(Date.now() - 60_000).toISOString()) => ({ hash: 'key-hash', since });
        expect(await t.state.addClientOnce(client('k1', 'tok1'), key())).toBe('k1');
        // A resend: the same client, its token replaced (the first answer's token was never received).
        expect(await t.state.addClientOnce(client('k2', 'tok2'), key())).toBe('k1');
        expect(await t.state.clientCount('s1')).toBe(2);
        expect(await t.state.principal('s1', 'tok2')).toEqual({ role: 'client', clientId: 'k1' });
        expect(await t.state.principal('s1', 'tok1')).toBeUndefined();
        // Another name with the key is another join: refused, nothing changed.
        expect(await codeOf(t.state.addClientOnce(client('k3', 'tok3', 'other'), key()))).toBe('idempotency_key_reused');
        expect([await t.state.clientCount('s1'), await t.state.principal('s1', 'tok2')]).toEqual([2, { role: 'client', clientId: 'k1' }]);
        // Another key is another join.
        expect(await t.state.addClientOnce(client('k4', 'tok4'), { ...key(), hash: 'other-key' })).toBe('k4');
        // Past the window the key is forgotten: it joins a new client.
        expect(await t.state.addClientOnce(client('k5', 'tok5'), key(later()))).toBe('k5');
        expect(await t.state.clientCount('s1')).toBe(4);
        expect(await t.state.principal('s1', 'tok2')).toEqual({ role: 'client', clientId: 'k1' });
      } finally {
        await t.done();
      }
    });

    it('opens one round at a time, and a refused plan leaves no round', async () => {
      const t = await backend.make();
      try {
        await sessionWithClients(t.state, 2);
        const refused = t.state.openRound('s1', 0, () => {
          throw new ApiError(409, 'not_enough_clients', 'no');
        });
        expect(await codeOf(refused)).toBe('not_enough_clients');
        expect(await t.state.lastRound('s1')).toBeUndefined();
        const r = await t.state.openRound('s1', 0, planAll);
        expect(r).toMatchObject({ number: 1, state: 'open', baseVersion: 0, participants: ['c000', 'c001'], sumSeq: 0, weightTotal: 0, failureReason: null });
        expect(await codeOf(t.state.openRound('s1', 0, planAll))).toBe('round_open');
        expect(await codeOf(t.state.installModel('s1', 0, 1, now()))).toBe('round_open');
        expect((await t.state.activeRounds()).map((x) => x.number)).toEqual([1]);
      } finally {
        await t.done();
      }
    });

    it('accepts an update only at the next running-sum position, once per client, while the round is open', async () => {
      const t = await backend.make();
      try {
        const [a, b, c] = await sessionWithClients(t.state, 3);
        await t.state.openRound('s1', 0, planAll);
        expect(await t.state.acceptUpdate(update(a, 1, 3))).toBe(3);
        expect(await codeOf(t.state.acceptUpdate(update(b, 1)))).toBe('round_changed');
        expect(await codeOf(t.state.acceptUpdate(update(a, 2)))).toBe('duplicate_update');
        expect(await t.state.acceptUpdate(update(b, 2, 4))).toBe(7);
        expect(await t.state.round('s1', 1)).toMatchObject({ sumSeq: 2, weightTotal: 7, metricSums: { loss: 2 } });
        expect(await t.state.updates('s1', 1)).toEqual([
          { clientId: a, weight: 3, norm: 0.5, sumSeq: 1 },
          { clientId: b, weight: 4, norm: 0.5, sumSeq: 2 },
        ]);
        expect([await t.state.updateCount('s1', 1), await t.state.hasUpdate('s1', 1, b), await t.state.hasUpdate('s1', 1, c)]).toEqual([2, true, false]);
        expect(await t.state.markClosing('s1', 1)).toBe(true);
        expect(await t.state.markClosing('s1', 1)).toBe(false);
        expect(await codeOf(t.state.acceptUpdate(update(c, 3)))).toBe('round_closed');
        await t.state.publishRound('s1', 1, 1, now(), { loss: 0.25 });
        expect(await t.state.round('s1', 1)).toMatchObject({ state: 'closed', resultVersion: 1, metrics: { loss: 0.25 } });
        expect(await t.state.session('s1')).toMatchObject({ currentVersion: 1 });
        // A round's version is not an admin's: the frozen encoder stays at version 0.
        expect(await t.state.latestInstalledVersion('s1')).toBe(0);
        expect(await codeOf(t.state.installModel('s1', 0, 2, now()))).toBe('model_changed');
        await t.state.installModel('s1', 1, 2, now());
        expect([await t.state.latestInstalledVersion('s1'), (await t.state.session('s1'))?.currentVersion]).toEqual([2, 2]);
        expect(await t.state.activeRounds()).toEqual([]);
      } finally {
        await t.done();
      }
    });

    it('records failed rounds with their reason, and keeps everything across a reopen', async () => {
      const t = await backend.make();
      try {
        await sessionWithClients(t.state, 2);
        await t.state.openRound('s1', 0, planAll);
        await t.state.failRound('s1', 1, now(), 'too_few_updates: 0 accepted');
        const again = t.reopen();
        await again.open();
        expect(await again.round('s1', 1)).toMatchObject({ state: 'failed', failureReason: 'too_few_updates: 0 accepted' });
        expect((await again.openRound('s1', 0, planAll)).number).toBe(2);
      } finally {
        await t.done();
      }
    });

    it('refuses a database whose schema is newer than this coordinator', async () => {
      const t = await backend.make();
      try {
        await t.state.open();
        await t.exec("INSERT INTO schema_migrations (version, name, applied_at) VALUES (99, 'future', 'now')");
        // (PostgreSQL checks in open(), SQLite while opening the file: either way the start fails.)
        await expect(
          (async () => {
            await t.reopen().open();
          })(),
        ).rejects.toThrow(/schema is version 99, newer than this coordinator's/);
      } finally {
        await t.done();
      }
    });
  });
}

describe.skipIf(!cluster)('several coordinator processes on one PostgreSQL', () => {
  it('race to accept at one running-sum position: exactly one commits, the others are told the round changed', async () => {
    const url = await cluster!.createDatabase();
    const processes = [new PostgresState(url), new PostgresState(url), new PostgresState(url)];
    try {
      const ids = await sessionWithClients(processes[0], 12);
      await processes[0].openRound('s1', 0, planAll);
      const codes = await Promise.all(ids.map((id, i) => codeOf(processes[i % 3].acceptUpdate(update(id, 1)))));
      expect(codes.filter((c) => c === 'ok')).toHaveLength(1);
      expect(codes.filter((c) => c === 'round_changed')).toHaveLength(11);
      expect(await processes[1].updateCount('s1', 1)).toBe(1);
    } finally {
      for (const p of processes) await p.close();
    }
  });

  it('two processes each accepting 40 updates with retries: 80 committed, positions 1..80 each once, exact weight total', async () => {
    const url = await cluster!.createDatabase();
    const processes = [new PostgresState(url), new PostgresState(url)];
    try {
      const ids = await sessionWithClients(processes[0], 80);
      await processes[0].openRound('s1', 0, planAll);
      const submit = async (p: PostgresState, mine: string[]) => {
        for (const id of mine) {
          for (;;) {
            const seq = (await p.round('s1', 1))!.sumSeq + 1;
            const code = await codeOf(p.acceptUpdate(update(id, seq, 1 + (Number(id.slice(1)) % 5))));
            if (code === 'ok') break;
            expect(code).toBe('round_changed');
          }
        }
      };
      await Promise.all([submit(processes[0], ids.slice(0, 40)), submit(processes[1], ids.slice(40))]);
      const rows = await processes[1].updates('s1', 1);
      expect(rows.map((r) => r.sumSeq)).toEqual(Array.from({ length: 80 }, (_, i) => i + 1));
      expect(new Set(rows.map((r) => r.clientId)).size).toBe(80);
      const expected = ids.reduce((a, id) => a + 1 + (Number(id.slice(1)) % 5), 0);
      expect(await processes[0].round('s1', 1)).toMatchObject({ sumSeq: 80, weightTotal: expected });
    } finally {
      for (const p of processes) await p.close();
    }
  });

  it('a join key sent to three processes at once creates one client, and every answer names it', async () => {
    const url = await cluster!.createDatabase();
    const processes = [new PostgresState(url), new PostgresState(url), new PostgresState(url)];
    try {
      await sessionWithClients(processes[0], 0);
      const since = new Date(Date.now() - 60_000).toISOString();
      const ids = await Promise.all(
        processes.map((p, i) => p.addClientOnce({ id: `p${i}`, sessionId: 's1', name: 'tab', tokenHash: `tok${i}`, joinedAt: now() }, { hash: 'k', since })),
      );
      expect(new Set(ids).size).toBe(1);
      expect(await processes[1].clientCount('s1')).toBe(1);
    } finally {
      for (const p of processes) await p.close();
    }
  });

  it('race to open a round and to migrate an empty database: one round, one schema', async () => {
    const url = await cluster!.createDatabase();
    const processes = [new PostgresState(url), new PostgresState(url), new PostgresState(url)];
    try {
      await Promise.all(processes.map((p) => p.open()));
      await sessionWithClients(processes[0], 2);
      const codes = await Promise.all(processes.map((p) => codeOf(p.openRound('s1', 0, planAll))));
      expect(codes.sort()).toEqual(['ok', 'round_open', 'round_open']);
      expect((await processes[2].activeRounds()).map((r) => r.number)).toEqual([1]);
    } finally {
      for (const p of processes) await p.close();
    }
  });
});

describe('--database / CORAG_DATABASE_URL', () => {
  it('takes postgres:// and postgresql:// URLs (a Unix socket too), refuses anything else with one line, and never prints a password', () => {
    expect(parseDatabaseUrl(' postgres://u:p@db:5432/corag ')).toBe('postgres://u:p@db:5432/corag');
    expect(parseDatabaseUrl('postgresql://u@/corag?host=/run/postgresql')).toBe('postgresql://u@/corag?host=/run/postgresql');
    expect(() => parseDatabaseUrl('')).toThrow(/needs a postgres:\/\/user:password@host:port\/database URL/);
    expect(() => parseDatabaseUrl('mysql://u:p@h/db')).toThrow(/"mysql:\/\/" is not supported/);
    expect(() => parseDatabaseUrl('./data/coordinator.sqlite')).toThrow(/not a URL/);
    expect(redactUrl('postgres://corag:s3cr%40t@db.example:5432/corag')).toBe('postgres://corag:***@db.example:5432/corag');
    expect(redactUrl('postgres://corag@/corag?host=/tmp')).toBe('postgres://corag@/corag?host=/tmp');
  });

  it('a PostgreSQL that cannot be reached fails the start with the reason and the URL without its password', async () => {
    const state = new PostgresState('postgres://corag:hunter2@127.0.0.1:1/corag');
    try {
      const err = await state.open().then(
        () => undefined,
        (e: Error) => e.message,
      );
      expect(err).toMatch(/^PostgreSQL postgres:\/\/corag:\*\*\*@127\.0\.0\.1:1\/corag: .*ECONNREFUSED/);
      expect(err).not.toMatch(/hunter2/);
    } finally {
      await state.close();
    }
  });
});
