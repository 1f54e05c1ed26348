import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { bertConfigToJson, bertParameterShapes, canonicalBertName, parseBertConfig } from '../../../src/model/bert/config';
import { parseSafetensors } from '../../../src/model/safetensors';

const fixture = (file: string) => new URL(`../../../../shared/fixtures/hf-reference/bert-tiny/${file}`, import.meta.url);

describe('parseBertConfig', () => {
  const json = JSON.parse(readFileSync(fixture('config.json'), 'utf8'));

  it('reads the fixture config', () => {
    const c = parseBertConfig(json);
    expect(c).toEqual({
      hidden_size: 32,
      num_hidden_layers: 2,
      num_attention_heads: 4,
      intermediate_size: 64,
      max_position_embeddings: 512,
      type_vocab_size: 2,
      vocab_size: 448,
      layer_norm_eps: 1e-12,
      hidden_act: 'gelu',
      pad_token_id: 0,
    });
  });

  it('round-trips through bertConfigToJson', () => {
    const c = parseBertConfig(json);
    expect(parseBertConfig(bertConfigToJson(c))).toEqual(c);
  });

  it('rejects other model types by name', () => {
    expect(() => parseBertConfig({ ...json, model_type: 't5' })).toThrow('unsupported model type "t5"');
  });

  it('names the invalid field', () => {
    expect(() => parseBertConfig({ ...json, hidden_size: -1 })).toThrow('"hidden_size"');
    expect(() => parseBertConfig({ ...json, vocab_size: 'x' })).toThrow('"vocab_size"');
    expect(() => parseBertConfig({ ...json, hidden_act: 'relu' })).toThrow('"hidden_act"');
    expect(() => parseBertConfig({ ...json, num_attention_heads: 5 })).toThrow('"num_attention_heads"');
    expect(() => parseBertConfig({ ...json, layer_norm_eps: 0 })).toThrow('"layer_norm_eps"');
    const { num_hidden_layers: _, ...missing } = json;
    expect(() => parseBertConfig(missing)).toThrow('"num_hidden_layers"');
    expect(() => parseBertConfig([])).toThrow('JSON object');
    expect(() => parseBertConfig({ ...json, corag: 4 })).toThrow('BERT config field "corag" must be an object');
  });

  it('carries the "corag" object a checkpoint has uninterpreted, lifting the old top-level placement, and writes it back', () => {
    expect(parseBertConfig(json).corag).toBeUndefined();
    const weighted = parseBertConfig({ ...json, corag: { hybrid_keyword_weight: 4 } });
    expect(weighted.corag).toEqual({ hybrid_keyword_weight: 4 });
    expect(parseBertConfig(bertConfigToJson(weighted))).toEqual(weighted);
    expect(parseBertConfig({ ...json, hybrid_keyword_weight: 4 }).corag).toEqual({ hybrid_keyword_weight: 4 });
    expect(bertConfigToJson(parseBertConfig({ ...json, hybrid_keyword_weight: 4 }))).not.toHaveProperty('hybrid_keyword_weight');
    expect(bertConfigToJson(parseBertConfig(json))).not.toHaveProperty('corag');
  });
});

describe('bertParameterShapes', () => {
  it('lists exactly the tensors of the fixture checkpoint with their shapes', () => {
    const shapes = bertParameterShapes(parseBertConfig(JSON.parse(readFileSync(fixture('config.json'), 'utf8'))));
    const file = parseSafetensors(readFileSync(fixture('model.safetensors')));
    expect([...shapes.keys()].sort()).toEqual([...file.tensors.keys()].sort());
    for (const [name, info] of file.tensors) expect(shapes.get(name)).toEqual(info.shape);
  });
});

describe('canonicalBertName', () => {
  it('strips the bert. prefix and ignores pooler and heads', () => {
    expect(canonicalBertName('bert.encoder.layer.0.output.dense.weight')).toBe('encoder.layer.0.output.dense.weight');
    expect(canonicalBertName('embeddings.word_embeddings.weight')).toBe('embeddings.word_embeddings.weight');
    expect(canonicalBertName('embeddings.LayerNorm.gamma')).toBe('embeddings.LayerNorm.weight');
    expect(canonicalBertName('pooler.dense.weight')).toBeUndefined();
    expect(canonicalBertName('bert.pooler.dense.bias')).toBeUndefined();
    expect(canonicalBertName('cls.predictions.bias')).toBeUndefined();
  });
});
