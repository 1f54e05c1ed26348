/**
 * `npm run bench:model`: the model benchmark on every backend this machine has (cpu, wasm, and
 * webgpu through Dawn; SwiftShader when there is no GPU). See model-bench-cli.ts for options.
 */
import { initBackend, type BackendName } from '../src/model/backend';
import { installNodeWebGpu } from '../src/platform/node/webgpu';
import { runModelBench } from './model-bench-cli';

async function startBackend(name: BackendName) {
  if (name === 'webgpu') await installNodeWebGpu();
  return initBackend(name);
}

process.exitCode = await runModelBench(startBackend, process.argv.slice(2));
