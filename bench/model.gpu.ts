/**
 * The model benchmark as one self-contained bundle for the lent GPU machine (no Node.js project
 * there): `../shared/gpu/pack.sh bench/model.gpu.ts`, then `bash .gpu/run.sh --out $OUT`.
 *
 * It starts backends without src/model/backend.ts, whose Node path loads the gradient registry
 * from a file beside the source (src/platform/node/tfjs-gradients.ts), which is not in the
 * bundle. A bundler resolves tfjs-core's gradient modules directly, so they are imported here.
 */
import '@tensorflow/tfjs-core/dist/register_all_gradients';
import * as tf from '@tensorflow/tfjs-core';
import type { BackendName, BackendReport } from '../src/model/backend';
import { installNodeWebGpu } from '../src/platform/node/webgpu';
import { runModelBench } from './model-bench-cli';

async function startBackend(name: BackendName): Promise<BackendReport> {
  // cpu: esbuild drops tfjs-backend-cpu's registration (its package marks it side-effect free);
  // wasm: its .wasm binaries are not packed. Measure those with `npm run bench:model`.
  if (name !== 'webgpu') throw new Error(`${name} is not in the GPU bundle (webgpu only)`);
  await installNodeWebGpu(); // imports and registers the webgpu backend
  if (!(await tf.setBackend(name))) throw new Error(`tf.setBackend('${name}') returned false`);
  await tf.ready();
  const adapter = await navigator.gpu.requestAdapter();
  const info = adapter?.info;
  return { name, detail: [info?.vendor, info?.architecture, info?.description].filter(Boolean).join(' ') || 'WebGPU adapter' };
}

process.exitCode = await runModelBench(startBackend, process.argv.slice(2));
