import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseSafetensors, readTensor } from '../../src/model/safetensors';
import { startBrowserHarness, type BrowserHarness } from './harness';
import type { AdapterProbe, BackendAgreement } from './webgpu.entry';

const fixtures = new URL('../../../shared/fixtures/hf-reference/', import.meta.url);

describe('WebGPU in headless chromium', () => {
  let harness: BrowserHarness;
  let probe: AdapterProbe;

  beforeAll(async () => {
    harness = await startBrowserHarness({
      name: 'webgpu',
      entry: 'test/browser/webgpu.entry.ts',
      mounts: { '/fixtures/': fixtures.pathname },
    });
    probe = await harness.call<AdapterProbe>('probeAdapter');
    // Shown in the test log either way: which adapter, or the exact reason there is none.
    console.info(`[webgpu] adapter probe: ${JSON.stringify(probe)}`);
  }, 300_000);

  afterAll(async () => {
    await harness?.screenshot('final').catch(() => undefined);
    await harness?.close();
  });

  it('exposes a WebGPU adapter (SwiftShader on a machine without a GPU)', () => {
    expect(probe.error).toBeUndefined();
    expect(probe.adapter).toBe(true);
    expect(probe.vendor || probe.description).toBeTruthy();
  });

  it('selects webgpu first and reports the adapter name', async () => {
    const report = await harness.call<{ name: string; detail: string; fallbackReason?: string }>('initBackend', ['webgpu', 'wasm', 'cpu']);
    expect(report.fallbackReason).toBeUndefined();
    expect(report.name).toBe('webgpu');
    expect(report.detail).toContain(probe.vendor || probe.description);
  });

  it('computes a matmul and its gradient on webgpu equal to cpu in the same page (1e-5)', async () => {
    const agreement = await harness.call<BackendAgreement>('compareWithCpu', 'webgpu');
    expect(agreement.backend).toBe('webgpu');
    expect(agreement.leakedTensors).toBe(0);
    expect(agreement.maxRelativeError).toBeLessThan(1e-5);
  });

  it('transposes int32 data cast to float32 on webgpu (Cast correction in place)', async () => {
    expect(await harness.call<number[]>('transposeCastInts')).toEqual([1, 3, 2, 4, 5, 7, 6, 8]);
  });

  it('also runs the wasm fallback and agrees with cpu', async () => {
    const agreement = await harness.call<BackendAgreement>('compareWithCpu', 'wasm');
    expect(agreement.backend).toBe('wasm');
    expect(agreement.maxRelativeError).toBeLessThan(1e-5);
  });

  it('parses a served safetensors checkpoint in the page exactly as Node does', async () => {
    const inPage = await harness.call<{ names: string[]; firstTensor: { name: string; dtype: string; shape: number[]; head: number[] } }>(
      'parseServedSafetensors',
      '/fixtures/bert-tiny/model.safetensors',
    );
    const inNode = parseSafetensors(await readFile(new URL('bert-tiny/model.safetensors', fixtures)));
    expect(inPage.names).toEqual([...inNode.tensors.keys()].sort());
    const first = readTensor(inNode, inPage.firstTensor.name);
    expect(inPage.firstTensor.dtype).toBe(first.dtype);
    expect(inPage.firstTensor.shape).toEqual(first.shape);
    expect(inPage.firstTensor.head).toEqual(Array.from(first.data.slice(0, 8) as ArrayLike<number>));
  });

  it('logged no errors in the page', () => {
    expect(harness.errors).toEqual([]);
  });
});
