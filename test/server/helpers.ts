/** Shared fixtures for coordinator tests: a temp data folder, a server on 127.0.0.1, random models. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildApp, type AppOptions, type CoordinatorApp } from '../../server/app';
import type { NamedTensor } from '../../src/federated/codec';
export { maxRelativeError } from '../../src/model/numerics';

export function tempDir(): { path: string; remove: () => void } {
  const path = mkdtempSync(join(tmpdir(), 'corag-test-'));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

/**
 * Tests join many clients from 127.0.0.1 within seconds, so the per-address join limit is lifted
 * unless a test sets it (test/server/edge.test.ts checks the limit itself).
 */
export async function startServer(options: AppOptions): Promise<CoordinatorApp & { url: string }> {
  const built = await buildApp({ joinsPerMinutePerIp: 1_000_000, ...options });
  const url = await built.app.listen({ port: 0, host: '127.0.0.1' });
  return { ...built, url };
}

export { seededRandom as seeded } from '../../src/util/random';

export const MODEL_SHAPES: ReadonlyArray<[string, number[]]> = [
  ['reader.encoder.block.0.layer.0.SelfAttention.q.weight', [16, 16]],
  ['reader.shared.weight', [50, 16]],
  ['query_encoder.embeddings.word_embeddings.weight', [40, 8]],
  ['passage_encoder.embeddings.word_embeddings.weight', [40, 8]],
];
export const TRAINED_PREFIXES = ['reader.', 'query_encoder.'];

export function randomTensors(shapes: ReadonlyArray<[string, number[]]>, random: () => number, scale = 1): Map<string, NamedTensor> {
  const out = new Map<string, NamedTensor>();
  for (const [name, shape] of shapes) {
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
    for (let i = 0; i < data.length; i++) data[i] = (random() * 2 - 1) * scale;
    out.set(name, { shape, data });
  }
  return out;
}

export const trainedShapes = () => MODEL_SHAPES.filter(([n]) => TRAINED_PREFIXES.some((p) => n.startsWith(p)));

/** Expected FedAvg result, computed independently in float64: g + Σ n_i d_i / Σ n_i. */
export function fedAvgExpected(
  global: ReadonlyMap<string, NamedTensor>,
  updates: ReadonlyArray<{ n: number; deltas: ReadonlyMap<string, NamedTensor> }>,
): Map<string, Float64Array> {
  const total = updates.reduce((a, u) => a + u.n, 0);
  const out = new Map<string, Float64Array>();
  for (const [name, g] of global) {
    const r = Float64Array.from(g.data);
    for (const u of updates) {
      const d = u.deltas.get(name);
      if (d) for (let i = 0; i < r.length; i++) r[i] += (u.n * d.data[i]) / total;
    }
    out.set(name, r);
  }
  return out;
}
