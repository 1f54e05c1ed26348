import { describe, expect, it } from 'vitest';
import { exactMatch, f1Score, normalizeAnswer, scoreAnswers, tokenF1 } from '../../src/text/answer-metrics';

// Expected values follow evaluate-v1.1.py step by step:
// normalize = white_space_fix(remove_articles(remove_punc(lower(s)))), EM/F1 = max over golds.
describe('normalizeAnswer', () => {
  it('lower-cases, removes punctuation and the articles a/an/the, collapses whitespace', () => {
    expect(normalizeAnswer('The Denver Broncos!')).toBe('denver broncos');
    expect(normalizeAnswer("  a  Cat's   pajamas ")).toBe('cats pajamas');
    expect(normalizeAnswer('An (American) football game')).toBe('american football game');
  });

  it('removes articles only as whole words', () => {
    expect(normalizeAnswer('The theater and another anthem')).toBe('theater and another anthem');
  });

  it('removes articles exposed by punctuation removal, as the official order does', () => {
    // "the-end" -> "theend" (punctuation first) so nothing is removed; "(the) end" -> "the end" -> "end".
    expect(normalizeAnswer('the-end')).toBe('theend');
    expect(normalizeAnswer('(the) end')).toBe('end');
  });

  it('keeps non-ASCII punctuation and letters (string.punctuation is ASCII only)', () => {
    expect(normalizeAnswer('24–10')).toBe('24–10');
    expect(normalizeAnswer('Beyoncé')).toBe('beyoncé');
    // Python's \b treats é as a word character, so the "a" in "éa" is not an article.
    expect(normalizeAnswer('éa a')).toBe('éa');
  });
});

describe('exactMatch', () => {
  it('is 1 when the normalised prediction equals any gold answer', () => {
    const golds = ['Denver Broncos', 'The Denver Broncos'];
    expect(exactMatch('the denver broncos.', golds)).toBe(1);
    expect(exactMatch('Broncos', golds)).toBe(0);
  });

  it('matches an empty prediction to a gold answer that normalises to nothing', () => {
    expect(exactMatch('', ['The'])).toBe(1);
    expect(exactMatch('', ['Tesla'])).toBe(0);
  });
});

describe('f1Score', () => {
  it('computes token F1 from precision and recall of the bag of tokens', () => {
    // 2 of 3 predicted tokens are gold (P = 2/3), all gold found (R = 1): F1 = 0.8.
    expect(f1Score('Denver Broncos team', ['Denver Broncos'])).toBeCloseTo(0.8, 12);
  });

  it('takes the maximum over gold answers', () => {
    // vs "Carolina Panthers": P = 1, R = 1/2 -> 2/3; vs "Panthers": 0.
    expect(f1Score('Carolina', ['Carolina Panthers', 'Panthers'])).toBeCloseTo(2 / 3, 12);
  });

  it('counts repeated tokens at most as often as they occur in the gold answer', () => {
    // "the the cat cat" -> "cat cat"; one common token: P = 1/2, R = 1 -> 2/3.
    expect(tokenF1('the the cat cat', 'cat')).toBeCloseTo(2 / 3, 12);
  });

  it('is 0 without common tokens or without gold answers', () => {
    expect(f1Score('Santa Clara', ['Levi Stadium'])).toBe(0);
    expect(f1Score('x', [])).toBe(0);
  });
});

describe('scoreAnswers', () => {
  it('averages EM and F1 over examples', () => {
    const s = scoreAnswers([
      { prediction: 'Denver Broncos', answers: ['Denver Broncos'] },
      { prediction: 'Denver Broncos team', answers: ['Denver Broncos'] },
    ]);
    expect(s.count).toBe(2);
    expect(s.exactMatch).toBe(0.5);
    expect(s.f1).toBeCloseTo(0.9, 12);
    expect(scoreAnswers([])).toEqual({ exactMatch: 0, f1: 0, count: 0 });
  });
});
