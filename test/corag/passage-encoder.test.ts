import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeModel, encodeModel } from '../../src/federated/codec';
import type { ModelBundle } from '../../src/corag/model-bundle';
import { PassageEncoder } from '../../src/corag/passage-encoder';
import {
  describePassageEncoder,
  maxRowRelativeDifference,
  onnxThreads,
  onnxWanted,
  parsePassageEncoderSetting,
  type PassageEncoderReport,
} from '../../src/corag/passage-encoder-choice';
import { embedPassages } from '../../src/corag/retrieve';
import { initBackend } from '../../src/model/backend';
import { contrieverOnnxModel } from '../../src/model/bert/onnx-graph';
import { configureOrt } from '../../src/model/onnx/ort-runtime';
import { tinyBundle } from './helpers';

const PASSAGES = [
  { title: 'Warsaw', text: 'Warsaw stands on the Vistula river in east-central Poland.' },
  { title: 'Tesla', text: "Nikola Tesla's nephew Sava Kosanović was a Yugoslav diplomat." },
  { title: '', text: 'A passage without a title.' },
];

const flat = (rows: Float32Array[]) => Float32Array.from(rows.flatMap((r) => [...r]));

describe('PassageEncoder', () => {
  let bundle: ModelBundle;
  let global: Uint8Array;
  const cpu = { name: 'cpu', software: undefined } as const;
  beforeAll(async () => {
    await initBackend('cpu');
    configureOrt({ threads: 1 });
    bundle = await tinyBundle();
    global = await bundle.exportGlobal();
  });
  afterAll(() => bundle.dispose());

  it("embeds passages exactly as the whole bundle does, from a global version's passage_encoder tensors alone (tfjs)", async () => {
    const encoder = PassageEncoder.fromGlobal(bundle.retriever.config, bundle.retrieverTokenizer, global, 0);
    try {
      const alone = await encoder.embed(PASSAGES);
      const whole = await embedPassages(bundle, PASSAGES);
      expect(alone.map((v) => [...v])).toEqual(whole.map((v) => [...v]));
      // It holds the passage encoder and nothing else: no reader, no query encoder.
      expect(encoder.tfjsParameterCount()).toBe(bundle.retriever.params.numel(bundle.retriever.parameterNames('passage')));
    } finally {
      await encoder.dispose();
    }
  });

  it('frees its tensors on dispose', async () => {
    const before = tf.memory().numTensors;
    await PassageEncoder.fromGlobal(bundle.retriever.config, bundle.retrieverTokenizer, global, 0).dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('on auto, runs ONNX Runtime after the gate, equal to tfjs within 1e-5, and holds no tfjs weights then', async () => {
    const before = tf.memory().numTensors;
    const reports: PassageEncoderReport[] = [];
    const encoder = await PassageEncoder.load(bundle.retriever.config, bundle.retrieverTokenizer, global, 0, {
      setting: 'auto',
      backend: cpu,
      onReport: (r) => reports.push(r),
    });
    try {
      expect(encoder.report).toMatchObject({ engine: 'tfjs', building: true });
      expect(await encoder.settled).toBe(encoder.report);
      expect(reports).toEqual([encoder.report]);
      expect(encoder.engine).toBe('onnx');
      expect(encoder.report.building).toBeUndefined();
      expect(encoder.report.gateRelativeDiff).toBeLessThan(1e-5);
      expect(encoder.report.detail).toMatch(/^ONNX Runtime Web 1\.22\.\S+ \(wasm, 1 thread\)$/);
      expect(encoder.tfjsParameterCount()).toBe(0);
      expect(tf.memory().numTensors).toBe(before);
      const onnx = flat(await encoder.embed(PASSAGES));
      const tfjs = flat(await embedPassages(bundle, PASSAGES));
      expect(maxRowRelativeDifference(onnx, tfjs, bundle.retriever.config.hidden_size)).toBeLessThan(1e-5);
    } finally {
      await encoder.dispose();
    }
  });

  it('embeds on tfjs at once while ONNX Runtime is built in the background, and switches to it within the same call once the gate passed', async () => {
    const before = tf.memory().numTensors;
    const config = bundle.retriever.config;
    const many = Array.from({ length: 160 }, (_, i) => ({ title: `Passage ${i}`, text: `${PASSAGES[i % PASSAGES.length].text} Number ${i}.` }));
    const encoder = await PassageEncoder.load(config, bundle.retrieverTokenizer, global, 0, { setting: 'onnx', backend: cpu });
    try {
      // Ready to embed before the ONNX session exists.
      expect(encoder.report).toMatchObject({ engine: 'tfjs', building: true });
      expect(describePassageEncoder(encoder.report)).toMatch(/^Passages embed with tfjs \(cpu\) while ONNX Runtime is prepared/);
      const progress: Array<{ readonly tfjs: number; readonly onnx: number }> = [];
      const rows = await encoder.embed(many, { batchSize: 4, onProgress: () => progress.push(encoder.passagesByEngine()) });
      // The first batch ran on tfjs; the build finished during the call and the rest ran on ONNX Runtime.
      expect(progress[0]).toEqual({ tfjs: 4, onnx: 0 });
      const { tfjs, onnx } = encoder.passagesByEngine();
      expect([tfjs > 0, onnx > 0, tfjs + onnx]).toEqual([true, true, many.length]);
      expect(progress.at(-1)).toEqual({ tfjs, onnx });
      expect(encoder.report).toMatchObject({ engine: 'onnx', tfjsPassagesBeforeSwitch: tfjs });
      expect(describePassageEncoder(encoder.report)).toMatch(new RegExp(`the first ${tfjs} passages were embedded with tfjs while it was prepared`));
      // Whichever engine made a row, it is tfjs's embedding within 1e-5 (the gate allows 1e-3).
      const reference = flat(await embedPassages(bundle, many, { batchSize: 4 }));
      expect(maxRowRelativeDifference(flat(rows), reference, config.hidden_size)).toBeLessThan(1e-5);
      // tfjs was freed after the switch.
      expect(encoder.tfjsParameterCount()).toBe(0);
      expect(tf.memory().numTensors).toBe(before);
    } finally {
      await encoder.dispose();
    }
  });

  it('ends a background build without switching when disposed meanwhile, and frees everything', async () => {
    const before = tf.memory().numTensors;
    const encoder = await PassageEncoder.load(bundle.retriever.config, bundle.retrieverTokenizer, global, 0, { setting: 'onnx', backend: cpu });
    await encoder.dispose();
    const report = await encoder.settled;
    expect(report.engine).toBe('tfjs');
    expect(encoder.engine).toBe('tfjs');
    await expect(encoder.embed(PASSAGES)).rejects.toThrow(/disposed/);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('keeps tfjs when the setting says so', async () => {
    const encoder = await PassageEncoder.load(bundle.retriever.config, bundle.retrieverTokenizer, global, 0, { setting: 'tfjs', backend: cpu });
    try {
      expect(encoder.report).toMatchObject({ engine: 'tfjs', setting: 'tfjs', detail: 'tfjs (cpu)' });
      expect(encoder.report.building).toBeUndefined();
      expect(await encoder.settled).toBe(encoder.report);
      expect(encoder.report.gateRelativeDiff).toBeUndefined();
    } finally {
      await encoder.dispose();
    }
  });

  it('falls back to tfjs, saying why, when the ONNX graph carries other weights or is not a model', async () => {
    const warnings: string[] = [];
    const warn = (m: string) => warnings.push(m);
    const config = bundle.retriever.config;
    // One weight scaled: the graph loads and runs, but embeds differently.
    const otherWeights = await PassageEncoder.load(config, bundle.retrieverTokenizer, global, 0, {
      setting: 'onnx',
      backend: cpu,
      warn,
      onnxModel: (c, weights) =>
        contrieverOnnxModel(c, (name) => (name === 'encoder.layer.0.intermediate.dense.weight' ? weights(name).map((v) => v * 1.5) : weights(name))),
    });
    // Bytes that are no ONNX model: the session cannot be created.
    const notAModel = await PassageEncoder.load(config, bundle.retrieverTokenizer, global, 0, {
      setting: 'onnx',
      backend: cpu,
      warn,
      onnxModel: () => new Uint8Array([8, 8, 0xff, 0xff, 1, 2, 3]),
    });
    try {
      await Promise.all([otherWeights.settled, notAModel.settled]);
      expect(otherWeights.engine).toBe('tfjs');
      expect(otherWeights.report.building).toBeUndefined();
      expect(otherWeights.report.fallbackReason).toMatch(/differ from tfjs's by \S+ relative \(allowed 0\.001\)/);
      expect(otherWeights.report.gateRelativeDiff).toBeGreaterThan(1e-3);
      expect(notAModel.engine).toBe('tfjs');
      expect(notAModel.report.fallbackReason).toBeTruthy();
      expect(warnings).toHaveLength(2);
      // The fallback embeds with tfjs, as fromGlobal does.
      expect(flat(await otherWeights.embed(PASSAGES))).toEqual(flat(await embedPassages(bundle, PASSAGES)));
    } finally {
      await otherWeights.dispose();
      await notAModel.dispose();
    }
  });

  it('names the missing or misshapen tensor of a global version that lacks the passage encoder, and leaks nothing', () => {
    const tensors = decodeModel(global);
    const missing = 'passage_encoder.encoder.layer.0.output.dense.bias';
    const without = encodeModel(new Map([...tensors].filter(([name]) => name !== missing)));
    const before = tf.memory().numTensors;
    expect(() => PassageEncoder.fromGlobal(bundle.retriever.config, bundle.retrieverTokenizer, without, 3)).toThrow(
      `global model v3 lacks tensor "${missing}"`,
    );
    const wrong = new Map(tensors);
    wrong.set(missing, { ...tensors.get(missing)!, shape: [1, tensors.get(missing)!.data.length] });
    expect(() => PassageEncoder.fromGlobal(bundle.retriever.config, bundle.retrieverTokenizer, encodeModel(wrong), 3)).toThrow(
      /has shape \[1,\d+\] but the retriever config implies/,
    );
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('the passage-encoder choice', () => {
  it('parses the setting, empty meaning auto', () => {
    expect(parsePassageEncoderSetting(null)).toBe('auto');
    expect(parsePassageEncoderSetting('onnx')).toBe('onnx');
    expect(() => parsePassageEncoderSetting('torch')).toThrow(/unknown passage encoder "torch"/);
  });

  it('builds ONNX on wasm, cpu and software WebGPU, not next to tfjs on a GPU unless told', () => {
    expect(onnxWanted('auto', { name: 'wasm' }).build).toBe(true);
    expect(onnxWanted('auto', { name: 'cpu' }).build).toBe(true);
    expect(onnxWanted('auto', { name: 'webgpu', software: 'SwiftShader' }).build).toBe(true);
    expect(onnxWanted('auto', { name: 'webgpu' })).toMatchObject({ build: false, why: expect.stringMatching(/GPU/) });
    expect(onnxWanted('onnx', { name: 'webgpu' }).build).toBe(true);
    expect(onnxWanted('tfjs', { name: 'wasm' }).build).toBe(false);
  });

  it("gives ONNX Runtime tfjs's thread count", () => {
    expect(onnxThreads({ threads: 3 }, 16)).toBe(3);
    expect(onnxThreads({ crossOriginIsolated: true }, 8)).toBe(4);
    expect(onnxThreads({ crossOriginIsolated: false }, 8)).toBe(1);
  });

  it('measures the worst row, and NaN as NaN', () => {
    const ref = Float32Array.from([1, -2, 0.5, 0.5]);
    expect(maxRowRelativeDifference(Float32Array.from([1, -2.002, 0.5, 0.5]), ref, 2)).toBeCloseTo(1e-3, 6);
    expect(maxRowRelativeDifference(Float32Array.from([1, -2, NaN, 0.5]), ref, 2)).toBeNaN();
  });
});
