/**
 * Builds the web app with Vite (the app's own vite.config.ts), and keeps one build per set of
 * sources for the browser tests and the browser benchmark. A build takes 25–40 s on two cores;
 * six browser test files used to build the same app each. Now the first caller builds into
 * node_modules/.cache/corag-web-app/<flavour>-<fingerprint>/ and every later caller, in this
 * process or another, reuses it while the sources (build-fingerprint.ts: content of every input)
 * stay the same. `npm start` keeps its own dist/ (scripts/build-if-stale.ts).
 */
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { build } from 'vite';
import { builtFingerprint, sourceFingerprint, STAMP_FILE } from './build-fingerprint';

export interface WebAppBuildOptions {
  /** Minified as `npm start` serves it (the benchmark), or readable (the tests' stack traces). */
  readonly minify: boolean;
  /** Source maps, as `npm start`'s dist/ has; the tests and the benchmark skip them (faster builds). */
  readonly sourcemap: boolean;
}

/** Builds the app from `root` into `outDir` (emptied first) and stamps it with `fingerprint`. */
export async function buildWebApp(root: string, outDir: string, options: WebAppBuildOptions, fingerprint = sourceFingerprint(root)): Promise<void> {
  await build({
    configFile: join(root, 'vite.config.ts'),
    root,
    logLevel: 'warn',
    cacheDir: `${outDir}.vite-cache`,
    build: { outDir, emptyOutDir: true, minify: options.minify, sourcemap: options.sourcemap, reportCompressedSize: false },
  });
  rmSync(`${outDir}.vite-cache`, { recursive: true, force: true });
  // Written last: an interrupted build has no stamp and is never reused.
  writeFileSync(join(outDir, STAMP_FILE), `${fingerprint}\n`);
}

/** A build lock older than this is taken to belong to a process that died mid-build. */
const STALE_LOCK_MS = 10 * 60_000;
/** Builds of older sources are removed once they have not been used for this long. */
const UNUSED_BUILD_MS = 60 * 60_000;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * The folder of a build of the current sources, built now if no process has built them yet.
 * Concurrent callers (vitest runs test files in parallel processes) wait for one builder: the
 * lock is a directory, created atomically; the build goes to a temporary folder renamed into
 * place, so a reader never sees half a build. Callers must not write into the folder. `builder`
 * is Vite's build unless a test of the caching itself passes another.
 */
export async function cachedWebAppBuild(root: string, options: WebAppBuildOptions, builder: typeof buildWebApp = buildWebApp): Promise<string> {
  const cache = join(root, 'node_modules', '.cache', 'corag-web-app');
  mkdirSync(cache, { recursive: true });
  const fingerprint = sourceFingerprint(root);
  const flavour = `${options.minify ? 'minified' : 'plain'}${options.sourcemap ? '-mapped' : ''}`;
  const folder = join(cache, `${flavour}-${fingerprint.slice(0, 16)}`);
  const lock = join(cache, `${flavour}.lock`);
  const reuse = () => {
    const now = new Date();
    utimesSync(folder, now, now); // marks it in use for removeUnusedBuilds
    return folder;
  };
  for (;;) {
    if (builtFingerprint(folder) === fingerprint) return reuse();
    try {
      mkdirSync(lock);
    } catch {
      const held = statSync(lock, { throwIfNoEntry: false });
      if (held && Date.now() - held.mtimeMs > STALE_LOCK_MS) rmSync(lock, { recursive: true, force: true });
      await sleep(500);
      continue;
    }
    try {
      if (builtFingerprint(folder) === fingerprint) return reuse();
      const partial = `${folder}.building-${process.pid}`;
      await builder(root, partial, options, fingerprint);
      rmSync(folder, { recursive: true, force: true });
      renameSync(partial, folder);
      removeUnusedBuilds(cache, flavour, folder);
      return folder;
    } finally {
      rmSync(lock, { recursive: true, force: true });
    }
  }
}

/** Drops builds of other sources (and leftovers of killed builds) not touched for an hour. */
function removeUnusedBuilds(cache: string, flavour: string, keep: string): void {
  for (const name of readdirSync(cache)) {
    const path = join(cache, name);
    if (path === keep || !name.startsWith(`${flavour}-`) || !existsSync(path)) continue;
    if (Date.now() - statSync(path).mtimeMs > UNUSED_BUILD_MS) rmSync(path, { recursive: true, force: true });
  }
}
