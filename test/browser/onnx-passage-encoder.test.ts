/**
 * The passage encoder's ONNX path in headless Chromium (issue 20): the graph written from
 * TypeScript for the bert-tiny fixture and the demo retriever, run on onnxruntime-web's wasm
 * provider (binary from the page's own origin, no CDN), equal to tfjs within 1e-5 relative; tfjs
 * embedding while the ONNX engine is built in the background, then the switch; and the equality
 * gate falling back to tfjs on corrupted weights or a corrupted graph.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PassageText } from '../../src/corag/retrieve';
import type { BackendReport } from '../../src/model/backend';
import { startBrowserHarness, type BrowserHarness } from './harness';

const fixturesDir = fileURLToPath(new URL('../../../shared/fixtures/hf-reference/', import.meta.url));
const modelsDir = fileURLToPath(new URL('../../public/models/', import.meta.url));
const PASSAGES: PassageText[] = readFileSync(new URL('../../public/demo/passages.jsonl', import.meta.url), 'utf8')
  .split('\n')
  .filter((l) => l.trim())
  .slice(0, 48)
  .map((l) => JSON.parse(l) as PassageText);

interface DemoRun {
  engine: string;
  detail: string;
  fallbackReason?: string;
  gateRelativeDiff?: number;
  onnxSetupSeconds?: number;
  passages: number;
  vsTfjs: number;
  seconds: number;
  tfjsSeconds: number;
}

describe('the ONNX passage encoder in headless chromium', () => {
  let h: BrowserHarness;
  const requested: string[] = [];

  beforeAll(async () => {
    h = await startBrowserHarness({
      name: 'onnx-passage-encoder',
      entry: 'test/browser/onnx-passage-encoder.entry.ts',
      mounts: { '/fixtures/': fixturesDir, '/models/': modelsDir },
    });
    h.page.on('request', (r) => requested.push(r.url()));
  }, 300_000);

  afterAll(async () => {
    await h?.screenshot('final').catch(() => undefined);
    await h?.close();
  });

  it("starts ONNX Runtime's wasm from the page's origin with tfjs's threads", async () => {
    const r = await h.call<{ backend: BackendReport; ort: string; ortWasmUrl: string }>('start');
    expect(r.backend.name).toBe('wasm');
    expect(new URL(r.ortWasmUrl).origin).toBe(new URL(h.baseUrl).origin);
    const threads = r.backend.threads ?? 1;
    expect(r.ort).toMatch(new RegExp(`^ONNX Runtime Web 1\\.22\\.\\S+ \\(wasm, ${threads} threads?\\)$`));
  });

  it('bert-tiny fixture: ONNX equals tfjs and PyTorch within 1e-5 relative', async () => {
    const r = await h.call<{ onnxVsTfjs: number; onnxVsPyTorch: number; tfjsVsPyTorch: number }>('fixtureAgreement');
    console.info(`[onnx-passage-encoder] bert-tiny: ${JSON.stringify(r)}`);
    expect(r.onnxVsTfjs).toBeLessThan(1e-5);
    expect(r.onnxVsPyTorch).toBeLessThan(1e-5);
    expect(r.tfjsVsPyTorch).toBeLessThan(1e-5);
  }, 120_000);

  it('demo retriever: PassageEncoder keeps ONNX after the gate and embeds demo passages as tfjs does (≤ 1e-5)', async () => {
    const r = await h.call<DemoRun>('demoRetriever', PASSAGES, 'none');
    console.info(`[onnx-passage-encoder] demo retriever: ${JSON.stringify(r)}`);
    expect(r.engine).toBe('onnx');
    expect(r.fallbackReason).toBeUndefined();
    expect(r.gateRelativeDiff).toBeLessThan(1e-5);
    expect(r.vsTfjs).toBeLessThan(1e-5);
    // ORT's binary and loader came from this page's server, nothing from elsewhere (blob: URLs of
    // this origin are the wasm backends' thread workers).
    expect(requested.some((u) => /ort-wasm-simd-threaded[^/]*\.wasm$/.test(u))).toBe(true);
    expect(requested.some((u) => /ort-wasm-simd-threaded[^/]*\.mjs$/.test(u))).toBe(true);
    const origin = new URL(h.baseUrl).origin;
    expect(requested.filter((u) => !u.startsWith(h.baseUrl) && !u.startsWith('data:') && !u.startsWith(`blob:${origin}/`))).toEqual([]);
  }, 300_000);

  it('embeds on tfjs at once while ONNX Runtime is built in the background, then on ONNX once it passed the gate', async () => {
    const r = await h.call<{
      atLoad: { engine: string; building: boolean };
      firstCall: { tfjs: number; onnx: number };
      settled: { engine: string; tfjsPassagesBeforeSwitch?: number; onnxSetupSeconds?: number };
      afterSecondCall: { tfjs: number; onnx: number };
      vsTfjs: number;
    }>('backgroundSwitch', PASSAGES.slice(0, 16));
    console.info(`[onnx-passage-encoder] background build: ${JSON.stringify(r)}`);
    expect(r.atLoad).toEqual({ engine: 'tfjs', building: true });
    // The first batch of 4 ran on tfjs, before the ONNX session existed.
    expect(r.firstCall.tfjs).toBeGreaterThanOrEqual(4);
    expect(r.settled.engine).toBe('onnx');
    expect(r.settled.tfjsPassagesBeforeSwitch).toBe(r.firstCall.tfjs);
    // After the switch everything runs on ONNX; no passage was embedded twice or lost.
    expect(r.afterSecondCall).toEqual({ tfjs: r.firstCall.tfjs, onnx: 32 - r.firstCall.tfjs });
    expect(r.vsTfjs).toBeLessThan(1e-5);
  }, 300_000);

  it('falls back to tfjs, with the reason, on corrupted weights and on a corrupted graph', async () => {
    const weights = await h.call<DemoRun>('demoRetriever', PASSAGES.slice(0, 4), 'weights');
    expect(weights.engine).toBe('tfjs');
    expect(weights.fallbackReason).toMatch(/differ from tfjs's by \S+ relative \(allowed 0\.001\)/);
    expect(weights.vsTfjs).toBe(0);
    const graph = await h.call<DemoRun>('demoRetriever', PASSAGES.slice(0, 4), 'graph');
    expect(graph.engine).toBe('tfjs');
    expect(graph.fallbackReason).toBeTruthy();
    expect(graph.gateRelativeDiff).toBeUndefined();
    console.info(`[onnx-passage-encoder] fallbacks: ${weights.fallbackReason} | ${graph.fallbackReason}`);
  }, 300_000);

  it('logged no errors in the page', () => {
    expect(h.errors).toEqual([]);
  });
});
