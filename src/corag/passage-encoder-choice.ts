/**
 * Which engine runs the tab's frozen passage encoder: our tfjs graph, or the same weights as an
 * ONNX graph on ONNX Runtime Web (issue 20: faster at equal embeddings on wasm,
 * docs/PERFORMANCE.md "Transformers.js side by side"). The rule, the setting that overrides it,
 * and the equality gate that every ONNX graph has to pass before it embeds anything.
 */
import type { BackendReport } from '../model/backend';

export type PassageEncoderEngine = 'tfjs' | 'onnx';
/** `auto` follows the measurements (onnxWanted); the others force an engine (ONNX still has to pass the gate). */
export type PassageEncoderSetting = 'auto' | PassageEncoderEngine;

export const PASSAGE_ENCODER_SETTINGS: readonly PassageEncoderSetting[] = ['auto', 'tfjs', 'onnx'];

export function parsePassageEncoderSetting(value: string | null | undefined): PassageEncoderSetting {
  if (value === null || value === undefined || value === '') return 'auto';
  if ((PASSAGE_ENCODER_SETTINGS as readonly string[]).includes(value)) return value as PassageEncoderSetting;
  throw new Error(`unknown passage encoder "${value}": expected ${PASSAGE_ENCODER_SETTINGS.join(', ')}`);
}

/**
 * Largest per-passage relative difference (max |onnx − tfjs| / max |tfjs|) the ONNX graph may
 * show on the probe passages: issue 20's "equal embeddings" bound, and the coordinator's
 * tolerance for contributed embeddings (server/passage-intake.ts, relative L2 ≤ 1e-3), so a
 * passing graph's embeddings are accepted as this session's. Honest graphs measure ≤ 1e-6.
 */
export const ONNX_GATE_MAX_RELATIVE_DIFF = 1e-3;

/**
 * Texts both engines embed at load, in one padded batch: short and long rows (padding and the
 * attention mask matter), words outside a small vocabulary, digits and punctuation.
 */
export const GATE_PROBE_PASSAGES: readonly string[] = [
  'Warsaw stands on the Vistula river in east-central Poland.',
  'Nikola Tesla was born in 1856 in Smiljan, then part of the Austrian Empire; he moved to the United States in 1884 and worked for Thomas Edison before founding his own laboratory, where he developed alternating-current motors and transformers.',
  'Photosynthesis',
  'The coordinator keeps every contributed passage exactly once, whoever sends it — 42 times, at 3.5% loss?',
];

/** Token limit of the probe texts (their ids are the same for both engines). */
export const GATE_PROBE_MAX_LENGTH = 96;

/** Per row of [rows × dim]: max |a − reference| / max |reference|; the worst row (NaN if any value is NaN). */
export function maxRowRelativeDifference(a: Float32Array, reference: Float32Array, dim: number): number {
  if (a.length !== reference.length || a.length % dim !== 0) throw new Error(`embeddings differ in size: ${a.length} vs ${reference.length} (dim ${dim})`);
  let worst = 0;
  for (let start = 0; start < a.length; start += dim) {
    let diff = 0;
    let scale = 0;
    for (let j = start; j < start + dim; j++) {
      const d = Math.abs(a[j] - reference[j]);
      if (Number.isNaN(d)) return NaN;
      diff = Math.max(diff, d);
      scale = Math.max(scale, Math.abs(reference[j]));
    }
    worst = Math.max(worst, diff / Math.max(scale, 1e-30));
  }
  return worst;
}

/**
 * Whether to build the ONNX engine, and why. `auto`: yes unless tfjs runs on a hardware GPU —
 * ONNX Runtime runs here on its wasm (CPU) provider, measured faster than tfjs's wasm and
 * SwiftShader backends; against tfjs on a real GPU it was never measured, so that tab keeps tfjs.
 */
export function onnxWanted(
  setting: PassageEncoderSetting,
  backend: Pick<BackendReport, 'name' | 'software'>,
): { readonly build: boolean; readonly why: string } {
  if (setting === 'tfjs') return { build: false, why: 'tfjs chosen by the passage-encoder setting' };
  if (setting === 'onnx') return { build: true, why: 'ONNX Runtime chosen by the passage-encoder setting' };
  if (backend.name === 'webgpu' && !backend.software)
    return { build: false, why: 'tfjs runs on a GPU here; ONNX Runtime (wasm, CPU) was measured faster only against tfjs on the CPU' };
  return {
    build: true,
    why: `ONNX Runtime measured faster than tfjs ${backend.name === 'webgpu' ? 'on a software WebGPU adapter' : `on ${backend.name}`} at equal embeddings`,
  };
}

/**
 * Threads for ONNX Runtime's wasm: tfjs's own count when tfjs runs on wasm (both then use the
 * same cores), else the count tfjs-backend-wasm would pick (hardwareConcurrency / 2 when
 * cross-origin isolated, else 1; see src/model/backend.ts).
 */
export function onnxThreads(backend: Pick<BackendReport, 'threads' | 'crossOriginIsolated'>, hardwareConcurrency: number | undefined): number {
  if (backend.threads !== undefined) return Math.max(1, backend.threads);
  if (!backend.crossOriginIsolated) return 1;
  return Math.max(1, Math.floor((hardwareConcurrency ?? 2) / 2));
}

/** What the worker reports about its passage encoder (shown beside the backend banner). */
export interface PassageEncoderReport {
  readonly engine: PassageEncoderEngine;
  readonly setting: PassageEncoderSetting;
  /** Engine and where it runs, e.g. "ONNX Runtime Web 1.22.0 (wasm, 4 threads)" or "tfjs (wasm)". */
  readonly detail: string;
  /** Why this engine (the rule, or the setting). */
  readonly why: string;
  /** Set when ONNX was wanted but is not used: build or session error, or the gate refused it. */
  readonly fallbackReason?: string;
  /** The gate's measurement (max per-passage relative difference on the probe passages), when it ran. */
  readonly gateRelativeDiff?: number;
  /** Seconds spent writing the ONNX graph, creating its session and running the gate (in the background, while tfjs embedded). */
  readonly onnxSetupSeconds?: number;
  /** True while the ONNX engine is being built and gated in the background; tfjs embeds meanwhile. */
  readonly building?: boolean;
  /**
   * Set once ONNX took over: how many passages tfjs had embedded before. Those embeddings stay as
   * they are (stored, sent): they agree with ONNX's within the gate's bound, which is also the
   * coordinator's tolerance for contributed embeddings.
   */
  readonly tfjsPassagesBeforeSwitch?: number;
}

/** One line for people: which engine embeds passages and why. */
export function describePassageEncoder(r: PassageEncoderReport): string {
  const gate = r.gateRelativeDiff !== undefined ? `, equal to tfjs within ${r.gateRelativeDiff.toExponential(1)}` : '';
  if (r.fallbackReason) return `Passages embed with ${r.detail}: ONNX Runtime was not used (${r.fallbackReason}).`;
  if (r.building) return `Passages embed with ${r.detail} while ONNX Runtime is prepared and checked against it in the background — ${r.why}.`;
  const before = r.tfjsPassagesBeforeSwitch
    ? ` (${r.tfjsPassagesBeforeSwitch === 1 ? 'the first passage was' : `the first ${r.tfjsPassagesBeforeSwitch} passages were`} embedded with tfjs while it was prepared; both agree within the gate's ${ONNX_GATE_MAX_RELATIVE_DIFF})`
    : '';
  return `Passages embed with ${r.detail}${gate}${before} — ${r.why}.`;
}
