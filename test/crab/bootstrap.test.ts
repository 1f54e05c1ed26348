/** The paired bootstrap behind every CRAB confidence interval, on cases small enough to compute by hand. */
import { describe, expect, it } from 'vitest';
import { combineVerdicts, pairedBootstrap, quantile, verdict, type BootstrapUnit } from '../../src/crab/bootstrap';

const em = (seed: number, client: number, a: number, b: number): BootstrapUnit => ({
  seed,
  client,
  arms: [
    [a, 1],
    [b, 1],
  ],
});

describe('pairedBootstrap', () => {
  it('gives [0, 1] for one client whose two questions differ by 0 and 1 (resampled means 0, ½, 1 with odds ¼, ½, ¼)', () => {
    const ci = pairedBootstrap([em(0, 0, 1, 1), em(0, 0, 1, 0)], { weights: [1, -1], replicates: 4000, seed: 7 });
    expect(ci.estimate).toBe(0.5);
    expect([ci.low, ci.high]).toEqual([0, 1]);
    expect(ci.units).toBe(2);
    expect(ci.confidence).toBe(0.95);
  });

  it('collapses to the estimate when every question differs by the same amount (pairing removes the shared noise)', () => {
    const units = [0, 1, 0, 1, 1].map((b, i) => ({
      seed: 0,
      client: i % 2,
      arms: [
        [b + 0.25, 1],
        [b, 1],
      ] as Array<[number, number]>,
    }));
    const ci = pairedBootstrap(units, { weights: [1, -1], replicates: 500 });
    expect(ci.estimate).toBeCloseTo(0.25, 12);
    expect(ci.low).toBeCloseTo(0.25, 12);
    expect(ci.high).toBeCloseTo(0.25, 12);
  });

  it('averages clients equally (macro) or counts every question once (micro), then averages seeds', () => {
    // Seed 0: client 0 has one right answer, client 1 three wrong ones. Seed 1: everything right.
    const units = [em(0, 0, 1, 0), em(0, 1, 0, 0), em(0, 1, 0, 0), em(0, 1, 0, 0), em(1, 0, 1, 0), em(1, 1, 1, 0)];
    expect(pairedBootstrap(units, { weights: [1, 0], replicates: 1 }).estimate).toBeCloseTo((0.5 + 1) / 2, 12);
    expect(pairedBootstrap(units, { weights: [1, 0], replicates: 1, aggregation: 'micro' }).estimate).toBeCloseTo((0.25 + 1) / 2, 12);
  });

  it('scores an NLL arm as summed NLL over answer tokens within a client', () => {
    const units: BootstrapUnit[] = [
      {
        seed: 0,
        client: 0,
        arms: [
          [2, 1],
          [3, 1],
        ],
      },
      {
        seed: 0,
        client: 0,
        arms: [
          [4, 3],
          [3, 3],
        ],
      },
    ];
    const ci = pairedBootstrap(units, { weights: [1, -1], replicates: 1 });
    expect(ci.estimate).toBeCloseTo(6 / 4 - 6 / 4, 12);
    expect(pairedBootstrap(units, { weights: [1, 0], replicates: 1 }).estimate).toBeCloseTo(1.5, 12);
  });

  it('resamples within each (seed, client): a client whose questions all agree never moves', () => {
    // Client 0: differences always 1; client 1: always 0. Macro contrast = ½ in every replicate.
    const units = [em(0, 0, 1, 0), em(0, 0, 1, 0), em(0, 1, 0, 0), em(0, 1, 1, 1), em(0, 1, 0, 0)];
    const ci = pairedBootstrap(units, { weights: [1, -1], replicates: 300, seed: 3 });
    for (const v of [ci.estimate, ci.low, ci.high]) expect(v).toBeCloseTo(0.5, 12);
  });

  it('is reproducible from its seed', () => {
    const units = Array.from({ length: 40 }, (_, i) => em(i % 2, i % 4, (i * 7) % 3 === 0 ? 1 : 0, i % 5 === 0 ? 1 : 0));
    const a = pairedBootstrap(units, { weights: [1, -1], replicates: 200, seed: 11 });
    expect(pairedBootstrap(units, { weights: [1, -1], replicates: 200, seed: 11 })).toEqual(a);
    expect(a.low).toBeLessThan(a.estimate);
    expect(a.high).toBeGreaterThan(a.estimate);
  });

  it('rejects units with the wrong number of arms and empty input', () => {
    expect(() => pairedBootstrap([], { weights: [1, -1] })).toThrow(/no units/);
    expect(() => pairedBootstrap([{ seed: 0, client: 0, arms: [[1, 1]] }], { weights: [1, -1] })).toThrow(/1 arms, expected 2/);
  });
});

describe('quantile and verdicts', () => {
  it('takes the nearest-rank quantile', () => {
    expect(quantile([1, 2, 3, 4], 0.025)).toBe(1);
    expect(quantile([1, 2, 3, 4], 0.5)).toBe(2);
    expect(quantile([1, 2, 3, 4], 0.975)).toBe(4);
  });

  it('says supported / contradicted / undecided by where the interval lies, in the claimed direction', () => {
    expect(verdict({ low: 0.01, high: 0.2 })).toBe('supported');
    expect(verdict({ low: -0.2, high: -0.01 })).toBe('contradicted');
    expect(verdict({ low: -0.1, high: 0.1 })).toBe('undecided');
    expect(verdict({ low: 0, high: 0.1 })).toBe('undecided');
    // "lower NLL is better": a negative difference supports the claim.
    expect(verdict({ low: -0.3, high: -0.1 }, -1)).toBe('supported');
    expect(combineVerdicts(['supported', 'supported'])).toBe('supported');
    expect(combineVerdicts(['supported', 'undecided'])).toBe('undecided');
    expect(combineVerdicts(['supported', 'contradicted'])).toBe('contradicted');
  });
});
