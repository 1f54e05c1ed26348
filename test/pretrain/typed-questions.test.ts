import { describe, expect, it } from 'vitest';
import { Rng } from '../../src/pretrain/rng';
import { typedAnswers, type AnswerType } from '../../src/text/answer-types';
import { typedClozeExamples, typedQuestion } from '../../src/pretrain/typed-questions';

describe('typed questions', () => {
  const phrasesFor: Record<string, RegExp> = {
    person: /^(Who|Which person|By whom|To whom|From whom|With whom|For whom|Of whom|In whom|On whom|Since whom|During whom) /i,
    year: /^(When|What year|In what year) /i,
    place: /^([A-Za-z]+ )?(Where|What|Which) /i,
    count: /^([A-Za-z]+ )?(How many|What number) /i,
  };

  it('opens with a question word that fits the answer type, and leaves the answer out', () => {
    const sentence = 'In 1884, the engineer Nikola Tesla, who had worked in Paris, moved to New York with four letters of recommendation.';
    const answers = typedAnswers(sentence);
    const rng = new Rng(11);
    for (let round = 0; round < 20; round++) {
      for (const a of answers) {
        const q = typedQuestion(sentence, a, rng, { lowerCase: 0 });
        if (!q) continue;
        expect(q.answer).toBe(a.text);
        expect(q.type).toBe(a.type);
        expect(q.question.endsWith('?')).toBe(true);
        expect(q.question).not.toContain(a.text);
        const expected = phrasesFor[a.type as AnswerType];
        if (expected) expect(q.question, `${a.type}: ${q.question}`).toMatch(expected);
      }
    }
  });

  it('moves the answer preposition into the question phrase and the counted noun into "how many"', () => {
    const sentence = 'In 1947, the network submitted licences for five television stations.';
    const year = typedAnswers(sentence).find((a) => a.type === 'year')!;
    for (let seed = 0; seed < 20; seed++) {
      const q = typedQuestion(sentence, year, new Rng(seed), { dropFunction: 0, dropContent: 0, lowerCase: 0 })!;
      expect(q.question).toMatch(/^(When|What year|In what year) /);
      expect(q.question).not.toMatch(/^(When|What year|In what year) (did |was |is |does |were )?In\b/);
    }
    const levels = 'The façades surround four levels of galleries in the museum.';
    const count = typedAnswers(levels).find((a) => a.type === 'count')!;
    const q = typedQuestion(levels, count, new Rng(1), { dropFunction: 0, dropContent: 0, lowerCase: 0 })!;
    expect(q.question).toMatch(/^How many levels /);
    expect(q.question.match(/levels/g)).toHaveLength(1);
  });

  it('a subject answer keeps the order without an auxiliary; the same seed gives the same question', () => {
    const sentence = 'Richard Geary found that Protestants voted for the party more often than Catholics did.';
    const person = typedAnswers(sentence).find((a) => a.text === 'Richard Geary');
    // No cue types him here, so he is a "thing": the question starts with what/which all the same.
    expect(person).toBeDefined();
    const q = typedQuestion(sentence, person!, new Rng(2), { windowWords: 12, dropFunction: 0, dropContent: 0, lowerCase: 0 })!;
    expect(q.question).toMatch(/^(What|Which) found that Protestants voted for the party more often than Catholics did\?$/);
    expect(typedQuestion(sentence, person!, new Rng(5))).toEqual(typedQuestion(sentence, person!, new Rng(5)));
  });

  it("lower-cases the sentence's first word when it is a function word that moves behind the question word", () => {
    const sentence = 'He began his career as an intern in Chicago in 1992.';
    const year = typedAnswers(sentence).find((a) => a.type === 'year')!;
    for (let seed = 0; seed < 10; seed++) {
      const q = typedQuestion(sentence, year, new Rng(seed), { dropFunction: 0, dropContent: 0, lowerCase: 0 })!;
      expect(q.question).toMatch(/^(When|What year|In what year) (did |was |is |does |were )?he began his career as an intern in Chicago\?$/);
    }
  });

  it('gives up (null) when too little of the clause is left to ask about', () => {
    const sentence = 'It was Tesla.';
    const a = { text: 'Tesla', start: 7, type: 'person' as const };
    expect(typedQuestion(sentence, a, new Rng(1))).toBeNull();
  });

  it('a passage gives at most `count` questions, at most a third of them noun phrases, every answer from the passage', () => {
    const text =
      'The Rhine is a European river that begins in the Swiss canton of Graubünden in the southeastern Swiss Alps. It forms part of the Swiss-Austrian border and flows for 1,230 kilometres through the Netherlands. In 1815, the Congress of Vienna made the river an international waterway with free navigation for all ships.';
    for (let seed = 1; seed <= 5; seed++) {
      const qs = typedClozeExamples(text, new Rng(seed), 6, 0.85);
      expect(qs.length).toBeGreaterThan(0);
      expect(qs.length).toBeLessThanOrEqual(6);
      expect(qs.filter((q) => q.type === 'phrase').length).toBeLessThanOrEqual(2);
      for (const q of qs) {
        expect(text).toContain(q.answer);
        expect(q.question.endsWith('?')).toBe(true);
      }
    }
    expect(typedClozeExamples(text, new Rng(3), 6, 0.85)).toEqual(typedClozeExamples(text, new Rng(3), 6, 0.85));
  });
});
