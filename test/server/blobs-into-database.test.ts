/**
 * Switching a PostgreSQL deployment's files into its database in place (npm run migrate --
 * --blobs-into-database): a deployment run with its files in the data folder (v0, v1 from a closed
 * round, round 2 open with one accepted update in a partial sum) is put into the database, verified;
 * a second run writes nothing; a coordinator on an EMPTY folder with the database blob store then
 * serves v0 and v1 and finishes round 2 from the copied partial sum (exact FedAvg). A folder that is
 * not a PostgreSQL deployment's is refused.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { putFolderBlobsIntoDatabase } from '../../server/blobs-into-database';
import { Coordinator } from '../../server/coordinator';
import { decodeModel, encodeModel, encodeUpdate, type NamedTensor } from '../../src/federated/codec';
import { fedAvgExpected, maxRelativeError, MODEL_SHAPES, randomTensors, seeded, tempDir, TRAINED_PREFIXES, trainedShapes } from './helpers';
import { startTestPostgres } from './postgres';

const cluster = await startTestPostgres();
afterAll(() => cluster?.stop());

describe.skipIf(!cluster)("putting a PostgreSQL deployment's files into its database (--blobs-into-database)", () => {
  it("copies every model version and the open round's partial sum, verified, once; a process on an empty folder then serves them and finishes the round", async () => {
    const database = await cluster!.createDatabase();
    const dir = tempDir();
    try {
      const old = join(dir.path, 'old');
      const random = seeded(21);
      const global = randomTensors(MODEL_SHAPES, random);
      let c = new Coordinator({ dataDir: old, database, node: 'a' });
      await c.resume();
      const created = await c.createSession(
        {
          name: 'in place',
          models: { reader: 'r', passageEncoder: 'p', embeddingDim: 8 },
          trainedPrefixes: TRAINED_PREFIXES,
          roundPolicy: { minClients: 2, minUpdates: 2, autoStart: false },
        },
        encodeModel(global),
      );
      const sid = created.session.id;
      const ids = [(await c.join(created.joinCode)).clientId, (await c.join(created.joinCode)).clientId];
      const delta = () => randomTensors(trainedShapes(), random, 0.1) as Map<string, NamedTensor>;
      await c.openRound(sid);
      for (const [i, id] of ids.entries())
        await c.acceptUpdate(sid, 1, id, encodeUpdate(delta(), { round: 1, baseVersion: 0, numExamples: 2 + i, metrics: {} }));
      expect(await c.closeRound(sid, 1, 'complete')).toMatchObject({ state: 'closed', resultVersion: 1 });
      await c.openRound(sid);
      const first = delta();
      await c.acceptUpdate(sid, 2, ids[0], encodeUpdate(first, { round: 2, baseVersion: 1, numExamples: 5, metrics: {} }));
      await c.close();

      const lines: string[] = [];
      expect(await putFolderBlobsIntoDatabase({ dataDir: old, database, log: (l) => lines.push(l) })).toMatchObject({ written: 3, present: 0 });
      expect(lines.join('\n')).toMatch(/3 files .* 3 written, 0 already there; each verified/);
      expect(await putFolderBlobsIntoDatabase({ dataDir: old, database })).toMatchObject({ written: 0, present: 3 });

      c = new Coordinator({ dataDir: join(dir.path, 'new'), database, node: 'b', blobStore: 'database' });
      try {
        await c.resume();
        for (const v of [0, 1])
          expect(readFileSync(await c.modelFile(sid, v)).equals(readFileSync(join(old, 'sessions', sid, 'models', `v${v}.safetensors`)))).toBe(true);
        const second = delta();
        expect(await c.acceptUpdate(sid, 2, ids[1], encodeUpdate(second, { round: 2, baseVersion: 1, numExamples: 3, metrics: {} }))).toMatchObject({
          roundComplete: true,
        });
        expect(await c.closeRound(sid, 2, 'complete')).toMatchObject({ state: 'closed', resultVersion: 2 });
        const v1 = decodeModel(readFileSync(await c.modelFile(sid, 1)));
        const expected = fedAvgExpected(v1, [
          { n: 5, deltas: first },
          { n: 3, deltas: second },
        ]);
        for (const [name, t] of decodeModel(readFileSync(await c.modelFile(sid, 2))))
          expect(maxRelativeError(t.data, expected.get(name)!), name).toBeLessThan(1e-6);
      } finally {
        await c.close();
      }

      // An SQLite deployment's folder is not this command's.
      const sqlite = new Coordinator({ dataDir: join(dir.path, 'sqlite') });
      await sqlite.close();
      await expect(putFolderBlobsIntoDatabase({ dataDir: join(dir.path, 'sqlite'), database })).rejects.toThrow(
        /not the data folder of a PostgreSQL deployment/,
      );
    } finally {
      dir.remove();
    }
  });
});
