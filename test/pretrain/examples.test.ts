import { describe, expect, it } from 'vitest';
import { clozeExamples, maskedSpanExample, questionStyleCloze, randomCrop } from '../../src/pretrain/examples';
import { Rng } from '../../src/pretrain/rng';

const TEXT =
  "The game was played on February 7, 2016, at Levi's Stadium in the San Francisco Bay Area at Santa Clara, California. The Denver Broncos defeated the Carolina Panthers 24–10 to earn their third Super Bowl title.";

describe('self-supervised examples', () => {
  it('cloze questions replace one answer span by a question word, and the answer is in the passage', () => {
    const cloze = clozeExamples(TEXT);
    expect(cloze.length).toBeGreaterThan(3);
    for (const c of cloze) {
      expect(TEXT).toContain(c.answer);
      expect(c.question).not.toContain(c.answer);
      expect(c.question).toMatch(/\b(what|when|how many)\b/);
      // The answer follows its left context directly ("24–10") or after a space.
      expect([`${c.before} ${c.answer}`.trim(), `${c.before}${c.answer}`]).toContainEqual(expect.toSatisfy((s: string) => TEXT.includes(s)));
    }
    expect(cloze).toContainEqual({
      question: "The game was played on when , at Levi's Stadium in the San Francisco Bay Area at Santa Clara, California?",
      answer: 'February 7, 2016',
      before: 'The game was played on',
      after: ", at Levi's Stadium in the San Francisco Bay Area at Santa Clara, California",
    });
    expect(cloze.map((c) => c.answer)).toContain('Carolina Panthers');
  });

  it('a question-style cloze starts with a question word that suits the answer and keeps only words near it, seeded', () => {
    const rng = new Rng(3);
    const sentenceWords = new Set(TEXT.split(/\s+/).map((w) => w.replace(/^["“(]+|[,;:"”).]+$/g, '')));
    for (const c of clozeExamples(TEXT)) {
      const q = questionStyleCloze(c, rng, { windowWords: 4, dropProbability: 0.5 });
      expect(q.answer).toBe(c.answer);
      expect(q.question.endsWith('?')).toBe(true);
      expect(q.question).not.toContain(c.answer);
      const opener = /^(When|What day|On what date|What year|In what year|What month|How many|What number|What|Which|Who) /.exec(q.question);
      expect(opener, q.question).not.toBeNull();
      if (/^\d{4}$/.test(c.answer) || /2016$/.test(c.answer)) expect(opener![1]).toMatch(/When|year|day|date/);
      const context = q.question.slice(opener![0].length, -1).split(' ').filter(Boolean);
      expect(context.length).toBeGreaterThanOrEqual(Math.min(2, c.before.split(' ').length + c.after.split(' ').length));
      expect(context.length).toBeLessThanOrEqual(8);
      for (const w of context) expect(sentenceWords, w).toContain(w);
    }
    const first = clozeExamples(TEXT)[0];
    expect(questionStyleCloze(first, new Rng(9)).question).toBe(questionStyleCloze(first, new Rng(9)).question);
    const date = clozeExamples(TEXT).find((c) => c.answer === 'February 7, 2016')!;
    expect(questionStyleCloze(date, new Rng(1), { dropProbability: 0 }).question).toMatch(
      /^(When|What day|On what date) The game was played on at Levi's Stadium in the San Francisco Bay\?$/,
    );
  });

  it('a masked-span example puts back together into a window of the passage', () => {
    const ex = maskedSpanExample(TEXT, new Rng(3), { windowWords: 20 })!;
    const spans = new Map<string, string>();
    const parts = ex.target.split(/(<extra_id_\d+>)/).filter((s) => s.trim());
    for (let i = 0; i < parts.length; i += 2) spans.set(parts[i], parts[i + 1].trim());
    expect(spans.size).toBeGreaterThan(0);
    const restored = ex.query.replace(/<extra_id_\d+>/g, (s) => spans.get(s)!);
    expect(TEXT.split(/\s+/).join(' ')).toContain(restored);
  });

  it('random crops are contiguous, within the ratio bounds, and reproducible from the seed', () => {
    const ids = Array.from({ length: 100 }, (_, i) => i);
    const a = randomCrop(ids, new Rng(5), 0.1, 0.5);
    expect(randomCrop(ids, new Rng(5), 0.1, 0.5)).toEqual(a);
    expect(a.length).toBeGreaterThanOrEqual(10);
    expect(a.length).toBeLessThanOrEqual(50);
    a.forEach((v, i) => expect(v).toBe(a[0] + i));
  });
});
