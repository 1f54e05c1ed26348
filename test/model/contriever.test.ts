import { readFileSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../src/model/backend';
import { bertParameterShapes } from '../../src/model/bert/config';
import { Contriever, innerProductScores, meanPool, padTokenBatch } from '../../src/model/contriever';
import { ParameterStore } from '../../src/model/params';
import { parseSafetensors, readTensor, writeSafetensors, type TensorToWrite } from '../../src/model/safetensors';
import { maxRelativeError } from '../../src/model/numerics';
import { seededRandom } from '../../src/util/random';
import { expectIdenticalNumbers } from '../identical-numbers';

const dir = new URL('../../../shared/fixtures/hf-reference/bert-tiny/', import.meta.url);
const config = JSON.parse(readFileSync(new URL('config.json', dir), 'utf8'));
const modelBytes = new Uint8Array(readFileSync(new URL('model.safetensors', dir)));
const expected = parseSafetensors(readFileSync(new URL('expected.safetensors', dir)));

/** Token id rows of the fixture with their padding removed. */
function unpadded(prefix: 'q' | 'p'): number[][] {
  const ids = readTensor(expected, `${prefix}_input_ids`);
  const mask = readTensor(expected, `${prefix}_attention_mask`);
  const [rows, length] = ids.shape;
  return Array.from({ length: rows }, (_, r) => {
    const out: number[] = [];
    for (let i = 0; i < length; i++) if (mask.data[r * length + i]) out.push(ids.data[r * length + i] as number);
    return out;
  });
}

/** The fixture checkpoint re-written with renamed / extra tensors. */
function rewritten(rename: (name: string) => string | undefined, extra: Record<string, TensorToWrite> = {}): Uint8Array {
  const file = parseSafetensors(modelBytes);
  const out = new Map<string, TensorToWrite>();
  for (const name of file.tensors.keys()) {
    const to = rename(name);
    if (to === undefined) continue;
    const { shape, data } = readTensor(file, name);
    out.set(to, { dtype: 'F32', shape, data: data as Float32Array });
  }
  for (const [k, v] of Object.entries(extra)) out.set(k, v);
  return writeSafetensors(out);
}

describe('Contriever', () => {
  let model: Contriever;
  beforeAll(async () => {
    await initBackend('cpu');
    model = Contriever.fromCheckpoint(config, modelBytes);
  });
  afterAll(() => model.dispose());

  it('holds untied query.* and passage.* copies of every BERT parameter', () => {
    const n = bertParameterShapes(model.config).size;
    expect(model.parameterNames('query')).toHaveLength(n);
    expect(model.parameterNames('passage')).toHaveLength(n);
    expect(model.params.size).toBe(2 * n);
    expect(model.params.get('query.embeddings.word_embeddings.weight')).not.toBe(model.params.get('passage.embeddings.word_embeddings.weight'));
  });

  it('embeds unpadded token arrays like transformers (mean over non-pad tokens), on both sides', async () => {
    for (const [side, prefix] of [
      ['query', 'q'],
      ['passage', 'p'],
    ] as const) {
      for (const encoder of ['query', 'passage'] as const) {
        const emb = model.embedTokens(encoder, unpadded(prefix));
        const err = maxRelativeError(await emb.data(), readTensor(expected, `${prefix}_embedding`).data as Float32Array);
        expect(err, `${side} texts through the ${encoder} encoder`).toBeLessThan(1e-4);
        emb.dispose();
      }
    }
  });

  it('gives a text the same embedding alone and inside a longer padded batch', async () => {
    const texts = unpadded('p');
    const alone = model.embedPassages([texts[2]]);
    const batched = model.embedPassages(texts);
    const row = tf.slice(batched, [2, 0], [1, -1]);
    expect(maxRelativeError(await alone.data(), await row.data())).toBeLessThan(1e-5);
    tf.dispose([alone, batched, row]);
  });

  it('fine-tuning the query side leaves passage embeddings unchanged', async () => {
    const m = Contriever.fromCheckpoint(config, modelBytes);
    const texts = unpadded('q');
    const before = { q: m.embedQueries(texts), p: m.embedPassages(texts) };
    const w = m.params.get('query.encoder.layer.1.output.LayerNorm.bias');
    w.assign(tf.tidy(() => tf.add(w, 0.5)));
    const after = { q: m.embedQueries(texts), p: m.embedPassages(texts) };
    expectIdenticalNumbers((await after.p.data()) as Float32Array, (await before.p.data()) as Float32Array);
    expect(maxRelativeError(await after.q.data(), await before.q.data())).toBeGreaterThan(1e-3);
    tf.dispose([before.q, before.p, after.q, after.p]);
    m.dispose();
  });

  it('accepts bert.-prefixed names and ignores pooler tensors', async () => {
    const bytes = rewritten((n) => `bert.${n}`, {
      'bert.pooler.dense.weight': { dtype: 'F32', shape: [32, 32], data: new Float32Array(32 * 32) },
      'bert.pooler.dense.bias': { dtype: 'F32', shape: [32], data: new Float32Array(32) },
    });
    const m = Contriever.fromCheckpoint(config, bytes);
    expect(m.params.names().some((n) => n.includes('pooler'))).toBe(false);
    const emb = m.embedQueries(unpadded('q'));
    expect(maxRelativeError(await emb.data(), readTensor(expected, 'q_embedding').data as Float32Array)).toBeLessThan(1e-4);
    emb.dispose();
    m.dispose();
  });

  it('builds both sides from canonical-name parameters (what the checkpoint loader returns) by copying them', async () => {
    const loaded = ParameterStore.fromSafetensors(modelBytes);
    const m = Contriever.fromParameters(model.config, loaded);
    loaded.dispose(); // the Contriever holds its own copies
    const emb = m.embedPassages(unpadded('p'));
    expect(maxRelativeError(await emb.data(), readTensor(expected, 'p_embedding').data as Float32Array)).toBeLessThan(1e-4);
    emb.dispose();
    m.dispose();
    const partial = new ParameterStore([['embeddings.LayerNorm.bias', tf.zeros([32])]]);
    expect(() => Contriever.fromParameters(model.config, partial)).toThrow('"embeddings.word_embeddings.weight" is missing');
    partial.dispose();
  });

  it('names the missing or mis-shaped tensor of a bad checkpoint, and rejects non-BERT configs', () => {
    const missing = rewritten((n) => (n === 'encoder.layer.1.output.dense.bias' ? undefined : n));
    expect(() => Contriever.fromCheckpoint(config, missing)).toThrow('first "encoder.layer.1.output.dense.bias"');
    const badShape = rewritten((n) => n, { 'embeddings.LayerNorm.bias': { dtype: 'F32', shape: [31], data: new Float32Array(31) } });
    expect(() => Contriever.fromCheckpoint(config, badShape)).toThrow('"embeddings.LayerNorm.bias" has shape [31]');
    expect(() => Contriever.fromCheckpoint({ ...config, model_type: 'roberta' }, modelBytes)).toThrow('unsupported model type "roberta"');
  });

  it('scores are inner products of query and passage embeddings', async () => {
    const q = model.embedQueries(unpadded('q'));
    const p = model.embedPassages(unpadded('p'));
    const scores = tf.tidy(() => tf.div(innerProductScores(q, p), 0.05));
    expect(maxRelativeError(await scores.data(), readTensor(expected, 'scores').data as Float32Array)).toBeLessThan(1e-4);
    tf.dispose([q, p, scores]);
  });

  it('padTokenBatch right-pads with the pad id and masks the padding', async () => {
    const { inputIds, attentionMask } = padTokenBatch([[5, 6, 7], [8]], 0);
    expect(await inputIds.array()).toEqual([
      [5, 6, 7],
      [8, 0, 0],
    ]);
    expect(await attentionMask.array()).toEqual([
      [1, 1, 1],
      [1, 0, 0],
    ]);
    tf.dispose([inputIds, attentionMask]);
    expect(() => padTokenBatch([], 0)).toThrow('empty batch');
  });

  it('meanPool averages only masked-in positions', async () => {
    const pooled = tf.tidy(() =>
      meanPool(
        tf.tensor3d([
          [
            [1, 2],
            [3, 4],
            [100, 100],
          ],
        ]),
        tf.tensor2d([[1, 1, 0]], [1, 3], 'int32'),
      ),
    );
    expect(await pooled.array()).toEqual([[2, 3]]);
    pooled.dispose();
  });

  it('embedding does not leak tensors', () => {
    const texts = unpadded('q');
    model.embedQueries(texts).dispose();
    const before = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) model.embedQueries(texts).dispose();
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('Contriever with LoRA on the query encoder', () => {
  const LORA = { rank: 4, alpha: 8, targets: ['q', 'k', 'v', 'o'], seed: 3 } as const;
  beforeAll(async () => {
    await initBackend('cpu');
  });

  /** Sets the query adapters' B to seeded values (B = 0 would make merged and unmerged trivially equal). */
  function setB(model: Contriever, seed: number): void {
    const random = seededRandom(seed);
    for (const [name, v] of model.params.entries()) {
      if (!name.endsWith('.lora_B.weight')) continue;
      v.assign(
        tf.tensor(
          Float32Array.from({ length: v.size }, () => (random() - 0.5) * 0.4),
          v.shape,
        ),
      );
    }
  }

  /** Reads an embedding tensor and frees it. */
  async function rows(t: tf.Tensor2D): Promise<Float32Array> {
    const data = (await t.data()) as Float32Array;
    t.dispose();
    return data;
  }

  it('adds seeded adapters under query.lora., freezes the query base, and leaves the passage side alone', async () => {
    const model = Contriever.fromCheckpoint(config, modelBytes);
    const passageBefore = await rows(model.embedPassages(unpadded('p')));
    model.enableQueryLora(LORA);
    model.enableQueryLora({ ...LORA, targets: ['o', 'k', 'v', 'q'] }); // the same config again: nothing changes
    expect(() => model.enableQueryLora({ ...LORA, rank: 2 })).toThrow(/already has LoRA adapters/);
    const adapters = model.params.names().filter((n) => n.includes('lora'));
    expect(adapters).toHaveLength(2 * 4 * 2);
    expect(adapters.every((n) => n.startsWith('query.lora.'))).toBe(true);
    for (const [name, v] of model.params.entries()) expect(v.trainable, name).toBe(!name.startsWith('query.') || name.startsWith('query.lora.'));
    expect(await rows(model.embedPassages(unpadded('p')))).toEqual(passageBefore);

    const passageStore = new ParameterStore();
    for (const name of model.parameterNames('passage')) passageStore.set(name, tf.clone(model.params.get(name)));
    const passageOnly = new Contriever(model.config, passageStore, ['passage']);
    expect(() => passageOnly.enableQueryLora(LORA)).toThrow(/passage-only/);
    passageOnly.dispose();
    model.dispose();
  });

  it('retrieval embeddings read merged weights that equal the unmerged (training) forward, and follow new adapter values', async () => {
    const model = Contriever.fromCheckpoint(config, modelBytes);
    const base = await rows(model.embedQueries(unpadded('q')));
    model.enableQueryLora(LORA);
    // B = 0: the adapted encoder is the base one exactly, merged or not.
    expect(await rows(model.embedQueries(unpadded('q')))).toEqual(base);
    const batch = padTokenBatch(unpadded('q'), model.config.pad_token_id);
    for (const seed of [5, 9]) {
      setB(model, seed);
      const merged = await rows(model.embedQueries(unpadded('q')));
      const unmerged = await rows(model.embed('query', batch));
      expect(maxRelativeError(merged, unmerged), `seed ${seed}`).toBeLessThan(1e-5);
      // …and the adapters do change the embeddings (a stale merged cache would keep the last ones).
      expect(maxRelativeError(merged, base), `seed ${seed}`).toBeGreaterThan(1e-3);
    }
    tf.dispose([batch.inputIds, batch.attentionMask]);
    model.dispose();
  });
});
