import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { DEFAULT_PRETRAIN_CONFIG, parsePretrainConfig } from '../../src/pretrain/config';

const DIR = new URL('../../configs/pretrain/', import.meta.url);

describe('pretraining recipes', () => {
  it('every config in configs/pretrain parses (no unknown or mistyped field)', () => {
    const files = readdirSync(DIR).filter((f) => f.endsWith('.json'));
    expect(files.length).toBeGreaterThanOrEqual(7);
    for (const f of files) expect(() => parsePretrainConfig(JSON.parse(readFileSync(new URL(f, DIR), 'utf8'))), f).not.toThrow();
  });

  it('refuses a copy-attention head the reader does not have', () => {
    expect(() => parsePretrainConfig({ copyAttentionWeight: 1, copyAttentionHead: 6 })).toThrow(/copyAttentionHead/);
    expect(() => parsePretrainConfig({ copyAttentionWeight: 1, copyAttentionHead: 1.5 })).toThrow(/copyAttentionHead/);
    expect(parsePretrainConfig({ copyAttentionWeight: 1, copyAttentionHead: 5 }).copyAttentionHead).toBe(5);
  });

  it('refuses a copy-decoding weight above 1', () => {
    expect(() => parsePretrainConfig({ copyDecodingWeight: 1.5 })).toThrow(/copyDecodingWeight/);
    expect(parsePretrainConfig({ copyDecodingWeight: 0.5 }).copyDecodingWeight).toBe(0.5);
  });

  it('takes the "cloze" or "typed" question generator and refuses any other', () => {
    expect(parsePretrainConfig({}).data.questionGenerator).toBe('cloze');
    expect(parsePretrainConfig({ data: { questionGenerator: 'typed' } }).data.questionGenerator).toBe('typed');
    expect(() => parsePretrainConfig({ data: { questionGenerator: 'nmt' } })).toThrow(/"data.questionGenerator" must be "cloze" or "typed"/);
  });

  it('refuses an unknown field and a wrongly typed one, naming it', () => {
    expect(() => parsePretrainConfig({ mlmWithSorce: true })).toThrow(/unknown field "mlmWithSorce"/);
    expect(() => parsePretrainConfig({ mlmWithSource: 'yes' })).toThrow(/"mlmWithSource" must be a boolean/);
    expect(parsePretrainConfig({}).mlmWithSource).toBe(DEFAULT_PRETRAIN_CONFIG.mlmWithSource);
  });
});
