import { describe, expect, it } from 'vitest';
import { PersonLexicon, typedAnswers } from '../../src/text/answer-types';

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
    const places = PersonLexicon.fromTexts([
      'Sydney said that it would rain.',
      'Sydney wrote the report.',
      'They lived in Sydney for years.',
      'He moved to Sydney.',
      'Rain fell in Sydney all week.',
    ]);
    expect(typedAnswers('The harbour of Sydney was busy.', places).find((a) => a.text === 'Sydney')?.type).toBe('thing');
  });
});
