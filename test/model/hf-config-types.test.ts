import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { formatJsonFloat, hfConfigJsonText } from '../../src/model/hf-config-json';
import { parseT5Config, t5ConfigJsonText, t5ConfigToJson, type T5Config } from '../../src/model/t5/config';
import { bertConfigJsonText, bertConfigToJson, parseBertConfig, type BertConfig } from '../../src/model/bert/config';
import { tinyBertConfig, tinyCheckpointFiles, tinyT5Config } from '../../src/model/tiny';
import { HF_CONFIG_TYPES, hfConfigTypeProblems, topLevelRawValues } from './hf-config-types';

const reader: T5Config = {
  ...parseT5Config({
    model_type: 't5',
    vocab_size: 100,
    d_model: 16,
    d_kv: 4,
    d_ff: 32,
    num_layers: 2,
    num_heads: 4,
    feed_forward_proj: 'gated-gelu',
    tie_word_embeddings: false,
  }),
  corag: { copy_decoding_weight: 0.5, answer_rerank: { beams: 16, reader: 1, type: 2, proximity: 4, question_overlap: 0.5 } },
};
const retriever: BertConfig = {
  ...parseBertConfig({
    model_type: 'bert',
    vocab_size: 100,
    hidden_size: 16,
    num_hidden_layers: 2,
    num_attention_heads: 2,
    intermediate_size: 32,
    max_position_embeddings: 64,
  }),
  corag: { hybrid_keyword_weight: 10 },
};

describe('the type table (test/fixtures/hf-config-types.json)', () => {
  it('declares the float fields transformers refuses as ints, and nothing of ours', () => {
    expect(HF_CONFIG_TYPES.t5.initializer_factor).toEqual(['float']);
    expect(HF_CONFIG_TYPES.t5.dropout_rate).toEqual(['float']);
    expect(HF_CONFIG_TYPES.t5.layer_norm_epsilon).toEqual(['float']);
    expect(HF_CONFIG_TYPES.t5.d_model).toEqual(['int']);
    expect(HF_CONFIG_TYPES.bert.layer_norm_eps).toEqual(['float']);
    expect(HF_CONFIG_TYPES.bert.initializer_range).toEqual(['float']);
    for (const ours of ['copy_decoding_weight', 'answer_rerank', 'hybrid_keyword_weight', 'corag']) {
      expect(HF_CONFIG_TYPES.t5[ours] ?? HF_CONFIG_TYPES.bert[ours] ?? HF_CONFIG_TYPES.common[ours]).toBeUndefined();
    }
  });

  it('the checker catches what JSON.stringify writes (1.0 as 1) and our settings at the top level', () => {
    const old = JSON.stringify({ ...t5ConfigToJson(reader), copy_decoding_weight: 0.5 }, null, 2);
    const problems = hfConfigTypeProblems(old, 't5');
    expect(problems).toContain('"initializer_factor" expected float, got int (1)');
    expect(problems).toContain('"dropout_rate" expected float, got int (0)');
    expect(problems).toContain('"copy_decoding_weight" is not a T5Config field (our own settings belong under "corag")');
    expect(hfConfigTypeProblems('{"layer_norm_eps": 1e-12, "hidden_size": 2.0}', 'bert')).toEqual([
      '"layer_norm_eps" expected float, got number with exponent but no decimal point (1e-12)',
      '"hidden_size" expected int, got float (2.0)',
    ]);
  });
});

describe('exported config.json files have the types Hugging Face declares', () => {
  const cases: Array<[string, 't5' | 'bert', string]> = [
    ['T5 reader with CoRAG settings', 't5', t5ConfigJsonText(reader)],
    ['T5 reader without', 't5', t5ConfigJsonText(parseT5Config({ model_type: 't5' }))],
    ['tiny T5 (make-tiny-models)', 't5', new TextDecoder().decode(tinyCheckpointFiles('t5', tinyT5Config(), 1).get('config.json'))],
    ['BERT retriever with CoRAG settings', 'bert', bertConfigJsonText(retriever)],
    ['BERT retriever without', 'bert', bertConfigJsonText(parseBertConfig({ ...bertConfigToJson(retriever), corag: undefined }))],
    ['tiny BERT (make-tiny-models)', 'bert', new TextDecoder().decode(tinyCheckpointFiles('bert', tinyBertConfig(), 1).get('config.json'))],
  ];
  for (const [what, model, text] of cases) {
    it(`${what}: every top-level field has its declared JSON type; only "corag" is ours`, () => {
      expect(hfConfigTypeProblems(text, model)).toEqual([]);
      const raw = topLevelRawValues(text);
      if (model === 't5') {
        expect(raw.get('initializer_factor')).toBe('1.0');
        expect(raw.get('dropout_rate')).toBe('0.0');
        expect(raw.get('layer_norm_epsilon')).toMatch(/\./);
      } else {
        expect(raw.get('layer_norm_eps')).toBe('1.0e-12');
        expect(raw.get('initializer_range')).toBe('0.02');
      }
      expect(JSON.parse(text)).toBeTypeOf('object');
    });
  }

  it('our settings travel under "corag" and read back unchanged', () => {
    const t5 = JSON.parse(t5ConfigJsonText(reader));
    expect(t5.corag).toEqual({ copy_decoding_weight: 0.5, answer_rerank: { beams: 16, reader: 1, type: 2, proximity: 4, question_overlap: 0.5 } });
    expect(parseT5Config(t5)).toEqual(reader);
    const bert = JSON.parse(bertConfigJsonText(retriever));
    expect(bert.corag).toEqual({ hybrid_keyword_weight: 10 });
    expect(parseBertConfig(bert)).toEqual(retriever);
    expect('corag' in JSON.parse(t5ConfigJsonText(parseT5Config({ model_type: 't5' })))).toBe(false);
  });
});

describe('the loaders read our settings from either placement', () => {
  it('the old top-level placement (checkpoints written before "corag") still loads', () => {
    const old = { ...t5ConfigToJson(reader), corag: undefined, ...reader.corag };
    expect(parseT5Config(old)).toEqual(reader);
    expect(parseBertConfig({ ...bertConfigToJson(retriever), corag: undefined, hybrid_keyword_weight: 10 })).toEqual(retriever);
  });

  it('"corag" wins over a stale top-level copy; a "corag" that is not an object is refused', () => {
    expect(parseT5Config({ model_type: 't5', copy_decoding_weight: 0.1, corag: { copy_decoding_weight: 0.9 } }).corag).toEqual({ copy_decoding_weight: 0.9 });
    expect(() => parseT5Config({ model_type: 't5', corag: [1] })).toThrow('T5 config field "corag" must be an object');
    expect(() => parseBertConfig({ ...bertConfigToJson(retriever), corag: 'x' })).toThrow('BERT config field "corag" must be an object');
  });

  it('the shipped demo checkpoints parse, with their settings under "corag"', () => {
    const demo = (side: string) => JSON.parse(readFileSync(fileURLToPath(new URL(`../../public/models/demo/${side}/config.json`, import.meta.url)), 'utf8'));
    expect(parseT5Config(demo('reader')).corag).toEqual(reader.corag);
    expect(parseBertConfig(demo('retriever')).corag).toEqual({ hybrid_keyword_weight: 10 });
  });
});

describe('the float writer', () => {
  it('always writes a decimal point, and the same number back', () => {
    const cases: Array<[number, string]> = [
      [1, '1.0'],
      [0, '0.0'],
      [-2, '-2.0'],
      [0.1, '0.1'],
      [1e-6, '0.000001'],
      [1e-12, '1.0e-12'],
      [1e21, '1.0e+21'],
      [1.5e-7, '1.5e-7'],
    ];
    for (const [value, text] of cases) {
      expect(formatJsonFloat(value, 'x')).toBe(text);
      expect(JSON.parse(text)).toBe(value);
    }
    expect(() => formatJsonFloat(NaN, 'dropout_rate')).toThrow('config field "dropout_rate" must be a finite number');
    expect(() => hfConfigJsonText({ dropout_rate: '0.1' }, new Set(['dropout_rate']))).toThrow('config field "dropout_rate" must be a number');
  });

  it('keeps nested values and key order as JSON.stringify would', () => {
    const obj = { a: 1, b: [1, 2], c: { d: 'e' }, f: 2 };
    const text = hfConfigJsonText(obj, new Set(['f']));
    expect(JSON.parse(text)).toEqual(obj);
    expect(text).toBe(JSON.stringify(obj, null, 2).replace('"f": 2', '"f": 2.0') + '\n');
  });
});
