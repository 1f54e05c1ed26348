/**
 * Embedding the 347 demo passages with the demo retriever, batches in input order against
 * batches of similar length (src/corag/retrieve.ts `sortByLength`), alternating in one process so
 * both see the same machine load. Node, wasm backend (1 thread), batch 16 as the page's worker.
 *
 * Usage: npx tsx bench/embed-order.bench.ts [--reps 2]
 */
import { ModelBundle } from '../src/corag/model-bundle';
import { embedPassages } from '../src/corag/retrieve';
import { initBackend } from '../src/model/backend';
import { folderModelSource } from '../src/platform/node/folder-source';
import { demoPassages } from '../server/demo';

const reps = Number(process.argv[process.argv.indexOf('--reps') + 1] || 2) || 2;
const folder = (p: string) => new URL(`../public/models/demo/${p}/`, import.meta.url).pathname;

async function main(): Promise<void> {
  const backend = await initBackend(['wasm', 'cpu']);
  const bundle = await ModelBundle.fromCheckpoints({ reader: folderModelSource(folder('reader')), retriever: folderModelSource(folder('retriever')) });
  const passages = demoPassages();
  await embedPassages(bundle, passages.slice(0, 32), { batchSize: 16 }); // warm-up
  const times: Record<'input order' | 'by length', number[]> = { 'input order': [], 'by length': [] };
  for (let r = 0; r < reps; r++) {
    for (const [label, sortByLength] of [
      ['input order', false],
      ['by length', true],
    ] as const) {
      const t0 = performance.now();
      await embedPassages(bundle, passages, { batchSize: 16, sortByLength });
      times[label].push((performance.now() - t0) / 1000);
    }
  }
  console.log(`${backend.name} (${backend.detail}), ${passages.length} demo passages, batch 16`);
  console.log('| batches | seconds per run | passages/s (best) |\n| --- | --- | --- |');
  for (const [label, t] of Object.entries(times))
    console.log(`| ${label} | ${t.map((x) => x.toFixed(1)).join(', ')} | ${(passages.length / Math.min(...t)).toFixed(1)} |`);
  bundle.dispose();
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    console.error(e);
    process.exit(1);
  },
);
