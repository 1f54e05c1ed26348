/**
 * A tab refuses a training step that does not fit its memory, before training, saying what would
 * fit; a tab with enough memory trains (issue 20, "fits the tab or says so"). One session with the
 * tiny demo models whose rounds ask for batch 4 with k 4 × 128 tokens and do not let tabs lower the
 * batch (`memoryFit: 'refuse'`); the first tab opens the app with `?memoryBudget=70MB` (the
 * estimate for that step on wasm is ~86–133 MB depending on the answers' lengths, batch 1 needs
 * ~51–60 MB: src/corag/training-footprint.ts, since session 12's savings), the second with the default budget (half of what
 * navigator.deviceMemory reports).
 */
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_MODELS, DEMO_QUESTION_SHARDS, demoGlobalModel, demoQuestions, seedDemoPassages } from '../../server/demo';
import { initBackend } from '../../src/model/backend';
import { startApp, waitFor, waitModelReady, type RunningApp } from './ui-app';

describe('a tab whose memory cannot hold the step refuses it; one that can trains', () => {
  let app: RunningApp;
  let sid = '';
  let joinCode = '';
  const tabs: Page[] = [];

  beforeAll(async () => {
    app = await startApp('memory-budget');
    await initBackend('wasm');
    const created = await app.coordinator.createSession(
      {
        name: 'memory budget',
        models: DEMO_MODELS,
        training: { learningRate: 1e-4, localSteps: 2, passagesPerQuestion: 4, maxLength: 128, batchSize: 4, retrievalSource: 'shared', memoryFit: 'refuse' },
        roundPolicy: { fraction: 1, minClients: 2, minUpdates: 1, deadlineSeconds: 300, autoStart: true },
        trainedPrefixes: ['reader.'],
        trainingQuestions: { questions: demoQuestions(), ...DEMO_QUESTION_SHARDS },
      },
      demoGlobalModel(),
    );
    sid = created.session.id;
    joinCode = created.joinCode;
    await seedDemoPassages(app.coordinator, sid);
  }, 300_000);

  afterAll(async () => {
    for (const [i, page] of tabs.entries()) await page.screenshot({ path: join(app.resultsDir, `tab-${i + 1}.png`), fullPage: true }).catch(() => undefined);
    await app?.close();
  });

  it('the 70 MB tab says what would fit and sends nothing; the default tab trains and uploads', async () => {
    for (const [name, budget] of [
      ['small', '&memoryBudget=70MB'],
      ['default', ''],
    ]) {
      const { page } = await app.newTab(name);
      tabs.push(page);
      await page.goto(`${app.url}/?join=${encodeURIComponent(joinCode)}&backend=wasm${budget}#/join`);
      await page.locator('#backend-banner').waitFor({ timeout: 60_000 });
      await page.fill('#join-name', name);
      await page.click('button[type=submit]');
      await waitModelReady(page);
      // Joining ends on the passages page (once both workers hold the model).
      await page.waitForURL(/#\/passages$/, { timeout: 90_000 });
    }
    await waitFor('round 1 to open', () => app.coordinator.round(sid, 'current'), 30_000);
    for (const page of tabs) {
      await page.locator('nav a', { hasText: 'Training' }).click();
      await page.locator('#qa-status', { hasText: 'this session hands this tab' }).waitFor();
      await page.click('#participate');
      await page.locator('#participate', { hasText: 'Stop taking part' }).waitFor();
    }
    const [small, roomy] = tabs;
    const refusal = small.locator('.notice.error', { hasText: 'does not fit this tab' });
    await refusal.waitFor({ timeout: 120_000 });
    expect(await refusal.textContent()).toMatch(
      /Round 1: the session’s training step \(batch 4 with k 4\) does not fit this tab: it needs ~\d+ MB, budget 70 MB \(set for this tab\)\. Batch [123] with k 4 would fit \(~\d+ MB\), but this session does not let tabs change its batch: ask the session’s organiser for it, or raise this tab’s memory budget .*Nothing was trained; no update was sent/,
    );
    await small.locator('#uploads li.failed', { hasText: 'Round 1' }).waitFor();
    // It refused before training: no step was reported.
    expect(await small.locator('.bar-text', { hasText: /round 1: step \d/ }).count()).toBe(0);

    await roomy.locator('#uploads li.uploaded', { hasText: 'Round 1' }).waitFor({ timeout: 150_000 });
    expect(await roomy.locator('.notice.error').allTextContents()).toEqual([]);
    const round = await app.coordinator.round(sid, 1);
    expect(round.participants).toHaveLength(2);
  }, 400_000);
});
