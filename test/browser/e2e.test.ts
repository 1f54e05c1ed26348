/**
 * End to end: the built web app served by the real coordinator on 127.0.0.1; three browser
 * contexts (three participants, each with its own IndexedDB) join one session with tiny models on
 * the wasm backend, add passages from files, contribute some, and complete two federated rounds.
 * Also: a reload mid-training, bad input on the passages page, a connection lost during upload,
 * and a QA query. Screenshots go to test-results/e2e/.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CoragClient } from '../../src/federated/client';
import type { RoundInfo } from '../../src/federated/protocol';
import { DEMO_MODELS, demoGlobalModel } from '../../server/demo';
import { decodeModules, modulesOfSvg } from '../ui/qr-decode';
import { joinTab, startApp, storedToken, waitFor, waitModelReady, type RunningApp } from './ui-app';

const LAN_URL = 'http://192.0.2.10:8787';
const COMMON = { title: 'Shared fact', text: 'The coordinator keeps every contributed passage exactly once, whoever sends it.' };
const PEOPLE = [
  ['alice', 'paris'],
  ['bob', 'london'],
  ['carol', 'berlin'],
  ['david', 'madrid'],
  ['emma', 'rome'],
  ['frank', 'vienna'],
];

/** Tab i: a contributed jsonl (two facts of its own + the common passage) and a private text file. */
function filesOf(i: number) {
  const facts = PEOPLE.slice(2 * i, 2 * i + 2).map(([who, city]) => ({ title: who, text: `${who} lives in ${city} and works there as a teacher.` }));
  const jsonl = [...facts, COMMON].map((p) => JSON.stringify(p)).join('\n') + '\n';
  const notes = `Private notes of tab ${i}. ` + 'These words stay in this browser and are never sent to the coordinator. '.repeat(12);
  const qa =
    PEOPLE.slice(2 * i, 2 * i + 2)
      .map(([who, city]) => JSON.stringify({ question: `where does ${who} live?`, answers: [city] }))
      .join('\n') + '\n';
  return { facts, jsonl, notes, qa };
}

const file = (name: string, content: string | Buffer) => ({
  name,
  mimeType: 'application/octet-stream',
  buffer: typeof content === 'string' ? Buffer.from(content) : content,
});

async function fileRows(page: Page): Promise<string[]> {
  await page.goto(page.url().replace(/#.*$/, '') + '#/passages');
  await page.locator('#files-table, .files p').first().waitFor();
  return page.locator('#files-table tbody th').allTextContents();
}

describe('the CoRAG web app, three tabs, one session', () => {
  let app: RunningApp;
  let admin: CoragClient;
  let sid: string;
  let joinCode: string;
  const tabs: Array<{ page: Page; context: import('playwright-core').BrowserContext }> = [];
  const shot = (page: Page, label: string) => page.screenshot({ path: join(app.resultsDir, `${label}.png`), fullPage: true });

  const closedRound = (r: number) =>
    waitFor(
      `round ${r} to close`,
      async () => {
        const info = await admin.round(sid, r);
        return info.state === 'closed' || info.state === 'failed' ? info : undefined;
      },
      180_000,
    );

  beforeAll(async () => {
    // A documentation-range address stands in for the machine's LAN address (the join QR code).
    app = await startApp('e2e', { networkUrls: () => [LAN_URL], publicSession: () => sid });
    const anon = new CoragClient(app.url);
    const created = await anon.createSession({
      name: 'e2e session',
      models: DEMO_MODELS,
      training: { learningRate: 1e-3, localSteps: 4, passagesPerQuestion: 2, maxLength: 64, batchSize: 2, seed: 1 },
      roundPolicy: { minClients: 3, minUpdates: 2, deadlineSeconds: 240, autoStart: false },
      trainedPrefixes: ['reader.', 'query_encoder.'],
    });
    sid = created.session.id;
    joinCode = created.joinCode;
    admin = anon.withToken(created.adminToken);
    await admin.uploadModel(sid, demoGlobalModel());
  }, 240_000);

  afterAll(async () => {
    await app?.close();
  });

  it('three tabs join (one through the join page offering the open session, two from the link), add files, contribute some, and the store holds each contributed passage once', async () => {
    for (let i = 0; i < 3; i++) tabs.push(await app.newTab(`tab${i}`));
    // Tab 0 opens the app without a link and takes the join page's offer of the open session.
    await tabs[0].page.goto(`${app.url}/?backend=wasm#/join`);
    await tabs[0].page.locator('#join-public', { hasText: 'Join “e2e session”' }).waitFor();
    await shot(tabs[0].page, 'join-page');
    await tabs[0].page.fill('#join-name', 'tab 0');
    await tabs[0].page.click('#join-public');
    await waitModelReady(tabs[0].page);
    await Promise.all(tabs.slice(1).map(({ page }, i) => joinTab(page, app.url, joinCode, `tab ${i + 1}`)));
    expect(await tabs[0].page.locator('#backend-banner').textContent()).toMatch(/WebAssembly/);
    // Passages embed on ONNX Runtime by default; the coordinator recomputes them below (its own encoder: tfjs, then ONNX after the gate).
    await tabs[0].page.locator('#passage-encoder[data-engine="onnx"]').waitFor({ timeout: 60_000 });

    await Promise.all(
      tabs.map(async ({ page }, i) => {
        const f = filesOf(i);
        await page.goto(`${app.url}/?join=${joinCode}&backend=wasm#/passages`);
        await page.selectOption('#default-share', 'private');
        await page.setInputFiles('#file-input', [file(`notes-${i}.txt`, f.notes)]);
        await page.selectOption('#default-share', 'contribute');
        await page.setInputFiles('#file-input', [file(`facts-${i}.jsonl`, f.jsonl)]);
        // Contributed once embedded: the file's "Contributed" cell reaches 3.
        await page.waitForFunction(
          (name) =>
            [...document.querySelectorAll('#files-table tr')].some((tr) => tr.querySelector('th')?.textContent === name && tr.children[4]?.textContent === '3'),
          `facts-${i}.jsonl`,
          { timeout: 90_000 },
        );
      }),
    );
    await shot(tabs[0].page, 'passages-page');

    const info = await admin.session(sid);
    expect(info.passages).toBe(7); // 3 × 2 own facts + the common passage once; private notes never sent
    const stored = await admin.passages(sid, [1, 2, 3, 4, 5, 6, 7]);
    expect(stored.filter((p) => p.text === COMMON.text)).toHaveLength(1);
    expect(stored.some((p) => p.text.includes('Private notes'))).toBe(false);
    const counts = await admin.contributions(sid);
    expect(counts.reduce((a, c) => a + c.passages, 0)).toBe(7);
  });

  it('refuses bad files with visible messages and keeps what was stored', async () => {
    const { page } = tabs[1];
    const before = await fileRows(page);
    await page.selectOption('#default-share', 'private');
    await page.setInputFiles('#file-input', [file('scan.txt', Buffer.from([0xff, 0xfe, 0x00, 0x81, 0xc3, 0x28]))]);
    await page.locator('.notice.error', { hasText: 'not UTF-8' }).waitFor();
    await page.setInputFiles('#file-input', [file('big.txt', Buffer.alloc(21 * 2 ** 20, 'a'))]);
    await page.locator('.notice.error', { hasText: 'over the 20.0 MiB limit' }).waitFor();
    await page.setInputFiles('#file-input', [
      file('mixed.jsonl', '{"title":"ok","text":"a fine line"}\n{"title":"no text here"}\n{"text":"another fine line"}\n'),
    ]);
    await page.locator('.notice.warn', { hasText: 'line 2: no "text"' }).waitFor();
    await page.setInputFiles('#file-input', [file('paper.pdf', '%PDF-1.4')]);
    await page.locator('.notice.error', { hasText: 'paper.pdf: not a readable PDF' }).waitFor();
    await page.setInputFiles('#file-input', [file('setup.exe', 'MZ')]);
    await page.locator('.notice.error', { hasText: 'unsupported file type ".exe"' }).waitFor();
    // A real PDF goes through pdf.js (lazily loaded, in its own worker): 4 passages, the drawing page reported.
    await page.setInputFiles('#file-input', [file('field-notes.pdf', readFileSync(new URL('../fixtures/ingest/field-notes.pdf', import.meta.url)))]);
    await page.locator('.notice.ok', { hasText: 'field-notes.pdf: 4 passages stored, 1 page skipped' }).waitFor();
    await page.locator('.notice.warn li', { hasText: 'page 3: no text' }).waitFor();
    const after = await fileRows(page);
    expect(after).toEqual([...before, 'mixed.jsonl', 'field-notes.pdf']);
    await shot(page, 'bad-input');
  });

  it('completes two federated rounds; a tab reloaded mid-training rejoins and keeps its passages and cached model', async () => {
    await Promise.all(
      tabs.map(async ({ page }, i) => {
        await page.goto(`${app.url}/?join=${joinCode}&backend=wasm#/train`);
        await page.setInputFiles('#qa-input', [file(`qa-${i}.jsonl`, filesOf(i).qa)]);
        await page.locator('#qa-status', { hasText: '2 questions ready' }).waitFor();
        await page.click('#participate');
        await page.locator('#participate', { hasText: 'Stop taking part' }).waitFor();
      }),
    );

    const r1: RoundInfo = await admin.openRound(sid);
    expect(r1.participants).toHaveLength(3);
    const closed1 = await closedRound(1);
    expect(closed1).toMatchObject({ state: 'closed', accepted: 3, resultVersion: 1 });

    // Round 2: reload tab 2 while it trains.
    const reloaded = tabs[2].page;
    const tag = (await storedToken(reloaded)).slice(-8);
    const downloads = (version: number) => app.requests.filter((r) => r === `GET /api/sessions/${sid}/model/${version} ${tag}`).length;
    await admin.openRound(sid);
    await reloaded.locator('.bar-text', { hasText: /round 2: step \d/ }).waitFor({ timeout: 120_000 });
    await reloaded.reload();
    await waitModelReady(reloaded);
    const closed2 = await closedRound(2);
    expect(closed2).toMatchObject({ state: 'closed', accepted: 3, resultVersion: 2 });
    expect((await admin.session(sid)).currentVersion).toBe(2); // advanced twice
    // One update per client per round: the reloaded tab's upload counted once.
    expect(app.requests.filter((r) => r.includes('/rounds/2/update ')).length).toBe(3);
    // Each version reached the reloaded tab once: after the reload it came from IndexedDB.
    expect(downloads(0)).toBe(1);
    expect(downloads(1)).toBe(1);
    expect(await fileRows(reloaded)).toEqual(['notes-2.txt', 'facts-2.jsonl']);

    const { page } = tabs[0];
    await page.goto(`${app.url}/?join=${joinCode}&backend=wasm#/train`);
    await page.locator('#uploads li.uploaded', { hasText: 'Round 2' }).waitFor();
    await shot(page, 'training-view');
  });

  it('answers a question in a tab, listing the passages it read', async () => {
    const { page } = tabs[0];
    await page.goto(`${app.url}/?join=${joinCode}&backend=wasm#/ask`);
    await page.fill('#question', 'where does alice live?');
    await page.selectOption('#scope', 'both');
    await page.click('form button[type=submit]');
    await page.locator('#answer-passages li').first().waitFor({ timeout: 60_000 });
    expect(await page.locator('#answer-passages li').count()).toBeGreaterThan(0);
    expect(await page.locator('#answer-text').count()).toBe(1);
    // "Quote from passages" is on by default: the answer is words of a listed passage, highlighted there.
    await page.locator('.answer-box', { hasText: 'quoted from the passages' }).waitFor();
    // "Keyword search too" is on by default: alice's own passage, which shares her name with the
    // question, is among those read whatever the tiny random retriever ranks first.
    await page.locator('.answer-box', { hasText: 'passages by retriever + keywords' }).waitFor();
    expect(await page.locator('#answer-passages li', { hasText: 'alice lives in paris' }).count()).toBe(1);
    expect((await page.locator('#answer-text').textContent())?.trim()).not.toBe('(empty answer)');
    expect(await page.locator('#answer-passages mark').count()).toBeGreaterThan(0);
    await shot(page, 'qa-view');

    await page.goto(`${app.url}/?join=${joinCode}&backend=wasm#/dashboard`);
    await page.locator('#tile-version .tile-value', { hasText: '2' }).waitFor();
    await page.locator('#tile-clients .tile-value', { hasText: '3' }).waitFor();
    // All three tabs hold an event stream, so all three are online (pushed live by `presence`).
    await page.locator('#tile-online .tile-value', { hasText: '3' }).waitFor();
    await page.locator('#tile-passages .tile-value', { hasText: '7' }).waitFor();
    await page.locator('#em-chart circle').first().waitFor({ timeout: 60_000 });
    await shot(page, 'dashboard');
  });

  it('a connection lost during upload is shown in the tab and retried until the update lands; nothing stored is lost', async () => {
    const { page, context } = tabs[0];
    await page.goto(`${app.url}/?join=${joinCode}&backend=wasm#/train`);
    await context.route('**/rounds/3/update', (route) => route.abort('connectionreset'));
    await admin.openRound(sid);
    await page.locator('#uploads li.retrying', { hasText: 'Round 3' }).waitFor({ timeout: 120_000 });
    await shot(page, 'upload-retrying');
    await context.unroute('**/rounds/3/update');
    const closed3 = await closedRound(3);
    expect(closed3).toMatchObject({ state: 'closed', accepted: 3 });
    await page.locator('#uploads li.uploaded', { hasText: 'Round 3' }).waitFor();
    expect(app.requests.filter((r) => r.includes('/rounds/3/update ')).length).toBe(3); // the aborted attempts never arrived
    expect(await fileRows(page)).toEqual(['notes-0.txt', 'facts-0.jsonl']);
    expect(app.errors.filter((e) => !/Failed to load resource|net::ERR/.test(e))).toEqual([]);
  });

  it('the organiser opens and closes a round from the dashboard with the admin token; a wrong token changes nothing', async () => {
    // No update can land in round 4, so closing it early is deterministic: it fails (0 of 2 needed).
    for (const { context } of tabs) await context.route('**/rounds/4/update', (route) => route.abort('connectionreset'));
    const { page } = tabs[1];
    await page.goto(`${app.url}/?join=${joinCode}&backend=wasm#/dashboard`);
    await page.fill('#admin-token', 'not-the-admin-token');
    await page.click('#open-round');
    await page.locator('.notice.error', { hasText: 'Open a round:' }).waitFor();
    expect((await admin.session(sid)).round?.round).toBe(3);
    await page.fill('#admin-token', admin.token!);
    await page.click('#open-round');
    await page.locator('.notice', { hasText: 'round 4 is open' }).waitFor();
    expect((await admin.round(sid, 4)).state).toBe('open');
    await page.locator('#close-round:not([hidden])').click();
    await page.locator('.notice', { hasText: 'round 4 failed: too_few_updates: 0 accepted' }).waitFor();
    expect((await admin.round(sid, 4)).state).toBe('failed');
    expect((await admin.session(sid)).currentVersion).toBe(3);
    // Other devices join from the QR code: it reads back as the LAN join link.
    const svg = await page.locator('#join-qr').innerHTML();
    expect(decodeModules(modulesOfSvg(svg))).toBe(`${LAN_URL}/?join=${joinCode}`);
    await page.locator('#join-device a', { hasText: `${LAN_URL}/?join=${joinCode}` }).waitFor();
    // The token is kept for this tab only: a reload fills it in again.
    await page.reload();
    await page.locator('#admin-token').waitFor();
    await page.waitForFunction(() => (document.querySelector('#admin-token') as HTMLInputElement).value.length > 0);
    await shot(page, 'organiser-controls');
    for (const { context } of tabs) await context.unroute('**/rounds/4/update');
  });
  it('sharing chosen passage by passage: an unticked passage leaves the session store, unless another tab contributed it too', async () => {
    const { page } = tabs[0];
    const storeTexts = async () =>
      (
        await admin.passages(
          sid,
          Array.from({ length: 20 }, (_, i) => i + 1),
        )
      ).map((p) => p.text);
    await page.goto(`${app.url}/?join=${joinCode}&backend=wasm#/passages`);
    await page.getByRole('button', { name: 'Choose passages of facts-0.jsonl one by one' }).click();
    const own = page.locator('#file-passages li', { hasText: 'alice lives in paris' });
    await own.getByRole('checkbox').uncheck();
    await page.locator('.notice.ok', { hasText: '1 passage taken out of the session store' }).waitFor();
    expect(await storeTexts()).not.toContain(filesOf(0).facts[0].text);
    const common = page.locator('#file-passages li', { hasText: COMMON.text });
    await common.getByRole('checkbox').uncheck();
    await page.locator('.notice.ok', { hasText: '1 passage made private here stays in the session store' }).waitFor();
    expect(await storeTexts()).toContain(COMMON.text);
    expect((await admin.session(sid)).passages).toBe(6);
    expect(await page.locator('#files-table select[aria-label="Sharing for facts-0.jsonl"]').inputValue()).toBe('mixed');
    await shot(page, 'passage-sharing');
    // Ticked again: sent again.
    await own.getByRole('checkbox').check();
    await page.locator('.notice.ok', { hasText: 'Contributed 1 passage to the session store' }).waitFor();
    expect(await storeTexts()).toContain(filesOf(0).facts[0].text);
    expect(await own.textContent()).toContain('in the session store');
  });
}, 400_000);
