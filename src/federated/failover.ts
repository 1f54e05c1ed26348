/**
 * Several coordinators with no load balancer in front (a real deployment shape: each process
 * shares the session through PostgreSQL, the data folder and the passage store, docs/DEPLOY.md):
 * a fetch that sends each request to the coordinator that last answered, and on a connection
 * error (no HTTP answer at all) tries the next one. Give it to CoragClient as its fetch, with the
 * first URL as its base.
 *
 * Only failures without an answer move on: an HTTP error is the coordinator's word and is
 * returned as is. Resending after a lost connection is safe for this protocol: request bodies are
 * bytes or JSON strings (replayable), an update is accepted once per client and round, and a
 * passage is stored once per text, so a request the dead process did complete is refused or
 * deduplicated by the one that receives it again.
 */
import type { FetchLike } from './client';

export function failoverFetch(baseUrls: readonly string[], fetchImpl: FetchLike = globalThis.fetch.bind(globalThis)): FetchLike {
  if (baseUrls.length === 0) throw new Error('failoverFetch needs at least one coordinator URL');
  const bases = baseUrls.map((u) => {
    if (!/^https?:\/\/[^/]/.test(u)) throw new Error(`not an http(s) coordinator URL: ${u}`);
    return u.replace(/\/+$/, '');
  });
  // The coordinator that answered last: later requests go there first.
  let current = 0;
  return async (input, init) => {
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    const from = bases.find((b) => url === b || url.startsWith(`${b}/`));
    if (from === undefined) return fetchImpl(input, init);
    const path = url.slice(from.length);
    let lastError: unknown;
    for (let i = 0; i < bases.length; i++) {
      const at = (current + i) % bases.length;
      try {
        const res = await fetchImpl(`${bases[at]}${path}`, init);
        current = at;
        return res;
      } catch (e) {
        // An abort is the caller's decision, not a dead coordinator.
        if (init?.signal?.aborted) throw e;
        lastError = e;
      }
    }
    throw lastError;
  };
}
