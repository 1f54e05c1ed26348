import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBrowserHarness, type BrowserHarness } from './harness';
import type { BrowserConformance } from './conformance.entry';

/**
 * The hf-reference conformance suite in headless chromium, on WebGPU (SwiftShader where there is
 * no GPU) with bounds 10x looser than cpu: forward max|a-b|/max|b| < 1e-3, gradients relative
 * L2 < 1e-2. If WebGPU were unavailable the page falls back to wasm/cpu with the cpu bounds and
 * the fallback reason is printed; webgpu.browser.test.ts fails in that case.
 */
const fixturesDir = fileURLToPath(new URL('../../../shared/fixtures/hf-reference/', import.meta.url));
const fixtures = readdirSync(fixturesDir, { withFileTypes: true })
  .filter((d) => d.isDirectory() && existsSync(join(fixturesDir, d.name, 'config.json')))
  .map((d) => ({ name: d.name, modelType: JSON.parse(readFileSync(join(fixturesDir, d.name, 'config.json'), 'utf8')).model_type as string }));

describe('hf-reference conformance in headless chromium', () => {
  let harness: BrowserHarness;
  const results: BrowserConformance[] = [];

  beforeAll(async () => {
    harness = await startBrowserHarness({ name: 'conformance', entry: 'test/browser/conformance.entry.ts', mounts: { '/fixtures/': fixturesDir } });
  }, 300_000);

  afterAll(async () => {
    if (!harness) return;
    await mkdir(harness.resultsDir, { recursive: true });
    await writeFile(join(harness.resultsDir, 'results.json'), JSON.stringify(results, null, 2) + '\n');
    await harness.screenshot('final').catch(() => undefined);
    await harness.close();
  });

  it('finds the T5 and BERT fixtures', () => {
    expect(fixtures.map((f) => f.modelType)).toEqual(expect.arrayContaining(['t5', 'bert']));
  });

  for (const { name } of fixtures) {
    it(`${name}: forward outputs and every parameter gradient match Hugging Face`, async () => {
      const r = await harness.call<BrowserConformance>('checkServedFixture', name);
      results.push(r);
      console.info(
        `[conformance:${name}] backend=${r.backend.name} (${r.backend.detail})${r.backend.fallbackReason ? ` fallback: ${r.backend.fallbackReason}` : ''} ` +
          `bounds=${JSON.stringify(r.bounds)} max_rel_err=${JSON.stringify(r.max_rel_err)} grad_rel_l2=${r.grad_rel_l2} (${r.worst_grad})`,
      );
      expect(r.ok_forward).toBe(true);
      expect(r.ok_grads).toBe(true);
      expect(Math.max(...Object.values(r.max_rel_err))).toBeLessThan(r.bounds.forward);
      expect(r.grad_rel_l2).toBeLessThan(r.bounds.grads);
      expect(r.leakedTensors).toBe(0);
    }, 600_000);
  }

  it('logged no errors in the page', () => {
    expect(harness.errors).toEqual([]);
  });
});
