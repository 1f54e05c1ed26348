/**
 * A coordinator connection that fails over to the coordinator's peers: the processes it was told
 * share its sessions (`--peer-url`, advertised at GET /api/peers). A browser tab uses it over its
 * own origin (the coordinator that served the page) and those peers, so the tab keeps training
 * when that process dies; a token is valid on every peer, since they share one state.
 */
import { CoragClient, type FetchLike } from './client';
import { coordinatorBase, failoverFetch, type FailoverOptions } from './failover';

/**
 * A CoragClient for `base` whose requests move to `base`'s advertised peers on a connection error
 * (./failover.ts). Asks `base` for its peers once; a coordinator that advertises none (or an older
 * one without the route) gives a client of `base` alone. Peer entries that are not coordinator URLs
 * are skipped.
 */
export async function clientWithPeers(
  base: string,
  fetchImpl: FetchLike = globalThis.fetch.bind(globalThis),
  options: FailoverOptions = {},
): Promise<CoragClient> {
  return failoverClient(base, (await advertisedPeers(base, fetchImpl)) ?? [], fetchImpl, options);
}

/**
 * The peers `base` advertises, as valid coordinator base URLs; undefined when `base` gave no list
 * (it is down, or an older coordinator without the route).
 */
export async function advertisedPeers(base: string, fetchImpl: FetchLike = globalThis.fetch.bind(globalThis)): Promise<string[] | undefined> {
  try {
    const peers = await new CoragClient(coordinatorBase(base), undefined, fetchImpl).peers();
    return peers.map(validBase).filter((u): u is string => u !== undefined);
  } catch {
    return undefined;
  }
}

/** A CoragClient for `base` that moves on to `peers` (in order) when a request gets no answer; `base` alone without peers. */
export function failoverClient(
  base: string,
  peers: readonly string[],
  fetchImpl: FetchLike = globalThis.fetch.bind(globalThis),
  options: FailoverOptions = {},
): CoragClient {
  const own = coordinatorBase(base);
  const urls = [...new Set([own, ...peers.map(validBase).filter((u): u is string => u !== undefined)])];
  return new CoragClient(own, undefined, urls.length > 1 ? failoverFetch(urls, fetchImpl, options) : fetchImpl);
}

function validBase(url: string): string | undefined {
  try {
    return coordinatorBase(url);
  } catch {
    return undefined;
  }
}
