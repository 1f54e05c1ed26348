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

  it("keeps a reader's copy-decoding weight (a CoRAG extension) through t5ConfigToJson, and has none by default", () => {
    const c = parseT5Config({ model_type: 't5', copy_decoding_weight: 0.5 });
    expect(c.copy_decoding_weight).toBe(0.5);
    expect(parseT5Config(t5ConfigToJson(c)).copy_decoding_weight).toBe(0.5);
    expect('copy_decoding_weight' in parseT5Config({ model_type: 't5' })).toBe(false);
    expect('copy_decoding_weight' in t5ConfigToJson(parseT5Config({ model_type: 't5' }))).toBe(false);
    expect('corag' in t5ConfigToJson(parseT5Config({ model_type: 't5' }))).toBe(false);
  });

  it("keeps a reader's answer-reranking weights through t5ConfigToJson, and refuses malformed ones naming the field", () => {
    const answer_rerank = { beams: 16, reader: 0.5, type: 2, proximity: 4, question_overlap: 1 };
    const c = parseT5Config({ model_type: 't5', answer_rerank });
    expect(c.answer_rerank).toEqual({ beams: 16, reader: 0.5, type: 2, proximity: 4, questionOverlap: 1 });
    expect((t5ConfigToJson(c).corag as Record<string, unknown>).answer_rerank).toEqual(answer_rerank);
    expect('answer_rerank' in parseT5Config({ model_type: 't5' })).toBe(false);
    expect(() => parseT5Config({ model_type: 't5', answer_rerank: { ...answer_rerank, beams: 0 } })).toThrow('"answer_rerank.beams"');
    expect(() => parseT5Config({ model_type: 't5', answer_rerank: { ...answer_rerank, proximity: -1 } })).toThrow('"answer_rerank.proximity"');
    expect(() => parseT5Config({ model_type: 't5', answer_rerank: { beams: 4 } })).toThrow('"answer_rerank.reader"');
    expect(() => parseT5Config({ model_type: 't5', answer_rerank: [1] })).toThrow('"answer_rerank" must be an object');
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
      [{ copy_decoding_weight: 1.5 }, '"copy_decoding_weight"'],
      [{ copy_decoding_weight: '0.5' }, '"copy_decoding_weight"'],
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
