/**
 * `npm run bench:server`: coordinator hot paths, as tables on stdout and in docs/BENCH-SERVER.md.
 * - Aggregation: decode (validate) + add n·Δ into the float64 running sum, GB/s of F32 deltas, vs
 *   clients and model size; baseline = a bare loop doing the same float64 a[i] += w·d[i] over the
 *   same float32 deltas, without decoding or validation.
 * - Search: exact top-k inner product vs store size (1k/10k/100k × 768); baseline = the same
 *   float32 dot products into a JS number, without top-k selection.
 * Every timing (measured and baseline) is a function called once to warm the JIT, then the
 * median of several timed calls, so a ratio compares code, not JIT state.
 * - Search over HTTP with the stored embeddings (`withEmbeddings`, which training asks for so PDist
 *   need not re-embed): latency and response size on a real coordinator (10k × 768 store);
 *   baseline = the same search without embeddings.
 * - Aggregation strategies: each robust strategy's close-time aggregation (stored deltas read back
 *   in chunks) against FedAvg's running sum on the same deltas.
 * (The durable sum-file write per accept is disk-bound and excluded; see docs/COORDINATOR.md.)
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildApp } from '../server/app';
import { CoragClient } from '../src/federated/client';
import { decodeUpdate, encodeUpdate, type NamedTensor } from '../src/federated/codec';
import { addWeighted, emptyRunningSum } from '../src/federated/strategy';
import { ExactVectorIndex } from '../src/retrieval/vector-index';
import { throughputTable } from '../scripts/robustness/throughput';

const rand = (() => {
  let s = 12345;
  return () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32) * 2 - 1;
})();
const ms = (f: () => void) => {
  const t = performance.now();
  f();
  return performance.now() - t;
};
/** Aggregation baseline: the running sum's own arithmetic (float64 accumulator, float32 delta), no decoding or validation. */
function bareSum(acc: Float64Array, d: Float32Array, weight: number, clients: number): void {
  for (let c = 0; c < clients; c++) for (let i = 0; i < acc.length; i++) acc[i] += weight * d[i];
}
/** Search baseline: the index's own dot products (float32 rows and query, JS-number sum), no top-k selection. */
function scoreAll(flat: Float32Array, q: Float32Array, scores: Float64Array, n: number, dim: number): void {
  for (let i = 0; i < n; i++) {
    let s = 0;
    const base = i * dim;
    for (let j = 0; j < dim; j++) s += q[j] * flat[base + j];
    scores[i] = s;
  }
}
/** Warms `f` with one call, then returns the median wall time (ms) of `runs` timed calls. */
const medianMs = (f: () => void, runs = 5) => {
  f();
  const times = Array.from({ length: runs }, () => ms(f)).sort((a, b) => a - b);
  return times[Math.floor(runs / 2)];
};

const lines: string[] = ['# Coordinator benchmark', '', `Node ${process.version}, ${new Date().toISOString()}`, '', '## Aggregation (validate + running sum)', '',
  'Each time: one warm-up call, then the median of 5 timed calls. Baseline: the same float64 a[i] += w·d[i] over the same float32 deltas, without decoding or validation.', '',
  '| params | clients | GB/s | baseline GB/s | ratio |', '|---:|---:|---:|---:|---:|'];
for (const params of [1_000_000, 10_000_000]) {
  const shapes = new Map<string, number[]>([['w', [params]]]);
  const delta: Map<string, NamedTensor> = new Map([['w', { shape: [params], data: Float32Array.from({ length: params }, rand) }]]);
  const body = encodeUpdate(delta, { round: 1, baseVersion: 0, numExamples: 3, metrics: {} });
  const d = delta.get('w')!.data;
  for (const clients of [4, 16]) {
    const sum = emptyRunningSum(shapes);
    const t = medianMs(() => {
      for (let c = 0; c < clients; c++) {
        const u = decodeUpdate(body, shapes);
        addWeighted(sum, u.deltas, u.numExamples);
      }
    });
    const acc = new Float64Array(params);
    const tb = medianMs(() => bareSum(acc, d, 3, clients));
    const gb = (clients * params * 4) / 1e9;
    lines.push(`| ${params.toLocaleString('en')} | ${clients} | ${(gb / (t / 1e3)).toFixed(2)} | ${(gb / (tb / 1e3)).toFixed(2)} | ${(tb / t).toFixed(2)} |`);
  }
}

lines.push('', '## Search (exact top-10, dim 768)', '', 'Each time: one warm-up call, then the median of 5 timed calls. Baseline: the same float32 dot products into a JS number, without top-k selection.', '', '| passages | ms / query | baseline ms (score only) | ratio |', '|---:|---:|---:|---:|');
const dim = 768;
for (const n of [1_000, 10_000, 100_000]) {
  const index = new ExactVectorIndex(dim, n);
  const row = new Float32Array(dim);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < dim; j++) row[j] = rand();
    index.add([i + 1], [row]);
  }
  const q = Float32Array.from({ length: dim }, rand);
  const queries = n >= 100_000 ? 5 : 20;
  const t = medianMs(() => {
    for (let r = 0; r < queries; r++) index.search(q, 10);
  }) / queries;
  const flat = new Float32Array(n * dim);
  for (let i = 0; i < flat.length; i++) flat[i] = rand();
  const scores = new Float64Array(n);
  const tb = medianMs(() => {
    for (let r = 0; r < queries; r++) scoreAll(flat, q, scores, n, dim);
  }) / queries;
  lines.push(`| ${n.toLocaleString('en')} | ${t.toFixed(2)} | ${tb.toFixed(2)} | ${(tb / t).toFixed(2)} |`);
}
lines.push('', '## Search over HTTP, with the stored embeddings (10,000 × 768 store, 127.0.0.1)', '',
  '| k | ms / query | KiB | baseline ms (texts only) | baseline KiB | time ratio |', '|---:|---:|---:|---:|---:|---:|');
{
  const dir = mkdtempSync(join(tmpdir(), 'corag-bench-'));
  const { app, coordinator } = await buildApp({ dataDir: dir, rateLimitPerMinute: 1_000_000, joinsPerMinutePerIp: 1_000_000 });
  const url = await app.listen({ port: 0, host: '127.0.0.1' });
  try {
    const anon = new CoragClient(url);
    const created = await anon.createSession({ name: 'bench', models: { reader: 'r', passageEncoder: 'enc', embeddingDim: dim } });
    const joined = await anon.join(created.joinCode, 'bench');
    // Filled through the store directly (10k HTTP adds would measure the adds, not the search).
    const models = coordinator.config(created.session.id).models;
    for (let start = 0; start < 10_000; start += 500) {
      await coordinator.passages.add(created.session.id, models, joined.clientId, Array.from({ length: 500 }, (_, i) => ({
        title: `passage ${start + i}`, text: `text of passage ${start + i} `.repeat(12), embedding: Array.from({ length: dim }, rand), encoder: 'enc',
      })));
    }
    const q = Array.from({ length: dim }, rand);
    const path = `${url}/api/sessions/${created.session.id}/passages/search`;
    const timed = async (k: number, withEmbeddings: boolean) => {
      const body = JSON.stringify({ embedding: q, k, ...(withEmbeddings ? { withEmbeddings } : {}) });
      const post = () => fetch(path, { method: 'POST', headers: { authorization: `Bearer ${joined.token}`, 'content-type': 'application/json' }, body }).then((r) => r.arrayBuffer());
      const bytes = (await post()).byteLength;
      const reps = 20;
      const t = performance.now();
      for (let r = 0; r < reps; r++) await post();
      return { ms: (performance.now() - t) / reps, kib: bytes / 1024 };
    };
    for (const k of [5, 40]) {
      const base = await timed(k, false);
      const withVectors = await timed(k, true);
      lines.push(`| ${k} | ${withVectors.ms.toFixed(2)} | ${withVectors.kib.toFixed(0)} | ${base.ms.toFixed(2)} | ${base.kib.toFixed(0)} | ${(withVectors.ms / base.ms).toFixed(2)} |`);
    }
  } finally {
    await app.close();
    rmSync(dir, { recursive: true, force: true });
  }
}
// ---- Robust aggregation strategies against FedAvg (issue 17; scripts/robustness/throughput.ts).
lines.push('', '## Aggregation strategies vs FedAvg (same deltas, same run)', '', ...throughputTable(1_000_000, 8), '', ...throughputTable(1_000_000, 32));

const table = lines.join('\n') + '\n';
process.stdout.write(table);
writeFileSync(new URL('../docs/BENCH-SERVER.md', import.meta.url), table);
