/**
 * Entry of the device bundles that run a project script on the lent machine's CPU cores
 * (../shared/gpu/pack.sh bundles it into .gpu/main.mjs; nothing of node_modules is there):
 * hands initBackend the gradients and the .wasm folder (.gpu/wasm/, copied by
 * bench/device/pack-node.sh), then runs the script named by the first argument with the rest.
 *
 *   bash .gpu/run.sh finetune-curves --lrs 1e-4 ...
 */
import { provideNodeBackendPlatform } from '../../src/model/backend';

provideNodeBackendPlatform({
  registerGradients: () => import('@tensorflow/tfjs-core/dist/register_all_gradients'),
  tfjsWasmDir: () => new URL('./wasm/', import.meta.url).pathname,
});

const scripts: Record<string, () => Promise<unknown>> = {
  'finetune-curves': () => import('../../scripts/finetune-curves'),
  crab: () => import('../../scripts/crab'),
};
const [name, ...rest] = process.argv.slice(2);
const run = name ? scripts[name] : undefined;
if (!run) {
  process.stderr.write(`usage: run.sh ${Object.keys(scripts).join('|')} [args]\n`);
  process.exit(2);
}
process.argv = [process.argv[0], process.argv[1], ...rest];
await run();
