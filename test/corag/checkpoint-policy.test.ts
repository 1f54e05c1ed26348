import { beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import {
  parseCheckpointPolicy,
  parseReaderPolicy,
  parseRetrieverPolicy,
  readerPolicyToJson,
  retrieverPolicyToJson,
  type ReaderPolicy,
} from '../../src/corag/checkpoint-policy';
import { initBackend } from '../../src/model/backend';
import { parseBertConfig } from '../../src/model/bert/config';
import { parseT5Config, t5ConfigJsonText, t5ConfigToJson } from '../../src/model/t5/config';
import { tinyBundle } from './helpers';

const answer_rerank = { beams: 16, reader: 0.5, type: 2, proximity: 4, question_overlap: 1 };

describe('the reader policy (corag object of the reader config.json)', () => {
  it('types copy_decoding_weight and answer_rerank, and is empty when the checkpoint has none', () => {
    expect(parseReaderPolicy({ copy_decoding_weight: 0.5, answer_rerank })).toEqual({
      copyDecodingWeight: 0.5,
      answerRerank: { beams: 16, reader: 0.5, type: 2, proximity: 4, questionOverlap: 1 },
    });
    expect(parseReaderPolicy(undefined)).toEqual({});
    expect(parseReaderPolicy({})).toEqual({});
    // Python writes None as null: absent, as in the model config parsers.
    expect(parseReaderPolicy({ copy_decoding_weight: null })).toEqual({});
  });

  it('refuses bad types and ranges with an error naming the field', () => {
    const bad: Array<[Record<string, unknown>, string]> = [
      [{ copy_decoding_weight: 1.5 }, 'reader config field "corag.copy_decoding_weight" must be a number in [0, 1], got 1.5'],
      [{ copy_decoding_weight: '0.5' }, '"corag.copy_decoding_weight" must be a number in [0, 1], got "0.5"'],
      [{ answer_rerank: [1] }, 'reader config field "corag.answer_rerank" must be an object, got [1]'],
      [{ answer_rerank: { ...answer_rerank, beams: 0 } }, '"corag.answer_rerank.beams" must be an integer in 1 … 64, got 0'],
      [{ answer_rerank: { ...answer_rerank, beams: 2.5 } }, '"corag.answer_rerank.beams"'],
      [{ answer_rerank: { ...answer_rerank, proximity: -1 } }, '"corag.answer_rerank.proximity" must be a finite number >= 0, got -1'],
      [{ answer_rerank: { ...answer_rerank, type: 'high' } }, '"corag.answer_rerank.type"'],
      [{ answer_rerank: { beams: 4 } }, '"corag.answer_rerank.reader"'],
    ];
    for (const [corag, message] of bad) expect(() => parseReaderPolicy(corag), JSON.stringify(corag)).toThrow(message);
  });

  it('refuses unknown keys, naming them and the known ones (a misspelt setting would silently do nothing)', () => {
    expect(() => parseReaderPolicy({ copy_decoding_weights: 0.5 })).toThrow(
      'reader config field "corag" has unknown key(s) "copy_decoding_weights" (known: copy_decoding_weight, answer_rerank)',
    );
    expect(() => parseReaderPolicy({ answer_rerank: { ...answer_rerank, questionOverlap: 1 } })).toThrow(
      '"corag.answer_rerank" has unknown key(s) "questionOverlap"',
    );
    // A retriever setting in the reader's file is as wrong as a typo.
    expect(() => parseReaderPolicy({ hybrid_keyword_weight: 4 })).toThrow('unknown key(s) "hybrid_keyword_weight"');
  });

  it('round-trips through readerPolicyToJson and the exported config.json', () => {
    const policies: ReaderPolicy[] = [
      {},
      { copyDecodingWeight: 0 },
      { copyDecodingWeight: 0.5, answerRerank: { beams: 8, reader: 1, type: 2, proximity: 0, questionOverlap: 0.25 } },
    ];
    for (const p of policies) {
      expect(parseReaderPolicy(readerPolicyToJson(p))).toEqual(p);
      const text = t5ConfigJsonText({ ...parseT5Config({ model_type: 't5' }), corag: readerPolicyToJson(p) });
      expect(parseReaderPolicy(parseT5Config(JSON.parse(text)).corag)).toEqual(p);
    }
    expect(readerPolicyToJson({})).toBeUndefined();
    expect('corag' in t5ConfigToJson({ ...parseT5Config({ model_type: 't5' }), corag: readerPolicyToJson({}) })).toBe(false);
  });

  it('reads the old top-level placement, which the model parser lifts under "corag"', () => {
    expect(parseReaderPolicy(parseT5Config({ model_type: 't5', copy_decoding_weight: 0.5, answer_rerank }).corag)).toEqual({
      copyDecodingWeight: 0.5,
      answerRerank: { beams: 16, reader: 0.5, type: 2, proximity: 4, questionOverlap: 1 },
    });
  });
});

describe('the retriever policy (corag object of the retriever config.json)', () => {
  it('types hybrid_keyword_weight, refuses bad values and unknown keys naming them, and round-trips', () => {
    expect(parseRetrieverPolicy({ hybrid_keyword_weight: 10 })).toEqual({ hybridKeywordWeight: 10 });
    expect(parseRetrieverPolicy(undefined)).toEqual({});
    expect(() => parseRetrieverPolicy({ hybrid_keyword_weight: -1 })).toThrow(
      'retriever config field "corag.hybrid_keyword_weight" must be a finite number >= 0, got -1',
    );
    expect(() => parseRetrieverPolicy({ hybrid_keyword_weight: '4' })).toThrow('"corag.hybrid_keyword_weight"');
    expect(() => parseRetrieverPolicy({ keyword_weight: 4 })).toThrow(
      'retriever config field "corag" has unknown key(s) "keyword_weight" (known: hybrid_keyword_weight)',
    );
    for (const p of [{}, { hybridKeywordWeight: 0 }, { hybridKeywordWeight: 2.5 }]) expect(parseRetrieverPolicy(retrieverPolicyToJson(p))).toEqual(p);
  });
});

describe('the shipped demo checkpoints', () => {
  it('carry the policy the app reads: copy decoding, fitted reranking, BM25 weight 10', () => {
    const demo = (side: string) => JSON.parse(readFileSync(fileURLToPath(new URL(`../../public/models/demo/${side}/config.json`, import.meta.url)), 'utf8'));
    expect(parseCheckpointPolicy(parseT5Config(demo('reader')).corag, parseBertConfig(demo('retriever')).corag)).toEqual({
      reader: { copyDecodingWeight: 0.5, answerRerank: { beams: 16, reader: 1, type: 2, proximity: 4, questionOverlap: 0.5 } },
      retriever: { hybridKeywordWeight: 10 },
    });
  });
});

describe('a bundle', () => {
  beforeAll(() => initBackend('cpu'));

  it('exposes the validated policy of its checkpoints, and refuses to load one with a bad policy', async () => {
    const bundle = await tinyBundle(1, 2, 'gated-gelu', { corag: { copy_decoding_weight: 0.25 } });
    try {
      expect(bundle.policy).toEqual({ reader: { copyDecodingWeight: 0.25 }, retriever: {} });
    } finally {
      bundle.dispose();
    }
    await expect(tinyBundle(1, 2, 'gated-gelu', { corag: { answer_rerank: { beams: 0 } } })).rejects.toThrow('"corag.answer_rerank.beams"');
  }, 30_000);
});
