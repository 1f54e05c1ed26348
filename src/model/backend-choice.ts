/**
 * Which TF.js backend a browser tab runs, decided from measurements: each available backend runs a
 * short matmul probe (src/model/backend-probe.ts) and the fastest wins. Pure functions only (no
 * tfjs, no DOM), so the rules are unit-tested in Node with made-up measurements.
 *
 * Why measure instead of preferring WebGPU: a WebGPU adapter can be a software rasteriser on the
 * CPU (SwiftShader in headless Chromium, llvmpipe/lavapipe on Linux without a GPU driver), which
 * runs the models tens of times slower than WebAssembly on the same cores. Such an adapter is never
 * called "your GPU".
 */

export type BackendName = 'webgpu' | 'wasm' | 'cpu';

/** What the page lets the user pick (Settings): automatic (measure) or one backend. */
export type BackendSetting = 'auto' | BackendName;

export const BACKEND_SETTINGS: readonly BackendSetting[] = ['auto', 'webgpu', 'wasm', 'cpu'];

/** The fields of a WebGPU adapter (GPUAdapter.info plus isFallbackAdapter) this module reads. */
export interface AdapterInfoLike {
  readonly vendor?: string;
  readonly architecture?: string;
  readonly device?: string;
  readonly description?: string;
  /** GPUAdapter.isFallbackAdapter (older Chrome) or GPUAdapterInfo.isFallbackAdapter (newer). */
  readonly isFallbackAdapter?: boolean;
}

const SOFTWARE_NAMES: ReadonlyArray<readonly [RegExp, string]> = [
  [/swiftshader/i, 'SwiftShader'],
  [/llvmpipe/i, 'llvmpipe'],
  [/lavapipe/i, 'lavapipe'],
  [/warp|microsoft basic render/i, 'WARP'],
  [/\bsoftware\b/i, 'software'],
  [/\bcpu\b/i, 'CPU'],
];

/**
 * The name of the software rasteriser behind a WebGPU adapter ("SwiftShader", "llvmpipe", …), or
 * "fallback adapter" when the browser flags it as one; undefined for a hardware adapter.
 */
export function softwareAdapterName(info: AdapterInfoLike | undefined): string | undefined {
  if (!info) return undefined;
  const text = [info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(' ');
  for (const [pattern, name] of SOFTWARE_NAMES) if (pattern.test(text)) return name;
  return info.isFallbackAdapter ? 'fallback adapter' : undefined;
}

/** A readable adapter name: its description when it has one, else vendor + architecture + device. */
export function adapterLabel(info: AdapterInfoLike | undefined): string {
  if (!info) return 'unknown adapter';
  if (info.description?.trim()) return info.description.trim();
  return [info.vendor, info.architecture, info.device].filter((s) => s?.trim()).join(' ') || 'unknown adapter';
}

/** One backend's probe: whether it started and how fast it multiplied matrices. */
export interface BackendProbe {
  readonly name: BackendName;
  readonly ok: boolean;
  /** Measured matmul rate (GFLOP/s) after a warm-up; absent when the backend did not start. */
  readonly gflops?: number;
  /** Why it did not start or measure. */
  readonly error?: string;
  /** webgpu: the adapter. */
  readonly adapter?: AdapterInfoLike;
  /** webgpu: the software rasteriser's name when the adapter is not a hardware GPU. */
  readonly software?: string;
  /** wasm: threads XNNPACK uses (getThreadsCount()). */
  readonly threads?: number;
  /** Milliseconds the probe took in all (start-up, warm-up, measurement). */
  readonly millis?: number;
}

export interface BackendChoice {
  /** Start these in order (the first that starts runs): the choice first, then the fallbacks. */
  readonly order: readonly BackendName[];
  /** How the first was chosen. */
  readonly by: 'measured' | 'setting' | 'url';
  /** The measurements it was chosen from (empty when nothing was measured). */
  readonly probes: readonly BackendProbe[];
}

/** The order backends are tried in when nothing is measured or a measurement failed: cpu always works. */
const FALLBACK_ORDER: readonly BackendName[] = ['wasm', 'cpu', 'webgpu'];

/**
 * The backend order for a tab. A `?backend=` URL parameter wins, then a non-automatic setting;
 * otherwise the measured probes decide: fastest first (by GFLOP/s), then the other backends that
 * started, fastest first, then any left (wasm, cpu, webgpu) as last resorts.
 */
export function chooseBackend(probes: readonly BackendProbe[], setting: BackendSetting = 'auto', url?: BackendName): BackendChoice {
  if (url) return { order: [url], by: 'url', probes };
  if (setting !== 'auto') return { order: [setting, ...FALLBACK_ORDER.filter((n) => n !== setting)], by: 'setting', probes };
  const measured = probes
    .filter((p) => p.ok && typeof p.gflops === 'number' && Number.isFinite(p.gflops) && p.gflops > 0)
    .sort((a, b) => b.gflops! - a.gflops!)
    .map((p) => p.name);
  const order = [...measured, ...FALLBACK_ORDER.filter((n) => !measured.includes(n))];
  return { order, by: 'measured', probes };
}

export function parseBackendSetting(s: string | null | undefined): BackendSetting {
  return s === 'webgpu' || s === 'wasm' || s === 'cpu' ? s : 'auto';
}

/** What runs, in a few words, as the banner says it. */
export interface RunningBackend {
  readonly name: BackendName;
  readonly adapter?: AdapterInfoLike;
  readonly software?: string;
  readonly threads?: number;
  readonly crossOriginIsolated?: boolean;
}

export function backendHeadline(r: RunningBackend): string {
  switch (r.name) {
    case 'webgpu':
      return r.software ? `WebGPU on a software adapter (${r.software})` : `GPU: ${adapterLabel(r.adapter)}`;
    case 'wasm': {
      const n = r.threads ?? 1;
      const threads = `${n} thread${n === 1 ? '' : 's'}`;
      return `CPU, WebAssembly, ${threads}${n === 1 && r.crossOriginIsolated === false ? ' (no cross-origin isolation)' : ''}`;
    }
    case 'cpu':
      return 'CPU, JavaScript kernels';
  }
}

/** Short label of a probe for the list of measured rates. */
export function probeLabel(p: BackendProbe): string {
  if (p.name === 'webgpu') return p.software ? `WebGPU (${p.software})` : `WebGPU (${adapterLabel(p.adapter)})`;
  if (p.name === 'wasm') return `WebAssembly${p.threads ? ` (${p.threads} thread${p.threads === 1 ? '' : 's'})` : ''}`;
  return 'JavaScript CPU';
}

/** "WebAssembly (2 threads) 21.4 GFLOP/s, JavaScript CPU 1.3 GFLOP/s, WebGPU (SwiftShader) did not start: …" */
export function formatProbes(probes: readonly BackendProbe[]): string {
  return [...probes]
    .sort((a, b) => (b.gflops ?? -1) - (a.gflops ?? -1))
    .map((p) => (p.ok && p.gflops !== undefined ? `${probeLabel(p)} ${formatRate(p.gflops)} GFLOP/s` : `${probeLabel(p)}: ${p.error ?? 'not measured'}`))
    .join(', ');
}

function formatRate(g: number): string {
  return g >= 10 ? g.toFixed(0) : g >= 1 ? g.toFixed(1) : g.toFixed(2);
}
