/**
 * The measurement behind the automatic backend choice (src/model/backend-choice.ts): start a
 * backend, warm it up (shader compilation, wasm instantiation), then time 128×256·256×256 float32
 * matmuls — about the shapes of the demo models' layers (width 128–512, up to 256 tokens) — until
 * `minMillis` have passed, and report GFLOP/s. Several matmuls are queued per readback, so a GPU's
 * readback latency is paid once per group, not once per product.
 */
import * as tf from '@tensorflow/tfjs-core';
import { softwareAdapterName, type AdapterInfoLike, type BackendName, type BackendProbe } from './backend-choice';
import { loadBackend, runningBackendInfo } from './backend';

export interface ProbeOptions {
  /** Matmul shape [m, k] · [k, n]. */
  readonly m?: number;
  readonly k?: number;
  readonly n?: number;
  /** Keep measuring until this much time has passed (after the warm-up). */
  readonly minMillis?: number;
}

/** Probes one backend; leaves it as the active tfjs backend when it started. Never throws. */
export async function probeBackend(name: BackendName, options: ProbeOptions = {}): Promise<BackendProbe> {
  const { m = 128, k = 256, n = 256, minMillis = 40 } = options;
  const started = performance.now();
  let info: { adapter?: AdapterInfoLike; threads?: number } = {};
  try {
    await loadBackend(name);
    if (!(await tf.setBackend(name))) throw new Error(`tf.setBackend('${name}') returned false`);
    await tf.ready();
    info = await runningBackendInfo(name);
    const a = tf.randomUniform([m, k], -1, 1, 'float32', 1) as tf.Tensor2D;
    const b = tf.randomUniform([k, n], -1, 1, 'float32', 2) as tf.Tensor2D;
    try {
      // Warm-up: compile and run once (twice: the first run of a webgpu program also builds its pipeline).
      for (let i = 0; i < 2; i++) {
        const c = tf.matMul(a, b);
        await c.data();
        c.dispose();
      }
      let products = 0;
      let group = 2;
      const t0 = performance.now();
      let elapsed = 0;
      while (elapsed < minMillis) {
        const outs: tf.Tensor[] = [];
        for (let i = 0; i < group; i++) outs.push(tf.matMul(a, b));
        const last = outs[outs.length - 1];
        if (!last) throw new Error('backend probe: no products to wait for');
        await last.data();
        for (const o of outs) o.dispose();
        products += group;
        elapsed = performance.now() - t0;
        group = Math.min(group * 2, 64);
      }
      const gflops = (2 * m * k * n * products) / (elapsed / 1000) / 1e9;
      return {
        name,
        ok: true,
        gflops,
        ...info,
        software: name === 'webgpu' ? softwareAdapterName(info.adapter) : undefined,
        millis: performance.now() - started,
      };
    } finally {
      a.dispose();
      b.dispose();
    }
  } catch (e) {
    return {
      name,
      ok: false,
      error: (e as Error)?.message ?? String(e),
      ...info,
      software: name === 'webgpu' ? softwareAdapterName(info.adapter) : undefined,
      millis: performance.now() - started,
    };
  }
}

/** Probes each backend in turn (one at a time: they share the cores). */
export async function probeBackends(names: readonly BackendName[], options: ProbeOptions = {}): Promise<BackendProbe[]> {
  const out: BackendProbe[] = [];
  for (const name of names) out.push(await probeBackend(name, options));
  return out;
}
