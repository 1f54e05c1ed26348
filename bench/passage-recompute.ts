/**
 * The coordinator's recompute of contributed passage embeddings (server/passage-intake.ts through
 * server/passage-encoder.ts), tfjs (Node's wasm backend) vs ONNX Runtime Web's wasm build after
 * its equality gate (issue 20), for `npm run bench:server` (`--recompute-only [--recompute-models
 * demo,bert-base] [--recompute-reps 3]`).
 *
 * Both engines are FrozenPassageEncoders on the same global bytes: `tfjs` forced, and `onnx`
 * forced (built and gated; timed once settled). Each rep embeds the same passages through the
 * encoder's own `embed` (the intake's call: title + text, ≤ 512 tokens, batches of 16), engines
 * alternating rep by rep so load from other jobs hits both; passages/s of the best rep and the
 * median. Agreement: the intake's own measure (relative L2, cosine) of ONNX's rows against
 * tfjs's, worst passage. Setup: load → ONNX settled (graph write + session + gate, in the
 * background while tfjs would already recompute). Models: the demo retriever (public/models/demo/
 * retriever, 4 × 128) on the 347 demo passages; the bert-base shape (Contriever's: 12 × 768,
 * bert-base-uncased tokenizer) with seeded random weights, on the first demo passages.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import type { PassageText } from '../src/corag/retrieve';
import { encodeModel, type NamedTensor } from '../src/federated/codec';
import { initBackend } from '../src/model/backend';
import { parseBertConfig, type BertConfig } from '../src/model/bert/config';
import { loadBertCheckpoint } from '../src/model/checkpoint';
import { tinyBertWeights } from '../src/model/tiny';
import { loadTokenizer, type TextTokenizer } from '../src/model/tokenizer';
import { folderModelSource } from '../src/platform/node/folder-source';
import { FrozenPassageEncoder } from '../server/passage-encoder';
import { embeddingAgreement } from '../server/passage-intake';

const PUBLIC = fileURLToPath(new URL('../public/', import.meta.url));

interface RecomputeModel {
  readonly name: string;
  readonly id: string;
  readonly config: BertConfig;
  readonly tokenizer: TextTokenizer;
  readonly global: Uint8Array;
  readonly passages: readonly PassageText[];
}

function demoPassages(): PassageText[] {
  return readFileSync(PUBLIC + 'demo/passages.jsonl', 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as PassageText);
}

async function demoRetriever(): Promise<RecomputeModel> {
  const bert = await loadBertCheckpoint(folderModelSource(PUBLIC + 'models/demo/retriever'));
  const tensors = new Map<string, NamedTensor>();
  for (const [n, v] of bert.params.entries()) tensors.set(`passage_encoder.${n}`, { shape: v.shape, data: (await v.data()) as Float32Array });
  bert.params.dispose();
  return {
    name: `demo retriever (${bert.config.num_hidden_layers} × ${bert.config.hidden_size})`,
    id: 'models/demo/retriever',
    config: bert.config,
    tokenizer: bert.tokenizer!,
    global: encodeModel(tensors),
    passages: demoPassages(),
  };
}

async function bertBaseShape(passages: number): Promise<RecomputeModel> {
  const config = parseBertConfig(JSON.parse(readFileSync(new URL('../test/fixtures/hub-configs/contriever.config.json', import.meta.url), 'utf8')));
  const tensors = new Map<string, NamedTensor>();
  for (const [n, t] of tinyBertWeights(config, 7)) tensors.set(`passage_encoder.${n}`, t);
  return {
    name: `bert-base shape (${config.num_hidden_layers} × ${config.hidden_size}, random weights)`,
    id: 'bert-base-random',
    config,
    tokenizer: await loadTokenizer(folderModelSource(PUBLIC + 'models/tokenizers/bert-base-uncased')),
    global: encodeModel(tensors),
    passages: demoPassages().slice(0, passages),
  };
}

const median = (xs: readonly number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

export async function passageRecomputeSection(
  progress: (line: string) => void,
  options: { readonly models: readonly string[]; readonly reps: number; readonly bertBasePassages: number },
): Promise<string[]> {
  await initBackend('wasm');
  const rows: string[] = [];
  for (const which of options.models) {
    const model = which === 'demo' ? await demoRetriever() : which === 'bert-base' ? await bertBaseShape(options.bertBasePassages) : undefined;
    if (!model) throw new Error(`--recompute-models: unknown model "${which}" (demo, bert-base)`);
    const tfjs = await FrozenPassageEncoder.fromConfig(model.config, model.tokenizer, model.id, model.global, { setting: 'tfjs' });
    const loadStarted = performance.now();
    const onnx = await FrozenPassageEncoder.fromConfig(model.config, model.tokenizer, model.id, model.global, { setting: 'onnx' });
    const report = await onnx.settled;
    const setupSeconds = (performance.now() - loadStarted) / 1000;
    if (report.engine !== 'onnx') throw new Error(`${model.name}: ONNX Runtime was refused: ${report.fallbackReason}`);
    progress(`${model.name}: ONNX set up in ${setupSeconds.toFixed(1)} s, gate ${report.gateRelativeDiff?.toExponential(1)}`);
    const times = { tfjs: [] as number[], onnx: [] as number[] };
    let last: { tfjs?: Float32Array[]; onnx?: Float32Array[] } = {};
    try {
      for (let rep = 0; rep < options.reps; rep++) {
        const order = rep % 2 === 0 ? (['tfjs', 'onnx'] as const) : (['onnx', 'tfjs'] as const);
        for (const engine of order) {
          const t0 = performance.now();
          const out = await (engine === 'tfjs' ? tfjs : onnx).embed(model.passages);
          times[engine].push((performance.now() - t0) / 1000);
          last = { ...last, [engine]: out };
          progress(`${model.name}: rep ${rep + 1} ${engine} ${times[engine].at(-1)!.toFixed(1)} s`);
        }
      }
    } finally {
      await tfjs.dispose();
      await onnx.dispose();
    }
    let worstL2 = 0;
    let worstCosine = 1;
    for (const [i, row] of last.onnx!.entries()) {
      const a = embeddingAgreement(row, last.tfjs![i]);
      worstL2 = Math.max(worstL2, a.relativeL2);
      worstCosine = Math.min(worstCosine, a.cosine);
    }
    const n = model.passages.length;
    const rate = (s: number) => (n / s).toPrecision(3);
    const best = { tfjs: Math.min(...times.tfjs), onnx: Math.min(...times.onnx) };
    const reps = (xs: number[]) => xs.map((x) => x.toFixed(1)).join(', ');
    rows.push(
      `| ${model.name} | ${n} | ${rate(best.tfjs)} / ${rate(median(times.tfjs))} (${reps(times.tfjs)}) | ${rate(best.onnx)} / ${rate(median(times.onnx))} (${reps(times.onnx)}) | **${(best.tfjs / best.onnx).toFixed(2)}×** / ${(median(times.tfjs) / median(times.onnx)).toFixed(2)}× | ${worstL2.toExponential(1)} / ${worstCosine.toFixed(9)} | ${report.gateRelativeDiff?.toExponential(1)} | ${setupSeconds.toFixed(1)} |`,
    );
    tf.disposeVariables();
  }
  return [
    '## Coordinator recompute: tfjs vs ONNX Runtime (wasm)',
    '',
    `\`npm run bench:server -- --recompute-only --recompute-models ${options.models.join(',')} --recompute-reps ${options.reps}\` (bench/passage-recompute.ts). The intake's recompute call (FrozenPassageEncoder.embed: title + text, ≤ 512 tokens, batches of 16) with the engine forced: tfjs on Node's wasm backend vs ONNX Runtime Web's wasm build (1 thread each) after its equality gate; engines alternate rep by rep; passages/s of the best rep / the median (rep seconds in brackets). Agreement: the intake's measure, ONNX rows against tfjs rows, worst passage (relative L2 / cosine; the intake accepts ≤ 1e-3 / ≥ 0.99999). Setup: load → ONNX kept (graph write, session, gate; with \`auto\` this runs in the background while tfjs recomputes). This 2-core machine is shared with other jobs: compare within a row.`,
    '',
    '| model | passages | tfjs passages/s best / median (rep s) | ONNX passages/s best / median (rep s) | ONNX / tfjs best / median | ONNX vs tfjs rel. L2 / cosine | gate | ONNX setup s |',
    '| --- | --- | --- | --- | --- | --- | --- | --- |',
    ...rows,
  ];
}
