import { describe, expect, it } from 'vitest';
import { Rng } from '../../src/pretrain/rng';
import { answerWindow, randomWindow, spanWindow } from '../../src/pretrain/windows';

describe('answerWindow', () => {
  const passage = Array.from({ length: 100 }, (_, i) => 1000 + i);
  const target = [7, 1040, 1041, 1]; // sentinel, answer ids 1040 1041, EOS

  it('always holds the whole answer, at varying places, and has the requested size', () => {
    const rng = new Rng(3);
    const starts = new Set<number>();
    for (let i = 0; i < 50; i++) {
      const w = answerWindow(passage, target, 16, rng);
      expect(w).toHaveLength(16);
      const at = w.indexOf(1040);
      expect(at).toBeGreaterThanOrEqual(0);
      expect(w[at + 1]).toBe(1041);
      starts.add(w[0]);
    }
    expect(starts.size).toBeGreaterThan(5);
  });

  it('falls back to the passage start when the answer is not in it, and keeps short passages whole', () => {
    expect(answerWindow(passage, [7, 5, 1], 16, new Rng(1))).toEqual(passage.slice(0, 16));
    expect(answerWindow(passage.slice(0, 10), target, 16, new Rng(1))).toEqual(passage.slice(0, 10));
  });
});

describe('spanWindow (mlmWithSource)', () => {
  const passage = Array.from({ length: 100 }, (_, i) => 1000 + i);

  it('starts a few tokens before the first masked span, so the spans after it fit', () => {
    expect(spanWindow(passage, [1040, 1041], 32)).toEqual(passage.slice(32, 64));
    expect(spanWindow(passage, [1003], 32)).toEqual(passage.slice(0, 32)); // near the start
    expect(spanWindow(passage, [1095], 32)).toEqual(passage.slice(68, 100)); // near the end
  });

  it('falls back to the passage start when the span is not in it, and keeps short passages whole', () => {
    expect(spanWindow(passage, [5], 16)).toEqual(passage.slice(0, 16));
    expect(spanWindow(passage.slice(0, 10), [1003], 16)).toEqual(passage.slice(0, 10));
  });
});

describe('randomWindow (windowEveryPassage)', () => {
  it('randomWindow takes `size` consecutive tokens at varying places, and a shorter passage whole', () => {
    const ids = Array.from({ length: 50 }, (_, i) => i);
    const rng = new Rng(4);
    const starts = new Set<number>();
    for (let i = 0; i < 30; i++) {
      const w = randomWindow(ids, 10, rng);
      expect(w).toHaveLength(10);
      expect(w).toEqual(ids.slice(w[0], w[0] + 10));
      starts.add(w[0]);
    }
    expect(starts.size).toBeGreaterThan(5);
    expect(randomWindow([1, 2, 3], 10, rng)).toEqual([1, 2, 3]);
  });

  it('is the same window for the same seed', () => {
    const ids = Array.from({ length: 50 }, (_, i) => i);
    expect(randomWindow(ids, 10, new Rng(9))).toEqual(randomWindow(ids, 10, new Rng(9)));
  });
});
