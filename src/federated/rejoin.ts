/**
 * How a tab keeps one identity across reloads and coordinator failures. What must survive a reload
 * lives in the tab's storage (IndexedDB in the browser: src/platform/browser/idb-store.ts):
 * - the credentials of its join, so a reload resumes the same client (any coordinator sharing the
 *   session's state accepts its token);
 * - a join it sent but has no answer to yet, with that join's idempotency key: a reload (or a
 *   dropped connection) in the middle of joining sends the join again with the same key, and the
 *   coordinator answers with the client the first send created instead of adding a ghost one;
 * - the peers its coordinator advertised, so that when the page's own coordinator stops answering
 *   (the page came back from the browser's cache, or the tab reconnects) requests still reach a
 *   live peer.
 */
import { CoragClient, newJoinKey, type FetchLike } from './client';
import type { FailoverOptions } from './failover';
import { advertisedPeers, failoverClient } from './peers';
import type { JoinResult } from './protocol';

/** The slice of the tab's storage this module uses (BrowserStore's small records). */
export interface TabMemory {
  get<T>(key: string): Promise<T | undefined>;
  set(key: string, value: unknown): Promise<void>;
  delete(key: string): Promise<void>;
}

/** The records this module keeps in TabMemory. */
export const TAB_KEYS = { credentials: 'credentials', pendingJoin: 'pendingJoin', peers: 'peers' } as const;

/** A join's answer as the tab keeps it, with what the participant typed. */
export interface TabCredentials extends JoinResult {
  readonly joinCode: string;
  readonly name: string;
}

interface PendingJoin {
  readonly joinCode: string;
  readonly name: string;
  readonly key: string;
  /** When the key was first sent (ms since the epoch). */
  readonly at: number;
}

/**
 * How long a pending join's key is sent again. Shorter than the coordinator's replay window (15
 * minutes from when it committed, which is after `at`), with room for a tab's clock being off:
 * an older key would be forgotten there and add a new client anyway.
 */
export const PENDING_JOIN_MS = 10 * 60_000;

/**
 * The tab's connection to its page's coordinator (`appBase`) and that coordinator's peers, as it
 * advertises them now; when it gives no answer, the peers it advertised the last time (kept in
 * `memory`), so a tab whose coordinator died still reaches the others.
 */
export async function tabCoordinator(
  appBase: string,
  memory: TabMemory,
  fetchImpl: FetchLike = globalThis.fetch.bind(globalThis),
  options: FailoverOptions = {},
): Promise<CoragClient> {
  const advertised = await advertisedPeers(appBase, fetchImpl);
  if (advertised !== undefined) await memory.set(TAB_KEYS.peers, advertised);
  return failoverClient(appBase, advertised ?? (await knownPeers(memory)), fetchImpl, options);
}

/** Like tabCoordinator, without asking: the peers kept at the last connect (for requests made after it). */
export async function knownCoordinators(appBase: string, memory: TabMemory, fetchImpl: FetchLike = globalThis.fetch.bind(globalThis)): Promise<CoragClient> {
  return failoverClient(appBase, await knownPeers(memory), fetchImpl);
}

async function knownPeers(memory: TabMemory): Promise<string[]> {
  const peers = await memory.get<unknown>(TAB_KEYS.peers);
  return Array.isArray(peers) ? peers.filter((p): p is string => typeof p === 'string') : [];
}

/**
 * The tab's credentials: the stored ones when `joinCode` is undefined or the one they were made
 * with (a reload resumes the same client), else a join with `joinCode`. The join's key is kept
 * before it is sent and dropped once its answer is stored, so a join that got no answer — the
 * tab reloaded, or the connection (to every peer) dropped — is sent again with the same key when
 * the participant joins with the same code and name within PENDING_JOIN_MS.
 */
export async function joinOrResume(
  server: CoragClient,
  memory: TabMemory,
  joinCode: string | undefined,
  name: string,
  now = Date.now(),
): Promise<TabCredentials> {
  const stored = await memory.get<TabCredentials>(TAB_KEYS.credentials);
  if (joinCode === undefined || stored?.joinCode === joinCode) {
    if (!stored) throw new Error('no stored session: open a join link first');
    return stored;
  }
  const pending = await memory.get<PendingJoin>(TAB_KEYS.pendingJoin);
  const again = pending !== undefined && pending.joinCode === joinCode && pending.name === name && now - pending.at >= 0 && now - pending.at < PENDING_JOIN_MS;
  const attempt: PendingJoin = again ? pending : { joinCode, name, key: newJoinKey(), at: now };
  await memory.set(TAB_KEYS.pendingJoin, attempt);
  const joined = await server.join(joinCode, name || undefined, attempt.key);
  const credentials: TabCredentials = { sessionId: joined.sessionId, clientId: joined.clientId, token: joined.token, joinCode, name };
  await memory.set(TAB_KEYS.credentials, credentials);
  await memory.delete(TAB_KEYS.pendingJoin);
  return credentials;
}

const HANDOFF = '#resume=';

/**
 * A link to a peer's page that resumes this tab's client there. A page from another origin has
 * another IndexedDB, so without it a tab whose coordinator died joins the peer as a new client.
 * The credentials ride in the fragment, which the browser never sends to a server (nor logs), and
 * the receiving page stores them and removes the fragment at once (readHandoff).
 */
export function handoffUrl(peerBase: string, credentials: TabCredentials): string {
  const { sessionId, clientId, token, joinCode, name } = credentials;
  const json = new TextEncoder().encode(JSON.stringify({ sessionId, clientId, token, joinCode, name }));
  let binary = '';
  for (const b of json) binary += String.fromCharCode(b);
  return `${peerBase.replace(/\/+$/, '')}/${HANDOFF}${btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '')}`;
}

/** The credentials a handoff link's fragment (`location.hash`) carries; undefined for any other or malformed fragment. */
export function readHandoff(hash: string): TabCredentials | undefined {
  if (!hash.startsWith(HANDOFF) || hash.length > HANDOFF.length + 4096) return undefined;
  const encoded = hash.slice(HANDOFF.length);
  if (!/^[A-Za-z0-9_-]+$/.test(encoded)) return undefined;
  let value: unknown;
  try {
    const binary = atob(encoded.replace(/-/g, '+').replace(/_/g, '/'));
    value = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(Uint8Array.from(binary, (c) => c.charCodeAt(0))));
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null) return undefined;
  const v = value as Record<string, unknown>;
  const fields = ['sessionId', 'clientId', 'token', 'joinCode', 'name'] as const;
  if (!fields.every((f) => typeof v[f] === 'string' && (v[f] as string).length <= 256)) return undefined;
  const [sessionId, clientId, token, joinCode, name] = fields.map((f) => v[f] as string) as [string, string, string, string, string];
  if (!sessionId || !clientId || !token) return undefined;
  return { sessionId, clientId, token, joinCode, name };
}
