/**
 * The passages page's "Add the demo passages" button, in the built app served by the real
 * coordinator: the app's public/demo/passages.jsonl goes through the same path as an uploaded
 * `demo-passages.jsonl` (parsed and chunked by src/ingest/files, stored, embedded, contributed when
 * new files are contributed), and a failed download is a visible error that stores nothing.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CoragClient } from '../../src/federated/client';
import { ingestFile } from '../../src/ingest/files';
import { DEMO_MODELS, demoGlobalModel } from '../../server/demo';
import { joinTab, repoRoot, startApp, type RunningApp } from './ui-app';

const DEMO_FILE = 'demo-passages.jsonl';

/** What the file flow makes of the same bytes (chunking may split long lines). */
const demoPassages = ingestFile(DEMO_FILE, readFileSync(join(repoRoot, 'public/demo/passages.jsonl'))).passages;

/** The cells of the "Your files" row of `file`, or undefined while it is not listed. */
async function fileRow(page: Page, file: string): Promise<string[] | undefined> {
  return page.evaluate((name) => {
    const row = [...document.querySelectorAll('#files-table tbody tr')].find((tr) => tr.querySelector('th')?.textContent === name);
    return row ? [...row.children].map((c) => c.textContent ?? '') : undefined;
  }, file);
}

describe('the passages page adds the demo passages like an uploaded file', () => {
  let app: RunningApp;
  let admin: CoragClient;
  let sid: string;
  let page: Page;

  beforeAll(async () => {
    app = await startApp('demo-passages');
    const created = await new CoragClient(app.url).createSession({
      name: 'demo passages',
      models: DEMO_MODELS,
      training: { learningRate: 1e-3, localSteps: 1, passagesPerQuestion: 2, maxLength: 64, batchSize: 1, seed: 1 },
      roundPolicy: { minClients: 1, minUpdates: 1, deadlineSeconds: 60, autoStart: false },
      trainedPrefixes: ['reader.', 'query_encoder.'],
    });
    sid = created.session.id;
    admin = new CoragClient(app.url).withToken(created.adminToken);
    await admin.uploadModel(sid, demoGlobalModel());
    ({ page } = await app.newTab('tab'));
    await joinTab(page, app.url, created.joinCode, 'newcomer');
  }, 240_000);

  afterAll(async () => {
    await app?.close();
  });

  it('lists demo-passages.jsonl with its passage count, embeds it and contributes it when new files are contributed', async () => {
    await page.goto(page.url().replace(/#.*$/, '#/passages'));
    await page.selectOption('#default-share', 'contribute');
    await page.click('#demo-passages');
    const n = String(demoPassages.length);
    // The confirmation fades after a few seconds: look for it before the embedding finishes.
    await page.locator('.notice', { hasText: `${DEMO_FILE}: ${n} passages stored` }).waitFor();
    // Row cells: file, passages, embedded (✓ when all), sharing, contributed, remove.
    await page.waitForFunction(
      ([name, count]) =>
        [...document.querySelectorAll('#files-table tbody tr')].some(
          (tr) => tr.querySelector('th')?.textContent === name && tr.children[2]?.textContent === '✓' && tr.children[4]?.textContent === count,
        ),
      [DEMO_FILE, n],
      { timeout: 180_000 },
    );
    const row = await fileRow(page, DEMO_FILE);
    expect(row?.slice(0, 3)).toEqual([DEMO_FILE, n, '✓']);
    // The coordinator keeps each distinct text once.
    expect((await admin.session(sid)).passages).toBe(new Set(demoPassages.map((p) => p.text)).size);
    await page.screenshot({ path: join(app.resultsDir, 'demo-passages.png'), fullPage: true });
  });

  it('shows a failed download as an error notice and stores nothing', async () => {
    const before = await page.locator('#files-table tbody th').allTextContents();
    const demoRow = await fileRow(page, DEMO_FILE);
    await page.route('**/demo/passages.jsonl', (route) => route.fulfill({ status: 404, body: 'not here' }));
    await page.click('#demo-passages');
    await page.locator('.notice.error', { hasText: 'Could not load the demo passages: HTTP 404' }).waitFor();
    await page.unroute('**/demo/passages.jsonl');
    expect(await page.locator('#files-table tbody th').allTextContents()).toEqual(before);
    expect(await fileRow(page, DEMO_FILE)).toEqual(demoRow);
    expect(app.errors.filter((e) => !/Failed to load resource|404/.test(e))).toEqual([]);
  });
}, 400_000);
