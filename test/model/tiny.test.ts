import { beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { initBackend } from '../../src/model/backend';
import { bertParameterShapes } from '../../src/model/bert/config';
import { t5ParameterShapes } from '../../src/model/t5/config';
import { parseSafetensors, readTensor } from '../../src/model/safetensors';
import { loadBertCheckpoint, loadT5Checkpoint } from '../../src/model/checkpoint';
import { folderModelSource } from '../../src/platform/node/folder-source';
import {
  BERT_VOCAB_SIZE,
  T5_VOCAB_ROWS,
  tinyBertConfig,
  tinyBertWeights,
  tinyCheckpointFiles,
  tinyT5Config,
  tinyT5Weights,
  type TinyTensor,
} from '../../src/model/tiny';
import { expectIdenticalNumbers } from '../identical-numbers';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

function stats(t: TinyTensor): { mean: number; std: number } {
  let sum = 0;
  let sq = 0;
  for (const x of t.data) {
    sum += x;
    sq += x * x;
  }
  const mean = sum / t.data.length;
  return { mean, std: Math.sqrt(sq / t.data.length - mean * mean) };
}

/** Mean and std within 5 standard errors of normal(0, std): the sample std's error is about std/sqrt(2n). */
function expectNormal(t: TinyTensor, std: number, name: string): void {
  const s = stats(t);
  const n = t.data.length;
  expect(Math.abs(s.std / std - 1), `${name} std ${s.std} vs ${std}`).toBeLessThan(5 / Math.sqrt(2 * n));
  expect(Math.abs(s.mean), `${name} mean ${s.mean}`).toBeLessThan((5 * std) / Math.sqrt(n));
}

beforeAll(async () => {
  await initBackend('cpu');
});

describe('tiny configs', () => {
  it("use the real tokenizers' vocabulary sizes, small widths and 2 layers", () => {
    for (const config of [tinyT5Config('gated-gelu'), tinyT5Config('relu')]) {
      expect(config.vocab_size).toBe(T5_VOCAB_ROWS);
      expect(config.d_model).toBeLessThanOrEqual(64);
      expect(config.num_layers).toBe(2);
    }
    expect(tinyT5Config('gated-gelu').tie_word_embeddings).toBe(false);
    expect(tinyT5Config('relu').tie_word_embeddings).toBe(true);
    expect(tinyBertConfig().vocab_size).toBe(BERT_VOCAB_SIZE);
    expect(tinyBertConfig().hidden_size).toBeLessThanOrEqual(64);
  });
});

describe('tiny T5 weights', () => {
  for (const layout of ['gated-gelu', 'relu'] as const) {
    it(`${layout}: one tensor per parameter of the shape table, initialised as transformers does`, () => {
      const config = tinyT5Config(layout);
      const weights = tinyT5Weights(config, 7);
      const shapes = t5ParameterShapes(config);
      expect([...weights.keys()]).toEqual([...shapes.keys()]);
      for (const [name, t] of weights) {
        expect(t.shape, name).toEqual(shapes.get(name));
        expect(t.data.length).toBe(t.shape.reduce((a, b) => a * b, 1));
      }
      const d = config.d_model;
      expectNormal(weights.get('shared.weight')!, 1, 'shared');
      expectNormal(weights.get('encoder.block.0.layer.0.SelfAttention.q.weight')!, (d * config.d_kv) ** -0.5, 'q');
      expectNormal(weights.get('encoder.block.0.layer.0.SelfAttention.k.weight')!, d ** -0.5, 'k');
      expectNormal(weights.get('decoder.block.1.layer.1.EncDecAttention.o.weight')!, (config.num_heads * config.d_kv) ** -0.5, 'o');
      expectNormal(weights.get('decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight')!, d ** -0.5, 'relative bias');
      expectNormal(weights.get('encoder.block.1.layer.1.DenseReluDense.wo.weight')!, config.d_ff ** -0.5, 'wo');
      const wi = layout === 'relu' ? 'wi' : 'wi_1';
      expectNormal(weights.get(`encoder.block.1.layer.1.DenseReluDense.${wi}.weight`)!, d ** -0.5, wi);
      expect([...weights.get('decoder.final_layer_norm.weight')!.data]).toEqual(new Array(d).fill(1));
      expect(weights.has('lm_head.weight')).toBe(layout === 'gated-gelu');
    });
  }

  it('scales every random tensor by the initializer factor', () => {
    const config = tinyT5Config('relu');
    const base = tinyT5Weights(config, 3).get('encoder.block.0.layer.0.SelfAttention.v.weight')!;
    const scaled = tinyT5Weights(config, 3, { initializerFactor: 0.5 }).get('encoder.block.0.layer.0.SelfAttention.v.weight')!;
    expectIdenticalNumbers(
      scaled.data,
      base.data.map((x) => x * 0.5),
      'scaled',
    );
  });

  it('draws different values for different tensors and seeds', () => {
    const config = tinyT5Config('gated-gelu');
    const a = tinyT5Weights(config, 1);
    const b = tinyT5Weights(config, 2);
    const q = 'encoder.block.0.layer.0.SelfAttention.q.weight';
    expect(a.get(q)!.data).not.toEqual(b.get(q)!.data);
    expect(a.get(q)!.data).not.toEqual(a.get('encoder.block.0.layer.0.SelfAttention.k.weight')!.data);
  });
});

describe('tiny BERT weights', () => {
  it('follow BERT init: normal(0, 0.02) weights, zero biases, unit LayerNorm, zero padding row', () => {
    const config = tinyBertConfig();
    const weights = tinyBertWeights(config, 5);
    const shapes = bertParameterShapes(config);
    expect([...weights.keys()]).toEqual([...shapes.keys()]);
    for (const [name, t] of weights) {
      expect(t.shape, name).toEqual(shapes.get(name));
      if (name.endsWith('LayerNorm.weight'))
        expect(
          t.data.every((x) => x === 1),
          name,
        ).toBe(true);
      else if (name.endsWith('.bias'))
        expect(
          t.data.every((x) => x === 0),
          name,
        ).toBe(true);
      else expectNormal(t, 0.02, name);
    }
    const words = weights.get('embeddings.word_embeddings.weight')!;
    const h = config.hidden_size;
    expect(words.data.subarray(config.pad_token_id * h, (config.pad_token_id + 1) * h).every((x) => x === 0)).toBe(true);
    expect(words.data.subarray(h, 2 * h).some((x) => x !== 0)).toBe(true);
  });
});

describe('tiny checkpoint files', () => {
  it('are byte-identical for the same seed and differ for another', () => {
    for (const make of [
      (seed: number) => tinyCheckpointFiles('t5', tinyT5Config('gated-gelu'), seed),
      (seed: number) => tinyCheckpointFiles('bert', tinyBertConfig(), seed),
    ]) {
      const first = make(11);
      const again = make(11);
      expect([...first.keys()]).toEqual(['config.json', 'model.safetensors']);
      for (const [name, bytes] of first) expect(Buffer.compare(bytes, again.get(name)!), name).toBe(0);
      expect(Buffer.compare(first.get('model.safetensors')!, make(12).get('model.safetensors')!)).not.toBe(0);
    }
  });

  it('hold the generated weights unchanged as F32 safetensors', () => {
    const config = tinyT5Config('relu');
    const parsed = parseSafetensors(tinyCheckpointFiles('t5', config, 4).get('model.safetensors')!);
    const weights = tinyT5Weights(config, 4);
    expect([...parsed.tensors.keys()].sort()).toEqual([...weights.keys()].sort());
    for (const [name, t] of weights) expectIdenticalNumbers(readTensor(parsed, name).data, t.data, name);
  });

  it('rejects a seed that is not a non-negative integer', () => {
    expect(() => tinyT5Weights(tinyT5Config(), -1)).toThrow(/seed must be a non-negative integer/);
    expect(() => tinyBertWeights(tinyBertConfig(), 1.5)).toThrow(/seed must be a non-negative integer/);
  });
});

describe('scripts/make-tiny-models.ts', () => {
  let out: string;
  beforeAll(async () => {
    out = await mkdtemp(join(tmpdir(), 'corag-tiny-'));
    await promisify(execFile)(process.execPath, ['--import', 'tsx', join(ROOT, 'scripts/make-tiny-models.ts'), '--out', out, '--seed', '9'], { cwd: ROOT });
  }, 120_000);

  it('writes checkpoints with the tokenizers and licence notices that the typed loaders accept', async () => {
    for (const folder of ['t5', 'contriever']) {
      const files = await readdir(join(out, folder));
      for (const f of ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json', 'LICENSE', 'NOTICE']) expect(files, folder).toContain(f);
    }
    const t5 = await loadT5Checkpoint(folderModelSource(join(out, 't5')));
    expect(t5.config).toEqual(tinyT5Config('gated-gelu'));
    expect(t5.tokenizer!.encode('question: who wrote hamlet? answer: <extra_id_0>').at(-1)).toBe(1);
    t5.params.dispose();
    const bert = await loadBertCheckpoint(folderModelSource(join(out, 'contriever')));
    expect(bert.config).toEqual(tinyBertConfig());
    expect(bert.tokenizer!.vocabSize).toBe(BERT_VOCAB_SIZE);
    bert.params.dispose();
  });

  it('writes the same bytes as tinyCheckpointFiles for that seed', async () => {
    const expected = tinyCheckpointFiles('bert', tinyBertConfig(), 9);
    for (const [name, bytes] of expected) {
      expect(Buffer.compare(await readFile(join(out, 'contriever', name)), bytes), name).toBe(0);
    }
  });
});
