/**
 * What both workers do first: start a TF.js backend (WebGPU, else wasm, else cpu, with the reason)
 * and build the session's ModelBundle from a global version.
 */
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import wasmPlain from '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm?url';
import wasmSimd from '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-simd.wasm?url';
import wasmThreaded from '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-threaded-simd.wasm?url';
import { ModelBundle } from '../src/corag/model-bundle';
import type { SessionInfo } from '../src/federated/protocol';
import { initBackend, type BackendName, type BackendReport } from '../src/model/backend';
import type { BackendProbe } from '../src/model/backend-choice';
import { probeBackends } from '../src/model/backend-probe';
import type { BrowserStore } from '../src/platform/browser/idb-store';
import { globalVersionBytes, loadBundleSpec, type DownloadProgress } from '../src/platform/browser/session-bundle';

let backend: Promise<BackendReport> | undefined;

/** The wasm binaries are emitted by Vite as assets; tell the backend where they ended up. */
function setWasmAssetPaths(): void {
  setWasmPaths({ 'tfjs-backend-wasm.wasm': wasmPlain, 'tfjs-backend-wasm-simd.wasm': wasmSimd, 'tfjs-backend-wasm-threaded-simd.wasm': wasmThreaded });
}

/** Starts the first backend of `preference` that works (once per worker). */
export function startBackend(preference: readonly BackendName[]): Promise<BackendReport> {
  if (!backend) setWasmAssetPaths();
  backend ??= initBackend(preference);
  return backend;
}

/**
 * Measures each candidate backend (src/model/backend-probe.ts) so the page can choose; one worker
 * does it, before either worker starts its backend, so the cores are measured once and unshared.
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

/** The session's model at `version` (cached in IndexedDB, else downloaded with progress). */
export async function buildBundle(access: SessionAccess, session: SessionInfo, version: number, store: BrowserStore, onProgress?: DownloadProgress): Promise<ModelBundle> {
  const [spec, { bytes }] = await Promise.all([
    loadBundleSpec(access.appBase, session.config.models),
    globalVersionBytes(access.appBase, access, version, store.modelCache(), onProgress),
  ]);
  return ModelBundle.fromGlobal(spec, bytes, version);
}
