/**
 * One code path, backend chosen at start. The browser uses `webgpu` (falling back to `wasm`,
 * then `cpu`, with the reason kept so the UI can say why); Node and tests use `cpu` (the
 * reference-accurate one) or `wasm` (fast, threaded SIMD).
 */
import * as tf from '@tensorflow/tfjs-core';

export type BackendName = 'webgpu' | 'wasm' | 'cpu';

export interface BackendReport {
  /** The backend actually running. */
  readonly name: BackendName;
  /** Human-readable detail: WebGPU adapter, wasm features. */
  readonly detail: string;
  /** Why a preferred backend was not used, if it wasn't. */
  readonly fallbackReason?: string;
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

async function register(name: BackendName): Promise<void> {
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

async function describe(name: BackendName): Promise<string> {
  if (name === 'webgpu') {
    const gpu = (globalThis as { navigator?: { gpu?: { requestAdapter(): Promise<unknown> } } }).navigator?.gpu;
    const adapter = (await gpu?.requestAdapter()) as { info?: { vendor?: string; architecture?: string; description?: string } } | null;
    const info = adapter?.info;
    return info ? [info.vendor, info.architecture, info.description].filter(Boolean).join(' ') || 'WebGPU adapter' : 'WebGPU adapter';
  }
  if (name === 'wasm') return 'WebAssembly (SIMD/threads when the platform allows)';
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
      await register(name);
      const ok = await tf.setBackend(name);
      if (!ok) throw new Error(`tf.setBackend('${name}') returned false`);
      await tf.ready();
      const report: BackendReport = { name, detail: await describe(name) };
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
