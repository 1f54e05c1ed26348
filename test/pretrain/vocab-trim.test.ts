import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { TextTokenizer } from '../../src/model/tokenizer';
import { parseDprPassages } from '../../src/pretrain/corpus';
import { trimUnigramTokenizer, trimWordPieceTokenizer } from '../../src/pretrain/vocab-trim';

const read = (rel: string) => JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')) as Record<string, unknown>;
const T5 = '../../public/models/tokenizers/t5/';
const BERT = '../../public/models/tokenizers/bert-base-uncased/';
const passages = parseDprPassages(readFileSync(new URL('../../../shared/data/wikipedia/psgs_w100.sample1000.tsv', import.meta.url), 'utf8'));
const corpus = passages.slice(0, 120).flatMap((p) => [p.title, p.text]);
const sample = corpus.filter((_, i) => i % 7 === 0);

function pieces(tok: TextTokenizer, text: string): string[] {
  return tok.encode(text).map((id) => tok.idToToken(id)!);
}

describe('vocabulary trimming', () => {
  it('the trimmed T5 Unigram tokenizer splits corpus text into exactly the pieces of the full one', () => {
    const json = read(T5 + 'tokenizer.json');
    const config = read(T5 + 'tokenizer_config.json');
    const trimmed = trimUnigramTokenizer(json, config, corpus);
    const full = TextTokenizer.fromJson(json, config);
    const small = TextTokenizer.fromJson(trimmed.tokenizerJson, trimmed.tokenizerConfig);
    expect(trimmed.vocabSize).toBeLessThan(full.vocabSize / 4);
    for (const text of sample) {
      expect(pieces(small, text)).toEqual(pieces(full, text));
      // Ids are re-indexed: each new id maps back to the full tokenizer's id of the same piece.
      expect(small.encode(text).map((id) => trimmed.oldIds[id])).toEqual(full.encode(text));
    }
    expect([small.padId, small.eosId]).toEqual([0, 1]);
    expect(small.tokenToId('<extra_id_0>')).toBe(trimmed.vocabSize - 1);
    expect(small.tokenToId('<extra_id_99>')).toBe(trimmed.vocabSize - 100);
  });

  it('the trimmed BERT WordPiece tokenizer splits corpus text into exactly the pieces of the full one, [PAD] stays 0', () => {
    const json = read(BERT + 'tokenizer.json');
    const config = read(BERT + 'tokenizer_config.json');
    const trimmed = trimWordPieceTokenizer(json, config, corpus);
    const full = TextTokenizer.fromJson(json, config);
    const small = TextTokenizer.fromJson(trimmed.tokenizerJson, trimmed.tokenizerConfig);
    expect(trimmed.vocabSize).toBeLessThan(full.vocabSize / 2);
    for (const text of sample) expect(pieces(small, text)).toEqual(pieces(full, text));
    expect(small.padId).toBe(0);
    for (const special of ['[CLS]', '[SEP]', '[MASK]', '[UNK]']) expect(small.tokenToId(special)).toBeDefined();
  });
});
