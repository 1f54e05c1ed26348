/** The automatic backend choice from (made-up) probe measurements, and how the banner names it. */
import { describe, expect, it } from 'vitest';
import { backendHeadline, chooseBackend, formatProbes, parseBackendSetting, softwareAdapterName, type BackendProbe } from '../../src/model/backend-choice';

const swiftshader = { vendor: 'google', architecture: 'swiftshader', device: '', description: 'SwiftShader Device (Subzero)', isFallbackAdapter: false };
const nvidia = { vendor: 'nvidia', architecture: 'ampere', device: '', description: 'NVIDIA GeForce RTX 3060 Laptop GPU', isFallbackAdapter: false };

/** This machine as measured in headless Chromium: SwiftShader far slower than wasm. */
const laptopWithoutGpu: BackendProbe[] = [
  { name: 'webgpu', ok: true, gflops: 0.3, adapter: swiftshader, software: 'SwiftShader' },
  { name: 'wasm', ok: true, gflops: 18, threads: 2 },
  { name: 'cpu', ok: true, gflops: 1.1 },
];

describe('softwareAdapterName', () => {
  it('recognises software rasterisers by name in any field', () => {
    expect(softwareAdapterName(swiftshader)).toBe('SwiftShader');
    expect(softwareAdapterName({ vendor: 'mesa', description: 'llvmpipe (LLVM 15.0.6, 256 bits)' })).toBe('llvmpipe');
    expect(softwareAdapterName({ vendor: 'mesa', architecture: '', device: 'lavapipe' })).toBe('lavapipe');
    expect(softwareAdapterName({ description: 'Microsoft Basic Render Driver' })).toBe('WARP');
    expect(softwareAdapterName({ vendor: 'x', description: 'Some software renderer' })).toBe('software');
    expect(softwareAdapterName({ architecture: 'cpu' })).toBe('CPU');
  });

  it("takes the browser's fallback flag even without a known name", () => {
    expect(softwareAdapterName({ vendor: 'acme', description: 'Acme Adapter', isFallbackAdapter: true })).toBe('fallback adapter');
  });

  it('leaves hardware adapters alone', () => {
    expect(softwareAdapterName(nvidia)).toBeUndefined();
    expect(softwareAdapterName({ vendor: 'apple', architecture: 'metal-3', description: '' })).toBeUndefined();
    expect(softwareAdapterName({ vendor: 'intel', architecture: 'gen-12lp', description: 'Intel(R) Iris(R) Xe Graphics' })).toBeUndefined();
    expect(softwareAdapterName(undefined)).toBeUndefined();
  });
});

describe('chooseBackend', () => {
  it('takes the fastest measured backend, then the others by speed', () => {
    const c = chooseBackend(laptopWithoutGpu);
    expect(c.by).toBe('measured');
    expect(c.order).toEqual(['wasm', 'cpu', 'webgpu']);
  });

  it('takes a hardware GPU when it measures fastest', () => {
    const c = chooseBackend([
      { name: 'webgpu', ok: true, gflops: 400, adapter: nvidia },
      { name: 'wasm', ok: true, gflops: 30, threads: 8 },
      { name: 'cpu', ok: true, gflops: 2 },
    ]);
    expect(c.order).toEqual(['webgpu', 'wasm', 'cpu']);
  });

  it('skips backends that failed to start or measured nothing, keeping them as last resorts', () => {
    const c = chooseBackend([
      { name: 'webgpu', ok: false, error: 'no adapter' },
      { name: 'wasm', ok: true, gflops: Number.NaN },
      { name: 'cpu', ok: true, gflops: 1 },
    ]);
    expect(c.order).toEqual(['cpu', 'wasm', 'webgpu']);
  });

  it('falls back to wasm, cpu, webgpu when nothing was measured', () => {
    expect(chooseBackend([]).order).toEqual(['wasm', 'cpu', 'webgpu']);
  });

  it('puts a setting first, ignoring measurements, and a URL parameter above both', () => {
    expect(chooseBackend(laptopWithoutGpu, 'webgpu')).toMatchObject({ by: 'setting', order: ['webgpu', 'wasm', 'cpu'] });
    expect(chooseBackend(laptopWithoutGpu, 'cpu')).toMatchObject({ by: 'setting', order: ['cpu', 'wasm', 'webgpu'] });
    expect(chooseBackend(laptopWithoutGpu, 'cpu', 'webgpu')).toMatchObject({ by: 'url', order: ['webgpu'] });
  });

  it('parses stored settings, anything unknown meaning automatic', () => {
    expect(parseBackendSetting('wasm')).toBe('wasm');
    expect(parseBackendSetting('auto')).toBe('auto');
    expect(parseBackendSetting(null)).toBe('auto');
    expect(parseBackendSetting('gpu')).toBe('auto');
  });
});

describe('backendHeadline and formatProbes', () => {
  it('never calls a software adapter a GPU', () => {
    expect(backendHeadline({ name: 'webgpu', adapter: swiftshader, software: 'SwiftShader' })).toBe('WebGPU on a software adapter (SwiftShader)');
    expect(backendHeadline({ name: 'webgpu', adapter: nvidia })).toBe('GPU: NVIDIA GeForce RTX 3060 Laptop GPU');
    expect(backendHeadline({ name: 'webgpu', adapter: { vendor: 'apple', architecture: 'metal-3', description: '' } })).toBe('GPU: apple metal-3');
  });

  it('says how many wasm threads run and why only one', () => {
    expect(backendHeadline({ name: 'wasm', threads: 2, crossOriginIsolated: true })).toBe('CPU, WebAssembly, 2 threads');
    expect(backendHeadline({ name: 'wasm', threads: 1, crossOriginIsolated: false })).toBe('CPU, WebAssembly, 1 thread (no cross-origin isolation)');
    expect(backendHeadline({ name: 'wasm', threads: 1, crossOriginIsolated: true })).toBe('CPU, WebAssembly, 1 thread');
    expect(backendHeadline({ name: 'cpu' })).toBe('CPU, JavaScript kernels');
  });

  it('lists the measured rates fastest first, and failures with their reason', () => {
    expect(formatProbes(laptopWithoutGpu)).toBe('WebAssembly (2 threads) 18 GFLOP/s, JavaScript CPU 1.1 GFLOP/s, WebGPU (SwiftShader) 0.30 GFLOP/s');
    expect(
      formatProbes([
        { name: 'webgpu', ok: false, error: 'no adapter' },
        { name: 'cpu', ok: true, gflops: 1.25 },
      ]),
    ).toBe('JavaScript CPU 1.3 GFLOP/s, WebGPU (unknown adapter): no adapter');
  });
});
