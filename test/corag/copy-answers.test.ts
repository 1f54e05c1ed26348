import { describe, expect, it } from 'vitest';
import { controlTokens, fidCopyDecoding } from '../../src/corag/copy-answers';
import { TextTokenizer } from '../../src/model/tokenizer';
import { readFileSync } from 'node:fs';

const T5_DIR = new URL('../../../shared/data/tokenizers/t5/', import.meta.url);

function t5Tokenizer(): TextTokenizer {
  const json = JSON.parse(readFileSync(new URL('tokenizer.json', T5_DIR), 'utf8'));
  const config = JSON.parse(readFileSync(new URL('tokenizer_config.json', T5_DIR), 'utf8'));
  return TextTokenizer.fromJson(json, config, 't5');
}

describe('copy decoding for FiD batches', () => {
  it('leaves EOS, padding, <unk> and all 100 sentinels of the T5 tokenizer to the LM head', () => {
    const tok = t5Tokenizer();
    const control = controlTokens(tok);
    expect(control.has(tok.eosId!)).toBe(true);
    expect(control.has(tok.padId)).toBe(true);
    expect(control.has(tok.tokenToId('<unk>')!)).toBe(true);
    expect(control.has(tok.tokenToId('<extra_id_0>')!)).toBe(true);
    expect(control.has(tok.tokenToId('<extra_id_99>')!)).toBe(true);
    expect(control.size).toBe(103);
    const word = tok.encode('Paris', { addSpecialTokens: false })[0];
    expect(control.has(word)).toBe(false);
  });

  it('gives each example its k passage rows one after another, as fidEncode fuses them', () => {
    // 2 examples × 2 passages × 3 tokens.
    const ids = Int32Array.from([10, 11, 1, 12, 13, 1, 20, 21, 1, 22, 0, 0]);
    const copy = fidCopyDecoding(t5Tokenizer(), ids, 2, 2, 0.5);
    expect(copy.weight).toBe(0.5);
    expect(Array.from(copy.sourceIds[0])).toEqual([10, 11, 1, 12, 13, 1]);
    expect(Array.from(copy.sourceIds[1])).toEqual([20, 21, 1, 22, 0, 0]);
    expect(() => fidCopyDecoding(t5Tokenizer(), ids.subarray(1), 2, 2, 0.5)).toThrow(/not 2 examples/);
  });
});
