import { describe, expect, it } from 'vitest';
import { ExactVectorIndex } from '../../src/retrieval/vector-index';
import { seededRandom as seeded } from '../../src/util/random';

function randomRows(n: number, dim: number, random: () => number): Float32Array {
  return Float32Array.from({ length: n * dim }, () => random() * 2 - 1);
}

/** Brute force: every score, sorted best first, ties by id. */
function bruteForce(ids: number[], rows: Float32Array, dim: number, query: Float32Array, k: number) {
  return ids
    .map((id, i) => {
      let s = 0;
      for (let j = 0; j < dim; j++) s += Math.fround(query[j] * rows[i * dim + j]);
      return { id, score: s };
    })
    .sort((a, b) => b.score - a.score || a.id - b.id)
    .slice(0, k);
}

describe('ExactVectorIndex', () => {
  const dim = 16;
  const random = seeded(3);
  const ids = Array.from({ length: 500 }, (_, i) => 1000 + 7 * i);
  const rows = randomRows(ids.length, dim, random);

  it('returns the same top-k ids as brute force, best first, for many queries', () => {
    const index = new ExactVectorIndex(dim, 4); // small capacity: exercises growth
    index.add(ids, rows);
    expect(index.size).toBe(500);
    for (let q = 0; q < 50; q++) {
      const query = randomRows(1, dim, random);
      const got = index.search(query, 10);
      const want = bruteForce(ids, rows, dim, query, 10);
      expect(got.map((h) => h.id)).toEqual(want.map((h) => h.id));
      got.forEach((h, i) => expect(h.score).toBeCloseTo(want[i].score, 4));
    }
  });

  it('returns every row when k exceeds the size, and breaks score ties by smaller id', () => {
    const index = new ExactVectorIndex(2);
    index.add(
      [5, 3, 9],
      [
        [1, 0],
        [1, 0],
        [0, 1],
      ],
    );
    expect(index.search([1, 0], 10)).toEqual([
      { id: 3, score: 1 },
      { id: 5, score: 1 },
      { id: 9, score: 0 },
    ]);
  });

  it('removes ids (moving the last row into the hole) and replaces re-added ids', () => {
    const index = new ExactVectorIndex(2);
    index.add(
      [1, 2, 3],
      [
        [1, 0],
        [0, 1],
        [1, 1],
      ],
    );
    expect(index.remove([1, 42])).toBe(1);
    expect(index.has(1)).toBe(false);
    expect(index.embedding(3)).toEqual(Float32Array.from([1, 1]));
    index.add([2], [[5, 5]]);
    expect(index.size).toBe(2);
    expect(index.search([1, 0], 1)).toEqual([{ id: 2, score: 5 }]);
  });

  it('round-trips through serialize/restore, also from an unaligned byte offset', () => {
    const index = new ExactVectorIndex(dim);
    index.add(ids.slice(0, 50), rows.subarray(0, 50 * dim));
    const bytes = index.serialize();
    const shifted = new Uint8Array(bytes.length + 1);
    shifted.set(bytes, 1);
    const restored = ExactVectorIndex.restore(shifted.subarray(1));
    const query = randomRows(1, dim, random);
    expect(restored.size).toBe(50);
    expect(restored.search(query, 5)).toEqual(index.search(query, 5));
  });

  it('rejects wrong dimensions and corrupt snapshots with a message naming the problem', () => {
    const index = new ExactVectorIndex(4);
    expect(() => index.add([1], [[1, 2, 3]])).toThrow(/has 3 values, the index has dimension 4/);
    expect(() => index.search([1, 2], 1)).toThrow(/query has 2 values/);
    expect(() => ExactVectorIndex.restore(new Uint8Array(20))).toThrow(/wrong magic/);
    const truncated = index.serialize().subarray(0, 10);
    expect(() => ExactVectorIndex.restore(truncated)).toThrow(/shorter than its header/);
  });
});
