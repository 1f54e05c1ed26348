/**
 * What both workers do first: start a TF.js backend (WebGPU, else wasm, else cpu, with the reason)
 * and build the session's ModelBundle from a global version.
 */
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import wasmPlain from '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm?url';
import wasmSimd from '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-simd.wasm?url';
import wasmThreaded from '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-threaded-simd.wasm?url';
// ONNX Runtime's binary and its loader, emitted by Vite like tfjs's (same origin; by default ORT
// would fetch them from a CDN). Paths, not the package name: onnxruntime-web's `exports` do not
// list its dist/ files, and Vite honours them.
import ortMjs from '../node_modules/onnxruntime-web/dist/ort-wasm-simd-threaded.mjs?url';
import ortWasm from '../node_modules/onnxruntime-web/dist/ort-wasm-simd-threaded.wasm?url';
import { globalVersionBytes } from '../src/corag/federated-client';
import { ModelBundle } from '../src/corag/model-bundle';
import { PassageEncoder } from '../src/corag/passage-encoder';
import { onnxThreads, type PassageEncoderReport, type PassageEncoderSetting } from '../src/corag/passage-encoder-choice';
import { configureOrt } from '../src/model/onnx/ort-runtime';
import type { CoragClient, DownloadProgress } from '../src/federated/client';
import { knownCoordinators } from '../src/federated/rejoin';
import { loraConfigFromTraining } from '../src/corag/federated-client';
import type { SessionInfo } from '../src/federated/protocol';
import { initBackend, type BackendName, type BackendReport } from '../src/model/backend';
import type { BackendProbe } from '../src/model/backend-choice';
import { probeBackends } from '../src/model/backend-probe';
import type { BrowserStore } from '../src/platform/browser/idb-store';
import { loadBundleSpec, loadRetrieverSpec } from '../src/platform/browser/session-bundle';

let backend: Promise<BackendReport> | undefined;
let markStarted: (report: Promise<BackendReport>) => void = () => undefined;
const started = new Promise<BackendReport>((resolve) => {
  markStarted = (report) => resolve(report);
});

/**
 * Resolves once this worker's backend has started (startBackend). Model work must wait for it:
 * a tensor op before it makes tfjs initialise its highest-priority backend (wasm) by itself,
 * without the asset paths below — the .wasm fetch fails and the backend is lost for the worker.
 */
export function backendStarted(): Promise<BackendReport> {
  return started;
}

/** The wasm binaries are emitted by Vite as assets; tell the backend where they ended up. */
function setWasmAssetPaths(): void {
  setWasmPaths({ 'tfjs-backend-wasm.wasm': wasmPlain, 'tfjs-backend-wasm-simd.wasm': wasmSimd, 'tfjs-backend-wasm-threaded-simd.wasm': wasmThreaded });
}

/** Starts the first backend of `preference` that works (once per worker). */
export function startBackend(preference: readonly BackendName[]): Promise<BackendReport> {
  if (!backend) {
    setWasmAssetPaths();
    backend = initBackend(preference);
    markStarted(backend);
  }
  return backend;
}

/**
 * Measures each candidate backend (src/model/backend-probe.ts) so the page can choose. Only in
 * the probe worker (workers/probe.worker.ts), which the page ends afterwards: the working workers
 * never have a backend started by the probe.
 */
export function probeCandidates(names: readonly BackendName[]): Promise<BackendProbe[]> {
  if (backend) throw new Error('probe the backends before starting one');
  setWasmAssetPaths();
  return probeBackends(names);
}

export interface SessionAccess {
  readonly appBase: string;
  readonly sessionId: string;
  readonly token: string;
}

/**
 * The session's API for `access`: the page's coordinator, and the peers it advertised at the last
 * connect (src/federated/rejoin.ts), so a model download goes on when the page's coordinator died.
 */
async function sessionApi(access: SessionAccess, store: BrowserStore): Promise<CoragClient> {
  return (await knownCoordinators(access.appBase, store)).withToken(access.token);
}

/** The session's model at `version` (cached in IndexedDB, else downloaded with progress through CoragClient). */
export async function buildBundle(
  access: SessionAccess,
  session: SessionInfo,
  version: number,
  store: BrowserStore,
  onProgress?: DownloadProgress,
): Promise<ModelBundle> {
  await backendStarted();
  const [spec, { bytes }] = await Promise.all([
    loadBundleSpec(access.appBase, session.config.models),
    globalVersionBytes(await sessionApi(access, store), access.sessionId, version, store.modelCache(), onProgress),
  ]);
  // A LoRA session's versions carry reader.lora.* adapters: the reader is built with its config.
  const lora = loraConfigFromTraining(session.config.training ?? {}) ?? undefined;
  return ModelBundle.fromGlobal({ ...spec, lora }, bytes, version);
}

/**
 * The session's frozen passage encoder alone, from version `version`'s bytes (the same cache and
 * download as buildBundle), on the engine `setting` and this worker's backend decide
 * (src/corag/passage-encoder-choice.ts). ONNX Runtime gets the threads tfjs has.
 */
export async function buildPassageEncoder(
  access: SessionAccess,
  session: SessionInfo,
  version: number,
  store: BrowserStore,
  setting: PassageEncoderSetting,
  onReport?: (report: PassageEncoderReport) => void,
): Promise<PassageEncoder> {
  const report = await backendStarted();
  const [spec, { bytes }] = await Promise.all([
    loadRetrieverSpec(access.appBase, session.config.models),
    globalVersionBytes(await sessionApi(access, store), access.sessionId, version, store.modelCache()),
  ]);
  configureOrt({ files: { wasm: ortWasm, mjs: ortMjs }, threads: onnxThreads(report, navigator.hardwareConcurrency) });
  return PassageEncoder.load(spec.retrieverConfig, spec.retrieverTokenizer, bytes, version, { setting, backend: report, ...(onReport ? { onReport } : {}) });
}
