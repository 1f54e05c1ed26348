/**
 * `npm start`'s pre-step: builds the web app into dist/ unless dist/ was built from exactly the
 * current sources (src/platform/node/build-fingerprint.ts), then records the fingerprint.
 * `--force` rebuilds anyway. (`npm run build` always builds.)
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { builtFingerprint, sourceFingerprint } from '../src/platform/node/build-fingerprint';
import { buildWebApp } from '../src/platform/node/web-app-build';

const root = fileURLToPath(new URL('..', import.meta.url));
const dist = join(root, 'dist');
const t0 = Date.now();
const fingerprint = sourceFingerprint(root);
if (!process.argv.includes('--force') && builtFingerprint(dist) === fingerprint) {
  console.log(`web app in dist/ is up to date (checked in ${Date.now() - t0} ms)`);
} else {
  console.log('building the web app into dist/ (about 25 s) …');
  await buildWebApp(root, dist, { minify: true, sourcemap: true }, fingerprint);
  console.log(`built in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
}
