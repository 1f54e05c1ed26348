import { beforeAll, describe, expect, it } from 'vitest';
import { fileURLToPath } from 'node:url';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadTokenizer, TextTokenizer } from '../../src/model/tokenizer';
import { folderModelSource } from '../../src/platform/node/folder-source';

const TOKENIZERS = fileURLToPath(new URL('../../public/models/tokenizers/', import.meta.url));

let t5: TextTokenizer;
let bert: TextTokenizer;
/** T5 SentencePiece pieces -> [id, log-probability score], read straight from tokenizer.json. */
let t5Pieces: Map<string, [number, number]>;
/** BERT WordPiece vocabulary: token -> id (line number in vocab.txt, from 0). */
let bertVocab: Map<string, number>;

beforeAll(async () => {
  t5 = await loadTokenizer(folderModelSource(join(TOKENIZERS, 't5')));
  bert = await loadTokenizer(folderModelSource(join(TOKENIZERS, 'bert-base-uncased')));
  const t5Json = JSON.parse(await readFile(join(TOKENIZERS, 't5', 'tokenizer.json'), 'utf8'));
  t5Pieces = new Map((t5Json.model.vocab as Array<[string, number]>).map(([piece, score], id) => [piece, [id, score]]));
  for (const added of t5Json.added_tokens as Array<{ id: number; content: string }>) t5Pieces.set(added.content, [added.id, 0]);
  const lines = (await readFile(join(TOKENIZERS, 'bert-base-uncased', 'vocab.txt'), 'utf8')).split('\n');
  bertVocab = new Map(lines.map((token, id) => [token, id]));
});

/** SentencePiece Unigram segmentation (Viterbi: the split with the highest total score). */
function unigramSegment(word: string): string[] {
  const best: Array<{ score: number; start: number }> = [{ score: 0, start: -1 }];
  for (let end = 1; end <= word.length; end++) {
    best[end] = { score: -Infinity, start: -1 };
    for (let start = 0; start < end; start++) {
      const piece = t5Pieces.get(word.slice(start, end));
      if (!piece || best[start].score === -Infinity) continue;
      const score = best[start].score + piece[1];
      if (score > best[end].score) best[end] = { score, start };
    }
  }
  const pieces: string[] = [];
  for (let end = word.length; end > 0; end = best[end].start) pieces.unshift(word.slice(best[end].start, end));
  return pieces;
}

/** WordPiece: greedy longest match first, continuation pieces prefixed with ##. */
function wordPiece(word: string): string[] {
  const out: string[] = [];
  for (let start = 0; start < word.length;) {
    let end = word.length;
    while (end > start && !bertVocab.has((start ? '##' : '') + word.slice(start, end))) end--;
    if (end === start) return ['[UNK]'];
    out.push((start ? '##' : '') + word.slice(start, end));
    start = end;
  }
  return out;
}

const t5Id = (piece: string) => {
  const entry = t5Pieces.get(piece);
  if (!entry) throw new Error(`"${piece}" is not a T5 piece`);
  return entry[0];
};
const bertId = (token: string) => {
  const id = bertVocab.get(token);
  if (id === undefined) throw new Error(`"${token}" is not in vocab.txt`);
  return id;
};

const ATLAS_INPUT = 'question: who wrote hamlet? answer: <extra_id_0>';

describe('T5 tokenizer (SentencePiece Unigram)', () => {
  it('encodes the Atlas input format to the SentencePiece ids, ending in </s>', () => {
    // "hamlet" has no whole piece; Unigram picks the best-scoring split.
    expect(unigramSegment('▁hamlet')).toEqual(['▁', 'ham', 'let']);
    const pieces = ['▁question', ':', '▁who', '▁wrote', ...unigramSegment('▁hamlet'), '?', '▁answer', ':', '<extra_id_0>', '</s>'];
    const expected = pieces.map(t5Id);
    expect(expected).toEqual([822, 10, 113, 2832, 3, 1483, 1655, 58, 1525, 10, 32099, 1]);
    expect(t5.encode(ATLAS_INPUT)).toEqual(expected);
  });

  it('knows its special tokens and vocabulary size', () => {
    expect(t5.padId).toBe(0);
    expect(t5.eosId).toBe(1);
    expect(t5.numSpecialTokens).toBe(1);
    expect(t5.vocabSize).toBe(32100);
    expect(t5.tokenToId('<extra_id_99>')).toBe(32000);
    expect(t5.idToToken(32099)).toBe('<extra_id_0>');
  });

  it('truncates the text but keeps </s>, as transformers does with truncation=True', () => {
    const ids = t5.encode(ATLAS_INPUT, { maxLength: 5 });
    expect(ids).toEqual([822, 10, 113, 2832, 1]);
    expect(t5.encode(ATLAS_INPUT, { maxLength: 100 })).toEqual(t5.encode(ATLAS_INPUT));
    expect(() => t5.encode(ATLAS_INPUT, { maxLength: 0 })).toThrow(/leaves no room for the 1 special tokens/);
  });

  it('decodes ids back to text, dropping special tokens unless asked to keep them', () => {
    const target = t5.encode('<extra_id_0> William Shakespeare');
    expect(target[0]).toBe(32099);
    expect(t5.decode(target)).toBe('William Shakespeare');
    expect(t5.decode(target, { skipSpecialTokens: false })).toBe('<extra_id_0> William Shakespeare</s>');
    expect(t5.decode(t5.encode('who wrote hamlet?'))).toBe('who wrote hamlet?');
  });

  it('batch-encodes with right padding and an attention mask', () => {
    const batch = t5.encodeBatch(['who wrote hamlet?', 'hello']);
    const first = t5.encode('who wrote hamlet?');
    const second = t5.encode('hello');
    expect(batch.batchSize).toBe(2);
    expect(batch.length).toBe(first.length);
    expect(batch.lengths).toEqual([first.length, second.length]);
    expect([...batch.inputIds.subarray(0, batch.length)]).toEqual(first);
    const row2 = [...batch.inputIds.subarray(batch.length)];
    expect(row2).toEqual([...second, ...new Array(first.length - second.length).fill(0)]);
    expect([...batch.attentionMask.subarray(batch.length)]).toEqual([...second.map(() => 1), ...new Array(first.length - second.length).fill(0)]);
  });

  it('pads every row to maxLength with padding "max_length", truncating longer ones', () => {
    const batch = t5.encodeBatch([ATLAS_INPUT, 'hi'], { maxLength: 6, padding: 'max_length' });
    expect(batch.length).toBe(6);
    expect([...batch.inputIds.subarray(0, 6)]).toEqual([822, 10, 113, 2832, 3, 1]);
    const short = t5.encode('hi');
    expect([...batch.inputIds.subarray(6)]).toEqual([...short, ...new Array(6 - short.length).fill(t5.padId)]);
    expect([...batch.attentionMask]).toEqual([...new Array(6 + short.length).fill(1), ...new Array(6 - short.length).fill(0)]);
    expect(() => t5.encodeBatch(['x'], { padding: 'max_length' })).toThrow(/needs maxLength/);
  });
});

describe('BERT tokenizer (WordPiece, uncased)', () => {
  it('encodes to [CLS] ... [SEP] with the ids of vocab.txt, lower-casing and splitting punctuation', () => {
    const text = 'Question: Who wrote Hamlet? Answer: <extra_id_0>';
    const words = ['question', ':', 'who', 'wrote', 'hamlet', '?', 'answer', ':', '<', 'extra', '_', 'id', '_', '0', '>'];
    const expected = [bertId('[CLS]'), ...words.flatMap(wordPiece).map(bertId), bertId('[SEP]')];
    expect(expected.slice(0, 6)).toEqual([101, 3160, 1024, 2040, 2626, 8429]);
    expect(bert.encode(text)).toEqual(expected);
  });

  it('splits unknown words into ## continuation pieces', () => {
    const pieces = wordPiece('contriever');
    expect(pieces.length).toBeGreaterThan(1);
    expect(pieces.slice(1).every((p) => p.startsWith('##'))).toBe(true);
    expect(bert.encode('Contriever', { addSpecialTokens: false })).toEqual(pieces.map(bertId));
  });

  it('knows its special tokens and vocabulary size', () => {
    expect(bert.padId).toBe(0);
    expect(bert.numSpecialTokens).toBe(2);
    expect(bert.vocabSize).toBe(30522);
    expect(bert.tokenToId('[MASK]')).toBe(103);
  });

  it('truncates between [CLS] and [SEP] and pads with [PAD]', () => {
    const batch = bert.encodeBatch(['who wrote hamlet?', 'hamlet'], { maxLength: 4 });
    expect(batch.length).toBe(4);
    expect([...batch.inputIds]).toEqual([101, 2040, 2626, 102, 101, 8429, 102, 0]);
    expect([...batch.attentionMask]).toEqual([1, 1, 1, 1, 1, 1, 1, 0]);
  });

  it('decodes without special tokens', () => {
    expect(bert.decode(bert.encode('Who wrote Hamlet?'))).toBe('who wrote hamlet?');
  });
});

describe('loading tokenizer files', () => {
  it('says the tokenizer is missing when a folder has no tokenizer.json', async () => {
    const empty = await mkdtemp(join(tmpdir(), 'corag-tok-'));
    await expect(loadTokenizer(folderModelSource(empty))).rejects.toThrow(`tokenizer missing: ${empty} has no tokenizer.json`);
  });

  it('rejects tokenizer.json that is not JSON or not a tokenizers file', async () => {
    const folder = await mkdtemp(join(tmpdir(), 'corag-tok-'));
    await writeFile(join(folder, 'tokenizer.json'), '{"version": ');
    await expect(loadTokenizer(folderModelSource(folder))).rejects.toThrow(`${folder}: tokenizer.json is not valid JSON`);
    await writeFile(join(folder, 'tokenizer.json'), '{"version": "1.0"}');
    await expect(loadTokenizer(folderModelSource(folder))).rejects.toThrow('tokenizer.json has no "model" section');
  });

  it('works without tokenizer_config.json, finding the pad token by its usual name', async () => {
    const folder = await mkdtemp(join(tmpdir(), 'corag-tok-'));
    await writeFile(join(folder, 'tokenizer.json'), await readFile(join(TOKENIZERS, 't5', 'tokenizer.json')));
    const tokenizer = await loadTokenizer(folderModelSource(folder));
    expect(tokenizer.padId).toBe(0);
    expect(tokenizer.encode(ATLAS_INPUT)).toEqual(t5.encode(ATLAS_INPUT));
  });
});
