/**
 * npm run conformance -- <fixture-dir> [--backend cpu|wasm|webgpu] [--forward-tol X] [--grad-tol Y]
 *
 * The folder holds config.json, model.safetensors (or pytorch_model.bin, zip or legacy torch.save
 * format, read without running pickle code), expected.safetensors, expected.json, grads.safetensors.
 * Prints one JSON line {"model", "max_rel_err", "grad_rel_l2", "ok", ...} and exits 1 when a bound
 * is broken (2 on bad usage or unreadable input).
 */
import { existsSync, readFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { initBackend, parseBackendName } from '../src/model/backend';
import { checkFixture, defaultTolerances, fixtureFilesFromBytes } from '../src/model/conformance';

const USAGE = 'usage: npm run conformance -- <fixture-dir> [--backend cpu|wasm|webgpu] [--forward-tol X] [--grad-tol Y]';

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      backend: { type: 'string', default: 'cpu' },
      'forward-tol': { type: 'string' },
      'grad-tol': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  if (positionals.length !== 1) {
    console.error(USAGE);
    return 2;
  }
  const dir = resolve(positionals[0]);
  const backend = parseBackendName(values.backend!);
  if (backend === 'webgpu') {
    const { installNodeWebGpu } = await import('../src/platform/node/webgpu');
    await installNodeWebGpu();
  }
  const files = fixtureFilesFromBytes((name) => {
    const p = join(dir, name);
    return existsSync(p) ? new Uint8Array(readFileSync(p)) : undefined;
  }, dir);
  const report = await initBackend(backend);
  const tol = defaultTolerances(report.name);
  if (values['forward-tol']) tol.forward = Number(values['forward-tol']);
  if (values['grad-tol']) tol.grads = Number(values['grad-tol']);
  if (!(tol.forward > 0) || !(tol.grads > 0)) throw new Error('tolerances must be positive numbers');
  const result = await checkFixture(files, basename(dir), report.name, tol);
  console.log(JSON.stringify(result));
  return result.ok ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (e: Error) => {
    console.error(`conformance: ${e.message}`);
    process.exit(2);
  },
);
