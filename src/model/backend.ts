/**
 * One code path, backend chosen at start. The browser uses `webgpu` (falling back to `wasm`,
 * then `cpu`, with the reason kept so the UI can say why); Node and tests use `cpu` (the
 * reference-accurate one) or `wasm` (fast, threaded SIMD).
 */
import * as tf from '@tensorflow/tfjs-core';
import { softwareAdapterName, type AdapterInfoLike, type BackendName } from './backend-choice';

export type { BackendName } from './backend-choice';

export interface BackendReport {
  /** The backend actually running. */
  readonly name: BackendName;
  /** Human-readable detail: WebGPU adapter, wasm features. */
  readonly detail: string;
  /** Why a preferred backend was not used, if it wasn't. */
  readonly fallbackReason?: string;
  /** webgpu: the adapter (plain fields of GPUAdapter.info). */
  readonly adapter?: AdapterInfoLike;
  /** webgpu: the software rasteriser's name when the adapter is not a hardware GPU (SwiftShader, llvmpipe, …). */
  readonly software?: string;
  /** wasm: the threads XNNPACK runs on (tfjs-backend-wasm getThreadsCount()). */
  readonly threads?: number;
  /** Browser: whether the context is cross-origin isolated (SharedArrayBuffer, hence wasm threads). */
  readonly crossOriginIsolated?: boolean;
}

const isNode = typeof process !== 'undefined' && !!process.versions?.node;

let gradientsRegistered: Promise<unknown> | undefined;

/** What src/platform/node gives initBackend in Node: the gradients and the .wasm binaries' folder. */
export interface NodeBackendPlatform {
  registerGradients(): Promise<unknown>;
  tfjsWasmDir(): string;
}

let injectedNodePlatform: NodeBackendPlatform | undefined;

/**
 * For a single-file Node bundle (the device runs, ../shared/gpu/pack.sh), which has no
 * src/platform/node beside it to import by computed URL and no node_modules to find the .wasm
 * files in: the bundle's entry hands both in before the first initBackend.
 */
export function provideNodeBackendPlatform(platform: NodeBackendPlatform): void {
  injectedNodePlatform = platform;
}

/** tfjs-core's entry point registers kernels' forward passes only; training needs the gradients. */
function registerGradients(): Promise<unknown> {
  gradientsRegistered ??= injectedNodePlatform
    ? injectedNodePlatform.registerGradients()
    : isNode
      ? import(/* @vite-ignore */ nodeModule('tfjs-gradients')).then((m: { registerTfjsGradients(): Promise<void> }) => m.registerTfjsGradients())
      : import('@tensorflow/tfjs-core/dist/register_all_gradients');
  return gradientsRegistered;
}

/** A module of src/platform/node. The computed specifier keeps bundlers from pulling Node-only code into the browser build. */
function nodeModule(name: string): string {
  return new URL(`../platform/node/${name}` + (import.meta.url.endsWith('.ts') ? '.ts' : '.js'), import.meta.url).href;
}

/** Imports and registers a backend (and the gradients) without making it the active one. */
export async function loadBackend(name: BackendName): Promise<void> {
  await registerGradients();
  switch (name) {
    case 'cpu':
      await import('@tensorflow/tfjs-backend-cpu');
      return;
    case 'wasm': {
      const wasm = await import('@tensorflow/tfjs-backend-wasm');
      if (injectedNodePlatform) {
        wasm.setWasmPaths(injectedNodePlatform.tfjsWasmDir());
      } else if (isNode) {
        // In Node the .wasm binaries are read from the package folder.
        const { tfjsWasmDir } = (await import(/* @vite-ignore */ nodeModule('tfjs-wasm'))) as { tfjsWasmDir(): string };
        wasm.setWasmPaths(tfjsWasmDir());
      }
      // Threads: cross-origin isolated pages get the threaded SIMD build, whose XNNPACK pool
      // tfjs-backend-wasm 4.22 caps at navigator.hardwareConcurrency / 2 (src/cc/backend.cc: it
      // assumes two hyperthreads per core), so a 2-core machine runs 1 thread. Forcing one per
      // logical core measured slower on the 2-core test machine (docs/PERFORMANCE.md), so the
      // library's count stands; the banner reports it (getThreadsCount).
      // Saved activations share their buffer instead of being copied (src/model/wasm/shared-identity.ts).
      const { installWasmSharedIdentity } = await import('./wasm/shared-identity');
      installWasmSharedIdentity();
      return;
    }
    case 'webgpu': {
      await import('@tensorflow/tfjs-backend-webgpu');
      // tfjs-backend-webgpu 4.22's int32->float32 Cast returns an int32-typed view that breaks
      // rank>=3 transposes (NaN gradients); see src/model/webgpu/cast-fix.ts.
      const { installWebGpuCastFix } = await import('./webgpu/cast-fix');
      installWebGpuCastFix();
      return;
    }
  }
}

/** The WebGPU adapter the browser (or Dawn in Node) offers, as plain fields; undefined without WebGPU. */
export async function webGpuAdapterInfo(): Promise<AdapterInfoLike | undefined> {
  type Adapter = { info?: AdapterInfoLike; isFallbackAdapter?: boolean; requestAdapterInfo?(): Promise<AdapterInfoLike> };
  const gpu = (globalThis as { navigator?: { gpu?: { requestAdapter(): Promise<Adapter | null> } } }).navigator?.gpu;
  const adapter = await gpu?.requestAdapter();
  if (!adapter) return undefined;
  const info = adapter.info ?? (await adapter.requestAdapterInfo?.()) ?? {};
  return {
    vendor: info.vendor ?? '',
    architecture: info.architecture ?? '',
    device: info.device ?? '',
    description: info.description ?? '',
    isFallbackAdapter: !!(info.isFallbackAdapter ?? adapter.isFallbackAdapter),
  };
}

/** What the running backend `name` runs on: the WebGPU adapter, or wasm's thread count. */
export async function runningBackendInfo(name: BackendName): Promise<{ adapter?: AdapterInfoLike; software?: string; threads?: number }> {
  if (name === 'webgpu') {
    const adapter = await webGpuAdapterInfo();
    return { adapter, software: softwareAdapterName(adapter) };
  }
  if (name === 'wasm') {
    const { getThreadsCount } = await import('@tensorflow/tfjs-backend-wasm');
    return { threads: getThreadsCount() };
  }
  return {};
}

function describe(name: BackendName, info: { adapter?: AdapterInfoLike; software?: string; threads?: number }): string {
  if (name === 'webgpu') {
    const a = info.adapter;
    const all = a ? [a.vendor, a.architecture, a.device, a.description].filter(Boolean).join(' ') : '';
    return `${all || 'WebGPU adapter'}${info.software ? ` (software: ${info.software})` : ''}`;
  }
  if (name === 'wasm') return `WebAssembly, ${info.threads ?? 1} thread${info.threads === 1 ? '' : 's'}`;
  return 'JavaScript CPU kernels';
}

/**
 * Selects the first backend in `preference` that initialises. The report says which one runs
 * and, when it is not the first choice, why the earlier ones failed.
 */
export async function initBackend(preference: BackendName | readonly BackendName[]): Promise<BackendReport> {
  const order = typeof preference === 'string' ? [preference] : [...preference];
  const failures: string[] = [];
  for (const name of order) {
    try {
      await loadBackend(name);
      const ok = await tf.setBackend(name);
      if (!ok) throw new Error(`tf.setBackend('${name}') returned false`);
      await tf.ready();
      const info = await runningBackendInfo(name);
      const isolated = (globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated;
      const report: BackendReport = { name, detail: describe(name, info), ...info, ...(isNode ? {} : { crossOriginIsolated: !!isolated }) };
      return failures.length ? { ...report, fallbackReason: failures.join('; ') } : report;
    } catch (e) {
      failures.push(`${name}: ${(e as Error).message}`);
    }
  }
  throw new Error(`no TF.js backend could start (${failures.join('; ')})`);
}

export function parseBackendName(s: string): BackendName {
  if (s === 'webgpu' || s === 'wasm' || s === 'cpu') return s;
  throw new Error(`unknown backend "${s}": expected webgpu, wasm or cpu`);
}

/**
 * The largest tensor the running WebGPU device can hold: min(maxBufferSize,
 * maxStorageBufferBindingSize) of its limits (tfjs binds every tensor as one storage buffer).
 * Undefined on other backends.
 */
export function webGpuBufferLimit(): number | undefined {
  if (tf.getBackend() !== 'webgpu') return undefined;
  const limits = (tf.backend() as unknown as { device?: { limits?: { maxBufferSize?: number; maxStorageBufferBindingSize?: number } } }).device?.limits;
  const sizes = [limits?.maxBufferSize, limits?.maxStorageBufferBindingSize].filter((n): n is number => typeof n === 'number' && n > 0);
  return sizes.length ? Math.min(...sizes) : undefined;
}
