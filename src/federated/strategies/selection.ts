/** Client selection shared by every strategy: a uniform sample of the joined clients. */

/** Selects max(minClients, ceil(fraction·n)) candidates uniformly without replacement (partial Fisher–Yates). */
export function selectClients(candidates: readonly string[], fraction: number, minClients: number, random: () => number): string[] {
  const want = Math.min(candidates.length, Math.max(minClients, Math.ceil(fraction * candidates.length)));
  const pool = [...candidates];
  for (let i = 0; i < want; i++) {
    const j = i + Math.floor(random() * (pool.length - i));
    const a = pool[i];
    const b = pool[j];
    // A generator outside [0, 1) would pick past the end and select `undefined` as a client.
    if (a === undefined || b === undefined) throw new RangeError(`random() must return numbers in [0, 1): index ${j} is outside the ${pool.length} candidates`);
    pool[i] = b;
    pool[j] = a;
  }
  return pool.slice(0, want);
}
