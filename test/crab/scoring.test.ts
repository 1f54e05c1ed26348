/** CRAB's tables from predictions: dev-only round selection, one scoring for every method, CIs and claim verdicts. */
import { describe, expect, it } from 'vitest';
import { parsePredictionsJsonl, predictionsJsonl, type PredictionRow } from '../../src/crab/predictions';
import type { Method } from '../../src/crab/runner-config';
import { scoreRows, scoreRun, selectRounds } from '../../src/crab/scoring';

type Answer = { em: 0 | 1; nll?: number };
/** Rows of one (method, shots, seed, round, split): per client, per question, right (1) or wrong (0). */
function rows(
  method: Method,
  shots: number,
  seed: number,
  round: number,
  split: 'dev' | 'test',
  perClient: Answer[][],
  store: PredictionRow['store'] = 'REL',
): PredictionRow[] {
  return perClient.flatMap((answers, client) =>
    answers.map((a, q) => ({
      method,
      shots,
      store,
      seed,
      round,
      split,
      client,
      question_id: `${split}-c${client}-q${q}`,
      prediction: a.em ? 'gold' : 'wrong',
      em: a.em,
      f1: a.em,
      nll_sum: (a.nll ?? (a.em ? 1 : 3)) * 2,
      nll_tokens: 2,
    })),
  );
}
const all = (n: number, em: 0 | 1, nll?: number): Answer[] => Array.from({ length: n }, () => ({ em, nll }));

describe('scoreRows', () => {
  it('averages clients equally (macro) or questions equally (micro), NLL per answer token', () => {
    const r = rows('corag', 16, 0, 0, 'test', [
      [{ em: 1, nll: 1 }],
      [
        { em: 0, nll: 2 },
        { em: 0, nll: 2 },
        { em: 0, nll: 5 },
      ],
    ]);
    expect(scoreRows(r, 'macro')).toEqual({ em: 0.5, f1: 0.5, nll: (1 + 3) / 2 });
    expect(scoreRows(r, 'micro')).toEqual({ em: 0.25, f1: 0.25, nll: 10 / 4 });
  });
});

describe('selectRounds', () => {
  it('picks EM/F1 by dev EM (ties: dev F1, then dev NLL, then earlier) and NLL by the lowest dev NLL, never round 0', () => {
    const dev = new Map([
      [0, { em: 0.9, f1: 0.9, nll: 0.1 }],
      [1, { em: 0.2, f1: 0.3, nll: 3 }],
      [2, { em: 0.5, f1: 0.4, nll: 2 }],
      [3, { em: 0.5, f1: 0.4, nll: 1.5 }],
      [4, { em: 0.5, f1: 0.4, nll: 1.5 }],
    ]);
    expect(selectRounds(dev)).toEqual({ emRound: 3, nllRound: 3, lastRound: 4 });
    expect(() => selectRounds(new Map([[0, { em: 0, f1: 0, nll: 1 }]]))).toThrow(/no trained round/);
  });
});

describe('scoreRun', () => {
  // Two clients × 4 test and 2 dev questions, 2 rounds, 3 seeds. CoRAG: round 1 is best on dev, round 2 on test.
  const corag = [0, 1, 2].flatMap((seed) => [
    ...rows('corag', 16, seed, 0, 'test', [all(4, 0), all(4, 0)]),
    ...rows('corag', 16, seed, 0, 'dev', [all(2, 0), all(2, 0)]),
    ...rows('corag', 16, seed, 1, 'test', [
      [{ em: 1 }, { em: 1 }, { em: 0 }, { em: 0 }],
      [{ em: 1 }, { em: 0 }, { em: 0 }, { em: 0 }],
    ]),
    ...rows('corag', 16, seed, 1, 'dev', [all(2, 1), all(2, 1)]),
    ...rows('corag', 16, seed, 2, 'test', [all(4, 1), all(4, 1)]),
    ...rows('corag', 16, seed, 2, 'dev', [all(2, 0), all(2, 0)]),
  ]);
  // RAG-Local answers nothing; Centralized: client 0 everything, client 1 nothing, at every round.
  const local = [0, 1, 2].flatMap((seed) =>
    [0, 1, 2].flatMap((round) => [
      ...rows('rag-local', 16, seed, round, 'test', [all(4, 0), all(4, 0)]),
      ...rows('rag-local', 16, seed, round, 'dev', [all(2, 0), all(2, 0)]),
    ]),
  );
  const central = [0, 1, 2].flatMap((seed) =>
    [0, 1, 2].flatMap((round) => [
      ...rows('centralized', 16, seed, round, 'test', [all(4, 1), [...all(4, 0), ...all(4, 0)]]),
      ...rows('centralized', 16, seed, round, 'dev', [all(2, 1), all(2, 0)]),
    ]),
  );
  const summary = scoreRun([...corag, ...local, ...central], { replicates: 400, confidence: 0.95, seed: 1 });
  const cell = (m: Method) => summary.cells.find((c) => c.method === m)!;

  it('reports test at the dev-selected round (not the round that is best on test) and at the last round', () => {
    const c = cell('corag');
    expect(c.selection.map((s) => s.emRound)).toEqual([1, 1, 1]);
    expect(c.macro.selected.em).toBeCloseTo((0.5 + 0.25) / 2, 12);
    expect(c.macro.last.em).toBe(1);
    expect(c.macro.roundZero.em).toBe(0);
    expect(c.testQuestions).toBe(8);
    expect(c.devByRound.map((s) => s.em)).toEqual([0, 1, 0]);
  });

  it('scores Centralized like every other method: client-averaged main number, micro beside it', () => {
    const z = cell('centralized');
    expect(z.macro.selected.em).toBe(0.5); // client 0: 4/4, client 1: 0/8
    expect(z.micro.selected.em).toBeCloseTo(4 / 12, 12);
  });

  it('puts CIs on trained vs round 0 and on CoRAG vs the others, and says what the claims get', () => {
    const c = cell('corag');
    expect(c.trainedVsRoundZero.em.estimate).toBeCloseTo(0.375, 12);
    expect(c.trainedVsRoundZero.em.low).toBeGreaterThan(0);
    // RAG-Local never moves: its trained round equals round 0 on every question.
    expect(cell('rag-local').trainedVsRoundZero.em).toMatchObject({ estimate: 0, low: 0, high: 0 });
    const vsLocal = summary.comparisons.find((x) => x.label === 'CoRAG − RAG-Local')!;
    expect(vsLocal.difference.em.estimate).toBeCloseTo(0.375, 12);
    const claim = (id: string) => summary.claims.find((x) => x.id === id)!;
    expect(claim('corag>rag-local@16').verdicts.em).toBe('supported');
    // Lower NLL is better: CoRAG's round-1 NLL (1 on right answers, 3 on wrong) is below RAG-Local's 3.
    expect(claim('corag>rag-local@16').verdicts.nll).toBe('supported');
    // Centralized (0.5) vs CoRAG (0.375): CoRAG's client 1 varies, so the interval spans 0.
    expect(claim('centralized>=corag@16').parts[0].difference.em.estimate).toBeCloseTo(0.125, 12);
    expect(claim('centralized>=corag@16').verdicts.em).toBe('undecided');
    expect(summary.bootstrap.replicates).toBe(400);
  });

  it('says contradicted when the interval lies on the other side, and checks the store ordering claim', () => {
    const store = (s: PredictionRow['store'], em: 0 | 1) =>
      [0, 1].flatMap((round) => [
        ...rows('corag', 64, 0, round, 'test', [all(5, round ? em : 0), all(5, round ? em : 0)], s),
        ...rows('corag', 64, 0, round, 'dev', [all(2, 0), all(2, 0)], s),
      ]);
    // REL+IRR worst, REL+HARD best: the opposite of the paper's REL+IRR > REL > REL+HARD.
    const s = scoreRun([...store('REL', 0), ...store('REL+IRR', 0), ...store('REL+HARD', 1)], { replicates: 200, confidence: 0.95, seed: 0 });
    const c = s.claims.find((x) => x.id === 'store-order/corag@64')!;
    expect(c.parts).toHaveLength(2);
    expect(c.verdicts.em).toBe('contradicted');
  });

  it('gives the same summary after a round trip through predictions.jsonl', () => {
    const input = [...corag, ...local];
    const text = predictionsJsonl(input);
    expect(text.split('\n')[0]).toBe(
      '{"method":"corag","shots":16,"store":"REL","seed":0,"round":0,"split":"test","client":0,"question_id":"test-c0-q0","prediction":"wrong","em":0,"f1":0,"nll_sum":6,"nll_tokens":2}',
    );
    const back = parsePredictionsJsonl(text);
    expect(back).toEqual(input);
    expect(scoreRun(back, { replicates: 50, confidence: 0.9, seed: 2 })).toEqual(scoreRun(input, { replicates: 50, confidence: 0.9, seed: 2 }));
    expect(() => parsePredictionsJsonl('{"method":"fedprox"}')).toThrow(/predictions.jsonl:1: unknown method/);
  });
});
