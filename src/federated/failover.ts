/**
 * Several coordinators with no load balancer in front (a real deployment shape: each process
 * shares the session through PostgreSQL, the data folder and the passage store, docs/DEPLOY.md):
 * a fetch that sends each request to the coordinator that last answered, and on a connection
 * error (no HTTP answer at all) tries the next one. Give it to CoragClient as its fetch, with the
 * first URL as its base (./peers.ts builds one over a coordinator and the peers it advertises).
 *
 * Only failures without an answer move on: an HTTP error is the coordinator's word and is
 * returned as is. Resending after a lost connection is safe for this protocol: request bodies are
 * bytes or JSON strings (replayable), an update is accepted once per client and round, and a
 * passage is stored once per text, so a request the dead process did complete is refused or
 * deduplicated by the one that receives it again. Such an answer is marked (`answersAResend`):
 * a `duplicate_update` refusal of a resent upload means the first send did land.
 *
 * An event stream is one long request: when its coordinator dies mid-stream the reader fails
 * (the body errors), not this fetch; the caller follows the stream again (FederatedCoragClient
 * reconnects), and that new request is the one that moves on to the next coordinator.
 */

/** Answers to requests that were sent again after a connection error: the first send may have been received. */
const resentAnswers = new WeakSet<Response>();

/** True when `res` answers a request failoverFetch sent again after a connection error (the first may have landed). */
export function answersAResend(res: Response): boolean {
  return resentAnswers.has(res);
}

export interface FailoverOptions {
  /** Told when requests move to another coordinator (a log line: which one stopped answering, and why). */
  readonly onSwitch?: (from: string, to: string, error: unknown) => void;
}

export function failoverFetch(
  baseUrls: readonly string[],
  fetchImpl: typeof fetch = globalThis.fetch.bind(globalThis),
  options: FailoverOptions = {},
): typeof fetch {
  if (baseUrls.length === 0) throw new Error('failoverFetch needs at least one coordinator URL');
  const bases = baseUrls.map(coordinatorBase);
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
        if (i > 0) {
          resentAnswers.add(res);
          options.onSwitch?.(bases[current]!, bases[at]!, lastError);
        }
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

/**
 * A coordinator's base URL as given by an operator or advertised by a coordinator: http(s), no
 * query or fragment; trailing slashes dropped. Throws on anything else (the process refuses to
 * start, the client ignores the entry).
 */
export function coordinatorBase(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new Error(`not an http(s) coordinator URL: ${url}`);
  }
  if ((parsed.protocol !== 'http:' && parsed.protocol !== 'https:') || !/^https?:\/\/[^/]/.test(url)) throw new Error(`not an http(s) coordinator URL: ${url}`);
  if (parsed.search || parsed.hash || parsed.username || parsed.password) throw new Error(`a coordinator URL has no query, fragment or credentials: ${url}`);
  return url.replace(/\/+$/, '');
}
