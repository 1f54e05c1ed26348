import { describe, expect, it } from 'vitest';
import { answerFeatures, contentWords, expectedAnswerTypes, rerankAnswers, spanType } from '../../src/corag/answer-rerank';

const PASSAGE =
  'Tesla moved to New York in 1884 to work for Thomas Edison. In 1887 he founded his own company in Manhattan, where he built the first induction motor.';

describe('answer reranking', () => {
  it('reads the answer type a question asks for from its question words', () => {
    expect([...expectedAnswerTypes('In what year did Tesla found his company?')!]).toContain('year');
    expect([...expectedAnswerTypes('When did Tesla move to New York?')!]).toContain('date');
    expect([...expectedAnswerTypes('How many motors did he build?')!]).toContain('count');
    expect([...expectedAnswerTypes('How much money did Edison offer?')!]).toContain('money');
    expect([...expectedAnswerTypes('Who did Tesla work for?')!]).toEqual(['person', 'organization']);
    expect([...expectedAnswerTypes('Where did he build the motor?')!]).toEqual(['place']);
    expect(expectedAnswerTypes('What did Tesla build?')).toBeNull();
  });

  it('types a candidate where it stands in the passage', () => {
    expect(spanType('1887', [PASSAGE])).toBe('year');
    expect(spanType('Manhattan', [PASSAGE])).toBe('place');
    expect(spanType('Thomas Edison', [PASSAGE])).not.toBe('year');
    expect(spanType('first induction motor', [PASSAGE])).toBe('phrase');
    expect(spanType('moved to', [PASSAGE])).toBe('other');
  });

  it('measures how near the question words a candidate stands and how much of it the question repeats', () => {
    const question = 'In what year did Tesla found his own company?';
    const near = answerFeatures('1887', question, [PASSAGE]);
    const far = answerFeatures('1884', question, [PASSAGE]);
    expect(near.typeMatch).toBe(1);
    expect(far.typeMatch).toBe(1);
    expect(near.proximity).toBeGreaterThan(far.proximity);
    expect(answerFeatures('Tesla', question, [PASSAGE]).questionOverlap).toBe(1);
    expect(near.questionOverlap).toBe(0);
    // Content words: no function or question words, plural and verb endings cut.
    expect(contentWords('What did the founders build in 1887?')).toEqual(['founder', 'build', '1887']);
  });

  it('orders candidates by the weighted score, keeping the reader order on ties', () => {
    const question = 'In what year did Tesla found his own company?';
    const candidates = [
      { text: 'Tesla', score: -0.1 },
      { text: '1884', score: -0.5 },
      { text: '1887', score: -0.9 },
    ];
    const passages = [PASSAGE];
    expect(rerankAnswers(candidates, question, passages, { reader: 1, type: 0, proximity: 0, questionOverlap: 0 }).map((r) => r.candidate.text)).toEqual([
      'Tesla',
      '1884',
      '1887',
    ]);
    expect(rerankAnswers(candidates, question, passages, { reader: 0.1, type: 2, proximity: 4, questionOverlap: 1 })[0].candidate.text).toBe('1887');
    expect(rerankAnswers(candidates, question, passages, { reader: 0, type: 0, proximity: 0, questionOverlap: 0 }).map((r) => r.candidate.text)).toEqual([
      'Tesla',
      '1884',
      '1887',
    ]);
    expect(rerankAnswers([], question, passages, { reader: 1, type: 1, proximity: 1, questionOverlap: 1 })).toEqual([]);
  });
});
