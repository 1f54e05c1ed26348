/**
 * Should the browser store use voy-search (a k-d tree in WebAssembly) instead of our exact
 * inner-product index? Both run in headless Chromium over the same synthetic 768-d embeddings
 * (a 64-centre Gaussian mixture); voy gets the MIPS → L2 augmentation (bench/voy/entry.ts).
 * Reports build time, median query time (after a warm-up) and voy's recall@k against the exact
 * top k. `npx tsx bench/voy-search.bench.ts [sizes, default 10000,100000] [--k 40] [--queries 20]`
 */
import { startBrowserHarness } from '../test/browser/harness';
import type { VoyRun } from './voy/entry';

const args = process.argv.slice(2);
const flag = (name: string, fallback: number) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : fallback;
};
const sizes = (args.find((a) => /^\d+(,\d+)*$/.test(a)) ?? '10000,100000').split(',').map(Number);
const k = flag('k', 40);
const queries = flag('queries', 20);
const dim = flag('dim', 768);

const harness = await startBrowserHarness({ name: 'voy-search', entry: 'bench/voy/entry.ts' });
try {
  const rows: VoyRun[] = [];
  for (const [i, n] of sizes.entries()) {
    process.stdout.write(`[${i + 1}/${sizes.length}] n = ${n.toLocaleString('en')} × ${dim} ...\n`);
    const r = await harness.call<VoyRun>('run', n, dim, k, queries, 7 + i, args.includes('--unit-norm'));
    rows.push(r);
    process.stdout.write(`    ${JSON.stringify(r)}\n`);
  }
  const f = (x: number | null, d = 1) => (x === null ? '—' : x.toFixed(d));
  console.log(`\n| passages × ${dim} | exact build ms | exact query ms | voy build ms | voy query ms | voy / exact query time | voy recall@${k} |`);
  console.log('| ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const r of rows) {
    const ratio = r.voyQueryMs === null ? '—' : (r.voyQueryMs / r.exactQueryMs).toFixed(2) + '×';
    console.log(`| ${r.n.toLocaleString('en')} | ${f(r.exactBuildMs, 0)} | ${f(r.exactQueryMs)} | ${f(r.voyBuildMs, 0)} | ${f(r.voyQueryMs)} | ${ratio} | ${r.recallAtK === null ? `failed: ${r.voyError}` : r.recallAtK.toFixed(3)} |`);
  }
} finally {
  await harness.close();
}
