/**
 * Page side of bench/voy-search.bench.ts: builds the exact index (src/retrieval/vector-index.ts)
 * and voy-search's k-d tree over the same synthetic embeddings in the browser and times both.
 *
 * voy ranks by Euclidean distance, our retrieval by inner product, so voy gets the standard
 * MIPS → L2 augmentation: each passage vector x gains one coordinate sqrt(M² − |x|²) (M = the
 * largest norm) and each query a 0, after which the L2-nearest passage is the one with the largest
 * inner product.
 */
// @ts-expect-error voy ships types for its bundler entry only, not for the wasm-bindgen glue it wraps.
import * as voyBindings from 'voy-search/voy_search_bg.js';
import voyWasmUrl from 'voy-search/voy_search_bg.wasm?url';
import { ExactVectorIndex } from '../../src/retrieval/vector-index';
import { seededRandom } from '../../src/util/random';
import { exposeToTests } from '../../test/browser/page-api';

// voy's own entry imports the .wasm as an ES module (wasm-bindgen "bundler" target), which neither
// Vite nor browsers do without a plugin; instantiate it by hand with the same glue.
async function loadVoy(): Promise<typeof voyBindings> {
  const { instance } = await WebAssembly.instantiateStreaming(fetch(voyWasmUrl), { './voy_search_bg.js': voyBindings as unknown as WebAssembly.ModuleImports });
  (voyBindings as unknown as { __wbg_set_wasm(w: unknown): void }).__wbg_set_wasm(instance.exports);
  return voyBindings;
}

/** Gaussian mixture: `clusters` centres, points = centre + noise (embeddings have structure). */
function mixture(n: number, dim: number, random: () => number, centres: Float32Array[]): Float32Array {
  const out = new Float32Array(n * dim);
  const gauss = () => Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
  for (let i = 0; i < n; i++) {
    const c = centres[Math.floor(random() * centres.length)];
    for (let d = 0; d < dim; d++) out[i * dim + d] = c[d] + 0.6 * gauss();
  }
  return out;
}

function normalizeRows(m: Float32Array, dim: number): void {
  for (let i = 0; i < m.length; i += dim) {
    let s = 0;
    for (let d = 0; d < dim; d++) s += m[i + d] ** 2;
    const inv = 1 / Math.sqrt(s);
    for (let d = 0; d < dim; d++) m[i + d] *= inv;
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

export interface VoyRun {
  n: number;
  dim: number;
  k: number;
  queries: number;
  exactBuildMs: number;
  exactQueryMs: number;
  voyBuildMs: number | null;
  voyQueryMs: number | null;
  recallAtK: number | null;
  voyError?: string;
}

async function run(n: number, dim: number, k: number, queries: number, seed: number, unitNorm = false): Promise<VoyRun> {
  const random = seededRandom(seed);
  const gauss = () => Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
  const centres = Array.from({ length: 64 }, () => Float32Array.from({ length: dim }, gauss));
  const data = mixture(n, dim, random, centres);
  const qs = mixture(queries, dim, random, centres);
  if (unitNorm) for (const m of [data, qs]) normalizeRows(m, dim);
  const rows = (m: Float32Array, i: number) => m.subarray(i * dim, (i + 1) * dim);

  let t = performance.now();
  const exact = new ExactVectorIndex(dim, n);
  const ids = Array.from({ length: n }, (_, i) => i);
  exact.add(ids, Array.from({ length: n }, (_, i) => rows(data, i)));
  const exactBuildMs = performance.now() - t;
  // One warm-up query each, then the median of the rest.
  exact.search(rows(qs, 0), k);
  const exactTimes: number[] = [];
  const truth: Set<number>[] = [];
  for (let q = 0; q < queries; q++) {
    t = performance.now();
    const hits = exact.search(rows(qs, q), k);
    exactTimes.push(performance.now() - t);
    truth.push(new Set(hits.map((h) => h.id)));
  }
  const base = { n, dim, k, queries, exactBuildMs, exactQueryMs: median(exactTimes) };

  try {
    const voy = await loadVoy();
    let maxNorm2 = 0;
    for (let i = 0; i < n; i++) {
      let s = 0;
      for (const v of rows(data, i)) s += v * v;
      maxNorm2 = Math.max(maxNorm2, s);
    }
    t = performance.now();
    const embeddings = Array.from({ length: n }, (_, i) => {
      const x = rows(data, i);
      let s = 0;
      for (const v of x) s += v * v;
      return { id: String(i), title: '', url: '', embeddings: unitNorm ? [...x] : [...x, Math.sqrt(Math.max(0, maxNorm2 - s))] };
    });
    const index = new voy.Voy({ embeddings });
    const voyBuildMs = performance.now() - t;
    const query = (q: number) => { const v = new Float32Array(unitNorm ? dim : dim + 1); v.set(rows(qs, q)); return v; };
    index.search(query(0), k);
    const voyTimes: number[] = [];
    let found = 0;
    for (let q = 0; q < queries; q++) {
      t = performance.now();
      const r = index.search(query(q), k);
      voyTimes.push(performance.now() - t);
      for (const nb of r.neighbors) if (truth[q].has(Number(nb.id))) found++;
    }
    index.free();
    return { ...base, voyBuildMs, voyQueryMs: median(voyTimes), recallAtK: found / (queries * k) };
  } catch (e) {
    return { ...base, voyBuildMs: null, voyQueryMs: null, recallAtK: null, voyError: (e as Error).message };
  }
}

exposeToTests({ run });
