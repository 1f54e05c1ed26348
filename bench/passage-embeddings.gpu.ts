/**
 * How far a WebGPU tab's passage embeddings are from the coordinator's (wasm) recomputation, on
 * the lent NVIDIA GPU (Dawn, the browser's tfjs-backend-webgpu): the evidence that the embedding
 * tolerance of server/passage-intake.ts accepts honest GPU clients. Rows from the coordinator:
 *   npx tsx scripts/measure-passage-embeddings.ts --encoder demo --save-wasm-embeddings .gpu/demo-wasm.f32
 *   (and --encoder tiny … .gpu/tiny-wasm.f32), after ../shared/gpu/pack.sh bench/passage-embeddings.gpu.ts
 * device run (carry .gpu): bash .gpu/run.sh .gpu $OUT [tiny,demo]
 * Without a GPU it runs on SwiftShader (npx tsx bench/passage-embeddings.gpu.ts .gpu OUT tiny): the
 * same WGSL kernels, slowly.
 */
import * as tf from '@tensorflow/tfjs-core';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { encodeModel, type NamedTensor } from '../src/federated/codec';
import { loadBertCheckpoint } from '../src/model/checkpoint';
import { tinyBertConfig, tinyBertWeights } from '../src/model/tiny';
import { folderModelSource } from '../src/platform/node/folder-source';
import { installNodeWebGpu } from '../src/platform/node/webgpu';
import { FrozenPassageEncoder } from '../server/passage-encoder';
import { agrees, embeddingAgreement } from '../server/passage-intake';

const [refDir, outDir, kinds = 'tiny,demo'] = process.argv.slice(2);
await installNodeWebGpu();
if (!(await tf.setBackend('webgpu'))) throw new Error('webgpu backend did not start');
await tf.ready();
const PUBLIC = fileURLToPath(new URL('../public/', import.meta.url));
const passages = readFileSync(join(PUBLIC, 'demo/passages.jsonl'), 'utf8')
  .trim()
  .split('\n')
  .map((l) => JSON.parse(l) as { title: string; text: string });

const report: Record<string, unknown> = { backend: tf.getBackend() };
for (const kind of kinds.split(',') as Array<'tiny' | 'demo'>) {
  const tensors = new Map<string, NamedTensor>();
  let id: string;
  let dim: number;
  if (kind === 'tiny') {
    for (const [n, t] of tinyBertWeights(tinyBertConfig(), 2)) tensors.set(`passage_encoder.${n}`, t);
    id = 'corag/tiny-contriever (random, seed 2)';
    dim = tinyBertConfig().hidden_size;
  } else {
    const bert = await loadBertCheckpoint(folderModelSource(join(PUBLIC, 'models/demo/retriever')));
    for (const [n, v] of bert.params.entries()) tensors.set(`passage_encoder.${n}`, { shape: v.shape, data: (await v.data()) as Float32Array });
    bert.params.dispose();
    id = 'models/demo/retriever';
    dim = bert.config.hidden_size;
  }
  // tfjs on the GPU against the wasm reference (the ONNX engine would run on the CPU).
  const encoder = await FrozenPassageEncoder.load(id, encodeModel(tensors), dim, { setting: 'tfjs' });
  const t0 = performance.now();
  const rows = await encoder.embed(passages, { onProgress: (done, total) => console.log(`${kind}: ${done} / ${total}`) });
  const seconds = (performance.now() - t0) / 1000;
  await encoder.dispose();
  const ref = new Float32Array(new Uint8Array(readFileSync(join(refDir, `${kind}-wasm.f32`))).buffer);
  const a = rows.map((r, i) => embeddingAgreement(r, ref.subarray(i * dim, (i + 1) * dim)));
  report[kind] = {
    seconds,
    maxRelativeL2: Math.max(...a.map((x) => x.relativeL2)),
    minCosine: Math.min(...a.map((x) => x.cosine)),
    accepted: a.filter(agrees).length,
    of: a.length,
  };
  console.log(kind, JSON.stringify(report[kind]));
}
writeFileSync(join(outDir, 'passage-embeddings-webgpu.json'), JSON.stringify(report, null, 2) + '\n');
