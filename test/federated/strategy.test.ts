/** The aggregation strategies against brute-force definitions, on small random deltas. */
import { describe, expect, it } from 'vitest';
import type { NamedTensor } from '../../src/federated/codec';
import { createStrategy, type AcceptedUpdate, type StoredDeltaStrategy } from '../../src/federated/strategy';
import { deltaNorm, inMemoryDeltaChunks } from '../../src/federated/strategies/delta-chunks';
import { cappedShares, defaultMaxExamples, robustShares } from '../../src/federated/strategies/weights';
import { seededRandom } from '../../src/util/random';

const SHAPES: Array<[string, number[]]> = [
  ['a', [5, 3]],
  ['b', [7]],
];

function randomDelta(random: () => number, scale = 1, offset = 0): Map<string, NamedTensor> {
  return new Map(
    SHAPES.map(([name, shape]) => {
      const data = new Float32Array(shape.reduce((x, y) => x * y, 1));
      for (let i = 0; i < data.length; i++) data[i] = offset + (random() * 2 - 1) * scale;
      return [name, { shape, data }];
    }),
  );
}

const flat = (d: ReadonlyMap<string, NamedTensor>) => SHAPES.flatMap(([name]) => Array.from(d.get(name)!.data));
const flatOut = (d: ReadonlyMap<string, Float64Array>) => SHAPES.flatMap(([name]) => Array.from(d.get(name)!));
const norm = (d: ReadonlyMap<string, NamedTensor>) => deltaNorm(new Map([...d].map(([n, t]) => [n, t.data])));
const updatesOf = (ds: ReadonlyArray<ReadonlyMap<string, NamedTensor>>, weights: number[]): AcceptedUpdate[] =>
  ds.map((d, i) => ({ weight: weights[i], norm: norm(d) }));
const stored = (name: string, params: Record<string, number> = {}) => createStrategy(name, params) as StoredDeltaStrategy;

describe('weight shares', () => {
  it('caps every share at the bound and spreads the rest in proportion to the weights', () => {
    const s = cappedShares([1000, 10, 10, 20, 10, 10], 0.25);
    expect(s.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 12);
    expect(s[0]).toBeCloseTo(0.25, 12);
    expect(s[3] / s[1]).toBeCloseTo(2, 12);
    expect(Math.max(...s)).toBeLessThanOrEqual(0.25 + 1e-12);
  });

  it('gives equal shares when fewer updates than 1/bound arrive, and leaves small weights alone', () => {
    expect(cappedShares([1, 100], 0.25)).toEqual([0.5, 0.5]);
    const s = cappedShares([1, 2, 3, 4], 0.5);
    expect(s).toEqual([0.1, 0.2, 0.3, 0.4].map((x) => expect.closeTo(x, 12)));
  });

  it('counts weights above the round median as the median before capping shares', () => {
    expect(robustShares([10, 10, 10, 1e9, 1e9, 5], 1)).toEqual([10, 10, 10, 10, 10, 5].map((w) => expect.closeTo(w / 55, 12)));
  });

  it('defaults the sample cap to localSteps × batchSize, else the fallback', () => {
    expect(defaultMaxExamples({ localSteps: 20, batchSize: 4 }, 10_000)).toBe(80);
    expect(defaultMaxExamples({ localSteps: '20', batchSize: '4' }, 10_000)).toBe(80);
    expect(defaultMaxExamples({ learningRate: 1e-4 }, 10_000)).toBe(10_000);
  });
});

describe('robust strategies', () => {
  const random = seededRandom(5);
  const deltas = Array.from({ length: 7 }, () => randomDelta(random));
  const weights = [3, 1, 4, 1, 5, 9, 2];
  const updates = updatesOf(deltas, weights);

  it('median and trimmed mean equal their per-coordinate definitions, whatever the chunk size', () => {
    const columns = flat(deltas[0]).map((_, j) => deltas.map((d) => flat(d)[j]).sort((a, b) => a - b));
    const median = flatOut(stored('median').aggregate(inMemoryDeltaChunks(deltas, 4), updates, 1).delta);
    expect(median).toEqual(columns.map((c) => c[3]));
    const trimmed = flatOut(stored('trimmed-mean', { trimFraction: 0.3 }).aggregate(inMemoryDeltaChunks(deltas, 5), updates, 1).delta);
    // ⌊0.3·7⌋ = 2 dropped at each end.
    columns.forEach((c, j) => expect(trimmed[j]).toBeCloseTo((c[2] + c[3] + c[4]) / 3, 12));
    const even = deltas.slice(0, 6);
    const evenMedian = flatOut(stored('median').aggregate(inMemoryDeltaChunks(even, 1000), updates.slice(0, 6), 1).delta);
    flat(even[0]).forEach((_, j) => {
      const c = even.map((d) => flat(d)[j]).sort((a, b) => a - b);
      expect(evenMedian[j]).toBeCloseTo((c[2] + c[3]) / 2, 12);
    });
  });

  it('norm-clip with an adaptive bound scales updates above the median norm and caps shares', () => {
    const big = [...deltas.slice(0, 6), randomDelta(random, 1000)];
    const u = updatesOf(big, [1, 1, 1, 1, 1, 1, 1e6]);
    const result = stored('norm-clip').aggregate(inMemoryDeltaChunks(big, 3), u, 0.25);
    const bound = [...u.map((x) => x.norm)].sort((a, b) => a - b)[3];
    expect(result.normBound).toBeCloseTo(bound, 12);
    const shares = robustShares(
      u.map((x) => x.weight),
      0.25,
    );
    expect(shares[6]).toBeCloseTo(1 / 7, 12); // the 1e6 examples count as the median weight, 1
    const expected = flat(big[0]).map((_, j) => big.reduce((acc, d, i) => acc + shares[i] * Math.min(1, bound / u[i].norm) * flat(d)[j], 0));
    flatOut(result.delta).forEach((v, j) => expect(v).toBeCloseTo(expected[j], 10));
    expect(deltaNorm(result.delta)).toBeLessThanOrEqual(bound * (1 + 1e-12));
    expect(stored('norm-clip', { clipNorm: 0.5 }).aggregate(inMemoryDeltaChunks(big), u, 0.25).normBound).toBe(0.5);
  });

  it('norm-clip and centered clipping bound a two-participant round by the smaller update, not the mean of the pair', () => {
    const pair = [randomDelta(random, 0.1), randomDelta(random, 1e4)];
    const u = updatesOf(pair, [1, 1]);
    for (const name of ['norm-clip', 'centered-clip']) {
      const result = stored(name, name === 'centered-clip' ? { iterations: 1 } : {}).aggregate(inMemoryDeltaChunks(pair), u, 0.25);
      expect(result.normBound, name).toBeCloseTo(u[0].norm, 9);
      expect(deltaNorm(result.delta), name).toBeLessThanOrEqual(u[0].norm * (1 + 1e-9));
    }
  });

  it('multi-krum drops the updates far from the honest cluster', () => {
    const honest = Array.from({ length: 6 }, () => randomDelta(random, 0.1, 1));
    const hostile = [randomDelta(random, 0.1, -50), randomDelta(random, 0.1, 80)];
    const all = [...honest, ...hostile];
    const result = stored('multi-krum', { byzantineFraction: 0.25 }).aggregate(
      inMemoryDeltaChunks(all, 4),
      updatesOf(
        all,
        all.map(() => 1),
      ),
      1,
    );
    expect(result.details).toEqual({ assumedByzantine: 2, selected: 6 });
    const mean = flat(honest[0]).map((_, j) => honest.reduce((a, d) => a + flat(d)[j], 0) / 6);
    flatOut(result.delta).forEach((v, j) => expect(v).toBeCloseTo(mean[j], 6));
  });

  it('centered clipping lands near the honest center despite a far outlier, within its norm bound', () => {
    const honest = Array.from({ length: 6 }, () => randomDelta(random, 0.1, 1));
    const all = [...honest, randomDelta(random, 0.1, 1e4)];
    const result = stored('centered-clip', { iterations: 5 }).aggregate(
      inMemoryDeltaChunks(all, 8),
      updatesOf(
        all,
        all.map(() => 1),
      ),
      1,
    );
    const mean = flat(honest[0]).map((_, j) => honest.reduce((a, d) => a + flat(d)[j], 0) / 6);
    const out = flatOut(result.delta);
    const dist = Math.sqrt(out.reduce((a, v, j) => a + (v - mean[j]) ** 2, 0));
    expect(dist).toBeLessThan(0.5); // the outlier alone sits ~1e4·√22 away
    expect(deltaNorm(result.delta)).toBeLessThanOrEqual(result.normBound);
  });

  it('refuses unknown strategies, unknown parameters and out-of-range values, and fills defaults', () => {
    expect(() => createStrategy('krum2')).toThrow(/not one of/);
    expect(() => createStrategy('median', { trimFraction: 0.1 })).toThrow(/has no parameter "trimFraction"/);
    expect(() => createStrategy('trimmed-mean', { trimFraction: 0.7 })).toThrow(/\[0, 0.49\]/);
    expect(() => createStrategy('centered-clip', { iterations: 2.5 })).toThrow(/integer/);
    expect(createStrategy('trimmed-mean').params).toEqual({ trimFraction: 0.25 });
    expect(createStrategy('norm-clip').params).toEqual({ clipMultiplier: 1 });
  });
});
