import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { PassageSpanConstraint, RULED_OUT, sentencePieceWords, teacherForcedMask } from '../../src/corag/extractive';
import { candidateAnswers, generateAnswers } from '../../src/corag/reader';
import { rerankAnswers } from '../../src/corag/answer-rerank';
import type { ModelBundle } from '../../src/corag/model-bundle';
import { initBackend } from '../../src/model/backend';
import { TextTokenizer } from '../../src/model/tokenizer';
import { tinyBundle } from './helpers';

const T5_DIR = new URL('../../public/models/tokenizers/t5/', import.meta.url);
const tokenizer = TextTokenizer.fromJson(
  JSON.parse(readFileSync(new URL('tokenizer.json', T5_DIR), 'utf8')),
  JSON.parse(readFileSync(new URL('tokenizer_config.json', T5_DIR), 'utf8')),
);
const id = (piece: string) => tokenizer.tokenToId(piece)!;
const SENTINEL = id('<extra_id_0>');
const EOS = 1;

describe('PassageSpanConstraint', () => {
  const passage = 'The Denver Broncos defeated the Carolina Panthers.';
  const ids = tokenizer.encode(passage, { addSpecialTokens: false });
  const constraint = new PassageSpanConstraint([[ids]], { sentinelId: SENTINEL, eosId: EOS, words: sentencePieceWords(tokenizer) });

  it('forces the sentinel first', () => {
    expect(constraint.allowedNext(0, [])).toEqual([SENTINEL]);
  });

  it('starts answers only at the first piece of a word, and not with EOS', () => {
    const starts = constraint.allowedNext(0, [SENTINEL])!;
    const wordStarts = ids.filter((t) => tokenizer.idToToken(t)!.startsWith('\u2581'));
    expect(new Set(starts)).toEqual(new Set(wordStarts));
    expect(starts).not.toContain(EOS);
  });

  it('does not end inside a word or on punctuation, and ends after a whole word', () => {
    const broncos = tokenizer.encode('Broncos', { addSpecialTokens: false });
    expect(broncos.length).toBeGreaterThan(1); // "▁Bronco" "s": the case this test is about
    const midWord = constraint.allowedNext(0, [SENTINEL, id('\u2581Denver'), ...broncos.slice(0, -1)])!;
    expect(midWord).toEqual([broncos[broncos.length - 1]]);
    const wholeWord = constraint.allowedNext(0, [SENTINEL, id('\u2581Denver'), ...broncos])!;
    expect(new Set(wholeWord)).toEqual(new Set([EOS, id('\u2581defeated')]));
    const panthers = tokenizer.encode('Carolina Panthers', { addSpecialTokens: false });
    const beforeFullStop = constraint.allowedNext(0, [SENTINEL, ...panthers])!;
    expect(beforeFullStop).toContain(EOS);
    // The passage's final full stop is never offered: an answer cannot end on punctuation.
    expect(tokenizer.idToToken(ids[ids.length - 1])).toBe('.');
    expect(beforeFullStop).toEqual([EOS]);
  });

  it('continues every occurrence of a repeated word ("the" is followed by two different words)', () => {
    const the = tokenizer.encode('the', { addSpecialTokens: false });
    const next = constraint.allowedNext(0, [SENTINEL, ...the])!;
    expect(next).toContain(tokenizer.encode('Carolina', { addSpecialTokens: false })[0]);
    expect(next).toContain(EOS);
  });

  it('leaves only the end for a prefix that occurs in no passage', () => {
    expect(constraint.allowedNext(0, [SENTINEL, id('\u2581Panthers'), id('\u2581Denver')])).toEqual([]);
  });

  it("with the question's pieces, a span that only repeats question words may not end, while one with a new word may", () => {
    const question = new Set(tokenizer.encode('Who did the Denver Broncos defeat?', { addSpecialTokens: false }));
    const guarded = new PassageSpanConstraint([[ids]], { sentinelId: SENTINEL, eosId: EOS, words: sentencePieceWords(tokenizer), questionPieces: [question] });
    const denverBroncos = [id('\u2581Denver'), ...tokenizer.encode('Broncos', { addSpecialTokens: false })];
    expect(constraint.allowedNext(0, [SENTINEL, ...denverBroncos])).toContain(EOS);
    expect(guarded.allowedNext(0, [SENTINEL, ...denverBroncos])).toEqual([id('\u2581defeated')]);
    const panthers = tokenizer.encode('Carolina Panthers', { addSpecialTokens: false });
    expect(guarded.allowedNext(0, [SENTINEL, ...panthers])).toEqual([EOS]);
    // "the Carolina": "the" is a question word, "Carolina" is not.
    expect(guarded.allowedNext(0, [SENTINEL, id('\u2581the'), panthers[0]])).toContain(EOS);
  });

  it('keeps each example to its own passages', () => {
    const two = new PassageSpanConstraint([[ids], [tokenizer.encode('Levi Stadium', { addSpecialTokens: false })]], {
      sentinelId: SENTINEL,
      eosId: EOS,
      words: sentencePieceWords(tokenizer),
    });
    expect(new Set(two.allowedNext(1, [SENTINEL]))).toEqual(
      new Set(tokenizer.encode('Levi Stadium', { addSpecialTokens: false }).filter((t) => tokenizer.idToToken(t)!.startsWith('\u2581'))),
    );
  });
});

describe('extractive generateAnswers', () => {
  let bundle: ModelBundle;
  beforeAll(async () => {
    await initBackend('cpu');
    bundle = await tinyBundle();
  });

  const passages = [
    [{ title: 'Super Bowl 50', text: 'Super Bowl 50 was played on February 7, 2016 at Levi Stadium in Santa Clara.' }],
    [{ title: 'Denver', text: 'The Denver Broncos defeated the Carolina Panthers to earn their third title.' }],
  ];
  const questions = ['When was Super Bowl 50 played?', 'Who won Super Bowl 50?'];

  it('answers each question with whole words of its own passage (greedy and beam search)', async () => {
    for (const numBeams of [1, 3]) {
      const answers = await generateAnswers(bundle, questions, passages, { maxNewTokens: 6, maxLength: 48, extractive: true, numBeams });
      answers.forEach((a, i) => {
        expect(a.answer.length, `question ${i}, ${numBeams} beams`).toBeGreaterThan(0);
        // Whole words: the answer is bounded by spaces, punctuation or the text's ends.
        expect(` ${passages[i][0].text} `).toMatch(new RegExp(`[\\s]${a.answer.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}[\\s.,]`));
      });
    }
  });

  it("with answer reranking picks, among the reader's candidates, the one the weights prefer; null or no weights keep its first choice", async () => {
    const beams = 6;
    const candidates = await candidateAnswers(bundle, questions, passages, beams, { maxNewTokens: 6, maxLength: 48, extractive: true });
    const firstChoice = await generateAnswers(bundle, questions, passages, { maxNewTokens: 6, maxLength: 48, extractive: true, numBeams: beams });
    expect(firstChoice.map((a) => a.answer)).toEqual(candidates.map((c) => c[0].text));
    // Reader weight 0, proximity alone: the candidate nearest the question's words wins.
    const rerank = { beams, reader: 0, type: 0, proximity: 1, questionOverlap: 0 };
    const reranked = await generateAnswers(bundle, questions, passages, { maxNewTokens: 6, maxLength: 48, extractive: true, rerank });
    reranked.forEach((a, i) => {
      const expected = rerankAnswers(
        candidates[i],
        questions[i],
        passages[i].map((p) => p.text),
        rerank,
      )[0].candidate.text;
      expect(a.answer).toBe(expected);
    });
    // A reader whose config.json carries corag.answer_rerank gets it by default; null turns it off.
    const fitted = Object.create(bundle, { policy: { value: { ...bundle.policy, reader: { answerRerank: rerank } } } }) as ModelBundle;
    expect((await generateAnswers(fitted, questions, passages, { maxNewTokens: 6, maxLength: 48, extractive: true })).map((a) => a.answer)).toEqual(
      reranked.map((a) => a.answer),
    );
    const off = await generateAnswers(fitted, questions, passages, { maxNewTokens: 6, maxLength: 48, extractive: true, rerank: null });
    expect(off.map((a) => a.answer)).toEqual(
      (await generateAnswers(bundle, questions, passages, { maxNewTokens: 6, maxLength: 48, extractive: true })).map((a) => a.answer),
    );
  });

  it('leaves a closed-book row (no passage text) free while constraining the others', async () => {
    const answers = await generateAnswers(bundle, questions, [[{ title: '', text: '' }], passages[1]], { maxNewTokens: 4, maxLength: 48, extractive: true });
    expect(passages[1][0].text).toContain(answers[1].answer);
    expect(answers[1].answer.length).toBeGreaterThan(0);
  });
});

describe('teacherForcedMask', () => {
  const words = { startsWord: () => true, continuesWord: () => false, hasWordCharacters: () => true };
  // One example, passage [5, 6, 7]; labels: answer 6 7 then EOS (1), then an ignored position.
  const constraint = new PassageSpanConstraint([[[5, 6, 7]]], { eosId: 1, words });
  const mask = teacherForcedMask(constraint, [6, 7, 1, -100], 1, 4, 10);
  const allowedAt = (t: number) => [...mask.slice(t * 10, (t + 1) * 10)].flatMap((v, id) => (v === 0 ? [id] : []));

  it('allows at each position what the constraint allows after the labels before it, and the label', () => {
    expect(allowedAt(0)).toEqual([5, 6, 7]); // any span start
    expect(allowedAt(1)).toEqual([1, 7]); // after "6": end, or continue with 7
    expect(allowedAt(2)).toEqual([1]); // after "6 7": the passage ends
    expect(mask[0 * 10 + 9]).toBe(RULED_OUT);
  });

  it('leaves ignored positions unrestricted and keeps a non-span label finite', () => {
    expect(allowedAt(3)).toHaveLength(10);
    const offSpan = teacherForcedMask(constraint, [9, 1], 1, 2, 10);
    expect(offSpan[9]).toBe(0);
  });
});
