import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../src/model/backend';
import { checkpointedRows, leanGradients, leanVariableGrads } from '../../src/model/gradients';
import { relativeL2Error } from '../../src/model/numerics';
import { parseSafetensors, readTensor } from '../../src/model/safetensors';
import { fidLoss } from '../../src/model/t5/fid';
import { namedGradients } from '../../src/model/trainable';
import { intInput, loadT5Fixture, readT5Fixture, T5_FIXTURES } from './t5/fixtures';

/** Bytes of distinct live buffers at their peak while `run` runs (the bench's measure, inlined). */
function peakBuffers(run: () => void): number {
  const engine = tf.engine() as unknown as {
    state: { tensorInfo: WeakMap<object, { bytes: number }> };
    trackTensor: (a: tf.Tensor, b: unknown) => void;
    removeDataId: (d: object, b: unknown) => void;
  };
  const { trackTensor, removeDataId } = engine;
  const info = engine.state.tensorInfo;
  let current = 0;
  let peak = 0;
  engine.trackTensor = function (a, b) {
    const fresh = !info.has(a.dataId);
    trackTensor.call(this, a, b);
    if (fresh) peak = Math.max(peak, (current += info.get(a.dataId)!.bytes));
  };
  engine.removeDataId = function (d, b) {
    const entry = info.get(d);
    removeDataId.call(this, d, b);
    if (entry && !info.has(d)) current -= entry.bytes;
  };
  try {
    run();
  } finally {
    engine.trackTensor = trackTensor;
    engine.removeDataId = removeDataId;
  }
  return peak;
}

async function expectSameGradients(actual: ReadonlyMap<string, tf.Tensor>, expected: ReadonlyMap<string, tf.Tensor>, bound: number) {
  expect([...actual.keys()].sort()).toEqual([...expected.keys()].sort());
  for (const [name, g] of expected) {
    const err = relativeL2Error(await actual.get(name)!.data(), await g.data());
    if (!(err <= bound)) throw new Error(`${name}: relative L2 error ${err} > ${bound}`);
  }
}

describe.each(['cpu', 'wasm'] as const)('leanGradients on %s', (backend) => {
  beforeAll(async () => {
    await initBackend(backend);
  });

  it('equals tf.grads on a small graph with shared inputs, broadcasting, a customGrad and an unused input', async () => {
    const a = tf.tensor2d([
      [0.5, -1.2, 2],
      [0.3, 0.7, -0.4],
    ]);
    const b = tf.tensor1d([0.25, -0.5, 1.5]);
    const unused = tf.tensor1d([1, 2]);
    const twice = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
      const x = args[0] as tf.Tensor;
      (args[1] as tf.GradSaveFunc)([x]);
      return { value: tf.mul(x, 2), gradFunc: (dy: tf.Tensor) => tf.mul(dy, 2) };
    });
    const f = (x: tf.Tensor, y: tf.Tensor) =>
      tf.sum(tf.mul(tf.tanh(tf.add(x, y)), twice(tf.matMul(x as tf.Tensor2D, tf.reshape(tf.square(y), [3, 1]) as tf.Tensor2D))));
    const reference = tf.grads(f)([a, b]);
    const before = tf.memory().numTensors;
    const { value, grads } = leanGradients(() => f(a, b) as tf.Scalar, [a, b, unused]);
    expect(grads[2]).toBeNull();
    // Only the value and the two gradients are left: every saved and intermediate tensor is freed.
    expect(tf.memory().numTensors).toBe(before + 3);
    for (let i = 0; i < 2; i++) expect(relativeL2Error(await grads[i]!.data(), await reference[i].data())).toBeLessThan(1e-6);
    tf.dispose([value, grads[0]!, grads[1]!, ...reference, a, b, unused]);
  });

  it('weights the value by dy, and rejects a dy of the wrong shape', async () => {
    const x = tf.tensor1d([1, 2, 3]);
    const dy = tf.tensor1d([1, 0, -2]);
    const { value, grads } = leanGradients(() => tf.square(x), [x], dy);
    expect([...(await grads[0]!.data())]).toEqual([2, 0, -12]);
    expect(dy.isDisposed).toBe(false);
    expect(() => leanGradients(() => tf.square(x), [x], tf.ones([2]))).toThrow('dy has shape');
    tf.dispose([x, dy, value, grads[0]!]);
  });

  it('skips frozen variables and fails like tf.variableGrads when nothing is connected', () => {
    const w = tf.variable(tf.tensor1d([1, 2]), true, `lean-w-${backend}`);
    const frozen = tf.variable(tf.tensor1d([3, 4]), false, `lean-frozen-${backend}`);
    const { value, grads } = leanVariableGrads(() => tf.sum(tf.mul(w, frozen)), [w, frozen]);
    expect(Object.keys(grads)).toEqual([w.name]);
    tf.dispose([value, ...Object.values(grads)]);
    const other = tf.variable(tf.scalar(1), true, `lean-other-${backend}`);
    expect(() => leanVariableGrads(() => tf.sum(frozen), [other])).toThrow('does not depend');
    expect(() => leanVariableGrads(() => tf.sum(w), [frozen])).toThrow('none of the 1 variables is trainable');
    tf.dispose([w, frozen, other]);
  });

  it('checkpointedRows gives the same value and gradients as the plain forward, for any chunk size', async () => {
    const w1 = tf.randomNormal([4, 6], 0, 1, 'float32', 1);
    const w2 = tf.randomNormal([6], 0, 1, 'float32', 2);
    const input = tf.randomNormal([5, 3, 4], 0, 1, 'float32', 3);
    const forward = (ws: readonly tf.Tensor[], start: number, count: number) =>
      tf.tidy(() => {
        const x = tf.slice(input, start, count);
        return tf.mul(tf.tanh(tf.reshape(tf.matMul(tf.reshape(x, [-1, 4]), ws[0]), [count, 3, 6])), ws[1]);
      });
    const loss = (out: tf.Tensor) => tf.sum(tf.mul(out, tf.reshape(tf.linspace(-1, 1, out.size), out.shape)));
    const plain = leanGradients(() => loss(forward([w1, w2], 0, 5)), [w1, w2]);
    for (const chunk of [1, 2, 5, 8]) {
      const ck = leanGradients(() => loss(checkpointedRows([w1, w2], 5, chunk, forward)), [w1, w2]);
      expect(relativeL2Error(await ck.value.data(), await plain.value.data())).toBeLessThan(1e-6);
      for (let i = 0; i < 2; i++) expect(relativeL2Error(await ck.grads[i]!.data(), await plain.grads[i]!.data())).toBeLessThan(1e-5);
      tf.dispose([ck.value, ...ck.grads.map((g) => g!)]);
      // Under the stock tape walk as well (the checkpoint's backward sets the engine's tape aside).
      const stock = tf.grads((a: tf.Tensor, b: tf.Tensor) => loss(checkpointedRows([a, b], 5, chunk, forward)))([w1, w2]);
      for (let i = 0; i < 2; i++) expect(relativeL2Error(await stock[i].data(), await plain.grads[i]!.data())).toBeLessThan(1e-5);
      tf.dispose(stock);
    }
    expect(() => checkpointedRows([w1], 5, 0, forward)).toThrow('chunkRows');
    tf.dispose([plain.value, ...plain.grads.map((g) => g!), w1, w2, input]);
  });
});

describe.each(T5_FIXTURES)('%s: memory-saving training paths equal the stock one', (fixture) => {
  let fix: ReturnType<typeof loadT5Fixture>;
  let params: Map<string, tf.Variable>;
  let ids: tf.Tensor2D, mask: tf.Tensor2D, labels: tf.Tensor2D;
  let fidIds: tf.Tensor2D, fidMask: tf.Tensor2D, fidLabels: tf.Tensor2D;

  beforeAll(async () => {
    await initBackend('cpu');
    fix = loadT5Fixture(fixture);
    params = new Map(fix.store.entries());
    ids = intInput(fix.expected, 'enc_input_ids');
    mask = intInput(fix.expected, 'enc_attention_mask');
    labels = intInput(fix.expected, 'labels');
    fidIds = intInput(fix.expected, 'fid_input_ids');
    fidMask = intInput(fix.expected, 'fid_attention_mask');
    fidLabels = intInput(fix.expected, 'fid_labels');
  });
  afterAll(() => {
    tf.dispose([ids, mask, labels, fidIds, fidMask, fidLabels]);
    fix.store.dispose();
  });

  it('lean gradients of the padded-batch loss match tf.variableGrads and the PyTorch reference', async () => {
    const lossFn = () => fix.model.loss(ids, mask, labels);
    const stock = namedGradients(lossFn, params, { lowMemory: false });
    const lean = namedGradients(lossFn, params);
    expect(Math.abs((await lean.loss.data())[0] - (await stock.loss.data())[0])).toBeLessThan(1e-6);
    expect(Math.abs((await lean.loss.data())[0] - fix.expectedJson.loss) / fix.expectedJson.loss).toBeLessThan(1e-5);
    await expectSameGradients(lean.grads, stock.grads, 1e-6);
    const reference = parseSafetensors(readT5Fixture(fixture).grads);
    for (const [name, g] of lean.grads) {
      const { data } = readTensor(reference, name);
      expect(relativeL2Error(await g.data(), data as Float32Array), name).toBeLessThan(1e-4);
    }
    tf.dispose([stock.loss, lean.loss, ...stock.grads.values(), ...lean.grads.values()]);
  });

  it('FiD loss with the encoder checkpointed per passage (and per 2) equals the stock path, at a lower peak', async () => {
    const k = fidIds.shape[0];
    const stockFn = () => fidLoss(fix.model, fidIds, fidMask, k, fidLabels);
    let stock!: ReturnType<typeof namedGradients>;
    const stockPeak = peakBuffers(() => {
      stock = namedGradients(stockFn, params, { lowMemory: false });
    });
    expect(Math.abs((await stock.loss.data())[0] - fix.expectedJson.fid_loss) / fix.expectedJson.fid_loss).toBeLessThan(1e-5);
    let lean!: ReturnType<typeof namedGradients>;
    const leanPeak = peakBuffers(() => {
      lean = namedGradients(stockFn, params);
    });
    await expectSameGradients(lean.grads, stock.grads, 1e-6);
    expect(leanPeak).toBeLessThan(stockPeak);
    for (const rows of [1, 2]) {
      let ck!: ReturnType<typeof namedGradients>;
      const ckPeak = peakBuffers(() => {
        ck = namedGradients(() => fidLoss(fix.model, fidIds, fidMask, k, fidLabels, undefined, { checkpointRows: rows }), params);
      });
      expect(Math.abs((await ck.loss.data())[0] - (await stock.loss.data())[0]) / (await stock.loss.data())[0]).toBeLessThan(1e-6);
      await expectSameGradients(ck.grads, stock.grads, 1e-5);
      if (rows === 1) expect(ckPeak).toBeLessThan(leanPeak);
      tf.dispose([ck.loss, ...ck.grads.values()]);
    }
    tf.dispose([stock.loss, lean.loss, ...stock.grads.values(), ...lean.grads.values()]);
  });

  it('a frozen embedding gets no gradient on either path, and the checkpointed encoder does not compute one', async () => {
    const shared = params.get('shared.weight')!;
    shared.trainable = false;
    try {
      const k = fidIds.shape[0];
      const stock = namedGradients(() => fidLoss(fix.model, fidIds, fidMask, k, fidLabels), params, { lowMemory: false });
      // Count ScatterNd kernels (the embedding's gradient): none may run.
      const engine = tf.engine() as unknown as { runKernel: (name: string, ...rest: unknown[]) => unknown };
      const runKernel = engine.runKernel;
      let scatters = 0;
      engine.runKernel = function (name: string, ...rest: unknown[]) {
        if (name === 'ScatterNd') scatters++;
        return runKernel.call(this, name, ...rest);
      };
      let ck!: ReturnType<typeof namedGradients>;
      try {
        ck = namedGradients(() => fidLoss(fix.model, fidIds, fidMask, k, fidLabels, undefined, { checkpointRows: 1 }), params);
      } finally {
        engine.runKernel = runKernel;
      }
      expect(scatters).toBe(0);
      expect(ck.grads.has('shared.weight')).toBe(false);
      expect(stock.grads.has('shared.weight')).toBe(false);
      await expectSameGradients(ck.grads, stock.grads, 1e-5);
      tf.dispose([stock.loss, ck.loss, ...stock.grads.values(), ...ck.grads.values()]);
    } finally {
      shared.trainable = true;
    }
  });
});
