/**
 * Whether the built web app (dist/) is up to date with its inputs, so `npm start` rebuilds only
 * after a change (a Vite build takes ~25 s). The fingerprint is a SHA-256 over the path and the
 * content of every input file — content, not modification times, so a fresh clone, a checkout or
 * a touched file that did not change never fools it — and dist/ carries the fingerprint it was
 * built from.
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, sep } from 'node:path';

/** What the web app is built from (vite.config.ts: index.html → src/ui, workers/, public/ copied). */
export const WEB_APP_INPUTS = ['index.html', 'vite.config.ts', 'package-lock.json', 'tsconfig.json', 'src', 'workers', 'public'] as const;

/** Where a build records its fingerprint. */
export const STAMP_FILE = '.build-fingerprint';

function* files(root: string, path: string): Generator<string> {
  const full = join(root, path);
  if (!existsSync(full)) return;
  if (statSync(full).isDirectory()) {
    for (const name of readdirSync(full).sort()) yield* files(root, join(path, name));
  } else yield path;
}

export function sourceFingerprint(root: string, inputs: readonly string[] = WEB_APP_INPUTS): string {
  const hash = createHash('sha256');
  for (const input of inputs) {
    for (const file of files(root, input)) {
      hash.update(`${file.split(sep).join('/')}\u0000`);
      hash.update(readFileSync(join(root, file)));
      hash.update('\u0000');
    }
  }
  return hash.digest('hex');
}

/** The fingerprint dist/ was built from, or null (never built, or built without a stamp). */
export function builtFingerprint(distDir: string): string | null {
  const stamp = join(distDir, STAMP_FILE);
  return existsSync(stamp) && existsSync(join(distDir, 'index.html')) ? readFileSync(stamp, 'utf8').trim() : null;
}
