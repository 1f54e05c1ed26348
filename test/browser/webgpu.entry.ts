/**
 * Page for webgpu.browser.test.ts: is WebGPU usable headless, does the project's backend
 * selection pick it, do its kernels agree with the cpu backend in the same page, and does the
 * safetensors parser run in the browser.
 */
import * as tf from '@tensorflow/tfjs-core';
import { initBackend, type BackendName, type BackendReport } from '../../src/model/backend';
import { parseSafetensors, readTensor } from '../../src/model/safetensors';
import { installWebGpuCastFix } from '../../src/model/webgpu/cast-fix';
import { matmulGradientError, matmulWithGradient } from './backend-agreement';
import { exposeToTests, fetchBytes } from './page-api';

export interface AdapterProbe {
  /** `navigator.gpu` exists (the flag took effect). */
  readonly hasNavigatorGpu: boolean;
  /** requestAdapter() returned an adapter. */
  readonly adapter: boolean;
  readonly vendor?: string;
  readonly architecture?: string;
  readonly description?: string;
  /** Why no adapter: the exact error, or that requestAdapter() returned null. */
  readonly error?: string;
}

async function probeAdapter(): Promise<AdapterProbe> {
  const gpu = navigator.gpu;
  if (!gpu) return { hasNavigatorGpu: false, adapter: false, error: 'navigator.gpu is undefined' };
  try {
    const adapter = await gpu.requestAdapter();
    if (!adapter) return { hasNavigatorGpu: true, adapter: false, error: 'navigator.gpu.requestAdapter() returned null' };
    const { vendor, architecture, description } = adapter.info;
    return { hasNavigatorGpu: true, adapter: true, vendor, architecture, description };
  } catch (e) {
    return { hasNavigatorGpu: true, adapter: false, error: `${(e as Error).name}: ${(e as Error).message}` };
  }
}

export interface BackendAgreement {
  readonly backend: string;
  readonly reference: string;
  /** Worst max|a-b|/max|b| over A·B and both gradients. */
  readonly maxRelativeError: number;
  /** Tensors left behind by the computation on `backend` (should be 0). */
  readonly leakedTensors: number;
}

/** The project's backend selection plus the webgpu Cast correction (until backend.ts applies it itself). */
async function startBackend(preference: BackendName | BackendName[]): Promise<BackendReport> {
  const report = await initBackend(preference);
  if (report.name === 'webgpu') installWebGpuCastFix();
  return report;
}

/** transpose(cast(int32 → float32)) on the GPU: invalid WGSL in tfjs-backend-webgpu 4.22 without the fix. */
async function transposeCastInts(): Promise<number[]> {
  await startBackend('webgpu');
  const cpuForward = tf.env().getBool('WEBGPU_CPU_FORWARD');
  tf.env().set('WEBGPU_CPU_FORWARD', false);
  try {
    const out = tf.tidy(() => tf.transpose(tf.cast(tf.tensor3d([1, 2, 3, 4, 5, 6, 7, 8], [2, 2, 2], 'int32'), 'float32'), [0, 2, 1]));
    const values = Array.from(await out.data());
    out.dispose();
    return values;
  } finally {
    tf.env().set('WEBGPU_CPU_FORWARD', cpuForward);
  }
}

/** Runs the matmul+gradient on cpu and on `backend` in this page and compares them. */
async function compareWithCpu(backend: BackendName): Promise<BackendAgreement> {
  await initBackend('cpu');
  const reference = await matmulWithGradient();
  await startBackend(backend);
  const before = tf.memory().numTensors;
  const actual = await matmulWithGradient();
  const leakedTensors = tf.memory().numTensors - before;
  return { backend: tf.getBackend(), reference: 'cpu', maxRelativeError: matmulGradientError(actual, reference), leakedTensors };
}

/** Parses a served safetensors file in the page; returns what a test can check against Node. */
async function parseServedSafetensors(
  url: string,
): Promise<{ names: string[]; firstTensor: { name: string; dtype: string; shape: number[]; head: number[] } }> {
  const file = parseSafetensors(await fetchBytes(url), url);
  const names = [...file.tensors.keys()].sort();
  const { dtype, shape, data } = readTensor(file, names[0]);
  return { names, firstTensor: { name: names[0], dtype, shape, head: Array.from(data.slice(0, 8) as ArrayLike<number>) } };
}

exposeToTests({
  probeAdapter,
  initBackend: (preference: BackendName[]): Promise<BackendReport> => startBackend(preference),
  compareWithCpu,
  transposeCastInts,
  parseServedSafetensors,
});
