import { describe, expect, it } from 'vitest';
import { Rng } from '../../src/pretrain/rng';
import { PersonLexicon, typedAnswers, typedClozeExamples, typedQuestion, type AnswerType } from '../../src/pretrain/typed-questions';

const typesOf = (sentence: string) => Object.fromEntries(typedAnswers(sentence).map((a) => [a.text, a.type]));

describe('typed answers', () => {
  it('types dates, months, years, decades, money, percentages and counts', () => {
    expect(typesOf('The game was played on February 7, 2016, at the stadium.')).toMatchObject({ 'February 7, 2016': 'date' });
    // A sentence-initial "In" is not part of a name, so the month and its year stay one answer.
    expect(typesOf('In December 2013 it was announced that he would become provost.')).toMatchObject({ 'December 2013': 'month' });
    expect(typesOf('In 1947, the network submitted licences for its stations.')).toMatchObject({ 1947: 'year' });
    expect(typesOf('The colonies gained independence in the 1820s after long wars.')).toMatchObject({ '1820s': 'decade' });
    expect(typesOf('Edison offered him $10 million for the work on the motor.')).toMatchObject({ '$10 million': 'money' });
    expect(typesOf('The committee gave 25% of the money raised to charity.')).toMatchObject({ '25%': 'percent' });
    const count = typedAnswers('The façades surround four levels of galleries in the museum.').find((a) => a.type === 'count')!;
    expect(count).toMatchObject({ text: 'four', countedNoun: 'levels' });
  });

  it('types names as people, places or organisations from the words around them', () => {
    expect(typesOf('The engine was designed by Nikola Tesla, who moved to New York in 1884.')).toMatchObject({ 'Nikola Tesla': 'person', 1884: 'year' });
    expect(typesOf('King Malcolm III of Scotland married the sister of the claimant.')).toMatchObject({ 'King Malcolm III of Scotland': 'person' });
    expect(typesOf('The claimant eventually fled to Scotland with his family.')).toMatchObject({ Scotland: 'place' });
    expect(typesOf('He taught at the University of Chicago for many years.')).toMatchObject({ 'University of Chicago': 'organization' });
    expect(typesOf('Today the physicist Albert Einstein is the best known of them.')).toMatchObject({ 'Albert Einstein': 'person' });
  });

  it('finds lower-case noun phrases after a determiner, not overlapping names', () => {
    const answers = typedAnswers('Proplastids may develop into the chromoplasts of fruit in the Amazon.');
    // A phrase may hold "of" ("board of trustees"), so it runs to the next other function word.
    expect(answers).toContainEqual(expect.objectContaining({ text: 'chromoplasts of fruit', type: 'phrase' }));
    expect(answers.filter((a) => a.type === 'phrase').map((a) => a.text)).not.toContain('Amazon');
  });

  it('skips answers a question could not single out: list items, possessives, nationality adjectives', () => {
    const list = typedAnswers('Families of the names Bruce, Gray, Ramsay, Fraser and Gordon can be traced back to Norman ancestry.');
    expect(list.map((a) => a.text)).not.toEqual(expect.arrayContaining(['Bruce']));
    expect(list.map((a) => a.text).filter((t) => ['Gray', 'Ramsay', 'Fraser', 'Gordon'].includes(t))).toEqual([]);
    expect(typedAnswers("The king married Edgar's sister in the spring.").map((a) => a.text)).not.toContain("Edgar's");
    expect(typedAnswers('One of the claimants of the English throne fled north.').map((a) => a.text)).not.toContain('English');
  });

  it('a corpus lexicon makes a name person everywhere once two cues say so, unless it names places more often', () => {
    const people = PersonLexicon.fromTexts([
      'The motor was built by Nikola Tesla, who worked alone.',
      'In 1891 Tesla said that the coil would work.',
      'Thomas Edison wrote to the press about it.',
    ]);
    // "Tesla" had two person cues ("Nikola Tesla, who", "Tesla said").
    expect(typedAnswers('The laboratory of Tesla burned down.', people).find((a) => a.text === 'Tesla')?.type).toBe('person');
    // "Edison" had one: not enough.
    expect(typedAnswers('The laboratory of Edison burned down.', people).find((a) => a.text === 'Edison')?.type).toBe('thing');
    const places = PersonLexicon.fromTexts(['Sydney said that it would rain.', 'Sydney wrote the report.', 'They lived in Sydney for years.', 'He moved to Sydney.', 'Rain fell in Sydney all week.']);
    expect(typedAnswers('The harbour of Sydney was busy.', places).find((a) => a.text === 'Sydney')?.type).toBe('thing');
  });
});

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

  it('lower-cases the sentence\'s first word when it is a function word that moves behind the question word', () => {
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
    const text = 'The Rhine is a European river that begins in the Swiss canton of Graubünden in the southeastern Swiss Alps. It forms part of the Swiss-Austrian border and flows for 1,230 kilometres through the Netherlands. In 1815, the Congress of Vienna made the river an international waterway with free navigation for all ships.';
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
