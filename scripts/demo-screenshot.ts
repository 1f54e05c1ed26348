/**
 * A screenshot of the QA view on the offline demo, as a newcomer sees it:
 *
 *   npx tsx scripts/demo-screenshot.ts [--out docs/img/qa-demo.png] [--question "..."] [--backend wasm]
 *
 * Builds the web app and serves it with the real coordinator in a temp folder (the browser tests'
 * startApp, test/browser/ui-app.ts), creates the demo session `npm start` creates (server/demo.ts:
 * the pretrained checkpoints of public/models/demo when present), opens one headless Chromium tab
 * on its join link, adds the demo passages with the passages page's button (kept private), waits
 * until they are embedded, asks the question over "your passages", prints the answer and the
 * titles of the passages read, and saves a full-page screenshot. Exits 1 with the reason on failure.
 */
import { mkdir, rmdir } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { Page } from 'playwright-core';
import { createDemoSession, pretrainedDemoAvailable } from '../server/demo';
import { startApp, waitModelReady, type RunningApp } from '../test/browser/ui-app';

const HELP = `Usage: npx tsx scripts/demo-screenshot.ts [options]

Answers one question on the offline demo in a headless browser and saves a screenshot of the QA view.

Options:
  --out <file.png>      where the full-page screenshot goes (default docs/img/qa-demo.png)
  --question <text>     the question (default "What day was the Super Bowl played on?")
  --backend <name>      wasm | cpu | webgpu, the tab's TF.js backend (default wasm)
  -h, --help            show this help
`;

const DEMO_FILE = 'demo-passages.jsonl';
/** Embedding the demo passages on a busy CPU takes minutes; anything slower is a failure. */
const EMBED_TIMEOUT_MS = 15 * 60_000;
const ANSWER_TIMEOUT_MS = 5 * 60_000;

const log = (line: string) => process.stdout.write(`[demo-screenshot] ${line}\n`);

function options() {
  const { values } = parseArgs({
    options: {
      out: { type: 'string', default: 'docs/img/qa-demo.png' },
      question: { type: 'string', default: 'What day was the Super Bowl played on?' },
      backend: { type: 'string', default: 'wasm' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  });
  if (!['wasm', 'cpu', 'webgpu'].includes(values.backend)) throw new Error(`--backend must be wasm, cpu or webgpu, got "${values.backend}"`);
  if (!values.question.trim()) throw new Error('--question must not be empty');
  return { out: resolve(values.out), question: values.question.trim(), backend: values.backend, help: values.help };
}

/** The cells of the demo file's row on the passages page (file, passages, embedded, …), if listed. */
function demoRow(page: Page): Promise<string[] | undefined> {
  return page.evaluate((name) => {
    const row = [...document.querySelectorAll('#files-table tbody tr')].find((tr) => tr.querySelector('th')?.textContent === name);
    return row ? [...row.children].map((c) => c.textContent ?? '') : undefined;
  }, DEMO_FILE);
}

/** Error notices on the page (they stay until dismissed). */
function errorNotices(page: Page): Promise<string[]> {
  return page.locator('.notice.error').allTextContents();
}

/** Polls until the demo file is listed and fully embedded, printing progress; fails on an error notice. */
async function waitEmbedded(page: Page): Promise<string> {
  const until = Date.now() + EMBED_TIMEOUT_MS;
  let last = '';
  for (;;) {
    const errors = await errorNotices(page);
    if (errors.length) throw new Error(`the passages page reported: ${errors.join(' | ')}`);
    const row = await demoRow(page);
    if (row && row[2] === '✓') return row[1];
    const bar =
      (
        await page
          .locator('.bar-text')
          .first()
          .textContent()
          .catch(() => null)
      )?.trim() ?? '';
    const now = row ? `${row[1]} passages stored; ${bar || `embedded ${row[2]}`}` : 'waiting for the file to be stored';
    if (now !== last) log(now);
    last = now;
    if (Date.now() > until) throw new Error(`the demo passages were not embedded within ${EMBED_TIMEOUT_MS / 60_000} minutes (last: ${now})`);
    await page.waitForTimeout(2_000);
  }
}

async function run(opts: ReturnType<typeof options>, app: RunningApp): Promise<void> {
  log(
    `creating the demo session (${pretrainedDemoAvailable() ? 'pretrained checkpoints of public/models/demo' : 'tiny random models: public/models/demo is incomplete'})…`,
  );
  const created = await createDemoSession(app.coordinator);
  log(`session "${created.session.config.name}", join code ${created.joinCode}`);

  const { page } = await app.newTab('demo');
  const base = `${app.url}/?join=${encodeURIComponent(created.joinCode)}&backend=${opts.backend}`;
  await page.goto(`${base}#/join`);
  await page.locator('#backend-banner').waitFor({ timeout: 60_000 });
  log(`backend: ${(await page.locator('#backend-banner').textContent())?.trim()}`);
  await page.fill('#join-name', 'demo');
  await page.click('button[type=submit]');
  log('joined; loading the model…');
  await waitModelReady(page);
  log(`model ready (${(await page.locator('#connection').textContent())?.trim()})`);

  await page.goto(`${base}#/passages`);
  await page.selectOption('#default-share', 'private');
  log('adding the demo passages…');
  await page.click('#demo-passages');
  const count = await waitEmbedded(page);
  log(`${count} demo passages stored and embedded`);

  await page.goto(`${base}#/ask`);
  await page.fill('#question', opts.question);
  // "Your passages only": the demo passages this tab just stored.
  await page.selectOption('#scope', 'yours');
  log(`asking "${opts.question}" over your passages…`);
  await page.click('form button[type=submit]');
  const outcome = page.locator('#answer-text, #answer .notice.error, #answer p:not(.muted)').first();
  await outcome.waitFor({ timeout: ANSWER_TIMEOUT_MS });
  if ((await page.locator('#answer-text').count()) === 0) throw new Error(`no answer: ${(await outcome.textContent())?.trim()}`);
  const answer = (await page.locator('#answer-text').textContent())?.trim() ?? '';
  const titles = await page.locator('#answer-passages li .passage-head strong').allTextContents();
  const head = (await page.locator('.answer-box .muted').textContent())?.trim() ?? '';

  await mkdir(dirname(opts.out), { recursive: true });
  await page.screenshot({ path: opts.out, fullPage: true });

  process.stdout.write(`\nQuestion: ${opts.question}\nAnswer:   ${answer}   (${head})\nPassages read:\n`);
  titles.forEach((t, i) => process.stdout.write(`  ${i + 1}. ${t}\n`));
  process.stdout.write(`Screenshot: ${opts.out}\n`);
}

async function main(): Promise<void> {
  const opts = options();
  if (opts.help) {
    process.stdout.write(HELP);
    return;
  }
  log('building the web app and starting the coordinator…');
  const app = await startApp('demo-screenshot');
  try {
    await run(opts, app);
  } catch (e) {
    const pageErrors = app.errors.filter((m) => !/Failed to load resource/.test(m));
    if (pageErrors.length) process.stderr.write(`[demo-screenshot] browser console errors:\n  ${pageErrors.join('\n  ')}\n`);
    throw e;
  } finally {
    log('closing the browser and the coordinator…');
    await app.close();
    // startApp makes a test-results folder this script leaves empty.
    await rmdir(app.resultsDir).catch(() => undefined);
  }
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    process.stderr.write(`[demo-screenshot] failed: ${(e as Error).message}\n`);
    process.exit(1);
  },
);
