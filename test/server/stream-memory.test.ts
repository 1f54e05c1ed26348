/**
 * Issue 17, "bodies streamed, not buffered whole": an admitted update body goes into a temp file as
 * it arrives and is validated and aggregated from there in chunks, so receiving, validating and
 * summing a 32 MiB update grows the coordinator's memory by a few MiB, not by the body. Measured in
 * this process (server and sender share it) with a full GC before every sample, so garbage does not
 * count, only what is held; the sender writes the body in 1 MiB slices with backpressure. Also: the
 * published FedAvg of two such updates (one F32, one F16) is exactly g + Σ wᵢdᵢ / Σ wᵢ as the
 * coordinator's float64 sum defines it, and no temp file outlives its request.
 */
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CoragClient } from '../../src/federated/client';
import { Coordinator } from '../../server/coordinator';
import { decodeModel, decodeUpdate, encodeModel, encodeUpdate, type NamedTensor } from '../../src/federated/codec';
import { fedAvgExpected, maxRelativeError, MODEL_SHAPES, randomTensors, seeded, startServer, tempDir, TRAINED_PREFIXES, trainedShapes } from './helpers';
import { expectIdenticalNumbers } from '../identical-numbers';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const MiB = 1 << 20;
/** 32 MiB of trained F32 tensors (8M values) and a small frozen one. */
const SHAPES: ReadonlyArray<[string, number[]]> = [
  ['reader.big.a', [2048, 2048]],
  ['reader.big.b', [4096, 1024]],
  ['reader.small', [7, 13]],
  ['passage_encoder.embeddings.word_embeddings.weight', [40, 8]],
];
const TRAINED = (name: string) => name.startsWith('reader.');

/** PUTs `body` over plain HTTP in 1 MiB slices, waiting for 'drain', so the sender copies nothing whole. */
function putSliced(url: string, token: string, body: Uint8Array): Promise<{ status: number; json: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method: 'PUT',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/octet-stream', 'content-length': String(body.byteLength) },
      },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (c: Buffer) => parts.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, json: JSON.parse(Buffer.concat(parts).toString('utf8')) as Record<string, unknown> }));
      },
    );
    req.on('error', reject);
    let at = 0;
    const pump = () => {
      while (at < body.byteLength) {
        const slice = body.subarray(at, Math.min(at + MiB, body.byteLength));
        at += slice.byteLength;
        if (!req.write(slice)) {
          req.once('drain', pump);
          return;
        }
      }
      req.end();
    };
    pump();
  });
}

/** Runs `work` while sampling held ArrayBuffer memory (after a full GC) every few ms; returns its result and the peak growth. */
async function peakHeldGrowth<T>(work: () => Promise<T>): Promise<{ result: T; peak: number; low: number; samples: number }> {
  // Settle first: buffers earlier requests still reference (sockets, fetch bodies) are let go, so a
  // drop during the upload does not hide its growth.
  for (let i = 0; i < 5; i++) {
    gc();
    await new Promise((r) => setTimeout(r, 40));
  }
  gc();
  const baseline = process.memoryUsage().arrayBuffers;
  let peak = -Infinity;
  let low = Infinity;
  let samples = 0;
  const sample = () => {
    gc();
    const growth = process.memoryUsage().arrayBuffers - baseline;
    peak = Math.max(peak, growth);
    low = Math.min(low, growth);
    samples++;
  };
  const timer = setInterval(sample, 2);
  try {
    const result = await work();
    sample();
    return { result, peak, low, samples };
  } finally {
    clearInterval(timer);
  }
}

describe('update bodies are streamed to disk and aggregated in bounded memory', () => {
  const dir = tempDir();
  let server: Awaited<ReturnType<typeof startServer>>;
  beforeAll(async () => {
    server = await startServer({ dataDir: dir.path, rateLimitPerMinute: 10_000 });
  });
  afterAll(async () => {
    await server.app.close();
    dir.remove();
  });

  it('accepts two 32 MiB updates (F32 and F16) while held memory grows by under a quarter of the body, and publishes exactly g + Σ wᵢdᵢ / Σ wᵢ', async () => {
    const random = seeded(404);
    const global = randomTensors(SHAPES, random);
    const anon = new CoragClient(server.url);
    const created = await anon.createSession({
      name: 'stream',
      models: { reader: 'r', passageEncoder: 'p', embeddingDim: 8 },
      roundPolicy: { minClients: 3, minUpdates: 2, deadlineSeconds: 600 },
      trainedPrefixes: ['reader.'],
      updateLimits: { maxExamplesPerUpdate: 1000 },
    });
    const sid = created.session.id;
    const admin = anon.withToken(created.adminToken);
    await admin.uploadModel(sid, encodeModel(global));
    // A third participant never sends: the round stays open (closing it, below, is O(model) work of its own).
    const tokens = [(await anon.join(created.joinCode)).token, (await anon.join(created.joinCode)).token, (await anon.join(created.joinCode)).token];
    await admin.openRound(sid);
    const trained = SHAPES.filter(([n]) => TRAINED(n));
    const sent = [
      { n: 3, body: encodeUpdate(randomTensors(trained, random, 0.01), { round: 1, baseVersion: 0, numExamples: 3, metrics: {} }, 'F32') },
      { n: 5, body: encodeUpdate(randomTensors(trained, random, 0.01), { round: 1, baseVersion: 0, numExamples: 5, metrics: {} }, 'F16') },
    ];
    const url = `${server.url}/api/sessions/${sid}/rounds/1/update`;
    const peaks: number[] = [];
    for (let i = 0; i < sent.length; i++) {
      const { result, peak, low, samples } = await peakHeldGrowth(() => putSliced(url, tokens[i], sent[i].body));
      expect(result.status, JSON.stringify(result.json)).toBe(200);
      peaks.push(peak);
      console.log(`stream-memory: update ${i}: ${samples} samples, held growth from ${(low / MiB).toFixed(2)} to ${(peak / MiB).toFixed(2)} MiB`);
      // Sampled throughout (a 16-32 MiB body takes many 2 ms ticks), and nothing fell away below the baseline that could hide growth.
      expect(samples).toBeGreaterThan(10);
      expect(low).toBeGreaterThan(-MiB);
      // Whole-body buffering would hold at least the body (plus its decoded copy for F16).
      expect(peak, `update ${i}: ${sent[i].body.byteLength} bytes sent, held memory grew by ${peak} bytes at most`).toBeLessThan(sent[i].body.byteLength / 4);
    }
    console.log(
      `stream-memory: bodies ${sent.map((s) => (s.body.byteLength / MiB).toFixed(1)).join(' / ')} MiB; peak held ArrayBuffer growth ${peaks.map((p) => (p / MiB).toFixed(2)).join(' / ')} MiB`,
    );
    expect(readdirSync(join(dir.path, 'tmp'))).toEqual([]);

    const info = await admin.closeRound(sid, 1);
    expect([info.state, info.resultVersion, info.accepted]).toEqual(['closed', 1, 2]);
    const published = decodeModel(await admin.downloadModel(sid, 1));
    // The values the coordinator saw (the F16 one widened), decoded independently of its reader.
    const shapes = new Map(trained.map(([n, s]) => [n, s] as const));
    const deltas = sent.map((s) => decodeUpdate(s.body, shapes).deltas);
    const total = sent[0].n + sent[1].n;
    for (const [name, g] of global) {
      const p = published.get(name)!.data;
      if (!TRAINED(name)) {
        expectIdenticalNumbers(p, g.data);
        continue;
      }
      const d0 = deltas[0].get(name)!.data;
      const d1 = deltas[1].get(name)!.data;
      const expected = new Float32Array(g.data.length);
      // The float64 running sum 0 + w₀d₀ + w₁d₁, times 1/Σw, added to g and rounded to float32.
      for (let i = 0; i < expected.length; i++) expected[i] = g.data[i] + (sent[0].n * d0[i] + sent[1].n * d1[i]) * (1 / total);
      let mismatches = 0;
      for (let i = 0; i < p.length; i++) if (p[i] !== expected[i]) mismatches++;
      expect(mismatches, name).toBe(0);
    }
    // And the textbook formula, computed term by term in float64, to float32 precision.
    const formula = fedAvgExpected(
      global,
      sent.map((s, i) => ({ n: s.n, deltas: deltas[i] as Map<string, NamedTensor> })),
    );
    for (const [name, t] of published) expect(maxRelativeError(t.data, formula.get(name)!), name).toBeLessThan(1e-6);
  });

  it('a cut-off body and a refused one leave no temp file and change nothing; the honest retry is accepted', async () => {
    const random = seeded(405);
    const anon = new CoragClient(server.url);
    const created = await anon.createSession({
      name: 'stream-refusals',
      models: { reader: 'r', passageEncoder: 'p', embeddingDim: 8 },
      roundPolicy: { minClients: 2, minUpdates: 1, deadlineSeconds: 600 },
      trainedPrefixes: TRAINED_PREFIXES,
    });
    const sid = created.session.id;
    const admin = anon.withToken(created.adminToken);
    await admin.uploadModel(sid, encodeModel(randomTensors(MODEL_SHAPES, random)));
    const token = (await anon.join(created.joinCode)).token;
    await anon.join(created.joinCode);
    await admin.openRound(sid);
    const before = JSON.stringify(await admin.round(sid, 1));
    const honest = encodeUpdate(randomTensors(trainedShapes(), random, 0.1), { round: 1, baseVersion: 0, numExamples: 2, metrics: {} });
    const url = new URL(`${server.url}/api/sessions/${sid}/rounds/1/update`);
    // Half the body (it lands in a temp file), then the connection drops.
    let midway: string[] = [];
    await new Promise<void>((resolve) => {
      const req = request(url, {
        method: 'PUT',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/octet-stream', 'content-length': String(honest.byteLength) },
      });
      req.on('error', () => resolve());
      req.write(honest.subarray(0, honest.byteLength >> 1), () =>
        setTimeout(() => {
          midway = readdirSync(join(dir.path, 'tmp'));
          req.destroy();
          resolve();
        }, 100),
      );
    });
    expect(midway).toHaveLength(1);
    for (let i = 0; i < 50 && readdirSync(join(dir.path, 'tmp')).length > 0; i++) await new Promise((r) => setTimeout(r, 20));
    expect(readdirSync(join(dir.path, 'tmp'))).toEqual([]);
    expect(JSON.stringify(await admin.round(sid, 1))).toBe(before);
    // A whole body with a NaN in its last value: refused after it was on disk.
    const poisoned = Uint8Array.from(honest);
    new DataView(poisoned.buffer).setFloat32(poisoned.byteLength - 4, Number.NaN, true);
    const refused = await putSliced(url.href, token, poisoned);
    expect([refused.status, refused.json.error]).toEqual([400, 'non_finite']);
    expect(readdirSync(join(dir.path, 'tmp'))).toEqual([]);
    expect(JSON.stringify(await admin.round(sid, 1))).toBe(before);
    const accepted = await putSliced(url.href, token, honest);
    expect([accepted.status, accepted.json.accepted]).toEqual([200, 1]);
    expect(readdirSync(join(dir.path, 'tmp'))).toEqual([]);
  });

  it("deletes update bodies a crash left in the data folder's tmp/ when the coordinator starts", async () => {
    const other = tempDir();
    try {
      mkdirSync(join(other.path, 'tmp'), { recursive: true });
      writeFileSync(join(other.path, 'tmp', 'update-left-by-a-crash.part'), new Uint8Array(1000));
      const coordinator = new Coordinator({ dataDir: other.path });
      expect(readdirSync(join(other.path, 'tmp'))).toEqual([]);
      await coordinator.close();
    } finally {
      other.remove();
    }
  });
});
