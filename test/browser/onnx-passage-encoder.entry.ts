/**
 * Page for onnx-passage-encoder.test.ts: the product's ONNX path in Chromium — the Contriever
 * graph written from TypeScript (src/model/bert/onnx-graph.ts), run by onnxruntime-web's wasm
 * provider with its binary served from this page's origin (as the embed worker loads it), held
 * against our tfjs encoder on the same weights, and PassageEncoder's gate.
 */
import * as tf from '@tensorflow/tfjs-core';
import { PassageEncoder } from '../../src/corag/passage-encoder';
import { maxRowRelativeDifference } from '../../src/corag/passage-encoder-choice';
import { tfjsBatchEmbedder, type PassageText } from '../../src/corag/retrieve';
import { encodeModel } from '../../src/federated/codec';
import { PASSAGE_ENCODER_WIRE_PREFIX } from '../../src/federated/protocol';
import { initBackend, type BackendReport } from '../../src/model/backend';
import { bertParameterShapes, type BertConfig } from '../../src/model/bert/config';
import { OnnxContrieverEncoder } from '../../src/model/bert/onnx-encoder';
import { contrieverOnnxModel } from '../../src/model/bert/onnx-graph';
import { loadBertCheckpoint, urlModelSource } from '../../src/model/checkpoint';
import { Contriever, PASSAGE_PREFIX } from '../../src/model/contriever';
import { configureOrt, ortDescription } from '../../src/model/onnx/ort-runtime';
import { ParameterStore } from '../../src/model/params';
import { parseSafetensors } from '../../src/model/safetensors';
import { fixturePassageRows } from '../model/onnx/fixture-rows';
import type { TextTokenizer } from '../../src/model/tokenizer';
// The same asset the embed worker imports (workers/runtime.ts).
import ortMjs from '../../node_modules/onnxruntime-web/dist/ort-wasm-simd-threaded.mjs?url';
import ortWasm from '../../node_modules/onnxruntime-web/dist/ort-wasm-simd-threaded.wasm?url';
import { exposeToTests, fetchBytes } from './page-api';

let backend: BackendReport | undefined;

async function start(): Promise<{ backend: BackendReport; ort: string; ortWasmUrl: string }> {
  backend = await initBackend('wasm');
  configureOrt({ files: { wasm: ortWasm, mjs: ortMjs }, threads: backend.threads ?? 1 });
  return { backend, ort: ortDescription(), ortWasmUrl: new URL(ortWasm, location.href).href };
}

interface Loaded {
  readonly config: BertConfig;
  readonly weights: Map<string, Float32Array>;
  readonly tokenizer: TextTokenizer | null;
}

async function loadFolder(url: string, withTokenizer: boolean): Promise<Loaded> {
  const loaded = await loadBertCheckpoint(urlModelSource(new URL(url, location.href).href), withTokenizer ? {} : { tokenizer: false });
  const weights = new Map<string, Float32Array>();
  for (const name of bertParameterShapes(loaded.config).keys()) weights.set(name, loaded.params.get(name).dataSync() as Float32Array);
  loaded.params.dispose();
  return { config: loaded.config, weights, tokenizer: loaded.tokenizer };
}

function tfjsEncoder({ config, weights }: Loaded): Contriever {
  const store = new ParameterStore();
  for (const [name, shape] of bertParameterShapes(config)) store.set(PASSAGE_PREFIX + name, tf.tensor(weights.get(name)!, shape), false);
  return new Contriever(config, store, ['passage']);
}

/** bert-tiny fixture: its own token ids (no tokenizer) through ONNX Runtime, tfjs and PyTorch. */
async function fixtureAgreement(): Promise<{ onnxVsTfjs: number; onnxVsPyTorch: number; tfjsVsPyTorch: number }> {
  const m = await loadFolder('/fixtures/bert-tiny/', false);
  const expected = parseSafetensors(await fetchBytes('/fixtures/bert-tiny/expected.safetensors'), 'expected.safetensors');
  const { rows, reference } = fixturePassageRows(expected);
  const onnx = await OnnxContrieverEncoder.create(
    m.config,
    contrieverOnnxModel(m.config, (n) => m.weights.get(n)!),
  );
  const tfjs = tfjsEncoder(m);
  try {
    const a = await onnx.embedTokens(rows);
    const b = await tfjsBatchEmbedder(tfjs, 'passage')(rows);
    const dim = m.config.hidden_size;
    return {
      onnxVsTfjs: maxRowRelativeDifference(a, b, dim),
      onnxVsPyTorch: maxRowRelativeDifference(a, reference, dim),
      tfjsVsPyTorch: maxRowRelativeDifference(b, reference, dim),
    };
  } finally {
    tfjs.dispose();
    await onnx.dispose();
  }
}

/** A global model's bytes holding only `passage_encoder.*` (what PassageEncoder reads of a version). */
function globalBytes({ config, weights }: Loaded): Uint8Array {
  const tensors = new Map([...bertParameterShapes(config)].map(([name, shape]) => [PASSAGE_ENCODER_WIRE_PREFIX + name, { shape, data: weights.get(name)! }]));
  return encodeModel(tensors);
}

type Corruption = 'none' | 'weights' | 'graph';

interface DemoRun {
  readonly engine: string;
  readonly detail: string;
  readonly fallbackReason?: string;
  readonly gateRelativeDiff?: number;
  readonly onnxSetupSeconds?: number;
  /** The product's embed() against tfjs on the same passages (only when ONNX was kept). */
  readonly passages: number;
  readonly vsTfjs?: number;
  readonly seconds: number;
  readonly tfjsSeconds: number;
}

let demo: Loaded | undefined;

/**
 * The demo retriever through PassageEncoder.load (setting `onnx`, so the gate decides), embedding
 * `passages` demo passages against tfjs. `corrupt`: hand the gate a graph with one weight scaled,
 * or bytes that are no ONNX model.
 */
async function demoRetriever(passages: PassageText[], corrupt: Corruption): Promise<DemoRun> {
  demo ??= await loadFolder('/models/demo/retriever/', true);
  const bytes = globalBytes(demo);
  const onnxModel =
    corrupt === 'weights'
      ? (c: BertConfig, w: (n: string) => Float32Array) =>
          contrieverOnnxModel(c, (n) => (n === 'encoder.layer.2.attention.self.value.weight' ? w(n).map((v) => -v) : w(n)))
      : corrupt === 'graph'
        ? (c: BertConfig, w: (n: string) => Float32Array) => contrieverOnnxModel(c, w).subarray(0, 5000)
        : undefined;
  const warnings: string[] = [];
  const encoder = await PassageEncoder.load(demo.config, demo.tokenizer!, bytes, 1, {
    setting: 'onnx',
    backend: backend!,
    ...(onnxModel ? { onnxModel } : {}),
    warn: (m) => warnings.push(m),
  });
  // tfjs embeds until the background build has passed the gate (or failed): this page measures the engine it ends on.
  await encoder.settled;
  const reference = PassageEncoder.fromGlobal(demo.config, demo.tokenizer!, bytes, 1);
  try {
    let t0 = performance.now();
    const ours = await encoder.embed(passages, { batchSize: 16, maxLength: 256 });
    const seconds = (performance.now() - t0) / 1000;
    t0 = performance.now();
    const tfjs = await reference.embed(passages, { batchSize: 16, maxLength: 256 });
    const tfjsSeconds = (performance.now() - t0) / 1000;
    const flat = (rows: Float32Array[]) => {
      const out = new Float32Array(rows.length * demo!.config.hidden_size);
      rows.forEach((r, i) => out.set(r, i * demo!.config.hidden_size));
      return out;
    };
    const r = encoder.report;
    if (r.fallbackReason && warnings.length !== 1) throw new Error(`expected one warning, got ${warnings.length}`);
    return {
      engine: r.engine,
      detail: r.detail,
      ...(r.fallbackReason ? { fallbackReason: r.fallbackReason } : {}),
      ...(r.gateRelativeDiff !== undefined ? { gateRelativeDiff: r.gateRelativeDiff } : {}),
      ...(r.onnxSetupSeconds !== undefined ? { onnxSetupSeconds: r.onnxSetupSeconds } : {}),
      passages: passages.length,
      vsTfjs: maxRowRelativeDifference(flat(ours), flat(tfjs), demo.config.hidden_size),
      seconds,
      tfjsSeconds,
    };
  } finally {
    await encoder.dispose();
    await reference.dispose();
  }
}

interface BackgroundRun {
  /** The report load() returned (before the ONNX session existed). */
  readonly atLoad: { readonly engine: string; readonly building: boolean };
  /** Passages per engine after the first embed call (started at once after load). */
  readonly firstCall: { readonly tfjs: number; readonly onnx: number };
  readonly settled: { readonly engine: string; readonly tfjsPassagesBeforeSwitch?: number; readonly onnxSetupSeconds?: number };
  /** Passages per engine after a second call, made once the build had settled. */
  readonly afterSecondCall: { readonly tfjs: number; readonly onnx: number };
  /** Both calls' rows against tfjs's (max per-passage relative difference). */
  readonly vsTfjs: number;
}

/**
 * The embed worker's path (PassageEncoder.load with `onnx`): embedding `passages` at once, while
 * ONNX Runtime is built in the background, then again after it took over.
 */
async function backgroundSwitch(passages: PassageText[]): Promise<BackgroundRun> {
  demo ??= await loadFolder('/models/demo/retriever/', true);
  const bytes = globalBytes(demo);
  const encoder = await PassageEncoder.load(demo.config, demo.tokenizer!, bytes, 1, { setting: 'onnx', backend: backend! });
  const reference = PassageEncoder.fromGlobal(demo.config, demo.tokenizer!, bytes, 1);
  try {
    const atLoad = { engine: encoder.report.engine, building: encoder.report.building === true };
    const first = await encoder.embed(passages, { batchSize: 4 });
    const firstCall = encoder.passagesByEngine();
    const r = await encoder.settled;
    const second = await encoder.embed(passages, { batchSize: 4 });
    const dim = demo.config.hidden_size;
    const flat = (rows: Float32Array[]) => {
      const out = new Float32Array(rows.length * dim);
      rows.forEach((row, i) => out.set(row, i * dim));
      return out;
    };
    const tfjs = flat(await reference.embed(passages, { batchSize: 4 }));
    return {
      atLoad,
      firstCall,
      settled: {
        engine: r.engine,
        ...(r.tfjsPassagesBeforeSwitch !== undefined ? { tfjsPassagesBeforeSwitch: r.tfjsPassagesBeforeSwitch } : {}),
        ...(r.onnxSetupSeconds !== undefined ? { onnxSetupSeconds: r.onnxSetupSeconds } : {}),
      },
      afterSecondCall: encoder.passagesByEngine(),
      vsTfjs: Math.max(maxRowRelativeDifference(flat(first), tfjs, dim), maxRowRelativeDifference(flat(second), tfjs, dim)),
    };
  } finally {
    await encoder.dispose();
    await reference.dispose();
  }
}

exposeToTests({ start, fixtureAgreement, demoRetriever, backgroundSwitch });
