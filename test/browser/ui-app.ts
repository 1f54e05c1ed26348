/**
 * Runs the real web app for browser tests: Vite builds it (the app's own vite.config.ts) once per
 * set of sources into node_modules/.cache (src/platform/node/web-app-build.ts), the real coordinator (server/app.ts) serves it on 127.0.0.1 with a temp data folder,
 * and Debian's chromium (playwright-core, the harness flags) opens tabs in separate contexts, so
 * each tab has its own IndexedDB like a separate browser.
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { buildApp, type AppOptions, type CoordinatorApp } from '../../server/app';
import { cachedWebAppBuild } from '../../src/platform/node/web-app-build';
import { CHROMIUM_FLAGS, chromiumPath } from './harness';

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

export interface RunningApp extends CoordinatorApp {
  readonly url: string;
  readonly browser: Browser;
  readonly resultsDir: string;
  /** Console errors of every tab. */
  readonly errors: string[];
  /** "METHOD /path tokenTail" of every request the coordinator received, in order. */
  readonly requests: string[];
  /** A fresh browser context (own storage) with one page, console captured. */
  newTab(label: string): Promise<{ context: BrowserContext; page: Page }>;
  close(): Promise<void>;
}

/**
 * `networkUrls`: what the coordinator reports as reachable from other devices (the join QR code);
 * `publicSession`: the session its join page offers without a code.
 */
export async function startApp(name: string, options: Pick<AppOptions, 'networkUrls' | 'publicSession'> = {}): Promise<RunningApp> {
  const work = await mkdtemp(join(tmpdir(), 'corag-e2e-'));
  // One build of the current sources, shared by every browser test file (src/platform/node/web-app-build.ts).
  const dist = await cachedWebAppBuild(repoRoot, { minify: false, sourcemap: false });
  // Every tab joins from 127.0.0.1 (and again on each ?join= visit): lift the per-IP join limit as test/server/helpers.ts does.
  const built = await buildApp({ dataDir: join(work, 'data'), staticDir: dist, rateLimitPerMinute: 100_000, joinsPerMinutePerIp: 1_000_000, ...options });
  const requests: string[] = [];
  // The token's last characters tell which client made a request (tokens are random).
  built.app.addHook('onRequest', async (req) => {
    requests.push(`${req.method} ${req.url.split('?')[0]} ${(req.headers.authorization ?? '').slice(-8)}`.trim());
  });
  const url = await built.app.listen({ port: 0, host: '127.0.0.1' });
  const browser = await chromium.launch({ executablePath: chromiumPath(), headless: false, args: [...CHROMIUM_FLAGS], timeout: 60_000 });
  const resultsDir = join(repoRoot, 'test-results', name);
  await mkdir(resultsDir, { recursive: true });
  const errors: string[] = [];
  const contexts: BrowserContext[] = [];
  return {
    ...built,
    url,
    browser,
    resultsDir,
    errors,
    requests,
    async newTab(label) {
      const context = await browser.newContext({ viewport: { width: 1200, height: 860 } });
      contexts.push(context);
      const page = await context.newPage();
      page.on('console', (m) => {
        if (m.type() === 'error') errors.push(`[${label}] ${m.text()}`);
      });
      page.on('pageerror', (e) => errors.push(`[${label}] uncaught ${e.message}`));
      return { context, page };
    },
    async close() {
      for (const c of contexts) await c.close().catch(() => undefined);
      await browser.close().catch(() => undefined);
      await built.app.close();
      await rm(work, { recursive: true, force: true });
    },
  };
}

/** Opens the join link, joins with `name`, and waits until the model is loaded. */
export async function joinTab(page: Page, url: string, joinCode: string, name: string): Promise<void> {
  await page.goto(`${url}/?join=${encodeURIComponent(joinCode)}&backend=wasm#/join`);
  await page.locator('#backend-banner').waitFor({ timeout: 60_000 });
  await page.fill('#join-name', name);
  await page.click('button[type=submit]');
  await waitModelReady(page);
}

export async function waitModelReady(page: Page): Promise<void> {
  await page.waitForFunction(
    () =>
      /model v\d+(?! \(loading\))/.test(document.querySelector('#connection')?.textContent ?? '') &&
      /connected/.test(document.querySelector('#connection')?.textContent ?? ''),
    undefined,
    { timeout: 90_000 },
  );
}

/** The client token a tab keeps in IndexedDB (read through the page, as the app stores it). */
export async function storedToken(page: Page): Promise<string> {
  return page.evaluate(
    () =>
      new Promise<string>((ok, fail) => {
        const open = indexedDB.open('corag-web');
        open.onerror = () => fail(open.error);
        open.onsuccess = () => {
          const get = open.result.transaction('kv').objectStore('kv').get('credentials');
          get.onsuccess = () => {
            ok((get.result as { token: string }).token);
            open.result.close();
          };
          get.onerror = () => fail(get.error);
        };
      }),
  );
}

/** Polls `probe` every 250 ms until it returns something truthy; fails naming `what` after `timeoutMs`. */
export async function waitFor<T>(what: string, probe: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 120_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}
