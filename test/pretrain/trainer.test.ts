import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../src/model/backend';
import type { ParameterStore } from '../../src/model/params';
import { readCheckpointFiles, saveCheckpointFiles } from '../../src/platform/node/pretrain-checkpoint-files';
import { parsePretrainConfig } from '../../src/pretrain/config';
import type { PretrainData } from '../../src/pretrain/data';
import { Pretrainer } from '../../src/pretrain/trainer';
import { config, tinyPretrainData } from './tiny-pretrain';

let data: PretrainData;

beforeAll(async () => {
  await initBackend('wasm');
  data = tinyPretrainData();
});

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

/** Every parameter's values, by name, read back now. */
async function snapshot(store: ParameterStore): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  for (const [name, v] of store.entries()) out.set(name, (await v.data()) as Float32Array);
  return out;
}

describe('Pretrainer', () => {
  it('a few seeded steps on a tiny corpus lower the reader loss and the contrastive retriever loss', async () => {
    const trainer = Pretrainer.create(config, data);
    try {
      const losses = [];
      for (let i = 0; i < 24; i++) losses.push(await trainer.trainStep());
      const first = losses.slice(0, 4);
      const last = losses.slice(-4);
      expect(mean(last.map((l) => l.reader))).toBeLessThan(0.8 * mean(first.map((l) => l.reader)));
      expect(mean(last.map((l) => l.contrastive))).toBeLessThan(mean(first.map((l) => l.contrastive)));
      for (const l of losses) expect(Number.isFinite(l.pdist) && l.pdist >= 0).toBe(true);
    } finally {
      trainer.dispose();
    }
  }, 60_000);

  it('a run resumed from a checkpoint on disk continues exactly where the saved one stopped (same next losses)', async () => {
    const original = Pretrainer.create(config, data);
    let saved;
    let expected;
    try {
      // 6 steps: past a re-index (every 5) so the index and queue in the checkpoint matter.
      for (let i = 0; i < 6; i++) await original.trainStep();
      saved = await original.saveCheckpoint();
      expected = [await original.trainStep(), await original.trainStep()];
    } finally {
      original.dispose();
    }
    // Through the disk, as `npm run pretrain` resumes: cut into small parts, read back, verified.
    const dir = mkdtempSync(join(tmpdir(), 'corag-ckpt-'));
    saveCheckpointFiles(dir, saved, { partBytes: 256 * 1024 });
    expect(
      readdirSync(
        join(
          dir,
          readdirSync(dir).find((n) => n.startsWith('step-000006'))!,
        ),
      ).length,
    ).toBeGreaterThan(2);
    const resumed = Pretrainer.resume(config, data, readCheckpointFiles(dir)!);
    rmSync(dir, { recursive: true, force: true });
    try {
      expect(resumed.step).toBe(6);
      const got = [await resumed.trainStep(), await resumed.trainStep()];
      expect(got).toEqual(expected);
    } finally {
      resumed.dispose();
    }
  }, 60_000);

  it('a retriever-only phase (reader weight 0, inverse cloze on) leaves the reader untouched and lowers the inverse-cloze loss', async () => {
    const phase = parsePretrainConfig({ ...config, readerWeight: 0, pdistWeight: 0, contrastiveWeight: 1, ictWeight: 1, lr: 0.005 });
    const trainer = Pretrainer.create(phase, data);
    try {
      const before = await snapshot(trainer.readerParams);
      const losses = [];
      for (let i = 0; i < 16; i++) losses.push(await trainer.trainStep());
      for (const l of losses) {
        expect(Number.isNaN(l.reader) && Number.isNaN(l.pdist)).toBe(true);
        expect(Number.isFinite(l.ict) && Number.isFinite(l.contrastive)).toBe(true);
      }
      expect(mean(losses.slice(-4).map((l) => l.ict))).toBeLessThan(mean(losses.slice(0, 4).map((l) => l.ict)));
      expect(await snapshot(trainer.readerParams)).toEqual(before);
    } finally {
      trainer.dispose();
    }
  }, 60_000);

  it('a reader-only phase (retriever weights 0) leaves the retriever untouched and lowers the reader loss', async () => {
    const phase = parsePretrainConfig({ ...config, readerWeight: 1, pdistWeight: 0, contrastiveWeight: 0, ictWeight: 0 });
    const trainer = Pretrainer.create(phase, data);
    try {
      const before = await snapshot(trainer.retrieverParams);
      const losses = [];
      for (let i = 0; i < 24; i++) losses.push(await trainer.trainStep());
      for (const l of losses) expect(Number.isNaN(l.contrastive) && Number.isNaN(l.ict) && Number.isNaN(l.pdist)).toBe(true);
      expect(mean(losses.slice(-4).map((l) => l.reader))).toBeLessThan(0.8 * mean(losses.slice(0, 4).map((l) => l.reader)));
      expect(await snapshot(trainer.retrieverParams)).toEqual(before);
    } finally {
      trainer.dispose();
    }
  }, 60_000);

  it('with copy-attention supervision and previous-token heads, the copy loss is reported and falls with the reader loss', async () => {
    const phase = parsePretrainConfig({ ...config, pdistWeight: 0, contrastiveWeight: 0, copyAttentionWeight: 1, previousTokenHeads: 2 });
    const plain = Pretrainer.create(parsePretrainConfig({ ...config, pdistWeight: 0, contrastiveWeight: 0 }), data);
    const trainer = Pretrainer.create(phase, data);
    try {
      // The prior is in the initial weights: heads 0 and 1 favour the keys 1 and 2 positions back.
      const bias = (name: string, p: Pretrainer) => p.readerParams.get(name).dataSync();
      const name = 'encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight';
      const heads = trainer.readerConfig.num_heads;
      expect(bias(name, trainer)[1 * heads + 0] - bias(name, plain)[1 * heads + 0]).toBeCloseTo(5, 5);
      expect(bias(name, trainer)[2 * heads + 1] - bias(name, plain)[2 * heads + 1]).toBeCloseTo(5, 5);
      const losses = [];
      for (let i = 0; i < 24; i++) losses.push(await trainer.trainStep());
      for (const l of losses) expect(Number.isFinite(l.copy) && l.copy >= 0).toBe(true);
      expect(mean(losses.slice(-4).map((l) => l.copy))).toBeLessThan(mean(losses.slice(0, 4).map((l) => l.copy)));
      expect(mean(losses.slice(-4).map((l) => l.reader))).toBeLessThan(0.8 * mean(losses.slice(0, 4).map((l) => l.reader)));
    } finally {
      trainer.dispose();
      plain.dispose();
    }
  }, 60_000);

  it('refuses a config whose every objective weight is 0', () => {
    expect(() => parsePretrainConfig({ ...config, readerWeight: 0, pdistWeight: 1, contrastiveWeight: 0, ictWeight: 0 })).toThrow(
      /every objective weight is 0/,
    );
  });
});
