/**
 * Transformers.js side by side (issue 20): our tfjs passage encoder and `@huggingface/transformers`
 * 3.x (ONNX Runtime Web) embedding the same passages with the same BERT weights in one headless
 * Chromium page (the browser suite's flags; WebGPU is SwiftShader on a machine without a GPU),
 * on wasm and on WebGPU. Reports passages/s of each, their ratio, and the largest per-passage
 * relative difference of the mean-pooled (Contriever) embeddings. On wasm runs also the product's
 * ONNX path (the adopted one: the graph written from TypeScript, src/model/bert/onnx-graph.ts, on
 * onnxruntime-web's wasm build, as workers/embed.worker.ts runs it).
 *
 * The ONNX files are a lab export (no internet, no ONNX on the hub mirror): first run
 *   /usr/bin/python3 scripts/reference/export_bert_onnx.py --from ../shared/fixtures/hf-reference/bert-tiny --out .onnx/bert-tiny --check
 *   /usr/bin/python3 scripts/reference/export_bert_onnx.py --from public/models/demo/retriever --out .onnx/demo-retriever
 *   /usr/bin/python3 scripts/reference/export_bert_onnx.py --random-bert-base --tokenizer public/models/tokenizers/bert-base-uncased --out .onnx/bert-base-random
 * Each .onnx/<model>/ holds config.json, model.safetensors (what ours loads), the tokenizer files
 * and onnx/model.onnx (what transformers.js loads), all with the same numbers.
 *
 * Usage: npm run bench:transformers-js -- [--runs demo-retriever:wasm:347:256,...] [--batch 16]
 *   [--reps 2] [--out results/transformers-js]
 * A run is model:device:passages:maxLength (device wasm or webgpu; passages are the first N demo
 * passages). Prints a markdown table and writes <out>.md and <out>.json.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { passageRetrieverText, type PassageText } from '../src/corag/retrieve';
import type { BackendReport } from '../src/model/backend';
import { startBrowserHarness, type BrowserHarness } from '../test/browser/harness';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const onnxRoot = join(repoRoot, '.onnx');

type Device = 'wasm' | 'webgpu';

interface Run {
  model: string;
  device: Device;
  passages: number;
  maxLength: number;
}

interface Options {
  runs: Run[];
  batch: number;
  reps: number;
  out: string;
}

const DEFAULT_RUNS = 'demo-retriever:wasm:347:256,demo-retriever:webgpu:32:128,bert-base-random:wasm:32:128,bert-base-random:webgpu:2:32';

function parseRun(spec: string): Run {
  const [model, device, passages, maxLength] = spec.split(':');
  if (!/^[\w-]+$/.test(model ?? '')) throw new Error(`run "${spec}": model must be a folder name under .onnx/`);
  if (device !== 'wasm' && device !== 'webgpu') throw new Error(`run "${spec}": device must be wasm or webgpu`);
  const n = Number(passages);
  const L = Number(maxLength);
  if (!Number.isInteger(n) || n < 1 || !Number.isInteger(L) || L < 3 || L > 512) throw new Error(`run "${spec}": passages ≥ 1 and 3 ≤ maxLength ≤ 512`);
  return { model, device, passages: n, maxLength: L };
}

function parseArgs(argv: string[]): Options {
  const o: Options = { runs: DEFAULT_RUNS.split(',').map(parseRun), batch: 16, reps: 2, out: 'results/transformers-js' };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => argv[++i] ?? '';
    if (a === '--runs') o.runs = next().split(',').filter(Boolean).map(parseRun);
    else if (a === '--batch') o.batch = Number(next());
    else if (a === '--reps') o.reps = Number(next());
    else if (a === '--out') o.out = next();
    else if (a === '--help') {
      console.log(`npm run bench:transformers-js -- [--runs ${DEFAULT_RUNS}] [--batch 16] [--reps 2] [--out results/transformers-js]`);
      process.exit(0);
    } else throw new Error(`unknown option ${a}`);
  }
  if (!Number.isInteger(o.batch) || o.batch < 1) throw new Error('--batch must be a positive integer');
  if (!Number.isInteger(o.reps) || o.reps < 1) throw new Error('--reps must be a positive integer');
  return o;
}

interface Row extends Run {
  backend: string;
  ortThreads: string;
  hidden: number;
  layers: number;
  /** Seconds per timed rep, alternating ours / theirs. */
  oursS: number[];
  theirsS: number[];
  oursPerS: number;
  theirsPerS: number;
  /** theirs / ours, best reps. */
  speedRatio: number;
  /** Per passage max |ours − theirs| / max |ours|: worst passage and mean. */
  maxRelDiff: number;
  meanRelDiff: number;
  tokenizerMismatches: number;
  /** Texts whose ids differ when transformers.js truncates itself (it drops [SEP]). */
  nativeTruncationMismatches: number;
  /** The product's ONNX path (wasm runs only). */
  product?: {
    seconds: number[];
    perS: number;
    /** product / ours, best reps. */
    speedRatio: number;
    maxRelDiff: number;
    meanRelDiff: number;
    writeSeconds: number;
    sessionSeconds: number;
    megabytes: number;
  };
}

interface EmbedRun {
  seconds: number;
  passagesPerSecond: number;
}

const DEMO_TEXTS = readFileSync(join(repoRoot, 'public/demo/passages.jsonl'), 'utf8')
  .split('\n')
  .filter((l) => l.trim())
  .map((l) => passageRetrieverText(JSON.parse(l) as PassageText));

async function measure(h: BrowserHarness, run: Run, o: Options): Promise<Row> {
  const texts = DEMO_TEXTS.slice(0, run.passages);
  const report = await h.call<BackendReport>('useOurBackend', run.device);
  const ortThreads = run.device === 'wasm' ? String(report.threads ?? 1) : '–';
  const { hidden, layers } = await h.call<{ hidden: number; layers: number }>('loadOurs', run.model);
  await h.call('loadTheirs', run.model, run.device);
  const withProduct = run.device === 'wasm';
  const load = withProduct ? await h.call<{ writeSeconds: number; sessionSeconds: number; megabytes: number }>('loadProduct', run.model) : undefined;
  const tag = `${run.model}@${run.device}`;
  // Warm-up (shader compilation, ORT session's first run) on one batch.
  const warm = texts.slice(0, Math.min(o.batch, texts.length));
  await h.call('embedOurs', 'warm-ours', run.model, warm, o.batch, run.maxLength);
  await h.call('embedTheirs', 'warm-theirs', run.model, run.device, warm, o.batch, run.maxLength);
  if (withProduct) await h.call('embedProduct', 'warm-product', run.model, warm, o.batch, run.maxLength);
  const oursS: number[] = [];
  const theirsS: number[] = [];
  const productS: number[] = [];
  for (let r = 0; r < o.reps; r++) {
    // Alternating, so all see the same machine load.
    oursS.push((await h.call<EmbedRun>('embedOurs', `ours ${tag}`, run.model, texts, o.batch, run.maxLength)).seconds);
    theirsS.push((await h.call<EmbedRun>('embedTheirs', `theirs ${tag}`, run.model, run.device, texts, o.batch, run.maxLength)).seconds);
    if (withProduct) productS.push((await h.call<EmbedRun>('embedProduct', `product ${tag}`, run.model, texts, o.batch, run.maxLength)).seconds);
    console.error(
      `[bench] ${tag} rep ${r + 1}: ours ${oursS.at(-1)!.toFixed(2)} s, transformers.js ${theirsS.at(-1)!.toFixed(2)} s` +
        `${withProduct ? `, product ONNX ${productS.at(-1)!.toFixed(2)} s` : ''} (${texts.length} passages)`,
    );
  }
  const diff = await h.call<{ max: number; mean: number }>('compare', `theirs ${tag}`, `ours ${tag}`, hidden);
  const productDiff = withProduct ? await h.call<{ max: number; mean: number }>('compare', `product ${tag}`, `ours ${tag}`, hidden) : undefined;
  const tok = await h.call<{ mismatched: number; example?: string; nativeTruncationMismatched: number }>(
    'tokenizerMismatches',
    run.model,
    texts,
    run.maxLength,
  );
  if (tok.mismatched) console.error(`[bench] ${tag}: ${tok.mismatched} texts tokenized differently, e.g. "${tok.example}"`);
  const oursPerS = texts.length / Math.min(...oursS);
  const theirsPerS = texts.length / Math.min(...theirsS);
  return {
    ...run,
    backend: report.detail,
    ortThreads,
    hidden,
    layers,
    oursS,
    theirsS,
    oursPerS,
    theirsPerS,
    speedRatio: theirsPerS / oursPerS,
    maxRelDiff: diff.max,
    meanRelDiff: diff.mean,
    tokenizerMismatches: tok.mismatched,
    nativeTruncationMismatches: tok.nativeTruncationMismatched,
    ...(load && productDiff
      ? {
          product: {
            seconds: productS,
            perS: texts.length / Math.min(...productS),
            speedRatio: texts.length / Math.min(...productS) / oursPerS,
            maxRelDiff: productDiff.max,
            meanRelDiff: productDiff.mean,
            ...load,
          },
        }
      : {}),
  };
}

function table(rows: Row[], fixture: Record<string, { ours: number; theirs: number; oursVsTheirs: number }>, o: Options): string {
  const lines = [
    `batch ${o.batch}, best of ${o.reps} alternating reps after one warm-up batch; tokenization and readback included on both sides; both cut long passages keeping [SEP]`,
    '',
    '| model | device | passages × max tokens | ours: tfjs backend | ours passages/s | transformers.js passages/s | transformers.js / ours | max rel. diff (mean) | token ids differ (with transformers.js truncation) |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ...rows.map(
      (r) =>
        `| ${r.model} (${r.layers} × ${r.hidden}) | ${r.device}${r.device === 'wasm' ? ` (${r.ortThreads} thread${r.ortThreads === '1' ? '' : 's'} each)` : ''} | ${r.passages} × ${r.maxLength} | ${r.backend} | ${r.oursPerS.toFixed(2)} | ${r.theirsPerS.toFixed(2)} | ${r.speedRatio.toFixed(2)}× | ${r.maxRelDiff.toExponential(1)} (${r.meanRelDiff.toExponential(1)}) | ${r.tokenizerMismatches} / ${r.passages} (${r.nativeTruncationMismatches}) |`,
    ),
    '',
    "Product ONNX path (adopted; wasm runs): the graph written from TypeScript on onnxruntime-web's wasm build, as the embed worker runs it, vs ours (tfjs):",
    '',
    '| model | passages × max tokens | ours passages/s | product ONNX passages/s (reps s) | product / ours | max rel. diff vs ours (mean) | graph write s / session s / MB |',
    '| --- | --- | --- | --- | --- | --- | --- |',
    ...rows
      .filter((r) => r.product)
      .map((r) => {
        const p = r.product!;
        return `| ${r.model} (${r.layers} × ${r.hidden}) | ${r.passages} × ${r.maxLength} | ${r.oursPerS.toFixed(2)} | ${p.perS.toFixed(2)} (${p.seconds.map((x) => x.toFixed(1)).join(', ')}) | ${p.speedRatio.toFixed(2)}× | ${p.maxRelDiff.toExponential(1)} (${p.meanRelDiff.toExponential(1)}) | ${p.writeSeconds.toFixed(2)} / ${p.sessionSeconds.toFixed(2)} / ${p.megabytes.toFixed(1)} |`;
      }),
    '',
    'bert-tiny fixture (token ids from ../shared/fixtures/hf-reference/bert-tiny/expected.safetensors), max rel. diff of p_embedding:',
    '',
    '| device | ours vs PyTorch | transformers.js vs PyTorch | transformers.js vs ours |',
    '| --- | --- | --- | --- |',
    ...Object.entries(fixture).map(([d, f]) => `| ${d} | ${f.ours.toExponential(1)} | ${f.theirs.toExponential(1)} | ${f.oursVsTheirs.toExponential(1)} |`),
  ];
  return lines.join('\n');
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  for (const model of new Set(['bert-tiny', ...o.runs.map((r) => r.model)])) {
    if (!existsSync(join(onnxRoot, model, 'onnx', 'model.onnx')))
      throw new Error(`.onnx/${model}/onnx/model.onnx is missing: run scripts/reference/export_bert_onnx.py first (see the header of this file)`);
  }
  // ORT's .wasm files from the copy transformers.js itself imports (its package exports no package.json).
  const fromTransformers = createRequire(createRequire(import.meta.url).resolve('@huggingface/transformers'));
  const ortDist = dirname(fromTransformers.resolve('onnxruntime-web'));
  const h = await startBrowserHarness({
    name: 'transformers-js-bench',
    entry: 'bench/transformers-js.entry.ts',
    mounts: { '/models/': onnxRoot, '/ort/': ortDist, '/fixtures/': resolve(repoRoot, '../shared/fixtures/hf-reference') },
  });
  try {
    const fixture: Record<string, { ours: number; theirs: number; oursVsTheirs: number }> = {};
    for (const device of new Set(o.runs.map((r) => r.device))) {
      await h.call('useOurBackend', device);
      fixture[device] = await h.call('fixtureCheck', device);
      console.error(`[bench] bert-tiny fixture on ${device}: ${JSON.stringify(fixture[device])}`);
    }
    const rows: Row[] = [];
    for (const run of o.runs) rows.push(await measure(h, run, o));
    const md = table(rows, fixture, o);
    console.log(md);
    await mkdir(dirname(resolve(repoRoot, o.out)), { recursive: true });
    await writeFile(resolve(repoRoot, `${o.out}.md`), md + '\n');
    await writeFile(resolve(repoRoot, `${o.out}.json`), JSON.stringify({ options: o, fixture, rows, errors: h.errors }, null, 2) + '\n');
  } finally {
    await h.close();
  }
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    console.error(e);
    process.exit(1);
  },
);
