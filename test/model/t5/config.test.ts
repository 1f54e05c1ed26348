import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseSafetensors } from '../../../src/model/safetensors';
import { parseT5Config, t5ConfigToJson, t5ParameterShapes } from '../../../src/model/t5/config';

const fixture = (name: string, file: string) => readFileSync(new URL(`../../../../shared/fixtures/hf-reference/${name}/${file}`, import.meta.url));

describe('parseT5Config', () => {
  it('reads both fixture layouts', () => {
    const gated = parseT5Config(JSON.parse(fixture('t5-tiny-gated', 'config.json').toString()));
    expect(gated).toMatchObject({
      d_model: 32,
      d_kv: 8,
      d_ff: 64,
      num_layers: 2,
      num_decoder_layers: 2,
      num_heads: 4,
      feed_forward_proj: 'gated-gelu',
      tie_word_embeddings: false,
      vocab_size: 384,
      eos_token_id: 1,
    });
    const relu = parseT5Config(JSON.parse(fixture('t5-tiny-relu', 'config.json').toString()));
    expect(relu).toMatchObject({ feed_forward_proj: 'relu', tie_word_embeddings: true });
  });

  it('fills missing fields with Hugging Face defaults (num_decoder_layers follows num_layers)', () => {
    const c = parseT5Config({ model_type: 't5', num_layers: 3 });
    expect(c).toMatchObject({
      vocab_size: 32128,
      d_model: 512,
      num_layers: 3,
      num_decoder_layers: 3,
      feed_forward_proj: 'relu',
      tie_word_embeddings: true,
      relative_attention_max_distance: 128,
    });
  });

  it('round-trips through t5ConfigToJson', () => {
    const c = parseT5Config({
      model_type: 't5',
      d_model: 16,
      d_kv: 4,
      num_heads: 2,
      vocab_size: 100,
      feed_forward_proj: 'gated-gelu',
      tie_word_embeddings: false,
    });
    expect(parseT5Config(t5ConfigToJson(c))).toEqual(c);
  });

  it('carries the "corag" object uninterpreted through t5ConfigToJson, and has none by default', () => {
    // Not validated here: even a value the policy parser refuses round-trips (src/corag/checkpoint-policy.ts judges it).
    const corag = { copy_decoding_weight: 7, answer_rerank: { beams: 'x' }, later_setting: [1] };
    const c = parseT5Config({ model_type: 't5', corag });
    expect(c.corag).toEqual(corag);
    expect(t5ConfigToJson(c).corag).toEqual(corag);
    expect(parseT5Config(t5ConfigToJson(c))).toEqual(c);
    expect('corag' in parseT5Config({ model_type: 't5' })).toBe(false);
    expect('corag' in t5ConfigToJson(parseT5Config({ model_type: 't5' }))).toBe(false);
    expect('corag' in t5ConfigToJson(parseT5Config({ model_type: 't5', corag: {} }))).toBe(false);
  });

  it('lifts the settings older exports wrote at the top level under "corag", where "corag" wins', () => {
    const answer_rerank = { beams: 16, reader: 0.5, type: 2, proximity: 4, question_overlap: 1 };
    expect(parseT5Config({ model_type: 't5', copy_decoding_weight: 0.5, answer_rerank }).corag).toEqual({ copy_decoding_weight: 0.5, answer_rerank });
    expect(parseT5Config({ model_type: 't5', copy_decoding_weight: 0.1, corag: { copy_decoding_weight: 0.9 } }).corag).toEqual({ copy_decoding_weight: 0.9 });
    const old = t5ConfigToJson(parseT5Config({ model_type: 't5', copy_decoding_weight: 0.5 }));
    expect(old.corag).toEqual({ copy_decoding_weight: 0.5 });
    expect('copy_decoding_weight' in old).toBe(false);
  });

  it('rejects other model types, naming the type', () => {
    expect(() => parseT5Config({ model_type: 'bert' })).toThrow('unsupported model type "bert"');
    expect(() => parseT5Config({})).toThrow('unsupported model type "undefined"');
    expect(() => parseT5Config(null)).toThrow('must be a JSON object');
  });

  it('names the field of every invalid value', () => {
    const bad: Array<[Record<string, unknown>, string]> = [
      [{ d_model: 0 }, '"d_model"'],
      [{ d_kv: 2.5 }, '"d_kv"'],
      [{ num_heads: '8' }, '"num_heads"'],
      [{ num_decoder_layers: -1 }, '"num_decoder_layers"'],
      [{ feed_forward_proj: 'gated-silu' }, '"feed_forward_proj"'],
      [{ tie_word_embeddings: 'yes' }, '"tie_word_embeddings"'],
      [{ layer_norm_epsilon: 0 }, '"layer_norm_epsilon"'],
      [{ vocab_size: 10, eos_token_id: 10 }, '"eos_token_id"'],
      [{ pad_token_id: -1 }, '"pad_token_id"'],
      [{ corag: 'x' }, '"corag" must be an object'],
      [{ corag: [1] }, '"corag" must be an object'],
      [{ relative_attention_num_buckets: null, relative_attention_max_distance: 'x' }, '"relative_attention_max_distance"'],
    ];
    for (const [fields, name] of bad) expect(() => parseT5Config({ model_type: 't5', ...fields })).toThrow(name);
  });
});

describe('t5ParameterShapes', () => {
  for (const name of ['t5-tiny-gated', 't5-tiny-relu']) {
    it(`lists exactly the parameters and shapes of the ${name} checkpoint`, () => {
      const config = parseT5Config(JSON.parse(fixture(name, 'config.json').toString()));
      const file = parseSafetensors(fixture(name, 'model.safetensors'));
      const inFile = new Map([...file.tensors.values()].map((t) => [t.name, [...t.shape]]));
      expect(new Map([...t5ParameterShapes(config)].sort())).toEqual(new Map([...inFile].sort()));
    });
  }
});
