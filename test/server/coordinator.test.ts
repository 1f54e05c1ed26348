/**
 * Coordinator state machine without HTTP: a round of a stored-delta strategy survives a restart
 * (committed deltas kept because the database names them, an orphan from an uncommitted accept
 * deleted) and closes to exactly the strategy's aggregate of the accepted deltas. Each test runs
 * with the state in SQLite (the default) and in PostgreSQL (a throwaway cluster: ./postgres.ts).
 */
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { Coordinator } from '../../server/coordinator';
import { openDatabase } from '../../server/db';
import { EmbeddedPassageStore } from '../../server/passages';
import { SqlitePassageRecords } from '../../server/sqlite-passages';
import { decodeModel, encodeModel, encodeUpdate, type NamedTensor } from '../../src/federated/codec';
import { applyDelta, createStrategy, type StoredDeltaStrategy } from '../../src/federated/strategy';
import { deltaNorm, inMemoryDeltaChunks } from '../../src/federated/strategies/delta-chunks';
import { MODEL_SHAPES, randomTensors, seeded, tempDir, TRAINED_PREFIXES, trainedShapes } from './helpers';
import { stateBackends, startTestPostgres } from './postgres';
import { expectIdenticalNumbers } from '../identical-numbers';

const cluster = await startTestPostgres();
afterAll(() => cluster?.stop());

/** Runs SQL on where the state lives (the data folder's SQLite, or the PostgreSQL database). */ async function execSql(
  coordinator: Coordinator,
  database: string | undefined,
  sql: string,
): Promise<void> {
  if (!database) return void coordinator.db!.exec(sql);
  const c = new pg.Client({ connectionString: database });
  await c.connect();
  await c.query(sql).finally(() => c.end());
}

for (const backend of stateBackends(cluster))
  describe.skipIf(backend.skip)(`stored-delta rounds (state in ${backend.name})`, () => {
    it('keep committed deltas across a restart, drop orphans, and publish the strategy aggregate of exactly the accepted updates', async () => {
      const dir = tempDir();
      const database = await backend.database();
      try {
        const random = seeded(31);
        const global = randomTensors(MODEL_SHAPES, random);
        let coordinator = new Coordinator({ dataDir: dir.path, random: seeded(1), database, node: 'n1' });
        const created = await coordinator.createSession(
          {
            name: 'restart',
            models: { reader: 'r', passageEncoder: 'p', embeddingDim: 8 },
            trainedPrefixes: TRAINED_PREFIXES,
            roundPolicy: { minClients: 3, minUpdates: 1 },
            strategy: 'trimmed-mean',
            strategyParams: { trimFraction: 0.34 },
          },
          encodeModel(global),
        );
        const sid = created.session.id;
        const ids: string[] = [];
        for (let i = 0; i < 3; i++) ids.push((await coordinator.join(created.joinCode)).clientId);
        await coordinator.openRound(sid);
        const deltas = [0, 1, 2].map((i) => randomTensors(trainedShapes(), random, 0.1 * (i + 1)) as Map<string, NamedTensor>);
        const body = (i: number) => encodeUpdate(deltas[i], { round: 1, baseVersion: 0, numExamples: 5 + i, metrics: { loss: i } });
        await coordinator.acceptUpdate(sid, 1, ids[0], body(0));
        await coordinator.acceptUpdate(sid, 1, ids[1], body(1));
        const roundDir = join(dir.path, 'sessions', sid, 'rounds', '1');
        // With PostgreSQL state the files carry the accepting process's node id (several processes may share the folder).
        const file = (seq: number) => (database ? `delta-n1-${seq}.safetensors` : `delta-${seq}.safetensors`);
        expect(readdirSync(roundDir).sort()).toEqual([file(1), file(2)]);
        // What a crash between the delta file and the commit leaves behind.
        writeFileSync(join(roundDir, file(3)), readFileSync(join(roundDir, file(1))));
        await coordinator.close();

        coordinator = new Coordinator({ dataDir: dir.path, database, node: 'n2' });
        await coordinator.resume();
        // One process deletes the orphan on restart; with several, another process could be writing
        // its next file, so the orphan goes with the round's folder when the round closes.
        expect(readdirSync(roundDir).sort()).toEqual(database ? [file(1), file(2), file(3)] : [file(1), file(2)]);
        expect(await coordinator.round(sid, 1)).toMatchObject({ state: 'open', accepted: 2 });
        await coordinator.acceptUpdate(sid, 1, ids[2], body(2));
        const closed = await coordinator.closeRound(sid, 1, 'complete');
        expect(closed).toMatchObject({ state: 'closed', resultVersion: 1, failureReason: null, metrics: { loss: (0 * 5 + 1 * 6 + 2 * 7) / 18 } });
        expect(existsSync(roundDir)).toBe(false);

        const strategy = createStrategy('trimmed-mean', { trimFraction: 0.34 }) as StoredDeltaStrategy;
        const updates = deltas.map((d, i) => ({ weight: 5 + i, norm: deltaNorm(new Map([...d].map(([n, t]) => [n, t.data]))) }));
        const expected = applyDelta(global, strategy.aggregate(inMemoryDeltaChunks(deltas), updates, 0.25).delta);
        const v1 = decodeModel(readFileSync(coordinator.modelPath(sid, 1)));
        for (const [name, t] of expected) expectIdenticalNumbers(v1.get(name)?.data, t.data, name);
        expect(v1.get('passage_encoder.embeddings.word_embeddings.weight')!.data).toEqual(
          global.get('passage_encoder.embeddings.word_embeddings.weight')!.data,
        );
        await coordinator.close();
      } finally {
        dir.remove();
      }
    });

    it('closes a FedAvg round whose updates were accepted before norms were recorded (NULL norm: no bound derived)', async () => {
      const dir = tempDir();
      const database = await backend.database();
      try {
        const random = seeded(32);
        let coordinator = new Coordinator({ dataDir: dir.path, database });
        const created = await coordinator.createSession(
          { name: 'upgrade', models: { reader: 'r', passageEncoder: 'p', embeddingDim: 8 }, trainedPrefixes: TRAINED_PREFIXES, roundPolicy: { minClients: 2 } },
          encodeModel(randomTensors(MODEL_SHAPES, random)),
        );
        const sid = created.session.id;
        const a = (await coordinator.join(created.joinCode)).clientId;
        await coordinator.join(created.joinCode);
        await coordinator.openRound(sid);
        await coordinator.acceptUpdate(
          sid,
          1,
          a,
          encodeUpdate(randomTensors(trainedShapes(), random, 0.1), { round: 1, baseVersion: 0, numExamples: 4, metrics: {} }),
        );
        await execSql(coordinator, database, 'UPDATE updates SET norm = NULL'); // the row an older coordinator wrote
        await coordinator.close();
        coordinator = new Coordinator({ dataDir: dir.path, database });
        await coordinator.resume();
        expect(await coordinator.closeRound(sid, 1, 'admin')).toMatchObject({ state: 'closed', resultVersion: 1, failureReason: null });
        await coordinator.close();
      } finally {
        dir.remove();
      }
    });

    it('refuses strategy parameters it does not know and a weight-share cap FedAvg cannot apply', async () => {
      const dir = tempDir();
      const coordinator = new Coordinator({ dataDir: dir.path, database: await backend.database() });
      try {
        const base = { name: 's', models: { reader: 'r', passageEncoder: 'p', embeddingDim: 8 } };
        await expect(coordinator.createSession({ ...base, strategy: 'median', strategyParams: { trimFraction: 0.2 } })).rejects.toThrow(
          /no parameter "trimFraction"/,
        );
        await expect(coordinator.createSession({ ...base, strategy: 'fedavg', updateLimits: { maxWeightShare: 0.3 } })).rejects.toThrow(
          /cannot cap weight shares/,
        );
        const made = await coordinator.createSession({ ...base, strategy: 'multi-krum', training: { localSteps: 10, batchSize: 2 } });
        expect([made.session.config.strategyParams, made.session.config.updateLimits]).toEqual([
          { byzantineFraction: 0.25 },
          { maxExamplesPerUpdate: 20, maxWeightShare: 0.25 },
        ]);
      } finally {
        void coordinator.close().then(dir.remove);
      }
    });
  });

describe.skipIf(!cluster)('a data folder is used with one state store', () => {
  it('refuses --database on a folder whose sessions are in SQLite, and no --database on a folder whose passages belong to PostgreSQL sessions', async () => {
    const dir = tempDir();
    const other = tempDir();
    try {
      const models = { reader: 'r', passageEncoder: 'enc', embeddingDim: 2 };
      const local = new Coordinator({ dataDir: dir.path });
      await local.createSession({ name: 'local', models });
      await local.close();
      const database = await cluster!.createDatabase();
      expect(() => new Coordinator({ dataDir: dir.path, database })).toThrow(/holds 1 session in its SQLite database, which --database would ignore/);

      const shared = new Coordinator({ dataDir: other.path, database });
      const { session } = await shared.createSession({ name: 'pg', models, passages: { embeddingCheck: 'off' } });
      const { clientId } = await shared.join(await shared.joinCode(session.id));
      await shared.passages.add(session.id, models, clientId, [{ title: 't', text: 'a passage', embedding: [1, 0], encoder: 'enc' }]);
      await shared.close();
      expect(() => new Coordinator({ dataDir: other.path })).toThrow(
        /was used with PostgreSQL state.*start the coordinator with the --database it was used with/,
      );
      // With the right --database it starts and serves the same session and passage.
      const again = new Coordinator({ dataDir: other.path, database });
      await again.resume();
      expect(await again.sessionInfo(session.id)).toMatchObject({ clients: 1, passages: 1 });
      await again.close();
    } finally {
      dir.remove();
      other.remove();
    }
  });
  it('moves the passage records of a folder from before they lived in PostgreSQL into PostgreSQL on start, verified, once', async () => {
    const dir = tempDir();
    try {
      const models = { reader: 'r', passageEncoder: 'enc', embeddingDim: 2 };
      const database = await cluster!.createDatabase();
      const first = new Coordinator({ dataDir: dir.path, database });
      const { session } = await first.createSession({ name: 'pg', models, passages: { embeddingCheck: 'off' } });
      await first.close();
      // What an older coordinator with --database left: the records in the folder's SQLite database.
      const db = openDatabase(join(dir.path, 'coordinator.sqlite'), { foreignKeys: false });
      const old = new SqlitePassageRecords(db);
      const store = new EmbeddedPassageStore(old);
      const e = (i: number) => ({ title: `t${i}`, text: `passage ${i}`, embedding: [Math.cos(i), Math.sin(i)], encoder: 'enc' });
      const added = await store.add(session.id, models, 'alice', [e(0), e(1), e(2), e(3)]);
      await store.add(session.id, models, 'bob', [e(1)]);
      await store.withdraw(session.id, models, 'alice', added[3].id); // the highest id: never reused after the move
      await old.recordCheck(session.id, 'alice', 'mismatches');
      db.close();

      const lines: string[] = [];
      const [a, b] = [0, 1].map(() => new Coordinator({ dataDir: dir.path, database, log: (l) => lines.push(l) }));
      // Two processes starting together: one moves, the other finds the records there.
      await Promise.all([a.passages.open(), b.passages.open()]);
      expect(lines.filter((l) => /moved 3 passages \(4 contributions\) from .* into PostgreSQL \(verified\)/.test(l))).toHaveLength(1);
      expect(existsSync(join(dir.path, 'coordinator.sqlite'))).toBe(false);
      expect(existsSync(join(dir.path, 'coordinator.sqlite.moved-to-postgresql'))).toBe(true);
      expect(await b.passages.count(session.id)).toBe(3);
      expect(await b.passages.contributions(session.id)).toEqual([{ clientId: 'alice', passages: 3 }]);
      expect(await b.passages.records.checkHistory(session.id, 'alice')).toEqual({ batches: 0, mismatches: 1 });
      expect((await a.passages.search(session.id, models, [1, 0], 1))[0].id).toBe(added[0].id);
      expect(await a.passages.withdraw(session.id, models, 'alice', added[1].id)).toEqual({ deleted: false, contributorsLeft: 1 });
      const [next] = await b.passages.add(session.id, models, 'carol', [e(9)]);
      expect(next.id).toBe(added[3].id + 1);
      await a.close();
      await b.close();
    } finally {
      dir.remove();
    }
  });
});
