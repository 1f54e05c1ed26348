import { beforeAll, describe, expect, it } from 'vitest';
import { preparePretrainData, type PretrainData } from '../../src/pretrain/data';
import { spanWindow } from '../../src/pretrain/windows';
import { tinyCorpus, tinyPretrainData } from './tiny-pretrain';

let data: PretrainData;

beforeAll(() => {
  data = tinyPretrainData();
});

describe('preparePretrainData', () => {
  it('prepares both kinds of examples from the passages', () => {
    expect(data.examples.some((e) => e.kind === 'mlm')).toBe(true);
    expect(data.examples.some((e) => e.kind === 'cloze')).toBe(true);
  });

  it('with clozeContextWords N, a cloze target starts with the N words before the answer', () => {
    const { passages, reader, retriever } = tinyCorpus();
    const plain = preparePretrainData(passages, reader, retriever, { seed: 7, mlmPerPassage: 0, clozePerPassage: 2 });
    const prefixed = preparePretrainData(passages, reader, retriever, { seed: 7, mlmPerPassage: 0, clozePerPassage: 2, clozeContextWords: 2 });
    expect(prefixed.examples.length).toBe(plain.examples.length);
    let longer = 0;
    prefixed.examples.forEach((ex, i) => {
      const answer = reader.decode(plain.examples[i].target).replace('<extra_id_0>', '').trim();
      const target = reader.decode(ex.target).replace('<extra_id_0>', '').trim();
      expect(target.endsWith(answer)).toBe(true);
      const context = target.slice(0, target.length - answer.length).trim();
      expect(context.split(/\s+/).filter(Boolean).length).toBeLessThanOrEqual(2);
      if (context) {
        longer++;
        // Compared on letters and digits only: the tokenizer's decode normalises quotes and spaces.
        const bare = (t: string) => t.replace(/[^\p{L}\p{N}]/gu, '');
        expect(bare(passages[ex.passage].text)).toContain(bare(`${context}${answer}`));
      }
    });
    expect(longer).toBeGreaterThan(prefixed.examples.length / 2);
  });

  it('with questionStyleShare 1 every cloze question opens with a question word and keeps its answer; share 0 leaves the data as it was', () => {
    const { passages, reader, retriever } = tinyCorpus();
    const plain = preparePretrainData(passages, reader, retriever, { seed: 7, mlmPerPassage: 1, clozePerPassage: 2 });
    const zero = preparePretrainData(passages, reader, retriever, { seed: 7, mlmPerPassage: 1, clozePerPassage: 2, questionStyleShare: 0 });
    expect(zero).toEqual(plain);
    const styled = preparePretrainData(passages, reader, retriever, { seed: 7, mlmPerPassage: 1, clozePerPassage: 2, questionStyleShare: 1 });
    const cloze = styled.examples.filter((e) => e.kind === 'cloze');
    expect(cloze.length).toBe(plain.examples.filter((e) => e.kind === 'cloze').length);
    for (const ex of cloze) {
      expect(reader.decode(ex.readerQuery)).toMatch(/^question: (When|What|On what|In what|How many|Which|Who)\b.*\? answer:/);
      expect(retriever.decode(ex.retrieverQuery)).toMatch(/^(when|what|on what|in what|how many|which|who)\b/);
    }
  });

  it('with questionGenerator "typed" the cloze targets are spans of their passage and the masked spans are as before', () => {
    const { passages, reader, retriever } = tinyCorpus();
    const options = { seed: 7, mlmPerPassage: 1, clozePerPassage: 3, questionStyleShare: 0.85 };
    const plain = preparePretrainData(passages, reader, retriever, options);
    const typed = preparePretrainData(passages, reader, retriever, { ...options, questionGenerator: 'typed' });
    const cloze = typed.examples.filter((e) => e.kind === 'cloze');
    expect(cloze.length).toBeGreaterThan(0);
    for (const ex of cloze) {
      const answer = reader.decode(ex.target).replace('<extra_id_0>', '').trim();
      expect(passages[ex.passage].text.replace(/\s+/g, ' ')).toContain(answer);
      expect(reader.decode(ex.readerQuery), reader.decode(ex.readerQuery)).toMatch(/^question: .+\? answer:/);
    }
    // The first passage's masked span is drawn before any question, so it is the same in both.
    expect(typed.examples[0]).toEqual(plain.examples[0]);
  });
});

describe('spanWindow (mlmWithSource) on prepared data', () => {
  it("finds each prepared masked span's first span in its source passage", () => {
    const mlm = data.examples.filter((e) => e.kind === 'mlm');
    expect(mlm.length).toBeGreaterThan(5);
    let found = 0;
    for (const ex of mlm) {
      const ids = data.passages[ex.passage].readerIds;
      const window = spanWindow(ids, ex.anchor!, 48);
      if (ex.anchor!.length > 0 && window.some((_, i) => ex.anchor!.every((t, k) => window[i + k] === t))) found++;
    }
    // Tokenized alone a span can differ from in context (a word glued to punctuation): most match.
    expect(found).toBeGreaterThan(mlm.length * 0.7);
  });
});
