/** Client selection shared by every strategy: a uniform sample of the joined clients. */

/** Selects max(minClients, ceil(fraction·n)) candidates uniformly without replacement (partial Fisher–Yates). */
export function selectClients(candidates: readonly string[], fraction: number, minClients: number, random: () => number): string[] {
  const want = Math.min(candidates.length, Math.max(minClients, Math.ceil(fraction * candidates.length)));
  const pool = [...candidates];
  for (let i = 0; i < want; i++) {
    const j = i + Math.floor(random() * (pool.length - i));
    [pool[i], pool[j]] = [pool[j], pool[i]];
  }
  return pool.slice(0, want);
}
