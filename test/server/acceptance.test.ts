/**
 * All-or-nothing acceptance and publication (issue 17, item 1 and the aggregate checks): refused
 * bytes never change a round, an aggregate that is not finite is never published, metrics are
 * limited to known keys. Driven over real HTTP.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stateBackends, startTestPostgres } from './postgres';
import { CoragClient, CoragHttpError } from '../../src/federated/client';
import { decodeModel, encodeModel, encodeUpdate, type NamedTensor } from '../../src/federated/codec';
import type { NewSession } from '../../src/federated/client';
import { checkAggregate } from '../../server/coordinator';
import { fedAvgExpected, maxRelativeError, MODEL_SHAPES, randomTensors, seeded, startServer, tempDir, TRAINED_PREFIXES, trainedShapes } from './helpers';
import { expectIdenticalNumbers } from '../identical-numbers';

/**
 * An update whose LAST tensor sits at an odd data offset (one junk byte before it), the others
 * aligned: the shape of the attack, where the tensors before the bad one used to be added
 * to the running sum before the request failed.
 */
function misalignedUpdate(deltas: ReadonlyMap<string, NamedTensor>, numExamples: string): Uint8Array {
  const header: Record<string, unknown> = {
    __metadata__: { 'corag.round': '1', 'corag.base_version': '0', 'corag.num_examples': numExamples, 'corag.metrics': '{}' },
  };
  const names = [...deltas.keys()];
  let offset = 0;
  const parts: Array<[number, Float32Array]> = [];
  names.forEach((name, i) => {
    if (i === names.length - 1) offset += 1;
    const data = deltas.get(name)!.data;
    header[name] = { dtype: 'F32', shape: deltas.get(name)!.shape, data_offsets: [offset, offset + data.byteLength] };
    parts.push([offset, data]);
    offset += data.byteLength;
  });
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const out = new Uint8Array(8 + json.length + offset).fill(0x55);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(new TextEncoder().encode(json), 8);
  for (const [o, data] of parts) out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), 8 + json.length + o);
  return out;
}

// The state in SQLite (the default) and in PostgreSQL (a throwaway cluster: ./postgres.ts).
const cluster = await startTestPostgres();
afterAll(() => cluster?.stop());

for (const backend of stateBackends(cluster))
  describe.skipIf(backend.skip)(`all-or-nothing acceptance over HTTP (state in ${backend.name})`, () => {
    const dir = tempDir();
    let server: Awaited<ReturnType<typeof startServer>>;
    let anon: CoragClient;
    beforeAll(async () => {
      server = await startServer({ dataDir: dir.path, database: await backend.database(), rateLimitPerMinute: 10_000 });
      anon = new CoragClient(server.url);
    });
    afterAll(async () => {
      await server.app.close();
      dir.remove();
    });

    async function session(extra: Partial<NewSession>, model: Map<string, NamedTensor>, clients: number) {
      const created = await anon.createSession({
        name: 'acceptance',
        models: { reader: 'r', passageEncoder: 'p', embeddingDim: 8 },
        roundPolicy: { minClients: clients, minUpdates: 1, deadlineSeconds: 60 },
        trainedPrefixes: TRAINED_PREFIXES,
        ...extra,
      });
      const admin = anon.withToken(created.adminToken);
      await admin.uploadModel(created.session.id, encodeModel(model));
      const joined = await Promise.all(Array.from({ length: clients }, async () => anon.withToken((await anon.join(created.joinCode)).token)));
      return { sid: created.session.id, admin, clients: joined };
    }

    const refusal = (p: Promise<unknown>) =>
      p.then(
        () => ({ status: 0, code: 'accepted' }),
        (e: CoragHttpError) => ({ status: e.status, code: e.code }),
      );

    for (const strategy of ['fedavg', 'norm-clip']) {
      it(`${strategy}: three misaligned updates claiming 1e15−1 examples are refused and leave no trace; the published version is the honest update alone`, async () => {
        const random = seeded(21);
        const global = randomTensors(MODEL_SHAPES, random);
        const { sid, admin, clients } = await session({ strategy }, global, 2);
        await admin.openRound(sid);
        const before = JSON.stringify(await admin.round(sid, 1));
        const hostile = randomTensors(trainedShapes(), random, 1e3);
        for (let i = 0; i < 3; i++) {
          expect(await refusal(clients[0].uploadUpdate(sid, 1, misalignedUpdate(hostile, '999999999999999')))).toEqual({
            status: 400,
            code: 'misaligned_tensor',
          });
          expect(JSON.stringify(await admin.round(sid, 1))).toBe(before);
        }
        const honest = randomTensors(trainedShapes(), random, 0.1);
        await clients[0].uploadUpdate(sid, 1, encodeUpdate(honest, { round: 1, baseVersion: 0, numExamples: 10, metrics: {} }));
        const closed = await admin.closeRound(sid, 1);
        expect([closed.state, closed.resultVersion, closed.accepted]).toEqual(['closed', 1, 1]);
        const v1 = decodeModel(await admin.downloadModel(sid, 1));
        const expected = fedAvgExpected(global, [{ n: 10, deltas: honest }]);
        for (const [name, t] of v1) expect(maxRelativeError(t.data, expected.get(name)!), name).toBeLessThan(1e-6);
      });
    }

    it('a model upload with a misaligned tensor installs exactly its values; one with a NaN in its last tensor changes nothing', async () => {
      const random = seeded(22);
      const global = randomTensors(MODEL_SHAPES, random);
      const { sid, admin } = await session({}, global, 1);
      const replacement = randomTensors(MODEL_SHAPES, random);
      const body = misalignedUpdate(replacement, '1');
      expect((await admin.uploadModel(sid, body)).version).toBe(1);
      const v1 = decodeModel(await admin.downloadModel(sid, 1));
      for (const [name, t] of replacement) expectIdenticalNumbers(v1.get(name)?.data, t.data, name);
      const bad = randomTensors(MODEL_SHAPES, random);
      bad.get(MODEL_SHAPES[MODEL_SHAPES.length - 1][0])!.data[3] = NaN;
      expect(await refusal(admin.uploadModel(sid, encodeModel(bad)))).toEqual({ status: 400, code: 'non_finite' });
      expect((await admin.session(sid)).currentVersion).toBe(1);
    });

    it('an aggregate that overflows float32 fails the round with a reason; the previous version stays current and the next round opens on it', async () => {
      const random = seeded(23);
      const global = randomTensors(MODEL_SHAPES, random);
      for (const t of global.values()) t.data.fill(3e38);
      const { sid, admin, clients } = await session({}, global, 1);
      await admin.openRound(sid);
      const flt = randomTensors(trainedShapes(), random);
      for (const t of flt.values()) t.data.fill(3.4028234663852886e38);
      const receipt = await clients[0].uploadUpdate(sid, 1, encodeUpdate(flt, { round: 1, baseVersion: 0, numExamples: 1, metrics: {} }));
      expect(receipt.accepted).toBe(1);
      let info = await admin.round(sid, 1);
      for (let i = 0; info.state !== 'failed' && i < 100; i++) info = await new Promise((r) => setTimeout(r, 20)).then(() => admin.round(sid, 1));
      expect(info.state).toBe('failed');
      expect(info.failureReason).toMatch(/^non_finite_model/);
      expect((await admin.session(sid)).currentVersion).toBe(0);
      expect((await admin.openRound(sid)).baseVersion).toBe(0);
    });

    it('keeps metrics under known keys only: unknown keys are dropped, an implausible loss refuses the update', async () => {
      const random = seeded(24);
      const { sid, admin, clients } = await session({}, randomTensors(MODEL_SHAPES, random), 1);
      await admin.openRound(sid);
      const d = randomTensors(trainedShapes(), random, 0.1);
      const send = (metrics: Record<string, number>) => clients[0].uploadUpdate(sid, 1, encodeUpdate(d, { round: 1, baseVersion: 0, numExamples: 3, metrics }));
      expect(await refusal(send({ loss: 1.7e308, constructor: 1 }))).toEqual({ status: 400, code: 'invalid_metrics' });
      expect((await admin.round(sid, 1)).accepted).toBe(0);
      await send({ loss: 2.5, constructor: 1, __proto__x: 3 });
      // The update completed the round, which closes on its own: it may still read 'open' (the
      // close is scheduled after the accept commits) or 'closing' (aggregating) for a moment.
      let closed = await admin.round(sid, 1);
      for (let tries = 0; (closed.state === 'open' || closed.state === 'closing') && tries < 250; tries++)
        closed = await new Promise((r) => setTimeout(r, 20)).then(() => admin.round(sid, 1));
      expect(closed.state).toBe('closed');
      expect(closed.metrics).toEqual({ loss: 2.5 });
    });

    it("names why an aggregate above its strategy's norm bound or non-finite is not published", () => {
      const global = new Map([['w', { shape: [2], data: new Float32Array([0, 0]) }]]);
      expect(checkAggregate(global, { delta: new Map([['w', new Float64Array([3, 4])]]), normBound: 5, details: {} })).toBeNull();
      expect(checkAggregate(global, { delta: new Map([['w', new Float64Array([3, 4])]]), normBound: 4.9, details: {} })).toMatch(
        /^aggregate_norm_exceeds_bound/,
      );
      expect(checkAggregate(global, { delta: new Map([['w', new Float64Array([NaN, 4])]]), normBound: 5, details: {} })).toMatch(/^non_finite_aggregate/);
    });
  });
