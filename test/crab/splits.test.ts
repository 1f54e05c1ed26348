import { describe, expect, it } from 'vitest';
import { splitQaPairs, trainingQaIds, type SplitCandidate } from '../../src/crab/splits';

// 400 QA pairs; pair i's relevant passage is paragraph floor(i / 4), so 4 pairs share each passage.
const candidates: SplitCandidate[] = Array.from({ length: 400 }, (_, i) => ({ qaId: `q${i}`, relevant: [`p${Math.floor(i / 4)}`] }));
const options = { seed: 1, clients: 4, shots: [2, 4, 8], devPerClient: 3, testPerClient: 5 };

describe('splitQaPairs', () => {
  const splits = splitQaPairs(candidates, options);

  it('gives every client max(shots) training, devPerClient dev and testPerClient test pairs', () => {
    expect(splits.clients).toHaveLength(4);
    for (const c of splits.clients) {
      expect(c.train).toHaveLength(8);
      expect(c.dev).toHaveLength(3);
      expect(c.test).toHaveLength(5);
    }
  });

  it('uses the recipe defaults: 8 clients, 16/32/64 shots', () => {
    const many = Array.from({ length: 2000 }, (_, i) => ({ qaId: `q${i}`, relevant: [`p${i}`] }));
    const d = splitQaPairs(many, { seed: 0 });
    expect(d.shots).toEqual([16, 32, 64]);
    expect(d.clients).toHaveLength(8);
    expect(d.clients.map((_, c) => trainingQaIds(d, c, 16).length)).toEqual(Array(8).fill(16));
  });

  it('puts no QA pair in two splits or at two clients', () => {
    const all = splits.clients.flatMap((c) => [...c.train, ...c.dev, ...c.test]);
    expect(new Set(all).size).toBe(all.length);
  });

  it('nests the k-shot training sets', () => {
    for (let c = 0; c < 4; c++) {
      expect(trainingQaIds(splits, c, 4).slice(0, 2)).toEqual(trainingQaIds(splits, c, 2));
      expect(trainingQaIds(splits, c, 8).slice(0, 4)).toEqual(trainingQaIds(splits, c, 4));
    }
    expect(() => trainingQaIds(splits, 0, 3)).toThrow(/no 3-shot training set/);
  });

  it('keeps dev and test pairs off every passage relevant to a training pair', () => {
    const relevant = new Map(candidates.map((c) => [c.qaId, c.relevant]));
    const trainPassages = new Set(splits.clients.flatMap((c) => c.train.flatMap((id) => relevant.get(id)!)));
    const heldOut = splits.clients.flatMap((c) => [...c.dev, ...c.test]);
    for (const id of heldOut) for (const p of relevant.get(id)!) expect(trainPassages.has(p)).toBe(false);
  });

  it('is a pure function of the seed', () => {
    expect(splitQaPairs(candidates, options)).toEqual(splits);
    expect(splitQaPairs([...candidates], { ...options, seed: 2 })).not.toEqual(splits);
  });

  it('says what is missing when there are too few pairs', () => {
    expect(() => splitQaPairs(candidates.slice(0, 20), options)).toThrow(/needs 32 training QA pairs but only 20/);
    // 400 pairs on 100 passages: 32 training pairs block up to 32 × 4 pairs, far fewer than 1000 remain.
    expect(() => splitQaPairs(candidates, { ...options, devPerClient: 100, testPerClient: 150 })).toThrow(/dev \+ test QA pairs/);
    expect(() => splitQaPairs([candidates[0], candidates[0]], options)).toThrow(/duplicate QA id q0/);
    expect(() => splitQaPairs(candidates, { ...options, clients: 0 })).toThrow(/clients must be a positive integer/);
  });
});
