/**
 * LoRA in a real tab (issue 20): a tab joins a LoRA session (training `loraRank`, trainedPrefixes
 * ["reader.lora."]), builds the adapters on its reader, trains a round and posts an update that
 * holds only `reader.lora.*` tensors; the coordinator publishes a version whose adapters moved and
 * whose frozen weights are the base's, bit for bit. Tiny demo models on wasm, one tab, one round.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_MODELS, DEMO_QUESTION_SHARDS, demoGlobalModel, demoQuestions, seedDemoPassages } from '../../server/demo';
import { decodeModel, encodeModel, type NamedTensor } from '../../src/federated/codec';
import { READER_LORA_WIRE_PREFIX, READER_WIRE_PREFIX } from '../../src/federated/protocol';
import { loraConfigFromTraining } from '../../src/corag/federated-client';
import { initialLoraTensors, t5LoraShapes } from '../../src/model/lora';
import { tinyT5Config } from '../../src/model/tiny';
import { initBackend } from '../../src/model/backend';
import { startApp, waitFor, waitModelReady, type RunningApp } from './ui-app';

/** The demo's initial version with the session's adapters added (A seeded, B = 0), as an organiser uploads it. */
function withAdapters(base: Uint8Array, training: Record<string, string | number | boolean>): Uint8Array {
  const tensors: Map<string, NamedTensor> = decodeModel(base);
  for (const [name, t] of initialLoraTensors(t5LoraShapes(tinyT5Config(), loraConfigFromTraining(training)!), loraConfigFromTraining(training)!)) {
    tensors.set(READER_WIRE_PREFIX + name, { shape: [...t.shape], data: t.dataSync() as Float32Array });
    t.dispose();
  }
  return encodeModel(tensors, { format: 'pt' });
}

/** The tensor names of a safetensors body (its JSON header: 8-byte little-endian length, then JSON). */
function safetensorsNames(body: Buffer): string[] {
  const length = Number(body.readBigUInt64LE(0));
  return Object.keys(JSON.parse(body.subarray(8, 8 + length).toString('utf8'))).filter((n) => n !== '__metadata__');
}

describe('a tab in a LoRA session', () => {
  let app: RunningApp;
  let sid = '';
  let joinCode = '';
  let page: Page | undefined;

  beforeAll(async () => {
    app = await startApp('lora');
    await initBackend('wasm');
    const training = { learningRate: 1e-2, localSteps: 2, passagesPerQuestion: 2, maxLength: 64, batchSize: 2, seed: 1, loraRank: 2, loraTargets: 'q,v' };
    const created = await app.coordinator.createSession(
      {
        name: 'lora',
        models: DEMO_MODELS,
        training,
        roundPolicy: { fraction: 1, minClients: 1, minUpdates: 1, deadlineSeconds: 300, autoStart: true },
        trainedPrefixes: [READER_LORA_WIRE_PREFIX],
        trainingQuestions: { questions: demoQuestions(), ...DEMO_QUESTION_SHARDS },
      },
      withAdapters(demoGlobalModel(), training),
    );
    sid = created.session.id;
    joinCode = created.joinCode;
    await seedDemoPassages(app.coordinator, sid);
  }, 300_000);

  afterAll(async () => {
    await page?.screenshot({ path: join(app.resultsDir, 'lora-tab.png'), fullPage: true }).catch(() => undefined);
    await app?.close();
  });

  it('trains the adapters only, posts only reader.lora.* tensors, and the coordinator publishes a new version', async () => {
    const tab = await app.newTab('lora');
    page = tab.page;
    // What reaches the coordinator as update bodies (recorded, then handed to the real acceptUpdate unchanged).
    const posted: string[][] = [];
    const accept = app.coordinator.acceptUpdate.bind(app.coordinator);
    app.coordinator.acceptUpdate = (sessionId, round, clientId, body) => {
      posted.push(safetensorsNames(body instanceof Uint8Array ? Buffer.from(body) : readFileSync(body.path)));
      return accept(sessionId, round, clientId, body);
    };
    await page.goto(`${app.url}/?join=${encodeURIComponent(joinCode)}&backend=wasm#/join`);
    await page.locator('#backend-banner').waitFor({ timeout: 60_000 });
    await page.fill('#join-name', 'lora');
    await page.click('button[type=submit]');
    await waitModelReady(page);
    await page.waitForURL(/#\/passages$/, { timeout: 90_000 });
    await waitFor('round 1 to open', () => app.coordinator.round(sid, 'current'), 30_000);
    await page.locator('nav a', { hasText: 'Training' }).click();
    await page.locator('#qa-status', { hasText: 'this session hands this tab' }).waitFor();
    await page.click('#participate');
    await page.locator('#uploads li.uploaded', { hasText: 'Round 1' }).waitFor({ timeout: 240_000 });
    expect(await page.locator('.notice.error').allTextContents()).toEqual([]);

    expect(posted.length).toBeGreaterThanOrEqual(1);
    for (const names of posted) {
      expect(names.length).toBeGreaterThan(0);
      expect(names.filter((n) => !n.startsWith(READER_LORA_WIRE_PREFIX))).toEqual([]);
      expect(names.every((n) => /\.(q|v)\.lora_[AB]\.weight$/.test(n))).toBe(true);
    }

    const round = await waitFor(
      'round 1 to publish',
      async () => {
        const r = await app.coordinator.round(sid, 1);
        return r.resultVersion !== undefined && r.resultVersion !== null ? r : undefined;
      },
      120_000,
    );
    expect(round.resultVersion).toBe(1);
    const v0 = decodeModel(readFileSync(await app.coordinator.modelFile(sid, 0)));
    const v1 = decodeModel(readFileSync(await app.coordinator.modelFile(sid, 1)));
    const adapters = [...v1.keys()].filter((n) => n.startsWith(READER_LORA_WIRE_PREFIX));
    expect(adapters.length).toBeGreaterThan(0);
    // The adapters' B starts at zero; after a round of training some of it is not.
    expect(adapters.filter((n) => n.endsWith('lora_B.weight')).some((n) => v1.get(n)!.data.some((x) => x !== 0))).toBe(true);
    const bytes = (t: { data: Float32Array }) => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    // Every frozen weight is the base's, bit for bit.
    const frozen = [...v0.keys()].filter((n) => !n.startsWith(READER_LORA_WIRE_PREFIX));
    expect(frozen.length).toBeGreaterThan(0);
    for (const name of frozen) expect(bytes(v1.get(name)!).equals(bytes(v0.get(name)!)), name).toBe(true);
  }, 600_000);
});
