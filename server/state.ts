/**
 * The coordinator's state behind one interface: sessions and their tokens, clients, model versions,
 * rounds and accepted updates, training questions. Two implementations:
 * - server/sqlite-state.ts: the data folder's SQLite database (the default; `npm start`),
 * - server/pg-state.ts: PostgreSQL (`--database postgres://…`), so that several coordinator
 *   processes can later share one state.
 *
 * Every method is asynchronous (PostgreSQL is). The ones that change a round are transactions that
 * lock the round's (or the session's) row first and re-check the state they depend on, so that an
 * accept or a transition decided on a stale view is refused instead of applied: inside one process
 * the coordinator also runs a session's mutations one at a time, across processes the row locks
 * are what keeps them apart.
 */
import type { RoundState, TrainingQuestion } from '../src/federated/protocol';

/** Who a bearer token belongs to, within one session. */
export type Principal = { readonly role: 'admin' } | { readonly role: 'client'; readonly clientId: string };

export interface SessionRecord {
  readonly id: string;
  /** The SessionConfig as JSON (immutable once created). */
  readonly config: string;
  readonly currentVersion: number | null;
  readonly joinCode: string;
}

export interface RoundRecord {
  readonly sessionId: string;
  readonly number: number;
  readonly state: RoundState;
  readonly baseVersion: number;
  readonly resultVersion: number | null;
  readonly participants: string[];
  readonly config: Record<string, string | number | boolean>;
  readonly openedAt: string;
  readonly deadlineAt: string;
  readonly closedAt: string | null;
  /** The running-sum (or last delta) file in effect: sum-<sumSeq>.safetensors; 0 = no update yet. */
  readonly sumSeq: number;
  readonly weightTotal: number;
  readonly metricSums: Record<string, number>;
  readonly metrics: Record<string, number>;
  readonly failureReason: string | null;
}

export interface UpdateRecord {
  readonly clientId: string;
  readonly weight: number;
  /** NULL for updates accepted before norms were recorded. */
  readonly norm: number | null;
  readonly sumSeq: number;
  /** The coordinator process that accepted it (several processes on PostgreSQL); absent or null: the single-process running sum. */
  readonly node?: string | null;
}

/** One coordinator process's running sum of a round (several processes share a PostgreSQL state). */
export interface PartialRecord {
  readonly node: string;
  /** Its file in effect: sum-<node>-<sumSeq>.safetensors (or the last of its delta files). */
  readonly sumSeq: number;
  readonly weightTotal: number;
  readonly metricSums: Record<string, number>;
}

export interface NewClient {
  readonly id: string;
  readonly sessionId: string;
  readonly name: string;
  readonly tokenHash: string;
  readonly joinedAt: string;
}

export interface NewSession {
  readonly id: string;
  readonly config: string;
  readonly adminTokenHash: string;
  readonly joinCode: string;
  /** Whether model version 0 (its file already written) is installed with the session. */
  readonly withModel: boolean;
  readonly questions?: readonly TrainingQuestion[];
  readonly createdAt: string;
}

/** What the caller of `openRound` decides once it knows the number and the candidates. */
export interface RoundPlan {
  readonly participants: readonly string[];
  readonly config: Record<string, string | number | boolean>;
  readonly openedAt: string;
  readonly deadlineAt: string;
}

export interface NewUpdate {
  readonly sessionId: string;
  readonly round: number;
  readonly clientId: string;
  readonly numExamples: number;
  readonly weight: number;
  /** Must be the round's committed sumSeq + 1: a round that moved meanwhile refuses the update. */
  readonly sumSeq: number;
  readonly bytes: number;
  readonly norm: number;
  readonly metricSums: Record<string, number>;
  readonly acceptedAt: string;
}

export interface CoordinatorState {
  readonly kind: 'sqlite' | 'postgres';
  /** Creates or migrates the schema; throws with the reason (unreachable, newer schema). Idempotent. */
  open(): Promise<void>;
  close(): Promise<void>;

  createSession(session: NewSession): Promise<void>;
  session(id: string): Promise<SessionRecord | undefined>;
  /** Oldest first. */
  sessionIds(): Promise<string[]>;
  sessionIdByJoinCode(joinCode: string): Promise<string | undefined>;
  principal(sessionId: string, tokenHash: string): Promise<Principal | undefined>;

  addClient(client: NewClient): Promise<void>;
  /**
   * One transaction: a join carrying an idempotency key (server/coordinator.ts join). Keys of the
   * session created before `key.since` are forgotten first; then, when the session still holds
   * `key.hash`, the client that key created gets `client.tokenHash` as its token instead of a new
   * client being added (a 409 `idempotency_key_reused` when `client.name` differs from its name),
   * else `client` is added and the key recorded for it. Returns the id of the key's client.
   * Concurrent joins with one key (two coordinator processes) create one client.
   */
  addClientOnce(client: NewClient, key: { readonly hash: string; readonly since: string }): Promise<string>;
  clientCount(sessionId: string): Promise<number>;
  /** The n-th client to join the session (0-based). */
  joinOrder(sessionId: string, clientId: string): Promise<number>;
  /** Positions [from, from + count) of the session's training questions, in order. */
  trainingQuestions(sessionId: string, from: number, count: number): Promise<TrainingQuestion[]>;

  /**
   * Installs an admin's model `version` (its file written) as current, if the session's current
   * version is still `expectedCurrent` and no round is open; else throws ApiError 409.
   */
  installModel(sessionId: string, expectedCurrent: number | null, version: number, createdAt: string): Promise<void>;
  hasModelVersion(sessionId: string, version: number): Promise<boolean>;
  /** The newest version an admin installed (not produced by a round): the frozen passage encoder's. */
  latestInstalledVersion(sessionId: string): Promise<number | undefined>;

  round(sessionId: string, number: number): Promise<RoundRecord | undefined>;
  lastRound(sessionId: string): Promise<RoundRecord | undefined>;
  /** Rounds of every session that are open or closing (a restart finishes them). */
  activeRounds(): Promise<RoundRecord[]>;
  /**
   * One transaction, the session's row locked: refuses (409 round_open) while a round is open or
   * closing, asks `plan` for the next number's participants among the joined clients (oldest
   * first; `plan` may throw to refuse), and inserts the round.
   */
  openRound(sessionId: string, baseVersion: number, plan: (number: number, candidates: string[]) => RoundPlan): Promise<RoundRecord>;
  /** Accepted updates of a round, in accept order. */
  updates(sessionId: string, round: number): Promise<UpdateRecord[]>;
  updateCount(sessionId: string, round: number): Promise<number>;
  hasUpdate(sessionId: string, round: number, clientId: string): Promise<boolean>;
  /**
   * One transaction, the round's row locked: the round must still be open at sumSeq - 1 and the
   * client must have no update in it (else 409); records the update and the round's new running
   * state. Returns the round's committed weight total.
   */
  acceptUpdate(update: NewUpdate): Promise<number>;
  /** open → closing; false when the round was not open (another closer took it). */
  markClosing(sessionId: string, round: number): Promise<boolean>;
  failRound(sessionId: string, round: number, closedAt: string, reason: string): Promise<void>;
  /** One transaction: the round's model version recorded, the round closed, the version made current. */
  publishRound(sessionId: string, round: number, version: number, closedAt: string, metrics: Record<string, number>): Promise<void>;
}

/**
 * What several coordinator processes sharing one state need beyond CoordinatorState (PostgreSQL
 * only): per-process partial sums of a round, and a close only one process performs.
 */
export interface SharedRoundState {
  /**
   * Like acceptUpdate, but `sumSeq` is `node`'s own position (its partial's sumSeq + 1) and the
   * update is recorded under `node`; the round's weight and metric totals still cover every node.
   * Returns the round's committed weight total and how many updates it has accepted in all.
   */
  acceptPartialUpdate(update: NewUpdate, node: string): Promise<{ weightTotal: number; accepted: number }>;
  /** Every node's partial sum of a round. */
  partials(sessionId: string, round: number): Promise<PartialRecord[]>;
  /**
   * Makes this process the round's closer: the round moves to 'closing' (or stays there when a
   * closer died) under a lock held until the returned release is called. Undefined when the round
   * is closed already or another live process is closing it.
   */
  claimClose(sessionId: string, round: number): Promise<(() => Promise<void>) | undefined>;
}
