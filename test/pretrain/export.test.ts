import { beforeAll, describe, expect, it } from 'vitest';
import { parseReaderPolicy, parseRetrieverPolicy } from '../../src/corag/checkpoint-policy';
import { initBackend } from '../../src/model/backend';
import { parseBertConfig } from '../../src/model/bert/config';
import { parseT5Config } from '../../src/model/t5/config';
import { parsePretrainConfig } from '../../src/pretrain/config';
import type { PretrainData } from '../../src/pretrain/data';
import { exportCheckpoints } from '../../src/pretrain/export';
import { Pretrainer } from '../../src/pretrain/trainer';
import { hfConfigTypeProblems } from '../model/hf-config-types';
import { config, tinyPretrainData } from './tiny-pretrain';

let data: PretrainData;

beforeAll(async () => {
  await initBackend('cpu');
  data = tinyPretrainData();
});

describe('exportCheckpoints', () => {
  const tokenizerFiles = { tokenizerJson: {}, tokenizerConfig: {}, specialTokensMap: {} };
  const configsOf = async (weights: { copyDecodingWeight: number; hybridKeywordWeight: number }) => {
    const trainer = Pretrainer.create(parsePretrainConfig({ ...config, ...weights }), data);
    try {
      const { reader, retriever } = await exportCheckpoints(trainer, { reader: tokenizerFiles, retriever: tokenizerFiles }, {});
      const text = (files: typeof reader) => new TextDecoder().decode(files.get('config.json')!);
      // What transformers would check: every top-level field of the declared JSON type, ours under "corag".
      expect(hfConfigTypeProblems(text(reader), 't5')).toEqual([]);
      expect(hfConfigTypeProblems(text(retriever), 'bert')).toEqual([]);
      return {
        reader: parseReaderPolicy(parseT5Config(JSON.parse(text(reader))).corag),
        retriever: parseRetrieverPolicy(parseBertConfig(JSON.parse(text(retriever))).corag),
      };
    } finally {
      trainer.dispose();
    }
  };

  it('writes the copy-decoding and hybrid keyword weights into the config.json files when the recipe sets them, and none otherwise', async () => {
    const set = await configsOf({ copyDecodingWeight: 0.5, hybridKeywordWeight: 4 });
    expect(set.reader.copyDecodingWeight).toBe(0.5);
    expect(set.retriever.hybridKeywordWeight).toBe(4);
    const unset = await configsOf({ copyDecodingWeight: 0, hybridKeywordWeight: 0 });
    expect(unset.reader).toEqual({});
    expect(unset.retriever).toEqual({});
  }, 60_000);
});
