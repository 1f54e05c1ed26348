/**
 * The evidence behind the coordinator's embedding checks (server/passage-intake.ts): how far
 * honest recomputations of the same passage embedding drift apart across backends and precisions,
 * how far apart embeddings of DIFFERENT passages are, and the range of norms the encoder produces.
 * The tolerance must lie between the first and the second; the norm bound above the third.
 *
 *   npx tsx scripts/measure-passage-embeddings.ts [--encoder demo|tiny] [--out results/passage-embeddings.json]
 *   (~9 min for demo on 2 cores, most of it the cpu backend; --save-wasm-embeddings FILE: only the
 *   coordinator's rows, for bench/passage-embeddings.gpu.ts)
 *
 * Honest variants compared with the coordinator's own (wasm, float32 weights):
 * - cpu backend, float32 weights (another backend's kernels and summation order);
 * - wasm, weights rounded to float16 (a tab that keeps an F16 copy of the model);
 * - wasm float32, the embedding itself rounded to float16 (a tab that stores/sends halves).
 * WebGPU (float32): bench/passage-embeddings.gpu.ts on the lent GPU, against rows saved here.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import { decodeModel, encodeModel, type NamedTensor } from '../src/federated/codec';
import { initBackend } from '../src/model/backend';
import { loadBertCheckpoint } from '../src/model/checkpoint';
import { writeSafetensors } from '../src/model/safetensors';
import { tinyBertConfig, tinyBertWeights } from '../src/model/tiny';
import { folderModelSource } from '../src/platform/node/folder-source';
import { embeddingAgreement, REFERENCE_TEXTS } from '../server/passage-intake';
import { FrozenPassageEncoder } from '../server/passage-encoder';
import { DEMO_MODELS } from '../server/demo';

const { values } = parseArgs({
  options: {
    encoder: { type: 'string', default: 'demo' },
    out: { type: 'string', default: 'results/passage-embeddings.json' },
    // Only the coordinator's (wasm) embeddings, written as raw float32 rows, for the WebGPU
    // comparison on the lent GPU (bench/passage-embeddings.gpu.ts).
    'save-wasm-embeddings': { type: 'string' },
  },
});
const PUBLIC = fileURLToPath(new URL('../public/', import.meta.url));

async function passageEncoderGlobal(kind: string): Promise<{ id: string; dim: number; bytes: Uint8Array }> {
  const tensors = new Map<string, NamedTensor>();
  if (kind === 'tiny') {
    for (const [n, t] of tinyBertWeights(tinyBertConfig(), 2)) tensors.set(`passage_encoder.${n}`, t);
    return { id: DEMO_MODELS.passageEncoder, dim: tinyBertConfig().hidden_size, bytes: encodeModel(tensors) };
  }
  await initBackend('cpu');
  const bert = await loadBertCheckpoint(folderModelSource(PUBLIC + 'models/demo/retriever'));
  for (const [n, v] of bert.params.entries()) tensors.set(`passage_encoder.${n}`, { shape: v.shape, data: (await v.data()) as Float32Array });
  bert.params.dispose();
  return { id: 'models/demo/retriever', dim: bert.config.hidden_size, bytes: encodeModel(tensors) };
}

/** The same model with every weight rounded to IEEE half (and widened back). */
function halfWeights(bytes: Uint8Array): Uint8Array {
  const model = decodeModel(bytes);
  const half = writeSafetensors(new Map([...model].map(([n, t]) => [n, { shape: [...t.shape], data: t.data, dtype: 'F16' as const }])));
  return encodeModel(decodeModel(half));
}

function roundToHalf(e: Float32Array): Float32Array {
  const [t] = decodeModel(writeSafetensors(new Map([['e', { shape: [e.length], data: e, dtype: 'F16' as const }]]))).values();
  return Float32Array.from(t.data);
}

const summary = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const q = (p: number) => s[Math.min(s.length - 1, Math.floor(p * (s.length - 1)))];
  return { min: s[0], p50: q(0.5), p99: q(0.99), max: s[s.length - 1] };
};

async function main(): Promise<void> {
  const passages = readFileSync(PUBLIC + 'demo/passages.jsonl', 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { title: string; text: string });
  const global = await passageEncoderGlobal(values.encoder!);
  const timed = async (backend: 'wasm' | 'cpu', bytes: Uint8Array) => {
    await initBackend(backend);
    // tfjs on the backend named: this measures backend against backend (the ONNX engine's own gate covers ONNX).
    const encoder = await FrozenPassageEncoder.load(global.id, bytes, global.dim, { setting: 'tfjs' });
    const t0 = performance.now();
    const rows = await encoder.embed(passages);
    const seconds = (performance.now() - t0) / 1000;
    const reference = await encoder.embed(REFERENCE_TEXTS);
    await encoder.dispose();
    return { rows, seconds, reference };
  };
  const wasm = await timed('wasm', global.bytes);
  if (values['save-wasm-embeddings']) {
    const flat = new Float32Array(wasm.rows.length * global.dim);
    wasm.rows.forEach((r, i) => flat.set(r, i * global.dim));
    writeFileSync(values['save-wasm-embeddings'], new Uint8Array(flat.buffer));
    process.stdout.write(`wrote ${wasm.rows.length} × ${global.dim} wasm embeddings (${wasm.seconds.toFixed(1)} s) to ${values['save-wasm-embeddings']}\n`);
    return;
  }
  const half = await timed('wasm', halfWeights(global.bytes));
  const cpu = await timed('cpu', global.bytes);
  const honest = (variant: Float32Array[]) => {
    const a = variant.map((e, i) => embeddingAgreement(e, wasm.rows[i]));
    return { cosine: summary(a.map((x) => x.cosine)), relativeL2: summary(a.map((x) => x.relativeL2)) };
  };
  // Another passage's embedding in place of this one's: the "subtle forgery".
  const forged = wasm.rows.map((e, i) => {
    let best = { cosine: -Infinity, relativeL2: Infinity };
    wasm.rows.forEach((o, j) => {
      if (j === i) return;
      const a = embeddingAgreement(o, e);
      if (a.cosine > best.cosine) best = { cosine: a.cosine, relativeL2: Math.min(best.relativeL2, a.relativeL2) };
      else best.relativeL2 = Math.min(best.relativeL2, a.relativeL2);
    });
    return best;
  });
  const norm = (e: Float32Array) => Math.hypot(...e);
  const report = {
    encoder: global.id,
    dim: global.dim,
    passages: passages.length,
    embedSeconds: { wasm: wasm.seconds, cpu: cpu.seconds, wasmHalfWeights: half.seconds },
    honestVsCoordinator: {
      cpuFloat32: honest(cpu.rows),
      wasmHalfWeights: honest(half.rows),
      embeddingRoundedToHalf: honest(wasm.rows.map(roundToHalf)),
    },
    closestOtherPassage: { cosine: summary(forged.map((f) => f.cosine)), relativeL2: summary(forged.map((f) => f.relativeL2)) },
    norms: { demoPassages: summary(wasm.rows.map(norm)), referenceTexts: summary(wasm.reference.map(norm)) },
  };
  const text = JSON.stringify(report, null, 2);
  process.stdout.write(`${text}\n`);
  mkdirSync(dirname(values.out!), { recursive: true });
  writeFileSync(values.out!, `${text}\n`);
  tf.disposeVariables();
}

main().catch((e: unknown) => {
  process.stderr.write(`${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
