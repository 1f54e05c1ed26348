/** Two runs' predictions paired question by question (src/crab/arm-comparison.ts). */
import { describe, expect, it } from 'vitest';
import { compareArms } from '../../src/crab/arm-comparison';
import type { PredictionRow } from '../../src/crab/predictions';

function row(client: number, q: number, round: number, em: 0 | 1, nll = 2): PredictionRow {
  return {
    method: 'corag',
    shots: 16,
    store: 'REL',
    seed: 0,
    round,
    split: 'dev',
    client,
    question_id: `c${client}q${q}`,
    prediction: '',
    em,
    f1: em,
    nll_sum: nll * 2,
    nll_tokens: 2,
  };
}

describe('compareArms', () => {
  // Client 0: A right on 4 of 4, B on 2 of 4; client 1: both right on 1 of 4.
  const a = [0, 1, 2, 3].flatMap((q) => [row(0, q, 1, 1), row(1, q, 1, q === 0 ? 1 : 0), row(0, q, 0, 0)]);
  const b = [0, 1, 2, 3].flatMap((q) => [row(0, q, 1, q < 2 ? 1 : 0, 3), row(1, q, 1, q === 0 ? 1 : 0, 3)]);

  it('pairs the questions both runs answered at the round and averages over clients', () => {
    const c = compareArms(a, b, { split: 'dev', round: 1, metric: 'em', replicates: 500 });
    expect(c.questions).toBe(8);
    expect(c.a).toBeCloseTo((1 + 0.25) / 2, 12);
    expect(c.b).toBeCloseTo((0.5 + 0.25) / 2, 12);
    expect(c.difference.estimate).toBeCloseTo(-0.25, 12);
    expect(c.difference.low).toBeLessThanOrEqual(c.difference.estimate);
    expect(c.difference.high).toBeGreaterThanOrEqual(c.difference.estimate);
    // Identical runs: a zero-width interval at 0, undecided.
    const same = compareArms(a, a, { split: 'dev', round: 1, metric: 'em', replicates: 200 });
    expect([same.difference.low, same.difference.high, same.verdict]).toEqual([0, 0, 'undecided']);
  });

  it('NLL: lower is better, so B one nat worse is contradicted', () => {
    const c = compareArms(a, b, { split: 'dev', round: 1, metric: 'nll', replicates: 200 });
    expect(c.difference.estimate).toBeCloseTo(1, 12);
    expect(c.verdict).toBe('contradicted');
  });

  it('refuses runs with no shared question, and a run that answered a question twice', () => {
    expect(() => compareArms(a, b, { split: 'dev', round: 0, metric: 'em' })).toThrow(/share no dev question at round 0/);
    expect(() => compareArms([...a, ...a], b, { split: 'dev', round: 1, metric: 'em' })).toThrow(/answered 0\/0\/c0q0 twice/);
  });
});
