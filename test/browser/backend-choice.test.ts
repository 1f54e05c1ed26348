/**
 * The page's backend choice, in the built app served by the real coordinator (headless Chromium,
 * where WebGPU is SwiftShader on a machine without a GPU): the page is cross-origin isolated, the
 * automatic choice measures each backend and takes the fastest, never calls a software adapter
 * "your GPU", names what runs in the banner, and the Backend setting (and ?backend=) override it
 * after a reload. No session is joined: the backend starts when the page loads.
 */
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApp, type RunningApp } from './ui-app';

interface Banner {
  backend: string;
  headline: string;
  text: string;
}

async function banner(page: Page): Promise<Banner> {
  const el = page.locator('#backend-banner');
  await el.waitFor({ timeout: 120_000 });
  return {
    backend: (await el.getAttribute('data-backend')) ?? '',
    headline: (await page.locator('#backend-name').textContent()) ?? '',
    text: (await el.textContent()) ?? '',
  };
}

/** "WebAssembly (2 threads) 9.1 GFLOP/s, JavaScript CPU 1.2 GFLOP/s, …" → label → rate, in the listed order. */
function rates(text: string): Array<[string, number]> {
  return [...text.matchAll(/(WebAssembly(?: \(\d+ threads?\))?|JavaScript CPU|WebGPU \([^)]*\)) ([\d.]+) GFLOP\/s/g)].map((m) => [m[1], Number(m[2])]);
}

describe('backend choice in the page', () => {
  let app: RunningApp;
  let page: Page;
  let adapter: { vendor: string; architecture: string; description: string } | null;

  beforeAll(async () => {
    app = await startApp('backend-choice');
    ({ page } = await app.newTab('tab'));
  }, 240_000);

  afterAll(async () => {
    await app?.close();
  });

  it('is cross-origin isolated when the coordinator serves it (wasm may run threads)', async () => {
    await page.goto(`${app.url}/`);
    expect(await page.evaluate(() => crossOriginIsolated)).toBe(true);
    adapter = await page.evaluate(async () => {
      const a = await (
        navigator as unknown as { gpu?: { requestAdapter(): Promise<{ info: { vendor: string; architecture: string; description: string } } | null> } }
      ).gpu?.requestAdapter();
      return a ? { vendor: a.info.vendor, architecture: a.info.architecture, description: a.info.description } : null;
    });
  });

  it('measures every backend, takes the fastest and does not call a software adapter your GPU', async () => {
    const b = await banner(page);
    const measured = rates(b.text);
    // All three candidates (WebGPU is exposed here by --enable-unsafe-webgpu) were measured.
    expect(measured.map(([label]) => label.split(' ')[0]).sort()).toEqual(adapter ? ['JavaScript', 'WebAssembly', 'WebGPU'] : ['JavaScript', 'WebAssembly']);
    for (const [, rate] of measured) expect(rate).toBeGreaterThan(0);
    // Listed fastest first; the first is what runs.
    expect(measured.map(([, r]) => r)).toEqual([...measured.map(([, r]) => r)].sort((x, y) => y - x));
    expect({ webgpu: 'WebGPU', wasm: 'WebAssembly', cpu: 'JavaScript' }[b.backend]).toBe(measured[0][0].split(' ')[0]);
    expect(b.text).toContain('the fastest here of');
    if (adapter && /swiftshader/i.test(`${adapter.vendor} ${adapter.architecture} ${adapter.description}`)) {
      expect(b.text).not.toMatch(/your GPU|GPU:/);
      expect(measured.find(([label]) => label.startsWith('WebGPU'))?.[0]).toBe('WebGPU (SwiftShader)');
    }
    // This machine has no GPU: WebAssembly beats SwiftShader and the JavaScript kernels by far.
    expect(b.backend).toBe('wasm');
    // tfjs-backend-wasm's threaded build runs hardwareConcurrency / 2 threads (1 to 8).
    const threads = await page.evaluate(() => Math.max(1, Math.min(8, Math.floor(navigator.hardwareConcurrency / 2))));
    expect(b.headline).toBe(`CPU, WebAssembly, ${threads} thread${threads === 1 ? '' : 's'}`);
  });

  it('the Backend setting overrides the measurement after a reload, and ?backend= overrides the setting', async () => {
    await Promise.all([page.waitForEvent('load'), page.selectOption('#backend-setting', 'cpu')]);
    let b = await banner(page);
    expect(b.backend).toBe('cpu');
    expect(b.headline).toBe('CPU, JavaScript kernels');
    expect(b.text).toContain('set in the Backend setting');
    expect(await page.evaluate(() => localStorage.getItem('corag.backend'))).toBe('cpu');
    expect(await page.locator('#backend-setting').inputValue()).toBe('cpu');

    if (adapter) {
      await page.goto(`${app.url}/?backend=webgpu`);
      b = await banner(page);
      expect(b.backend).toBe('webgpu');
      expect(b.text).toContain('chosen with ?backend=webgpu');
      if (/swiftshader/i.test(`${adapter.vendor} ${adapter.architecture} ${adapter.description}`)) {
        expect(b.headline).toBe('WebGPU on a software adapter (SwiftShader)');
        expect(b.text).not.toContain('your GPU');
      }
    }

    await page.goto(`${app.url}/`);
    await banner(page);
    await Promise.all([page.waitForEvent('load'), page.selectOption('#backend-setting', 'auto')]);
    b = await banner(page);
    expect(b.backend).toBe('wasm');
    expect(b.text).toContain('the fastest here of');
    expect(app.errors.filter((e) => !/favicon|status of 404/.test(e))).toEqual([]);
  });
});
