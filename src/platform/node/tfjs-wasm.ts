/**
 * Where tfjs-backend-wasm's .wasm binaries are in Node: the package's dist folder (in a browser
 * the bundler serves them; see src/platform/browser).
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

export function tfjsWasmDir(): string {
  const require = createRequire(import.meta.url);
  return join(dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json')), 'dist') + '/';
}
