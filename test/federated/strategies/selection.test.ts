import { describe, expect, it } from 'vitest';
import { selectClients } from '../../../src/federated/strategies/selection';
import { seededRandom } from '../../../src/util/random';

describe('selectClients', () => {
  it('selects max(minClients, ceil(fraction·n)) distinct candidates', () => {
    const candidates = ['a', 'b', 'c', 'd', 'e'];
    const picked = selectClients(candidates, 0.5, 2, seededRandom(1));
    expect(picked).toHaveLength(3);
    expect(new Set(picked).size).toBe(3);
    expect(picked.every((c) => candidates.includes(c))).toBe(true);
    expect(selectClients(candidates, 0, 9, seededRandom(1)).sort()).toEqual(candidates);
  });

  it('refuses a generator that returns 1 (it would select a client that does not exist)', () => {
    expect(() => selectClients(['a', 'b'], 1, 1, () => 1)).toThrow('random() must return numbers in [0, 1)');
  });
});
