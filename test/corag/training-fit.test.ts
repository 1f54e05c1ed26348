/**
 * The footprint estimate's arithmetic (pure: t5-small / bert-base shapes, no tensors), the
 * fit-or-refuse decision, the refusal's message, and trainLocally refusing before it trains.
 * How close the estimate is to measured peaks: test/corag/training-footprint.test.ts.
 */
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { atStage, TrainingMemoryError } from '../../src/corag/errors';
import { trainLocally, type QAPair } from '../../src/corag/local-training';
import type { ModelBundle } from '../../src/corag/model-bundle';
import { LocalPassageStore } from '../../src/corag/retrieve';
import { estimateTrainingFootprint, type FootprintInput, type HeldParameter } from '../../src/corag/training-footprint';
import { defaultMemoryLimits, formatBytes, parseMemoryBudget, planStepToFit, type StepConfig } from '../../src/corag/training-fit';
import { describeTrainingFailure } from '../../src/corag/training-errors';
import { initBackend } from '../../src/model/backend';
import { bertParameterShapes, parseBertConfig } from '../../src/model/bert/config';
import { parseT5Config, t5ParameterShapes } from '../../src/model/t5/config';
import { tinyBundle } from './helpers';

const MiB = 2 ** 20;
const GiB = 2 ** 30;
const reader = parseT5Config({ model_type: 't5' }); // t5-small: d_model 512, 6+6 layers, vocab 32128
const retriever = parseBertConfig({
  model_type: 'bert',
  vocab_size: 30522,
  hidden_size: 768,
  num_hidden_layers: 12,
  num_attention_heads: 12,
  intermediate_size: 3072,
  max_position_embeddings: 512,
});

/** Reader + both retriever sides held; `trained` decides which get gradients and moments. */
function held(trained: (name: string) => boolean): HeldParameter[] {
  const out: HeldParameter[] = [];
  for (const [name, shape] of t5ParameterShapes(reader)) out.push({ name, shape, trained: trained(name) });
  for (const side of ['query.', 'passage.'])
    for (const [name, shape] of bertParameterShapes(retriever)) out.push({ name: side + name, shape, trained: trained(side + name) });
  return out;
}

const FULL = held((n) => !n.startsWith('passage.'));
const base = (step: Partial<FootprintInput> = {}): FootprintInput => ({
  reader,
  retriever,
  retrieverLoss: 'pdist',
  parameters: FULL,
  backend: 'cpu',
  batchSize: 1,
  k: 10,
  passageLength: 256,
  targetLength: 32,
  queryLength: 24,
  ...step,
});

describe('estimateTrainingFootprint', () => {
  it('counts weights, gradients and AdamW moments of the trained parameters only', () => {
    const e = estimateTrainingFootprint(base());
    const all = FULL.reduce((n, p) => n + p.shape.reduce((a, b) => a * b, 1), 0);
    const trained = FULL.filter((p) => p.trained).reduce((n, p) => n + p.shape.reduce((a, b) => a * b, 1), 0);
    expect(e.parts.weights).toBe(all * 4);
    expect(e.parts.gradients).toBe(trained * 4);
    expect(e.parts.optimizerState).toBe(2 * trained * 4);
    expect(e.peakBytes).toBe(e.parts.weights + e.parts.optimizerState + e.parts.peakPhase);
    expect(e.peakBytes).toBeGreaterThan(e.parts.weights + e.parts.optimizerState + e.parts.gradients);
  });

  it('grows with the batch and with k, about linearly once activations dominate', () => {
    const at = (batchSize: number, k: number) => estimateTrainingFootprint(base({ batchSize, k }));
    for (const k of [2, 5, 10]) for (const b of [1, 2, 4]) expect(at(b + 1, k).peakBytes).toBeGreaterThanOrEqual(at(b, k).peakBytes);
    for (const b of [1, 2, 4]) expect(at(b + 1, 10).peakBytes).toBeGreaterThan(at(b, 10).peakBytes);
    for (const b of [1, 4]) expect(at(b, 10).peakBytes).toBeGreaterThan(at(b, 5).peakBytes);
    // Linear in the batch: four more questions add twice what two more do.
    const ratio = (at(8, 10).peakBytes - at(4, 10).peakBytes) / (at(4, 10).peakBytes - at(2, 10).peakBytes);
    expect(ratio).toBeGreaterThan(1.9);
    expect(ratio).toBeLessThan(2.1);
    // Scoring B·k passages alone (PDist) goes B rows at a time (session 12): it adds no tensor
    // larger than the step without it has, and none of [B·k, T, vocab].
    expect(at(4, 10).largestTensor).toEqual(estimateTrainingFootprint(base({ batchSize: 4, k: 10, retrieverLoss: 'none' })).largestTensor);
    expect(at(4, 10).largestTensor.bytes).toBeLessThan(40 * 32 * 32128 * 4);
  });

  it('encoder checkpointing lowers the backward pass, leaving the forward to peak; without a retriever loss the scoring pass is gone', () => {
    for (const backend of ['wasm', 'cpu'] as const) {
      const plain = estimateTrainingFootprint(base({ batchSize: 4, retrieverLoss: 'none', backend }));
      const ckpt = estimateTrainingFootprint(base({ batchSize: 4, retrieverLoss: 'none', encoderCheckpointRows: 1, backend }));
      // Saved tensors share their buffers on wasm too since session 12, so both backends agree up to
      // wasm's transposed copy of the LM head while the logits are computed (src/model/matmul.ts).
      const cpu = estimateTrainingFootprint(base({ batchSize: 4, retrieverLoss: 'none', backend: 'cpu' })).peakBytes;
      expect(plain.peakBytes).toBeGreaterThanOrEqual(cpu);
      expect(plain.peakBytes).toBeLessThanOrEqual(cpu + reader.vocab_size * reader.d_model * 4);
      expect(ckpt.peakBytes).toBeLessThanOrEqual(plain.peakBytes);
      expect(ckpt.phase).toBe('forward');
    }
    expect(estimateTrainingFootprint(base({ batchSize: 4 })).peakBytes).toBeGreaterThan(
      estimateTrainingFootprint(base({ batchSize: 4, retrieverLoss: 'none' })).peakBytes,
    );
  });

  it('counts a parameter-efficient method by its trained set: adapters over a frozen base need no gradients or moments for the base', () => {
    // LoRA-like: rank-8 adapters beside every attention q and v of the reader, the base frozen.
    const adapters: HeldParameter[] = [...t5ParameterShapes(reader)]
      .filter(([name]) => /\.(q|v)\.weight$/.test(name))
      .flatMap(([name, [out, inDim]]) => [
        { name: `${name}.lora_a`, shape: [8, inDim], trained: true },
        { name: `${name}.lora_b`, shape: [out, 8], trained: true },
      ]);
    const lora = estimateTrainingFootprint(base({ parameters: [...held(() => false), ...adapters], retrieverLoss: 'none' }));
    const full = estimateTrainingFootprint(base({ retrieverLoss: 'none' }));
    const adapterBytes = adapters.reduce((n, p) => n + p.shape[0] * p.shape[1] * 4, 0);
    expect(lora.parts.gradients).toBe(adapterBytes);
    expect(lora.parts.optimizerState).toBe(2 * adapterBytes);
    expect(full.peakBytes - lora.peakBytes).toBeGreaterThan(full.parts.optimizerState);
  });
});

/** A synthetic estimate: 100 MiB of weights and state + 50 MiB per question × passage/4. */
const toy = (c: StepConfig) => {
  const activations = (c.encoderCheckpointRows ? 10 : 50) * MiB * c.batchSize * (c.k / 4);
  return {
    peakBytes: 100 * MiB + activations,
    phase: 'forward' as const,
    parts: { weights: 60 * MiB, optimizerState: 40 * MiB, gradients: 20 * MiB, peakPhase: activations },
    largestTensor: { bytes: 5 * MiB * c.batchSize, what: 'logits' },
  };
};

describe('planStepToFit', () => {
  const requested = { batchSize: 4, k: 4 };

  it('keeps a step that fits, else lowers the batch to the largest that fits, then checkpoints the encoder', () => {
    expect(planStepToFit(requested, toy, { budgetBytes: 400 * MiB })).toMatchObject({ kind: 'fits', config: requested });
    const lowered = planStepToFit(requested, toy, { budgetBytes: 260 * MiB });
    expect(lowered).toMatchObject({ kind: 'adapted', config: { batchSize: 3, k: 4 } });
    expect(toy({ batchSize: 4, k: 4 }).peakBytes).toBeGreaterThan(260 * MiB);
    const ckpt = planStepToFit(requested, toy, { budgetBytes: 140 * MiB });
    expect(ckpt).toMatchObject({ kind: 'adapted', config: { batchSize: 4, k: 4, encoderCheckpointRows: 1 } });
    // The GPU's largest buffer: the largest tensor must fit.
    expect(planStepToFit(requested, toy, { maxBufferBytes: 11 * MiB })).toMatchObject({ kind: 'adapted', config: { batchSize: 2 } });
  });

  it('refuses when the session says so or nothing fits at k, naming what would fit', () => {
    const refused = () => planStepToFit(requested, toy, { budgetBytes: 260 * MiB, budgetSource: 'this tab’s memory setting' }, 'refuse');
    expect(refused).toThrow(TrainingMemoryError);
    try {
      refused();
    } catch (e) {
      const d = (e as TrainingMemoryError).detail;
      expect(d.suggestion?.config).toEqual({ batchSize: 3, k: 4 });
      expect(d.peakBytes).toBe(300 * MiB);
      expect((e as Error).message).toBe(
        'training step of batch 4 with k 4 does not fit: needs ~300 MiB, budget 260 MiB; batch 3 with k 4 would fit (~250 MiB)',
      );
    }
    // Nothing at k 4 fits, even checkpointed: fewer passages would.
    try {
      planStepToFit(requested, toy, { budgetBytes: 108 * MiB });
      expect.unreachable();
    } catch (e) {
      expect((e as TrainingMemoryError).detail.suggestion).toEqual({
        config: { batchSize: 1, k: 3, encoderCheckpointRows: 1 },
        peakBytes: 100 * MiB + 7.5 * MiB,
      });
    }
    try {
      planStepToFit(requested, toy, { budgetBytes: 90 * MiB });
      expect.unreachable();
    } catch (e) {
      expect((e as TrainingMemoryError).detail.suggestion).toBeUndefined();
    }
  });

  it('says in the page what would fit, or that nothing does, and what to do', () => {
    let error: unknown;
    try {
      planStepToFit({ batchSize: 4, k: 4 }, toy, { budgetBytes: 260 * MiB, budgetSource: 'this tab’s memory setting' }, 'refuse');
    } catch (e) {
      error = e;
    }
    const f = describeTrainingFailure(error, 2);
    expect(f.kind).toBe('does_not_fit');
    expect(f.message).toBe(
      'Round 2: the session’s training step (batch 4 with k 4) does not fit this tab: it needs ~300 MB, budget 260 MB (this tab’s memory setting). ' +
        'Batch 3 with k 4 would fit (~250 MB), but this session does not let tabs change its batch: ask the session’s organiser for it, or raise this tab’s memory budget (?memoryBudget=… in the address) if the device has memory to spare. ' +
        'Nothing was trained; no update was sent (the coordinator only ever receives whole updates) and nothing stored in this tab is lost; this tab takes part again when the next round opens.',
    );
    try {
      planStepToFit({ batchSize: 1, k: 1 }, toy, { maxBufferBytes: 1 * MiB });
      expect.unreachable();
    } catch (e) {
      expect(describeTrainingFailure(e).message).toMatch(
        /does not fit this tab: its largest tensor \(logits\) needs 5 MB, more than the GPU’s largest buffer \(1 MB\)\. No smaller step fits: the model’s weights and optimizer state alone need ~100 MB\./,
      );
    }
  });

  it('reads budgets as people write them and defaults to half the reported device memory', () => {
    expect(parseMemoryBudget('512MB')).toBe(512 * MiB);
    expect(parseMemoryBudget('1.5 GB')).toBe(1.5 * GiB);
    expect(parseMemoryBudget('2g')).toBe(2 * GiB);
    expect(parseMemoryBudget('300')).toBe(300 * MiB);
    expect(() => parseMemoryBudget('lots')).toThrow(/not a size/);
    expect(() => parseMemoryBudget('0')).toThrow(/more than zero/);
    expect(defaultMemoryLimits('webgpu', 8)).toEqual({ budgetBytes: 4 * GiB, budgetSource: 'half of this device’s 8 GB' });
    expect(defaultMemoryLimits('wasm', 16).budgetBytes).toBe(4 * GiB);
    expect(defaultMemoryLimits('cpu')).toEqual({});
    expect(formatBytes(71 * MiB)).toBe('71 MB');
    expect(formatBytes(1.26 * GiB)).toBe('1.3 GB');
  });
});

describe('trainLocally with a memory budget', () => {
  let bundle: ModelBundle;
  let store: LocalPassageStore;
  // Long answers: the scoring pass's [B·k, T, vocab] tensors then outweigh the optimizer phase, so the batch matters.
  const QA: QAPair[] = ['alice', 'bob', 'carol', 'david'].map((p) => ({
    question: `where does ${p} live?`,
    answers: [`in the old town of paris, france, near ${p}`],
  }));
  beforeAll(async () => {
    // wasm: a step in a fraction of cpu's time (the estimate counts wasm's saved copies).
    await initBackend('wasm');
    bundle = await tinyBundle();
    store = LocalPassageStore.empty(bundle.embeddingDim);
    await store.addTexts(
      bundle,
      ['alice', 'bob', 'carol', 'david'].map((p) => ({ title: p, text: `${p} lives in paris.` })),
    );
  });
  afterAll(() => bundle.dispose());

  it('refuses before any training when nothing fits, and lowers the batch when the session allows it', async () => {
    const options = { k: 4, steps: 1, batchSize: 4, lr: 1e-3, maxLength: 32 };
    const weight = [...bundle.parts.reader!.entries()][0][1];
    const snapshot = (await weight.data()).slice();
    let steps = 0;
    await expect(
      atStage('train', () => trainLocally(bundle, QA, store, { ...options, memoryLimits: { budgetBytes: 10 * MiB }, onProgress: () => steps++ })),
    ).rejects.toBeInstanceOf(TrainingMemoryError);
    expect(steps).toBe(0);
    expect(await weight.data()).toEqual(snapshot);

    // The full batch's estimate, then a budget between batch 1's and batch 4's.
    const full = await trainLocally(bundle, QA, store, { ...options, memoryLimits: { budgetBytes: 10 * GiB } });
    expect(full.fit).toMatchObject({ kind: 'fits', config: { batchSize: 4, k: 4 } });
    const needs = full.fit!.estimate.peakBytes;
    const tensors = tf.memory().numTensors;
    const lowered = await trainLocally(bundle, QA, store, { ...options, memoryLimits: { budgetBytes: needs - 1 } });
    expect(lowered.fit?.kind).toBe('adapted');
    expect(lowered.fit!.config.batchSize).toBeLessThan(4);
    expect(lowered.fit!.estimate.peakBytes).toBeLessThanOrEqual(needs - 1);
    expect(lowered.steps).toBe(1);
    expect(tf.memory().numTensors).toBe(tensors);
    await expect(trainLocally(bundle, QA, store, { ...options, memoryLimits: { budgetBytes: needs - 1 }, memoryFit: 'refuse' })).rejects.toThrow(
      /does not fit: needs ~\d+ MiB, budget \d+ MiB; batch [123] with k 4 would fit/,
    );
  });
});
