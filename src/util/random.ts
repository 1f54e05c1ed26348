/**
 * Seeded randomness shared by CRAB splits, local training batch order and tests: mulberry32, a small 32-bit generator that gives the same
 * sequence on every JavaScript engine, and a Fisher–Yates shuffle on top of it. Not for security.
 */
export type Random = () => number;

/** A generator of floats in [0, 1) fully determined by a 32-bit integer seed. */
export function seededRandom(seed: number): Random {
  if (!Number.isInteger(seed)) throw new RangeError(`seed must be an integer, got ${seed}`);
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A shuffled copy (Fisher–Yates); the input is left untouched. */
export function shuffled<T>(items: readonly T[], random: Random): T[] {
  const out = items.slice();
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    // A generator outside [0, 1) would swap in a hole past the end (an `undefined` item).
    if (!(j >= 0 && j <= i)) throw new RangeError(`random() must return numbers in [0, 1): index ${j} is outside 0..${i}`);
    // Both in range now (0 <= j <= i < out.length): the reads are items, whatever T is.
    [out[i], out[j]] = [out[j] as T, out[i] as T];
  }
  return out;
}
