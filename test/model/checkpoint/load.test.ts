import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { fileURLToPath } from 'node:url';
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initBackend } from '../../../src/model/backend';
import { parseSafetensors, readTensor, writeSafetensors, type TensorToWrite } from '../../../src/model/safetensors';
import { type ParameterStore } from '../../../src/model/params';
import { hubModelSource, urlModelSource, type ModelSource } from '../../../src/model/checkpoint/source';
import { loadCheckpoint } from '../../../src/model/checkpoint/load';
import { loadT5Checkpoint } from '../../../src/model/checkpoint/t5';
import { loadBertCheckpoint } from '../../../src/model/checkpoint/bert';
import { tinyBertConfig, tinyCheckpointFiles } from '../../../src/model/tiny';
import { folderModelSource } from '../../../src/platform/node/folder-source';
import { startLocalHub, type LocalHub } from './local-hub';
import { expectIdenticalNumbers } from '../../identical-numbers';

const FIXTURES = fileURLToPath(new URL('../../../../shared/fixtures/hf-reference/', import.meta.url));
const TOKENIZERS = fileURLToPath(new URL('../../../public/models/tokenizers/', import.meta.url));
const fixture = (name: string) => join(FIXTURES, name);

type Tensors = Map<string, { shape: number[]; data: Float32Array }>;

/** The fixture's own tensors, read independently of the loader under test. */
async function readFixtureTensors(folder: string): Promise<Tensors> {
  const parsed = parseSafetensors(await readFile(join(folder, 'model.safetensors')));
  const out: Tensors = new Map();
  for (const name of parsed.tensors.keys()) {
    const { shape, data } = readTensor(parsed, name);
    out.set(name, { shape, data: data as Float32Array });
  }
  return out;
}

function expectParamsEqual(params: ParameterStore, expected: Tensors): void {
  expect(params.names().sort()).toEqual([...expected.keys()].sort());
  for (const [name, t] of expected) {
    const v = params.get(name);
    expect(v.shape, name).toEqual(t.shape);
    expectIdenticalNumbers(v.dataSync() as Float32Array, t.data, name);
  }
}

function toWrite(tensors: Tensors): Map<string, TensorToWrite> {
  return new Map([...tensors].map(([n, t]) => [n, { dtype: 'F32' as const, shape: t.shape, data: t.data }]));
}

let tmp: string;
let tmpCount = 0;

/** A checkpoint folder in the temp dir: a config, tensors and optional extra files. */
async function writeCheckpoint(
  config: unknown,
  tensors: Tensors | Map<string, TensorToWrite> | null,
  extra: Record<string, Uint8Array | string> = {},
): Promise<string> {
  const folder = join(tmp, `ckpt-${tmpCount++}`);
  await mkdir(folder);
  if (config !== null) await writeFile(join(folder, 'config.json'), JSON.stringify(config));
  if (tensors) {
    const first = tensors.values().next().value as { dtype?: string } | undefined;
    const writable = first && 'dtype' in first ? (tensors as Map<string, TensorToWrite>) : toWrite(tensors as Tensors);
    await writeFile(join(folder, 'model.safetensors'), writeSafetensors(writable));
  }
  for (const [name, bytes] of Object.entries(extra)) await writeFile(join(folder, name), bytes);
  return folder;
}

async function fixtureConfig(name: string): Promise<Record<string, unknown>> {
  return JSON.parse(await readFile(join(fixture(name), 'config.json'), 'utf8'));
}

/** Writes `tensors` as an HF sharded checkpoint: shards of `perShard` tensors plus the index. */
async function writeSharded(config: unknown, tensors: Tensors, perShard: number): Promise<{ folder: string; shards: string[] }> {
  const folder = await writeCheckpoint(config, null);
  const names = [...tensors.keys()];
  const count = Math.ceil(names.length / perShard);
  const weightMap: Record<string, string> = {};
  const shards: string[] = [];
  for (let s = 0; s < count; s++) {
    const shard = `model-${String(s + 1).padStart(5, '0')}-of-${String(count).padStart(5, '0')}.safetensors`;
    const part: Tensors = new Map(names.slice(s * perShard, (s + 1) * perShard).map((n) => [n, tensors.get(n)!]));
    await writeFile(join(folder, shard), writeSafetensors(toWrite(part)));
    for (const n of part.keys()) weightMap[n] = shard;
    shards.push(shard);
  }
  await writeFile(join(folder, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap }));
  return { folder, shards };
}

beforeAll(async () => {
  await initBackend('cpu');
  tmp = await mkdtemp(join(tmpdir(), 'corag-ckpt-'));
});

afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe('loading the reference fixtures from a folder', () => {
  for (const name of ['t5-tiny-gated', 't5-tiny-relu', 'bert-tiny']) {
    it(`${name}: the generic loader returns config.json and every tensor unchanged`, async () => {
      const { config, params } = await loadCheckpoint(folderModelSource(fixture(name)));
      expect(config).toEqual(await fixtureConfig(name));
      expectParamsEqual(params, await readFixtureTensors(fixture(name)));
      params.dispose();
    });
  }

  it('t5-tiny-gated and t5-tiny-relu load with the T5 loader and parsed configs of both layouts', async () => {
    const gated = await loadT5Checkpoint(folderModelSource(fixture('t5-tiny-gated')), { tokenizer: false });
    expect(gated.config.feed_forward_proj).toBe('gated-gelu');
    expect(gated.params.has('lm_head.weight')).toBe(true);
    expect(gated.tokenizer).toBeNull();
    expectParamsEqual(gated.params, await readFixtureTensors(fixture('t5-tiny-gated')));
    gated.params.dispose();

    const relu = await loadT5Checkpoint(folderModelSource(fixture('t5-tiny-relu')), { tokenizer: false });
    expect(relu.config.tie_word_embeddings).toBe(true);
    expectParamsEqual(relu.params, await readFixtureTensors(fixture('t5-tiny-relu')));
    relu.params.dispose();
  });

  it('bert-tiny loads with the BERT loader', async () => {
    const bert = await loadBertCheckpoint(folderModelSource(fixture('bert-tiny')), { tokenizer: false });
    expect(bert.config.hidden_size).toBe(32);
    expectParamsEqual(bert.params, await readFixtureTensors(fixture('bert-tiny')));
    bert.params.dispose();
  });

  it('reports byte progress for each file', async () => {
    const seen = new Map<string, number>();
    const { params } = await loadCheckpoint(folderModelSource(fixture('bert-tiny')), {
      onProgress: ({ file, loadedBytes }) => seen.set(file, loadedBytes),
    });
    expect(seen.get('model.safetensors')).toBe(195616);
    params.dispose();
  });
});

describe('loading over HTTP from a local server', () => {
  let hub: LocalHub;
  let sharded: { folder: string; shards: string[] };
  let withTokenizer: string;

  beforeAll(async () => {
    sharded = await writeSharded(await fixtureConfig('t5-tiny-gated'), await readFixtureTensors(fixture('t5-tiny-gated')), 10);
    // A tiny BERT over the real vocabulary, with the real tokenizer beside it.
    withTokenizer = join(tmp, 'tiny-bert-with-tokenizer');
    await cp(join(TOKENIZERS, 'bert-base-uncased'), withTokenizer, { recursive: true });
    for (const [name, bytes] of tinyCheckpointFiles('bert', tinyBertConfig(), 1)) await writeFile(join(withTokenizer, name), bytes);
    hub = await startLocalHub({
      repos: { 'ref/t5-tiny-relu': fixture('t5-tiny-relu'), 'ref/t5-sharded': sharded.folder, 'ref/bert-tok': withTokenizer },
      folders: { gated: fixture('t5-tiny-gated'), bert: fixture('bert-tiny') },
      revisions: ['main', 'v2'],
    });
  });

  afterAll(() => hub.close());

  it('loads a T5 fixture by hub id with a configurable endpoint and revision', async () => {
    const source = hubModelSource('ref/t5-tiny-relu', { endpoint: hub.url, revision: 'v2' });
    const model = await loadT5Checkpoint(source, { tokenizer: false });
    expectParamsEqual(model.params, await readFixtureTensors(fixture('t5-tiny-relu')));
    expect(model.source).toBe(`ref/t5-tiny-relu@v2 (${hub.url})`);
    expect(hub.requests).toContain('/ref/t5-tiny-relu/resolve/v2/model.safetensors');
    model.params.dispose();
  });

  it('loads fixtures from a URL base', async () => {
    const t5 = await loadT5Checkpoint(urlModelSource(`${hub.url}/files/gated`), { tokenizer: false });
    expectParamsEqual(t5.params, await readFixtureTensors(fixture('t5-tiny-gated')));
    t5.params.dispose();
    const bert = await loadBertCheckpoint(urlModelSource(`${hub.url}/files/bert/`), { tokenizer: false });
    expectParamsEqual(bert.params, await readFixtureTensors(fixture('bert-tiny')));
    bert.params.dispose();
  });

  it('loads the tokenizer from the same hub repository', async () => {
    const model = await loadBertCheckpoint(hubModelSource('ref/bert-tok', { endpoint: hub.url }));
    expect(model.tokenizer!.encode('who wrote hamlet?')).toEqual([101, 2040, 2626, 8429, 1029, 102]);
    expect(model.params.get('embeddings.word_embeddings.weight').shape).toEqual([30522, 32]);
    expect(hub.requests).toContain('/ref/bert-tok/resolve/main/tokenizer.json');
    model.params.dispose();
  });

  it('loads a sharded checkpoint, fetching each shard exactly once', async () => {
    expect(sharded.shards.length).toBeGreaterThanOrEqual(3);
    const before = hub.requests.length;
    const model = await loadT5Checkpoint(hubModelSource('ref/t5-sharded', { endpoint: hub.url }), { tokenizer: false });
    expectParamsEqual(model.params, await readFixtureTensors(fixture('t5-tiny-gated')));
    const requested = hub.requests.slice(before);
    for (const shard of sharded.shards) expect(requested.filter((p) => p.endsWith('/' + shard))).toHaveLength(1);
    expect(requested).toContain('/ref/t5-sharded/resolve/main/model.safetensors.index.json');
    model.params.dispose();
  });
});

describe('tolerated extras', () => {
  it('generic loader: integer buffers such as position_ids are not parameters and are left out', async () => {
    const tensors = toWrite(await readFixtureTensors(fixture('bert-tiny')));
    tensors.set('embeddings.position_ids', { dtype: 'I64', shape: [1, 512], data: Int32Array.from({ length: 512 }, (_, i) => i) });
    const folder = await writeCheckpoint(await fixtureConfig('bert-tiny'), tensors);
    const { params } = await loadCheckpoint(folderModelSource(folder));
    expectParamsEqual(params, await readFixtureTensors(fixture('bert-tiny')));
    params.dispose();
    const typed = await loadBertCheckpoint(folderModelSource(folder), { tokenizer: false });
    expect(typed.params.has('embeddings.position_ids')).toBe(false);
    typed.params.dispose();
  });

  it('T5: embed_tokens aliases of the shared embedding are skipped', async () => {
    const tensors = await readFixtureTensors(fixture('t5-tiny-gated'));
    const shared = tensors.get('shared.weight')!;
    tensors.set('encoder.embed_tokens.weight', shared);
    tensors.set('decoder.embed_tokens.weight', shared);
    const folder = await writeCheckpoint(await fixtureConfig('t5-tiny-gated'), tensors);
    const model = await loadT5Checkpoint(folderModelSource(folder), { tokenizer: false });
    expect(model.params.has('encoder.embed_tokens.weight')).toBe(false);
    expect(model.params.size).toBe(tensors.size - 2);
    model.params.dispose();
  });

  it('T5: a tied checkpoint that also stores lm_head.weight loads without it', async () => {
    const tensors = await readFixtureTensors(fixture('t5-tiny-relu'));
    tensors.set('lm_head.weight', tensors.get('shared.weight')!);
    const folder = await writeCheckpoint(await fixtureConfig('t5-tiny-relu'), tensors);
    const model = await loadT5Checkpoint(folderModelSource(folder), { tokenizer: false });
    expect(model.params.has('lm_head.weight')).toBe(false);
    model.params.dispose();
  });

  it('BERT: a "bert." prefix is removed and the pooler and MLM head are skipped', async () => {
    const original = await readFixtureTensors(fixture('bert-tiny'));
    const prefixed: Tensors = new Map([...original].map(([n, t]) => [`bert.${n}`, t]));
    prefixed.set('bert.pooler.dense.weight', { shape: [32, 32], data: new Float32Array(32 * 32) });
    prefixed.set('bert.pooler.dense.bias', { shape: [32], data: new Float32Array(32) });
    prefixed.set('cls.predictions.bias', { shape: [448], data: new Float32Array(448) });
    const folder = await writeCheckpoint(await fixtureConfig('bert-tiny'), prefixed);
    const model = await loadBertCheckpoint(folderModelSource(folder), { tokenizer: false });
    expectParamsEqual(model.params, original);
    model.params.dispose();
  });
});

describe('bad input gets a clear error naming the problem', () => {
  const load = (folder: string) => loadT5Checkpoint(folderModelSource(folder), { tokenizer: false });

  it('missing config.json', async () => {
    const folder = await writeCheckpoint(null, await readFixtureTensors(fixture('t5-tiny-relu')));
    await expect(load(folder)).rejects.toThrow(`missing config.json: ${folder} has no config.json`);
    await expect(loadCheckpoint(folderModelSource(folder))).rejects.toThrow('missing config.json');
  });

  it('config.json that is not JSON', async () => {
    const folder = await writeCheckpoint(null, null, { 'config.json': '{"model_type": "t5",' });
    await expect(load(folder)).rejects.toThrow(`${folder}/config.json is not valid JSON`);
  });

  it('a model folder that does not exist', async () => {
    await expect(load(join(tmp, 'no-such-folder'))).rejects.toThrow(`model folder ${join(tmp, 'no-such-folder')} does not exist`);
  });

  it('missing weights', async () => {
    const folder = await writeCheckpoint(await fixtureConfig('t5-tiny-relu'), null);
    await expect(load(folder)).rejects.toThrow(
      `missing weights: ${folder} has none of model.safetensors, model.safetensors.index.json, pytorch_model.bin or pytorch_model.bin.index.json`,
    );
  });

  it('corrupt (truncated) safetensors, with the file named', async () => {
    const bytes = await readFile(join(fixture('t5-tiny-relu'), 'model.safetensors'));
    const folder = await writeCheckpoint(await fixtureConfig('t5-tiny-relu'), null, { 'model.safetensors': bytes.subarray(0, 5000) });
    await expect(load(folder)).rejects.toThrow(new RegExp(`^corrupt safetensors: ${folder}/model.safetensors: truncated file`));
  });

  it('safetensors whose header is not JSON', async () => {
    const garbage = new Uint8Array(64);
    new DataView(garbage.buffer).setBigUint64(0, 16n, true);
    garbage.set(new TextEncoder().encode('not a header !!!'), 8);
    const folder = await writeCheckpoint(await fixtureConfig('t5-tiny-relu'), null, { 'model.safetensors': garbage });
    await expect(load(folder)).rejects.toThrow(`corrupt safetensors: ${folder}/model.safetensors: header is not valid UTF-8 JSON`);
  });

  it('unsupported model type, for either typed loader', async () => {
    const folder = await writeCheckpoint({ ...(await fixtureConfig('t5-tiny-relu')), model_type: 'gpt2' }, await readFixtureTensors(fixture('t5-tiny-relu')));
    await expect(load(folder)).rejects.toThrow(`${folder}/config.json: unsupported model type "gpt2"`);
    const t5 = await writeCheckpoint(await fixtureConfig('t5-tiny-relu'), await readFixtureTensors(fixture('t5-tiny-relu')));
    await expect(loadBertCheckpoint(folderModelSource(t5), { tokenizer: false })).rejects.toThrow(`${t5}/config.json: unsupported model type "t5"`);
  });

  it('shape mismatch between config and weights names the tensor, both shapes and the file', async () => {
    const folder = await writeCheckpoint({ ...(await fixtureConfig('t5-tiny-relu')), d_ff: 48 }, await readFixtureTensors(fixture('t5-tiny-relu')));
    await expect(load(folder)).rejects.toThrow(
      `shape mismatch: tensor "decoder.block.0.layer.2.DenseReluDense.wi.weight" in ${folder}/model.safetensors has shape [64, 32] but the T5 config expects [48, 32]`,
    );
  });

  it('a tensor the config calls for is missing', async () => {
    const tensors = await readFixtureTensors(fixture('bert-tiny'));
    tensors.delete('encoder.layer.1.output.LayerNorm.bias');
    const folder = await writeCheckpoint(await fixtureConfig('bert-tiny'), tensors);
    await expect(loadBertCheckpoint(folderModelSource(folder), { tokenizer: false })).rejects.toThrow(
      `missing tensor: ${folder} lacks 1 BERT parameter(s) the config calls for: "encoder.layer.1.output.LayerNorm.bias"`,
    );
  });

  it('weights for more layers than the config has', async () => {
    const folder = await writeCheckpoint(
      { ...(await fixtureConfig('t5-tiny-gated')), num_layers: 1, num_decoder_layers: 2 },
      await readFixtureTensors(fixture('t5-tiny-gated')),
    );
    await expect(load(folder)).rejects.toThrow(/holds 9 tensor\(s\) that are not part of a T5 model with this config: "encoder\.block\.1\./);
  });

  it('integer tensors where parameters belong, leaking no tensors', async () => {
    const tensors = toWrite(await readFixtureTensors(fixture('bert-tiny')));
    tensors.set('embeddings.LayerNorm.weight', { dtype: 'I32', shape: [32], data: new Int32Array(32) });
    const folder = await writeCheckpoint(await fixtureConfig('bert-tiny'), tensors);
    const before = tf.memory().numTensors;
    await expect(loadBertCheckpoint(folderModelSource(folder), { tokenizer: false })).rejects.toThrow(
      'tensor "embeddings.LayerNorm.weight" in model.safetensors has dtype I32; model parameters must be F32, F16 or BF16',
    );
    expect(tf.memory().numTensors).toBe(before);
  });

  it('tokenizer missing', async () => {
    await expect(loadT5Checkpoint(folderModelSource(fixture('t5-tiny-relu')))).rejects.toThrow(
      `tokenizer missing: ${fixture('t5-tiny-relu').replace(/\/$/, '')} has no tokenizer.json`,
    );
  });

  it('a tokenizer with more tokens than the embedding has rows', async () => {
    await expect(loadT5Checkpoint(folderModelSource(fixture('t5-tiny-relu')), { tokenizer: folderModelSource(join(TOKENIZERS, 't5')) })).rejects.toThrow(
      /tokenizer does not fit the model: it has 32100 tokens but the T5 embedding in .* has only 384 rows/,
    );
  });

  describe('sharded checkpoints', () => {
    let tensors: Tensors;
    let config: Record<string, unknown>;
    beforeAll(async () => {
      tensors = await readFixtureTensors(fixture('t5-tiny-relu'));
      config = await fixtureConfig('t5-tiny-relu');
    });

    it('a shard listed in the index is missing', async () => {
      const { folder, shards } = await writeSharded(config, tensors, 8);
      await rm(join(folder, shards[1]));
      await expect(load(folder)).rejects.toThrow(`missing shard: ${folder}/model.safetensors.index.json lists ${shards[1]}, which ${folder} does not have`);
    });

    it('the index places a tensor in a shard that does not hold it', async () => {
      const { folder, shards } = await writeSharded(config, tensors, 8);
      const index = JSON.parse(await readFile(join(folder, 'model.safetensors.index.json'), 'utf8'));
      index.weight_map['encoder.block.9.layer.0.layer_norm.weight'] = shards[0];
      await writeFile(join(folder, 'model.safetensors.index.json'), JSON.stringify(index));
      await expect(load(folder)).rejects.toThrow(
        `missing tensor: ${folder}/model.safetensors.index.json places "encoder.block.9.layer.0.layer_norm.weight" in ${shards[0]}`,
      );
    });

    it('a shard holds a tensor the index places elsewhere', async () => {
      const { folder, shards } = await writeSharded(config, tensors, 8);
      const index = JSON.parse(await readFile(join(folder, 'model.safetensors.index.json'), 'utf8'));
      const [name] = Object.entries(index.weight_map as Record<string, string>).find(([, s]) => s === shards[0])!;
      index.weight_map[name] = shards[1];
      await writeFile(join(folder, 'model.safetensors.index.json'), JSON.stringify(index));
      await expect(load(folder)).rejects.toThrow(`${folder}/${shards[0]} holds tensor "${name}", which model.safetensors.index.json places in ${shards[1]}`);
    });

    it('a corrupt shard is named', async () => {
      const { folder, shards } = await writeSharded(config, tensors, 8);
      await writeFile(join(folder, shards[2]), new Uint8Array(4));
      await expect(load(folder)).rejects.toThrow(`corrupt safetensors: ${folder}/${shards[2]}: truncated file`);
    });

    it('an index without weight_map, or with a shard path that leaves the folder', async () => {
      const { folder } = await writeSharded(config, tensors, 8);
      await writeFile(join(folder, 'model.safetensors.index.json'), JSON.stringify({ metadata: {} }));
      await expect(load(folder)).rejects.toThrow(`${folder}/model.safetensors.index.json has no "weight_map" object`);
      await writeFile(join(folder, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { 'shared.weight': '../../etc/passwd' } }));
      await expect(load(folder)).rejects.toThrow('invalid model file name "../../etc/passwd"');
    });
  });
});

describe('sources compose with the loader', () => {
  it('accepts any ModelSource implementation (here: files in memory)', async () => {
    const files = new Map<string, Uint8Array>([
      ['config.json', new Uint8Array(await readFile(join(fixture('bert-tiny'), 'config.json')))],
      ['model.safetensors', new Uint8Array(await readFile(join(fixture('bert-tiny'), 'model.safetensors')))],
    ]);
    const memory: ModelSource = { describe: () => 'memory', fetchFile: async (n) => files.get(n) ?? null };
    const model = await loadBertCheckpoint(memory, { tokenizer: false });
    expectParamsEqual(model.params, await readFixtureTensors(fixture('bert-tiny')));
    model.params.dispose();
  });
});
