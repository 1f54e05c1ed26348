import { describe, expect, it } from 'vitest';
import { Bm25Index, compareIds, ENGLISH_STOPWORDS, tokenizeForBm25 } from '../../src/retrieval/bm25';

// Four documents, no stop word removal: lengths 4, 3, 3, 2, so avgdl = 12 / 4 = 3 and N = 4.
const corpus = [
  { id: 'd1', text: 'the quick brown fox' },
  { id: 'd2', text: 'quick quick dog' },
  { id: 'd3', text: 'lazy dog sleeps' },
  { id: 'd4', text: 'brown bear' },
];
// With k1 = 0.9, b = 0.4: k1·(1 − b + b·|d|/avgdl) is 0.9·(0.6 + 0.4·4/3) = 1.02 for d1 and
// 0.9·(0.6 + 0.4) = 0.9 for the 3-word documents; "quick" and "dog" both have df = 2, so
// idf = ln(1 + (4 − 2 + 0.5)/(2 + 0.5)) = ln 2.
const LN2 = Math.log(2);

describe('Bm25Index', () => {
  const index = new Bm25Index(corpus);

  it('uses the Pyserini defaults k1 = 0.9, b = 0.4', () => {
    expect(index.k1).toBe(0.9);
    expect(index.b).toBe(0.4);
    expect(index.averageLength).toBe(3);
  });

  it('computes Lucene idf = ln(1 + (N − df + 0.5)/(df + 0.5))', () => {
    expect(index.idf('quick')).toBeCloseTo(LN2, 12);
    expect(index.idf('fox')).toBeCloseTo(Math.log(1 + 3.5 / 1.5), 12); // df = 1
    expect(index.idf('unicorn')).toBeCloseTo(Math.log(1 + 4.5 / 0.5), 12); // df = 0
  });

  it('scores and ranks documents as computed by hand', () => {
    const hits = index.search('quick dog', 10);
    const d2 = LN2 * (2 / (2 + 0.9) + 1 / (1 + 0.9)); // quick tf 2, dog tf 1
    const d3 = LN2 * (1 / (1 + 0.9)); // dog tf 1
    const d1 = LN2 * (1 / (1 + 1.02)); // quick tf 1, longer document
    expect(hits.map((h) => h.id)).toEqual(['d2', 'd3', 'd1']); // d4 shares no term: not returned
    expect(hits[0].score).toBeCloseTo(d2, 12);
    expect(hits[1].score).toBeCloseTo(d3, 12);
    expect(hits[2].score).toBeCloseTo(d1, 12);
    expect(hits[0].index).toBe(1);
    expect(index.score('quick dog', 0)).toBeCloseTo(d1, 12);
  });

  it('counts a repeated query term once per occurrence', () => {
    const once = index.search('fox', 1)[0].score;
    expect(index.search('fox fox', 1)[0].score).toBeCloseTo(2 * once, 12);
  });

  it('returns at most k hits and gives the same answer on repeated searches', () => {
    expect(index.search('quick dog', 2).map((h) => h.id)).toEqual(['d2', 'd3']);
    expect(index.search('quick dog', 0)).toEqual([]);
    expect(index.search('quick dog', 10)).toEqual(index.search('quick dog', 10));
  });

  it('breaks score ties by document id, numerically for digit-only ids', () => {
    const tied = new Bm25Index([
      { id: '10', text: 'same words' },
      { id: 'b', text: 'same words' },
      { id: '9', text: 'same words' },
      { id: 'a', text: 'same words' },
    ]);
    expect(tied.search('same', 4).map((h) => h.id)).toEqual(['9', '10', 'a', 'b']);
    expect(tied.search('same', 2).map((h) => h.id)).toEqual(['9', '10']);
    expect(compareIds('007', '7')).toBe(0);
    expect(compareIds('x10', 'x9')).toBeLessThan(0); // not digit-only: code-unit order
  });

  it('rejects duplicate ids and invalid parameters', () => {
    expect(
      () =>
        new Bm25Index([
          { id: 'x', text: 'a' },
          { id: 'x', text: 'b' },
        ]),
    ).toThrow(/duplicate document id "x"/);
    expect(() => new Bm25Index(corpus, { b: 2 })).toThrow(/0 <= b <= 1/);
  });

  it('ignores stop words in documents and queries when asked', () => {
    const withStop = new Bm25Index(corpus, { stopwords: true });
    expect(withStop.documentLength(0)).toBe(3); // "the" dropped
    expect(withStop.search('the', 5)).toEqual([]);
  });
});

describe('tokenizeForBm25', () => {
  it('lower-cases, splits on anything that is not a letter, digit or mark, keeps Unicode letters', () => {
    expect(tokenizeForBm25("The U.S.-based Café's 2 don't")).toEqual(['the', 'u', 's', 'based', 'café', 's', '2', 'don', 't']);
  });

  it('applies NFKC so compatibility forms match their plain letters', () => {
    expect(tokenizeForBm25('ﬁne Ｔｅｓｌａ')).toEqual(['fine', 'tesla']);
  });

  it('drops Lucene English stop words only when asked', () => {
    expect(tokenizeForBm25('The cat and the hat', { stopwords: true })).toEqual(['cat', 'hat']);
    expect(tokenizeForBm25('The cat', { stopwords: new Set(['cat']) })).toEqual(['the']);
    expect(ENGLISH_STOPWORDS.size).toBe(33);
  });
});
