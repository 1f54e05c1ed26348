/**
 * ONNX Runtime Web, wasm execution provider (CPU): the one copy transformers.js 3.8.1 runs on
 * (onnxruntime-web 1.22.0-dev, pinned to the same version in package.json), imported directly.
 * transformers.js itself only loads models by name or URL (`from_pretrained`), while the tab
 * writes its graph in memory (../bert/onnx-graph.ts); what it measured faster is this runtime.
 *
 * `onnxruntime-web/wasm` is the build without the WebGPU/WebNN glue: its binary
 * (ort-wasm-simd-threaded.wasm, ~11 MB) is half the JSEP one's. The settings are process-wide
 * and take effect when the first session is created.
 */
// eslint-disable-next-line @typescript-eslint/triple-slash-reference -- onnxruntime-web's `exports` carry no types; its own types.d.ts declares the subpath modules (an import cannot load an ambient declaration file)
/// <reference path="../../../node_modules/onnxruntime-web/types.d.ts" />
import * as ort from 'onnxruntime-web/wasm';

export interface OrtSettings {
  /**
   * Where ORT's binary (ort-wasm-simd-threaded.wasm) and its Emscripten loader
   * (ort-wasm-simd-threaded.mjs, imported at start and the script of its wasm threads) are
   * served: the browser build's asset URLs. Default: beside ORT's module, as in Node.
   */
  readonly files?: { readonly wasm: string; readonly mjs: string };
  /** wasm threads (tfjs-backend-wasm's count, so both use the same cores); 1 = no worker threads. */
  readonly threads: number;
}

let applied: OrtSettings | undefined;

/** Sets ORT's wasm options; later calls with other settings are refused (ORT reads them once). */
export function configureOrt(settings: OrtSettings): void {
  if (applied) {
    if (applied.threads !== settings.threads || applied.files?.wasm !== settings.files?.wasm)
      throw new Error(`ONNX Runtime is already set up (${applied.threads} threads); it cannot change to ${settings.threads}`);
    return;
  }
  ort.env.wasm.numThreads = Math.max(1, Math.floor(settings.threads));
  // Already in a worker: no extra proxy worker. Nothing from a CDN: both files come from `files`.
  ort.env.wasm.proxy = false;
  if (settings.files) ort.env.wasm.wasmPaths = { wasm: settings.files.wasm, mjs: settings.files.mjs };
  ort.env.logLevel = 'error';
  applied = settings;
}

/** configureOrt unless ONNX Runtime is set up already (then those settings stay); the settings in force. */
export function configureOrtOnce(settings: OrtSettings): OrtSettings {
  if (!applied) configureOrt(settings);
  return applied!;
}

/** "ONNX Runtime Web 1.22.0-dev… (wasm, N threads)", for reports. */
export function ortDescription(): string {
  return `ONNX Runtime Web ${ort.env.versions.web ?? ort.env.versions.common} (wasm, ${ort.env.wasm.numThreads ?? 1} thread${ort.env.wasm.numThreads === 1 ? '' : 's'})`;
}

/** A session of an in-memory model on the wasm execution provider, all graph optimizations on. */
export function createOrtSession(model: Uint8Array): Promise<ort.InferenceSession> {
  if (!applied) throw new Error('configureOrt first: ONNX Runtime needs its thread count before the first session');
  return ort.InferenceSession.create(model, { executionProviders: ['wasm'], graphOptimizationLevel: 'all' });
}

/** An int64 tensor (what BERT graphs take for ids and masks). */
export function int64Tensor(values: BigInt64Array, dims: readonly number[]): ort.Tensor {
  return new ort.Tensor('int64', values, dims);
}

export type OrtSession = ort.InferenceSession;
