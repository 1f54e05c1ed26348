import { describe, expect, it } from 'vitest';
import { categoryQuery, containsAnswer, PassageCategorizer } from '../../src/crab/categories';
import { normalizeAnswer } from '../../src/text/answer-metrics';
import type { Passage } from '../../src/crab/types';

// A hand-made corpus about one question, "Where was Nikola Tesla born?" (answer: Smiljan).
const corpus: Passage[] = [
  { id: 'p1', title: 'Nikola Tesla', text: 'Nikola Tesla was born in Smiljan, in the Austrian Empire.' },
  { id: 'p2', title: 'Nikola Tesla', text: 'Tesla was born on 10 July 1856; his birthplace Smiljan is a village.' },
  { id: 'p3', title: 'Nikola Tesla', text: 'Tesla was born an ethnic Serb and later moved to New York.' },
  { id: 'p4', title: 'Smiljanić', text: 'Smiljanić is a surname; Tesla fans sometimes misspell it.' },
  { id: 'p5', title: 'Edison', text: 'Thomas Edison was born in Milan, Ohio, and worked with Tesla.' },
  { id: 'p6', title: 'Weather', text: 'Rain and snow are common in mountain villages in winter.' },
  { id: 'p7', title: 'Cooking', text: 'Bread is baked from flour, water and yeast.' },
];
const qa = { id: 'q1', question: 'Where was Nikola Tesla born?', answers: ['Smiljan', 'Smiljan'] };

describe('PassageCategorizer', () => {
  it('marks a top-ranked passage relevant only when it contains a gold answer', () => {
    const categorizer = new PassageCategorizer(corpus, { relevantDepth: 3, hardNegativeDepth: 5 });
    const c = categorizer.categorize(qa);
    // Top 3 for "Where was Nikola Tesla born? Smiljan": p1, p2 (both name Smiljan) and p3.
    // p3 is ranked but lacks the answer: neither relevant nor a hard negative.
    expect(c.relevant).toEqual(['p1', 'p2']);
    expect(c.hardNegatives).toEqual(['p5', 'p4']); // ranks 4 and 5
    expect(c.relevant).not.toContain('p3');
  });

  it('uses ranks relevantDepth+1 … hardNegativeDepth without a gold answer as hard negatives, the rest is irrelevant', () => {
    const categorizer = new PassageCategorizer(corpus, { relevantDepth: 1, hardNegativeDepth: 3 });
    const c = categorizer.categorize(qa);
    expect(c.relevant).toEqual(['p1']);
    // p2 is ranked 2nd but names Smiljan: it answers the question, so it is no hard negative (the paper's rule).
    expect(c.hardNegatives).toEqual(['p3']);
    expect(c.hardNegatives).not.toContain('p2');
  });

  it('finds no relevant passage when the answer is nowhere in the top ranks', () => {
    const categorizer = new PassageCategorizer(corpus);
    const c = categorizer.categorize({ id: 'q2', question: 'What is bread made of?', answers: ['sourdough starter'] });
    expect(c.relevant).toEqual([]);
    expect(c.hardNegatives).toEqual([]); // only 2 passages match at all, both inside the top 5
  });

  it('has the recipe defaults (top 5, ranks 6-50) and rejects inconsistent depths', () => {
    const categorizer = new PassageCategorizer(corpus);
    expect([categorizer.relevantDepth, categorizer.hardNegativeDepth]).toEqual([5, 50]);
    expect(() => new PassageCategorizer(corpus, { relevantDepth: 6, hardNegativeDepth: 5 })).toThrow(/relevantDepth <= hardNegativeDepth/);
  });
});

describe('answer containment and query', () => {
  it('matches normalised answers on whole tokens only', () => {
    const passage = normalizeAnswer('He was born in 1856, in Smiljan (now Croatia).');
    expect(containsAnswer(passage, ['smiljan'])).toBe(true);
    expect(containsAnswer(passage, ['The 1856'])).toBe(true);
    expect(containsAnswer(passage, ['185'])).toBe(false);
    expect(containsAnswer(passage, ['the'])).toBe(false); // normalises to nothing
  });

  it('queries with the question and each distinct answer', () => {
    expect(categoryQuery(qa)).toBe('Where was Nikola Tesla born? Smiljan');
  });
});
