import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../src/model/backend';
import { AdamW, globalNorm, linearScheduleLr, type AdamWOptions } from '../../src/model/optimizer';
import { expectIdenticalNumbers } from '../identical-numbers';

/** Plain-JS AdamW (torch.optim.AdamW semantics) with the same schedule and clipping. */
class ReferenceAdamW {
  m: Record<string, number[]> = {};
  v: Record<string, number[]> = {};
  t = 0;
  constructor(private readonly o: Required<Omit<AdamWOptions, 'totalSteps' | 'noDecay' | 'flat'>> & { totalSteps?: number }) {}

  step(params: Record<string, number[]>, grads: Record<string, number[]>): void {
    this.t++;
    const lr = linearScheduleLr(this.o, this.t);
    const norm = Math.sqrt(
      Object.values(grads)
        .flat()
        .reduce((s, g) => s + g * g, 0),
    );
    const scale = this.o.clipNorm > 0 && norm > this.o.clipNorm ? this.o.clipNorm / (norm + 1e-6) : 1;
    for (const name of Object.keys(grads)) {
      const p = params[name];
      const m = (this.m[name] ??= p.map(() => 0));
      const v = (this.v[name] ??= p.map(() => 0));
      for (let i = 0; i < p.length; i++) {
        const g = grads[name][i] * scale;
        p[i] *= 1 - lr * this.o.weightDecay; // torch applies decoupled decay first
        m[i] = this.o.beta1 * m[i] + (1 - this.o.beta1) * g;
        v[i] = this.o.beta2 * v[i] + (1 - this.o.beta2) * g * g;
        const mHat = m[i] / (1 - this.o.beta1 ** this.t);
        const vHat = v[i] / (1 - this.o.beta2 ** this.t);
        p[i] -= (lr * mHat) / (Math.sqrt(vHat) + this.o.eps);
      }
    }
  }
}

const options = { lr: 0.1, warmupSteps: 2, totalSteps: 6, finalRatio: 0, beta1: 0.9, beta2: 0.99, eps: 1e-6, weightDecay: 0.05, clipNorm: 1.5 };

/** Gradient of step `s` for parameter `name`, deterministic and varied in sign and size. */
function gradAt(name: string, s: number, n: number): number[] {
  return Array.from({ length: n }, (_, i) => Math.sin(1.3 * s + 0.7 * i + name.length) * (1 + (i % 3)));
}

describe('linearScheduleLr', () => {
  it('warms up linearly, then decays linearly to the final ratio and stays there', () => {
    const o = { lr: 1, warmupSteps: 4, totalSteps: 12 };
    expect([1, 2, 4, 5].map((s) => linearScheduleLr(o, s))).toEqual([0.25, 0.5, 1, 1]);
    expect(linearScheduleLr(o, 8)).toBeCloseTo(1 - 3 / 8, 12);
    expect(linearScheduleLr(o, 12)).toBeCloseTo(1 / 8, 12);
    expect(linearScheduleLr(o, 13)).toBe(0);
    expect(linearScheduleLr(o, 20)).toBe(0);
    expect(linearScheduleLr({ lr: 1, totalSteps: 10, finalRatio: 0.1 }, 5)).toBeCloseTo(1 - 0.9 * 0.4, 12);
    expect(linearScheduleLr({ lr: 0.3 }, 1000)).toBe(0.3);
  });

  it("moves the weights on every one of a few-step run's updates (the first at the full rate, the last at lr/T)", () => {
    expect([1, 2, 3].map((s) => linearScheduleLr({ lr: 0.3, totalSteps: 3 }, s))).toEqual([0.3, 0.3 * (2 / 3), 0.3 / 3].map((x) => expect.closeTo(x, 12)));
    expect(linearScheduleLr({ lr: 0.3, totalSteps: 1 }, 1)).toBe(0.3);
  });
});

describe('AdamW', () => {
  beforeAll(async () => {
    await initBackend('cpu');
  });

  it.each([
    ['tensor by tensor', false],
    ['as one flat vector (the webgpu layout)', true],
  ])('matches a plain-JS AdamW over several steps with warmup, decay, clipping and weight decay, updating %s', async (_layout, flat) => {
    const init = { a: [0.5, -1, 2, 0.25], b: [3, -0.5] };
    const params = new Map(Object.entries(init).map(([k, v]) => [k, tf.variable(tf.tensor1d(v))]));
    const reference = new ReferenceAdamW(options);
    const refParams = structuredClone(init);
    const opt = new AdamW({ ...options, flat });
    let clipped = 0;
    for (let s = 1; s <= 8; s++) {
      const gradsJs = { a: gradAt('a', s, 4), b: gradAt('b', s, 2) };
      const grads = new Map(Object.entries(gradsJs).map(([k, v]) => [k, tf.tensor1d(v)]));
      const report = await opt.apply(params, grads);
      reference.step(refParams, gradsJs);
      if (report.gradNorm > options.clipNorm) clipped++;
      expect(report.step).toBe(s);
      expect(report.lr).toBeCloseTo(linearScheduleLr(options, s), 12);
      for (const [name, v] of params) {
        const got = Array.from(await v.data());
        got.forEach((x, i) => expect(x, `${name}[${i}] at step ${s}`).toBeCloseTo(refParams[name as 'a'][i], 5));
      }
      tf.dispose([...grads.values()]);
    }
    expect(clipped).toBeGreaterThan(0); // clipping was exercised
    expect(Array.from(await params.get('a')!.data())).not.toEqual(init.a);
    opt.dispose();
    tf.dispose([...params.values()]);
  });

  it('first step equals the closed form: θ - lr (sign-like step + λθ)', async () => {
    const p = tf.variable(tf.tensor1d([1, -2]));
    const opt = new AdamW({ lr: 0.01, weightDecay: 0.1, eps: 1e-8 });
    const g = tf.tensor1d([0.3, -4]);
    await opt.apply(new Map([['p', p]]), new Map([['p', g]]));
    // m̂ = g, v̂ = g², so the Adam step is g/(|g|+ε) ≈ sign(g).
    const want = [1 - 0.01 * (0.3 / (0.3 + 1e-8) + 0.1 * 1), -2 - 0.01 * (-4 / (4 + 1e-8) + 0.1 * -2)];
    const got = Array.from(await p.data());
    got.forEach((x, i) => expect(x).toBeCloseTo(want[i], 6));
    opt.dispose();
    tf.dispose([p, g]);
  });

  it('saves and restores its state so training resumes exactly', async () => {
    const init = [0.2, -0.4, 0.9];
    const straight = tf.variable(tf.tensor1d(init));
    const resumed = tf.variable(tf.tensor1d(init));
    const first = new AdamW(options);
    const grads = (s: number) => new Map([['w', tf.tensor1d(gradAt('w', s, 3))]]);
    for (let s = 1; s <= 3; s++) {
      const g = grads(s);
      await first.apply(new Map([['w', straight]]), g);
      tf.dispose([...g.values()]);
    }
    // `resumed` gets the same first three steps from a second optimizer, which is then saved.
    const second = new AdamW(options);
    for (let s = 1; s <= 3; s++) {
      const g = grads(s);
      await second.apply(new Map([['w', resumed]]), g);
      tf.dispose([...g.values()]);
    }
    const bytes = await second.saveState();
    second.dispose();
    const restored = new AdamW(options);
    restored.loadState(bytes);
    expect(restored.step).toBe(3);
    for (let s = 4; s <= 7; s++) {
      const g = grads(s);
      await first.apply(new Map([['w', straight]]), g);
      await restored.apply(new Map([['w', resumed]]), g);
      tf.dispose([...g.values()]);
    }
    expectIdenticalNumbers((await resumed.data()) as Float32Array, (await straight.data()) as Float32Array);
    const state = await restored.stateTensors();
    expect([...state.keys()].sort()).toEqual(['__step__', 'm.w', 'v.w']);
    first.dispose();
    restored.dispose();
    tf.dispose([straight, resumed]);
  });

  it('rejects malformed state and mismatched gradients', async () => {
    const opt = new AdamW({ lr: 0.1 });
    expect(() => opt.loadState(new Uint8Array([1, 2, 3]))).toThrow(/truncated/);
    const p = tf.variable(tf.zeros([2]));
    const g = tf.zeros([3]);
    await expect(opt.apply(new Map([['p', p]]), new Map([['p', g]]))).rejects.toThrow('shape [3]');
    await expect(opt.apply(new Map([['p', p]]), new Map([['q', g]]))).rejects.toThrow('unknown parameter "q"');
    const bad = tf.tensor1d([NaN, 0]);
    await expect(opt.apply(new Map([['p', p]]), new Map([['p', bad]]))).rejects.toThrow('norm is NaN');
    opt.dispose();
    tf.dispose([p, g, bad]);
  });

  it.each([
    ['tensor by tensor', false],
    ['as one flat vector (the webgpu layout)', true],
  ])('gives bit-identical updates when it consumes the gradients, smallest first, updating %s', async (_layout, flat) => {
    // Sizes out of order (so the consuming update reorders them) and a no-decay parameter (so the
    // flat decay mask's offsets must follow the reordering).
    const sizes = { big: 40, norm: 3, mid: 12, small: 1 };
    const init = (name: string, n: number) => tf.tensor1d(gradAt(`init-${name}`, 0, n));
    const run = async (consume: boolean) => {
      const params = new Map(Object.entries(sizes).map(([k, n]) => [k, tf.variable(init(k, n))]));
      const opt = new AdamW({ ...options, flat, noDecay: (name) => name === 'norm' });
      for (let s = 1; s <= 4; s++) {
        const grads = new Map(Object.entries(sizes).map(([k, n]) => [k, tf.tensor1d(gradAt(k, s, n))]));
        await opt.apply(params, grads, { consumeGradients: consume });
        for (const g of grads.values()) expect(g.isDisposed).toBe(consume);
        tf.dispose([...grads.values()]);
      }
      const out = Object.fromEntries(await Promise.all([...params].map(async ([k, v]) => [k, Array.from(await v.data())] as const)));
      opt.dispose();
      tf.dispose([...params.values()]);
      return out;
    };
    expect(await run(true)).toEqual(await run(false));
  });

  it('holds fewer buffers at its peak when it consumes the gradients', async () => {
    const engine = tf.engine() as unknown as {
      state: { tensorInfo: WeakMap<object, { bytes: number }> };
      trackTensor: (a: tf.Tensor, b: unknown) => void;
      removeDataId: (d: object, b: unknown) => void;
    };
    const sizes = [4096, 64, 1024, 256];
    const peak = async (consume: boolean) => {
      const params = new Map(sizes.map((n, i) => [`p${i}`, tf.variable(tf.ones([n]))]));
      const opt = new AdamW({ ...options, flat: false });
      const gradients = () => new Map(sizes.map((n, i) => [`p${i}`, tf.fill([n], 0.01 * (i + 1))]));
      await opt.apply(params, gradients(), { consumeGradients: true }); // creates the moments
      const grads = gradients();
      // The bench's measure: distinct live buffers, sampled at every allocation.
      const { trackTensor, removeDataId } = engine;
      const info = engine.state.tensorInfo;
      let current = 0;
      let most = 0;
      engine.trackTensor = function (a, b) {
        const fresh = !info.has(a.dataId);
        trackTensor.call(this, a, b);
        if (fresh) most = Math.max(most, (current += info.get(a.dataId)!.bytes));
      };
      engine.removeDataId = function (d, b) {
        const entry = info.get(d);
        removeDataId.call(this, d, b);
        if (entry && !info.has(d)) current -= entry.bytes;
      };
      try {
        await opt.apply(params, grads, { consumeGradients: consume });
      } finally {
        engine.trackTensor = trackTensor;
        engine.removeDataId = removeDataId;
      }
      tf.dispose([...grads.values(), ...params.values()]);
      opt.dispose();
      return most;
    };
    const all = sizes.reduce((n, s) => n + s, 0) * 4;
    const largest = 4096 * 4;
    const kept = await peak(false);
    const consumed = await peak(true);
    // Kept: the update's temporaries of the largest come on top of every gradient; consumed, the
    // others' gradients are gone by the time the largest is updated.
    expect(kept).toBeGreaterThanOrEqual(3 * largest);
    expect(consumed).toBeLessThanOrEqual(kept - (all - largest));
  });

  it('disposes consumed gradients also when it refuses the update', async () => {
    const p = tf.variable(tf.ones([2]));
    const g = tf.tensor1d([NaN, 1]);
    const opt = new AdamW(options);
    await expect(opt.apply(new Map([['p', p]]), new Map([['p', g]]), { consumeGradients: true })).rejects.toThrow(/gradient norm is NaN/);
    expect(g.isDisposed).toBe(true);
    opt.dispose();
    p.dispose();
  });

  it('globalNorm is the L2 norm over all tensors', async () => {
    const ts = [tf.tensor1d([3]), tf.tensor2d([[4, 0]])];
    expect(await globalNorm(ts)).toBeCloseTo(5, 6);
    tf.dispose(ts);
  });

  it('holds a constant number of tensors over many steps', async () => {
    const p = tf.variable(tf.ones([4]));
    const opt = new AdamW(options);
    const g = tf.ones([4]);
    await opt.apply(new Map([['p', p]]), new Map([['p', g]]));
    const before = tf.memory().numTensors;
    for (let i = 0; i < 20; i++) await opt.apply(new Map([['p', p]]), new Map([['p', g]]));
    expect(tf.memory().numTensors).toBe(before);
    opt.dispose();
    tf.dispose([p, g]);
  });

  it('leaves no tensor behind once disposed (moment buffers are its only state)', async () => {
    const p = tf.variable(tf.ones([4]));
    const g = tf.ones([4]);
    const before = tf.memory().numTensors;
    const opt = new AdamW(options);
    await opt.apply(new Map([['p', p]]), new Map([['p', g]]));
    opt.dispose();
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([p, g]);
  });
});
