/**
 * Headless-browser test harness: bundles a TypeScript entry for the browser with Vite, serves it
 * (and fixture folders) from a local static server, opens it in Debian's chromium through
 * playwright-core, and lets a vitest test call the functions the entry exports to the page.
 *
 * The entry publishes its callable API with `exposeToTests({ ... })` (see ./page-api); the test
 * calls them with `harness.call('name', ...args)`. Arguments and results cross the page boundary
 * as structured-clone data (JSON-like values; typed arrays become plain objects, so return plain
 * arrays or numbers).
 *
 * Nothing is downloaded: the browser is /usr/bin/chromium (or $CHROMIUM_PATH), and the bundle,
 * logs and screenshots go under test-results/browser/<name>/.
 */
import { createReadStream } from 'node:fs';
import { copyFile, mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, extname, join, normalize, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { build } from 'vite';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

/** The flags the browser suite runs with; `--enable-unsafe-webgpu` exposes WebGPU headless (SwiftShader). */
export const CHROMIUM_FLAGS = [
  '--headless=new',
  '--no-sandbox',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--enable-unsafe-webgpu',
] as const;

export interface BrowserHarnessOptions {
  /** Names the output folder test-results/browser/<name>/. */
  readonly name: string;
  /** The page's TypeScript entry, relative to the repository root or absolute. */
  readonly entry: string;
  /** URL prefix (e.g. '/fixtures/') → folder on disk served read-only under it. */
  readonly mounts?: Readonly<Record<string, string>>;
}

export interface BrowserHarness {
  readonly page: Page;
  /** http://127.0.0.1:<port>/ */
  readonly baseUrl: string;
  /** test-results/browser/<name>/ (absolute). */
  readonly resultsDir: string;
  /** Console errors and uncaught page errors seen so far. */
  readonly errors: readonly string[];
  /** Calls `name` from the entry's `exposeToTests` object in the page and returns its result. */
  call<T = unknown>(name: string, ...args: unknown[]): Promise<T>;
  /** Saves a screenshot as <resultsDir>/<label>.png. */
  screenshot(label: string): Promise<void>;
  /** Closes the browser and the server and removes the browser profile. */
  close(): Promise<void>;
}

export function chromiumPath(): string {
  return process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
}

/** Builds `entry` as a browser bundle (ES modules, code-split chunks and wasm assets) into `outDir`. */
export async function buildBrowserBundle(entry: string, outDir: string): Promise<void> {
  await build({
    configFile: false,
    root: repoRoot,
    publicDir: false,
    logLevel: 'warn',
    // A bundle of its own: not the app's vite.config.ts, no dependency pre-bundling cache in the repo.
    cacheDir: join(outDir, '..', '.vite-cache'),
    build: {
      outDir,
      emptyOutDir: true,
      target: 'es2022',
      minify: false,
      sourcemap: true,
      reportCompressedSize: false,
      chunkSizeWarningLimit: 100_000,
      rollupOptions: {
        input: { entry: resolve(repoRoot, entry) },
        output: { format: 'es', entryFileNames: '[name].js' },
        // Node-only branches (guarded by runtime checks) import node: builtins; never bundle them.
        external: (id) => id.startsWith('node:'),
        onwarn: (warning, warn) => {
          if (warning.code === 'EVAL' || warning.code === 'MODULE_LEVEL_DIRECTIVE') return;
          warn(warning);
        },
      },
    },
  });
  const page = `<!doctype html><meta charset="utf-8"><title>CoRAG browser test</title><link rel="icon" href="data:,">
<body><pre id="log"></pre><script type="module" src="./entry.js"></script></body>`;
  await writeFile(join(outDir, 'index.html'), page);
  await copyWasmBinaries(outDir);
}

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.map': 'application/json',
  '.json': 'application/json',
  '.wasm': 'application/wasm',
  '.png': 'image/png',
  '.txt': 'text/plain; charset=utf-8',
};

/**
 * Resolves a URL path against the mounts ('/' = the bundle); undefined when it would leave its
 * folder or matches no mount.
 */
function resolveFile(urlPath: string, mounts: ReadonlyArray<readonly [string, string]>): string | undefined {
  for (const [prefix, dir] of mounts) {
    if (!urlPath.startsWith(prefix)) continue;
    const relative = normalize(decodeURIComponent(urlPath.slice(prefix.length)));
    const file = resolve(dir, relative === '.' || relative === '' ? 'index.html' : relative);
    if (file !== dir && !file.startsWith(dir.endsWith(sep) ? dir : dir + sep)) return undefined;
    return file;
  }
  return undefined;
}

/**
 * A static file server on 127.0.0.1 and an ephemeral port. The page is cross-origin isolated
 * (COOP/COEP) so the wasm backend may use SharedArrayBuffer threads.
 */
export async function serveStatic(mountList: Readonly<Record<string, string>>): Promise<{ server: Server; baseUrl: string }> {
  // Longest prefix first so '/fixtures/' wins over '/'.
  const mounts = Object.entries(mountList)
    .map(([prefix, dir]) => [prefix, resolve(dir)] as const)
    .sort((a, b) => b[0].length - a[0].length);
  const server = createServer(async (req, res) => {
    const headers = {
      'Cross-Origin-Opener-Policy': 'same-origin',
      'Cross-Origin-Embedder-Policy': 'require-corp',
      'Cache-Control': 'no-store',
    };
    try {
      const urlPath = new URL(req.url ?? '/', 'http://127.0.0.1').pathname;
      const file = resolveFile(urlPath, mounts);
      const info = file ? await stat(file).catch(() => undefined) : undefined;
      if (!file || !info?.isFile()) {
        res.writeHead(404, { ...headers, 'Content-Type': 'text/plain' }).end(`not found: ${urlPath}`);
        return;
      }
      res.writeHead(200, {
        ...headers,
        'Content-Type': CONTENT_TYPES[extname(file)] ?? 'application/octet-stream',
        'Content-Length': info.size,
      });
      createReadStream(file).pipe(res);
    } catch (e) {
      res.writeHead(500, { ...headers, 'Content-Type': 'text/plain' }).end(String(e));
    }
  });
  await new Promise<void>((ok, fail) => {
    server.once('error', fail);
    server.listen(0, '127.0.0.1', () => ok());
  });
  const { port } = server.address() as AddressInfo;
  return { server, baseUrl: `http://127.0.0.1:${port}/` };
}

/**
 * tfjs-backend-wasm fetches its .wasm binaries relative to the page when no path was set
 * (Emscripten's script directory is the page's for module scripts), so they go beside index.html.
 */
async function copyWasmBinaries(outDir: string): Promise<void> {
  const require = createRequire(import.meta.url);
  const dist = join(dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json')), 'dist');
  for (const file of ['tfjs-backend-wasm.wasm', 'tfjs-backend-wasm-simd.wasm', 'tfjs-backend-wasm-threaded-simd.wasm']) {
    await copyFile(join(dist, file), join(outDir, file));
  }
}

/**
 * Builds the entry, serves it, opens it in headless chromium and waits until the entry has
 * called `exposeToTests`. Call `close()` in afterAll.
 */
export async function startBrowserHarness(options: BrowserHarnessOptions): Promise<BrowserHarness> {
  const resultsDir = resolve(repoRoot, 'test-results', 'browser', options.name);
  const bundleDir = join(resultsDir, 'bundle');
  await mkdir(resultsDir, { recursive: true });
  await buildBrowserBundle(options.entry, bundleDir);

  const { server, baseUrl } = await serveStatic({
    ...options.mounts,
    '/': bundleDir,
  });
  const profileDir = await mkdtemp(join(tmpdir(), 'corag-chromium-'));
  const log: string[] = [];
  const errors: string[] = [];
  let context: BrowserContext | undefined;

  const close = async () => {
    await context?.close().catch(() => undefined);
    await new Promise<void>((ok) => server.close(() => ok()));
    server.closeAllConnections();
    await rm(profileDir, { recursive: true, force: true });
    await writeFile(join(resultsDir, 'console.log'), log.join('\n') + '\n');
  };

  try {
    // A persistent context is how playwright takes a fresh --user-data-dir. `headless: false`
    // keeps playwright from adding its own --headless; ours (--headless=new) is in the flags.
    context = await chromium.launchPersistentContext(profileDir, {
      executablePath: chromiumPath(),
      headless: false,
      args: [...CHROMIUM_FLAGS],
      timeout: 60_000,
    });
    const page = context.pages()[0] ?? (await context.newPage());
    page.on('console', (msg) => {
      // A failed fetch's message does not name the URL; its location does.
      const where = msg.location().url ? ` (${msg.location().url})` : '';
      const text = msg.text() + where;
      log.push(`[${msg.type()}] ${text}`);
      if (msg.type() === 'error') {
        errors.push(text);
        console.error(`[browser:${options.name}] ${text}`);
      }
    });
    page.on('pageerror', (error) => {
      const line = `${error.name}: ${error.message}\n${error.stack ?? ''}`;
      log.push(`[pageerror] ${line}`);
      errors.push(line);
      console.error(`[browser:${options.name}] uncaught ${line}`);
    });
    await page.goto(baseUrl, { waitUntil: 'load' });
    await page.waitForFunction(() => '__corag' in window, undefined, { timeout: 60_000 });

    return {
      page,
      baseUrl,
      resultsDir,
      errors,
      async call<T>(name: string, ...args: unknown[]): Promise<T> {
        return page.evaluate(
          async ([fn, fnArgs]) => {
            const api = (window as unknown as { __corag: Record<string, (...a: unknown[]) => unknown> }).__corag;
            if (typeof api[fn] !== 'function') throw new Error(`the page exposes no function "${fn}"`);
            return api[fn](...fnArgs);
          },
          [name, args] as const,
        ) as Promise<T>;
      },
      async screenshot(label: string) {
        await page.screenshot({ path: join(resultsDir, `${label}.png`), fullPage: true });
      },
      close,
    };
  } catch (e) {
    await close();
    throw e;
  }
}
