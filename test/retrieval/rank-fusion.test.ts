import { describe, expect, it } from 'vitest';
import { reciprocalRankFusion } from '../../src/retrieval/rank-fusion';

describe('reciprocalRankFusion', () => {
  it('scores each key by the sum of 1 / (k + rank) over the rankings it appears in', () => {
    const fused = reciprocalRankFusion(
      [
        ['a', 'b', 'c'],
        ['c', 'a'],
      ],
      60,
    );
    const expected = { a: 1 / 61 + 1 / 62, b: 1 / 62, c: 1 / 63 + 1 / 61 };
    expect(fused.map((f) => f.key)).toEqual(['a', 'c', 'b']);
    for (const f of fused) expect(f.score).toBeCloseTo(expected[f.key as keyof typeof expected], 12);
  });

  it('puts an item both rankers like above one that only one ranker puts first', () => {
    const fused = reciprocalRankFusion([
      ['only-dense', 'both'],
      ['only-keyword', 'both'],
    ]);
    expect(fused[0].key).toBe('both');
  });

  it('breaks ties by first appearance, counts a repeated key once per ranking, and accepts empty rankings', () => {
    expect(
      reciprocalRankFusion([
        ['x', 'y'],
        ['y', 'x'],
      ]).map((f) => f.key),
    ).toEqual(['x', 'y']);
    expect(reciprocalRankFusion([['x', 'x', 'y']], 0).map((f) => [f.key, f.score])).toEqual([
      ['x', 1],
      ['y', 1 / 3],
    ]); // ranks are positions in the list
    expect(reciprocalRankFusion([[], []])).toEqual([]);
  });

  it('scales each ranking by its weight (weighted RRF) and checks the weights', () => {
    const fused = reciprocalRankFusion(
      [
        ['a', 'b'],
        ['b', 'a'],
      ],
      60,
      [1, 3],
    );
    expect(fused.map((f) => f.key)).toEqual(['b', 'a']);
    expect(fused[0].score).toBeCloseTo(1 / 62 + 3 / 61, 12);
    expect(
      reciprocalRankFusion(
        [
          ['a', 'b'],
          ['b', 'a'],
        ],
        60,
        [1, 1],
      ),
    ).toEqual(
      reciprocalRankFusion(
        [
          ['a', 'b'],
          ['b', 'a'],
        ],
        60,
      ),
    );
    expect(() => reciprocalRankFusion([['a'], ['a']], 60, [1])).toThrow(/weights must be 2/);
    expect(() => reciprocalRankFusion([['a']], 60, [-1])).toThrow(/weights/);
  });

  it('rejects a negative or non-finite k', () => {
    expect(() => reciprocalRankFusion([['a']], -1)).toThrow(/k must be/);
    expect(() => reciprocalRankFusion([['a']], Number.NaN)).toThrow(/k must be/);
  });
});
