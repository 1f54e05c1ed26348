/**
 * The newcomer path in a real browser, per backend: the built web app served by the real
 * coordinator (the demo session `npm start` creates: pretrained demo models when present, demo
 * passages seeded), headless Chromium with the browser suite's flags (WebGPU is SwiftShader on a
 * machine without a GPU), one fresh browser context per measurement:
 *
 *   1. which backend the page picks with no setting (and the probe rates its banner shows);
 *   2. per backend (`?backend=`): join, add the demo passages (all 347 with "Add the demo
 *      passages", or the first --subset as a file, extrapolated to 347 and marked so), time until
 *      every row is embedded; then ask demo questions and time each until its answer shows.
 *
 * `wasm (no isolation)` serves the same build without COOP/COEP, the way the app was served before
 * (one wasm thread): the before/after of cross-origin isolation in the same run.
 *
 * Usage: npm run bench:browser -- [--backends auto,wasm,wasm-noniso,cpu,webgpu] [--subset 40]
 *   [--questions 2] [--out results/browser-newcomer]
 * Prints a markdown table and writes <out>.md and <out>.json.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';
import { cachedWebAppBuild } from '../src/platform/node/web-app-build';
import { buildApp } from '../server/app';
import { createDemoSession, pretrainedDemoAvailable } from '../server/demo';
import { CHROMIUM_FLAGS, chromiumPath } from '../test/browser/harness';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');

type Variant = 'auto' | 'wasm' | 'wasm-noniso' | 'cpu' | 'webgpu';

interface Options {
  variants: Variant[];
  subset: number;
  questions: number;
  out: string;
}

function parseArgs(argv: string[]): Options {
  const o: Options = { variants: ['auto', 'wasm', 'wasm-noniso', 'cpu', 'webgpu'], subset: 40, questions: 2, out: 'results/browser-newcomer' };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => argv[++i] ?? '';
    if (a === '--backends') o.variants = next().split(',').filter(Boolean) as Variant[];
    else if (a === '--subset') o.subset = Number(next());
    else if (a === '--questions') o.questions = Number(next());
    else if (a === '--out') o.out = next();
    else if (a === '--help') {
      console.log('npm run bench:browser -- [--backends auto,wasm,wasm-noniso,cpu,webgpu] [--subset 40] [--questions 2] [--out results/browser-newcomer]');
      process.exit(0);
    } else throw new Error(`unknown option ${a}`);
  }
  return o;
}

interface Row {
  variant: Variant;
  banner: string;
  isolated: boolean;
  modelLoadS: number;
  passages: number;
  embedS: number;
  /** Seconds for all 347 (measured when passages = 347, else extrapolated linearly). */
  embedAllS: number;
  extrapolated: boolean;
  /** Wall time from clicking Ask to the answer on the page, per question. */
  askS: number[];
  /** The time the page itself reports for each answer. */
  askPageS: number[];
  answers: string[];
}

const DEMO_LINES = readFileSync(join(repoRoot, 'public/demo/passages.jsonl'), 'utf8')
  .split('\n')
  .filter((l) => l.trim());
const QUESTIONS = readFileSync(join(repoRoot, 'public/demo/qa.jsonl'), 'utf8')
  .split('\n')
  .filter((l) => l.trim())
  .map((l) => (JSON.parse(l) as { question: string }).question);

async function fileRowDone(page: Page, name: string): Promise<void> {
  await page.waitForFunction(
    (file) =>
      [...document.querySelectorAll('#files-table tbody tr')].some((tr) => tr.querySelector('th')?.textContent === file && tr.children[2]?.textContent === '✓'),
    name,
    { timeout: 1_800_000, polling: 100 },
  );
}

async function measure(browser: Browser, url: string, joinCode: string, variant: Variant, o: Options): Promise<Row> {
  const context = await browser.newContext({ viewport: { width: 1200, height: 860 } });
  const page = await context.newPage();
  page.on('pageerror', (e) => console.error(`[${variant}] uncaught ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') console.error(`[${variant}] ${m.text()}`);
  });
  try {
    const backend = variant === 'wasm-noniso' ? 'wasm' : variant;
    const query = `?join=${encodeURIComponent(joinCode)}${backend === 'auto' ? '' : `&backend=${backend}`}`;
    const t0 = performance.now();
    await page.goto(`${url}/${query}#/join`);
    await page.locator('#backend-banner').waitFor({ timeout: 300_000 });
    const banner = ((await page.locator('#backend-banner').textContent()) ?? '').replace(/\s*Backend\s*Automatic.*$/s, '').trim();
    const isolated = await page.evaluate(() => crossOriginIsolated);
    await page.fill('#join-name', `bench ${variant}`);
    await page.click('button[type=submit]');
    await page.waitForFunction(() => /model v\d+(?! \(loading\))/.test(document.querySelector('#connection')?.textContent ?? ''), undefined, {
      timeout: 600_000,
    });
    const modelLoadS = (performance.now() - t0) / 1000;
    console.error(`[bench] ${variant}: ${banner}; isolated=${isolated}; ready in ${modelLoadS.toFixed(1)} s`);

    const all = variant === 'auto' || variant === 'wasm' || variant === 'wasm-noniso';
    const n = all ? DEMO_LINES.length : Math.min(o.subset, DEMO_LINES.length);
    await page.goto(`${url}/${query}#/passages`);
    await page.selectOption('#default-share', 'private');
    let name: string;
    const t1 = performance.now();
    if (all) {
      name = 'demo-passages.jsonl';
      await page.click('#demo-passages');
    } else {
      name = `demo-first-${n}.jsonl`;
      await page.setInputFiles('#file-input', [{ name, mimeType: 'application/octet-stream', buffer: Buffer.from(DEMO_LINES.slice(0, n).join('\n') + '\n') }]);
    }
    await fileRowDone(page, name);
    const embedS = (performance.now() - t1) / 1000;
    console.error(`[bench] ${variant}: ${n} passages embedded in ${embedS.toFixed(1)} s`);

    await page.goto(`${url}/${query}#/ask`);
    const askS: number[] = [];
    const askPageS: number[] = [];
    const answers: string[] = [];
    const questions = variant === 'webgpu' ? 1 : o.questions;
    for (let q = 0; q < questions; q++) {
      await page.fill('#question', QUESTIONS[q]);
      await page.evaluate(() => document.querySelector('#answer')?.replaceChildren());
      const t2 = performance.now();
      await page.click('form button[type=submit]');
      await page.locator('#answer-text').waitFor({ timeout: 900_000 });
      askS.push((performance.now() - t2) / 1000);
      const meta = (await page.locator('#answer .answer-box .muted').textContent()) ?? '';
      askPageS.push(Number(/, ([\d.]+) s\)$/.exec(meta)?.[1] ?? NaN));
      answers.push((await page.locator('#answer-text').textContent()) ?? '');
      console.error(`[bench] ${variant}: "${QUESTIONS[q]}" → "${answers.at(-1)}" in ${askS.at(-1)!.toFixed(1)} s (page: ${askPageS.at(-1)} s)`);
    }
    return {
      variant,
      banner,
      isolated,
      modelLoadS,
      passages: n,
      embedS,
      embedAllS: (embedS * DEMO_LINES.length) / n,
      extrapolated: n !== DEMO_LINES.length,
      askS,
      askPageS,
      answers,
    };
  } finally {
    await context.close();
  }
}

function table(rows: readonly Row[]): string {
  const f = (x: number) => (x >= 100 ? x.toFixed(0) : x.toFixed(1));
  const lines = [
    '| run | page says (banner) | cross-origin isolated | join + model load s | passages timed | embed s (passages/s) | all 347 s | 1st question s | 2nd question s |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- |',
  ];
  for (const r of rows) {
    lines.push(
      `| ${r.variant} | ${r.banner.replace(/\|/g, '\\|')} | ${r.isolated ? 'yes' : 'no'} | ${f(r.modelLoadS)} | ${r.passages} | ${f(r.embedS)} (${(r.passages / r.embedS).toFixed(1)}) | ${f(r.embedAllS)}${r.extrapolated ? ' (extrapolated)' : ''} | ${r.askS[0] !== undefined ? f(r.askS[0]) : '–'} | ${r.askS[1] !== undefined ? f(r.askS[1]) : '–'} |`,
    );
  }
  return lines.join('\n');
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  const work = await mkdtemp(join(tmpdir(), 'corag-bench-browser-'));
  const apps: Array<{ close(): Promise<unknown> }> = [];
  let browser: Browser | undefined;
  try {
    console.error('[bench] building the web app…');
    const dist = await cachedWebAppBuild(repoRoot, { minify: true, sourcemap: false });
    const start = async (crossOriginIsolation: boolean, dataDir: string) => {
      const built = await buildApp({
        dataDir: join(work, dataDir),
        staticDir: dist,
        rateLimitPerMinute: 100_000,
        joinsPerMinutePerIp: 1_000_000,
        crossOriginIsolation,
      });
      apps.push(built.app);
      console.error(`[bench] demo session (${pretrainedDemoAvailable() ? 'pretrained demo models' : 'tiny random models'}), seeding the store…`);
      const created = await createDemoSession(built.coordinator, undefined, { log: (l) => console.error(`[bench] ${l.trim()}`) });
      const url = await built.app.listen({ port: 0, host: '127.0.0.1' });
      return { url, joinCode: created.joinCode };
    };
    const isolatedApp = await start(true, 'data');
    const plainApp = o.variants.includes('wasm-noniso') ? await start(false, 'data-noniso') : undefined;
    browser = await chromium.launch({ executablePath: chromiumPath(), headless: false, args: [...CHROMIUM_FLAGS], timeout: 60_000 });
    const rows: Row[] = [];
    for (const v of o.variants) {
      const app = v === 'wasm-noniso' ? plainApp! : isolatedApp;
      rows.push(await measure(browser, app.url, app.joinCode, v, o));
    }
    const md = table(rows);
    console.log(md);
    await mkdir(dirname(resolve(repoRoot, o.out)), { recursive: true });
    await writeFile(resolve(repoRoot, `${o.out}.md`), md + '\n');
    await writeFile(resolve(repoRoot, `${o.out}.json`), JSON.stringify({ date: new Date().toISOString(), options: o, rows }, null, 2) + '\n');
  } finally {
    await browser?.close().catch(() => undefined);
    for (const a of apps) await a.close().catch(() => undefined);
    await rm(work, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    console.error(e);
    process.exit(1);
  },
);
