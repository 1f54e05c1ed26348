/**
 * Page for conformance.browser.test.ts: fetches a Hugging Face reference fixture folder served
 * by the harness and runs the model's own conformance check on the best backend the page has
 * (webgpu, else wasm, else cpu), with the bounds that backend allows.
 */
import * as tf from '@tensorflow/tfjs-core';
import { initBackend, type BackendReport } from '../../src/model/backend';
import { checkBertFixture } from '../../src/model/bert/conformance';
import { checkT5Fixture } from '../../src/model/t5/conformance';
import { installWebGpuCastFix } from '../../src/model/webgpu/cast-fix';
import { exposeToTests, fetchBytes } from './page-api';

/** Fixture README: float32 on cpu allows 1e-4 / 1e-3; GPU kernels reorder sums, so 10x looser. */
export function boundsFor(backend: string): { forward: number; grads: number } {
  return backend === 'webgpu' ? { forward: 1e-3, grads: 1e-2 } : { forward: 1e-4, grads: 1e-3 };
}

export interface BrowserConformance {
  readonly fixture: string;
  readonly kind: 't5' | 'bert';
  readonly backend: BackendReport;
  readonly bounds: { forward: number; grads: number };
  readonly max_rel_err: Record<string, number>;
  readonly grad_rel_l2: number;
  readonly worst_grad: string;
  readonly ok_forward: boolean;
  readonly ok_grads: boolean;
  /** Tensors still allocated after the check minus before (should be 0). */
  readonly leakedTensors: number;
}

async function fetchFixture(base: string) {
  const [config, model, expected, expectedJson, grads] = await Promise.all([
    fetchBytes(`${base}/config.json`),
    fetchBytes(`${base}/model.safetensors`),
    fetchBytes(`${base}/expected.safetensors`),
    fetchBytes(`${base}/expected.json`),
    fetchBytes(`${base}/grads.safetensors`),
  ]);
  const json = (bytes: Uint8Array) => JSON.parse(new TextDecoder().decode(bytes));
  return { config: json(config), model, expected, expectedJson: json(expectedJson), grads };
}

async function checkServedFixture(fixture: string): Promise<BrowserConformance> {
  const backend = await initBackend(['webgpu', 'wasm', 'cpu']);
  if (backend.name === 'webgpu') installWebGpuCastFix(); // until backend.ts applies it itself
  const files = await fetchFixture(`/fixtures/${fixture}`);
  const modelType = (files.config as { model_type?: unknown }).model_type;
  if (modelType !== 't5' && modelType !== 'bert') throw new Error(`${fixture}: unsupported model_type ${JSON.stringify(modelType)}`);
  const bounds = boundsFor(backend.name);
  const before = tf.memory().numTensors;
  const result = modelType === 't5' ? await checkT5Fixture(files, bounds) : await checkBertFixture(files, bounds);
  return { fixture, kind: modelType, backend, bounds, ...result, leakedTensors: tf.memory().numTensors - before };
}

exposeToTests({ checkServedFixture });
