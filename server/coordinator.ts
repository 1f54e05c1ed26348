/**
 * The coordinator's state machine, independent of HTTP: sessions and their tokens, versioned
 * global models, rounds aggregated by the session's strategy (FedAvg with a streaming running sum,
 * or a robust strategy over stored deltas), and the passage store.
 *
 * Acceptance is all-or-nothing: an update is decoded and validated in full (every tensor's
 * alignment, length, dtype, shape and finiteness, the metadata and metrics) before any running
 * state is touched, and a failure after that restores what the database points at; a client's
 * bytes never produce a 5xx. A round's aggregate is checked (finite, within the strategy's norm
 * bound) before it is published; otherwise the round fails with a stored reason and the previous
 * version stays current.
 *
 * Durability protocol (see docs/COORDINATOR.md): the state store (server/state.ts: SQLite, or
 * PostgreSQL) is the truth; model versions and running
 * sums are immutable files written atomically BEFORE the transaction that points at them, so after
 * a SIGKILL anywhere the database names only complete files, and files it does not name are
 * deleted on restart. All mutations of one session run one at a time (a promise chain), so the
 * read-modify-write of the running sum never interleaves; the state store's transactions re-check
 * what they depend on under a row lock (an accept at a running-sum position another accept took, a
 * second open round), so a decision made on a stale view is refused, never applied.
 */
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { decodeModel, encodeModel, UpdateError, type NamedTensor, type NamedTensors } from '../src/federated/codec';
import {
  DEFAULT_MAX_EXAMPLES_PER_UPDATE,
  DEFAULT_MAX_WEIGHT_SHARE,
  DEFAULT_ROUND_POLICY,
  isTrainedTensor,
  JOIN_KEY,
  loraAdapterPrefixes,
  parseTrainingConfig,
  passagePolicyOf,
  trainingConfigProblems,
  UPDATE_METRIC_RANGES,
  type CreatedSession,
  type JoinResult,
  type PassagePolicy,
  type RoundInfo,
  type ServerEvent,
  type SessionConfig,
  type SessionInfo,
  type UpdateLimits,
  type UpdateReceipt,
} from '../src/federated/protocol';
import {
  applyDelta,
  createStrategy,
  emptyRunningSum,
  StrategyConfigError,
  type AcceptedUpdate,
  type AggregateResult,
  type RunningSum,
  type Strategy,
} from '../src/federated/strategy';
import { deltaNorm } from '../src/federated/strategies/delta-chunks';
import { cappedWeight, defaultMaxExamples } from '../src/federated/strategies/weights';
import { SafetensorsError } from '../src/model/safetensors';
import { writeFileAtomic } from '../src/platform/node/atomic-file';
import { crashPoint } from './crash-points';
import { nowIso, type Db } from './db';
import { ApiError, badRequest, conflict, forbidden, notFound, unauthorized } from './errors';
import { PgEventRelay } from './event-relay';
import { EventHub } from './events';
import { PgPresence } from './pg-presence';
import { LocalPresence, type Presence } from './presence';
import { PassageIntake } from './passage-intake';
import { EmbeddedPassageStore, type PassageRecords, type PassageStore } from './passages';
import { LancePassageStore, type LanceStoreOptions } from './lance-passages';
import { moveLegacyPassageRecords } from './passage-records-copy';
import { PgPassageRecords } from './pg-passages';
import { PgvectorPassageStore, type PgvectorStoreOptions } from './pgvector-passages';
import { PostgresState } from './pg-state';
import { SqlitePassageRecords } from './sqlite-passages';
import { SqliteState } from './sqlite-state';
import { openDataFolderDatabase } from './state-location';
import type { CoordinatorState, Principal, RoundRecord, SharedRoundState, UpdateRecord } from './state';
import { preparePool, TrainingQuestionStore, type TrainingQuestionsInput } from './training-questions';
import { BlobUnavailableError, FolderBlobStore, type BlobStore, type BlobStoreKind } from './blob-store';
import { fileDeltaChunks } from './delta-files';
import { PgBlobStore } from './pg-blob-store';
import { mergeSumFiles, readSumFile, writeSumFile } from './sum-file';
import { hashToken, newId, newJoinCode, newToken } from './tokens';
import { addToRunningSum, openUpdateFile, writeDeltaFileFrom, type UpdateFile } from './update-file';
import type { UploadedFile } from './upload-body';

export interface CoordinatorOptions {
  readonly dataDir: string;
  /** Uniform [0,1) source for client selection (tests inject a seeded one). */
  readonly random?: () => number;
  /** The LanceDB passage store's location and settings; absent: the embedded store (SQLite + exact index). */
  readonly passageStore?: LanceStoreOptions;
  /** Keep the passage vectors in PostgreSQL with pgvector (needs `database`; not with `passageStore`). */
  readonly pgvector?: PgvectorStoreOptions;
  /** A PostgreSQL URL (postgres://…) for the coordinator state; absent: the data folder's SQLite database. */
  readonly database?: string;
  /**
   * This process's name among the coordinators sharing `database` and the data folder: it names
   * its partial-sum files and its update rows. Default: a new random id per start (a restarted
   * process is a new node; what its previous life committed stays in the round).
   */
  readonly node?: string;
  /**
   * With `database`: how long a process's presence rows count without a refresh (server/pg-presence.ts),
   * i.e. how long the clients of a process that died stay "online" elsewhere. Default 30 s.
   */
  readonly presenceTtlMs?: number;
  /** Where background problems (a lost event relay) are reported; default stderr. */
  readonly log?: (line: string) => void;
  /**
   * Where model versions, partial sums and deltas are shared (server/blob-store.ts): `folder` (the
   * default) the data folder, shared by every process; `database` (needs `database`) PostgreSQL,
   * the data folder then being each process's own cache.
   */
  readonly blobStore?: BlobStoreKind;
}

export type { Principal } from './state';

/** Session config as a creator sends it: defaults fill the rest. */
export type SessionConfigInput = Pick<SessionConfig, 'name' | 'models'> &
  Partial<Omit<SessionConfig, 'name' | 'models' | 'roundPolicy' | 'updateLimits' | 'passages' | 'trainingQuestions'>> & {
    roundPolicy?: Partial<SessionConfig['roundPolicy']>;
    updateLimits?: Partial<UpdateLimits>;
    passages?: Partial<PassagePolicy>;
    /** A pool of questions to hand out, a shard per client (server/training-questions.ts). */
    trainingQuestions?: TrainingQuestionsInput;
  };

/** The in-memory side of the one open round of a session. */
interface LiveRound {
  readonly number: number;
  readonly baseVersion: number;
  readonly participants: ReadonlySet<string>;
  /** name → shape of the trained tensors every update must carry. */
  readonly shapes: ReadonlyMap<string, readonly number[]>;
  readonly strategy: Strategy;
  /** FedAvg's running sum; null for strategies that keep every delta (delta-<seq> files). */
  sum: RunningSum | null;
  seq: number;
  metricSums: Record<string, number>;
  readonly accepted: Set<string>;
  timer?: NodeJS.Timeout;
}

const NODE_ID = /^[A-Za-z0-9_-]{1,64}$/;
/** How long a join's idempotency key answers a resend with the same client: a resend arrives within seconds (failover) or minutes (a tab reloaded mid-join); after this the key is forgotten. */
const JOIN_KEY_WINDOW_MS = 15 * 60_000;

export class Coordinator {
  /** The data folder's SQLite database (state and passage records); null when `database` names PostgreSQL, which holds both. */
  readonly db: Db | null;
  /** Sessions, clients, model versions, rounds, updates, training questions (server/state.ts). */
  readonly state: CoordinatorState;
  readonly passages: PassageStore;
  /** Checks contributed passages (frozen-encoder spot checks, norms, quotas) before the store. */
  readonly passageIntake: PassageIntake;
  /** Training questions sessions hand out, a shard per client. */
  readonly trainingQuestions: TrainingQuestionStore;
  readonly events = new EventHub();
  /** Who is online: this process's streams, or with PostgreSQL every process's (server/presence.ts). */
  readonly presence: Presence;
  /**
   * With PostgreSQL state, several coordinator processes may share the database and the data
   * folder (docs/DEPLOY.md): each keeps its own partial sum of a round, named by this node id, and
   * the process that closes the round merges them. Null with SQLite (one process, one running sum).
   */
  readonly node: string | null;
  /** Model versions, sums and deltas: written under the data folder, shared through this (server/blob-store.ts). */
  readonly blobs: BlobStore;
  private readonly shared?: SharedRoundState;
  private readonly relay?: PgEventRelay;
  private readonly sharedPresence?: PgPresence;
  private readonly random: () => number;
  private readonly live = new Map<string, LiveRound>();
  private readonly chains = new Map<string, Promise<unknown>>();
  private closed = false;

  constructor(readonly options: CoordinatorOptions) {
    if (options.node !== undefined && !NODE_ID.test(options.node)) throw new Error(`node id "${options.node}" must be 1-64 of A-Z a-z 0-9 _ -`);
    if (options.blobStore === 'database' && !options.database) throw new Error('the database blob store needs PostgreSQL state (--database)');
    this.node = options.database ? (options.node ?? newId()) : null;
    mkdirSync(options.dataDir, { recursive: true });
    // Update bodies a crash left half-received or unvalidated: no durable state names them.
    rmSync(this.tmpDir(), { recursive: true, force: true });
    mkdirSync(this.tmpDir(), { recursive: true });
    const folder = openDataFolderDatabase(options.dataDir, options.database);
    this.db = folder.db;
    let records: PassageRecords;
    if (options.pgvector && (!options.database || options.passageStore))
      throw new Error('the pgvector passage store needs --database (PostgreSQL) and no LanceDB --passage-store');
    let pgvector: PgvectorPassageStore | undefined;
    if (options.database) {
      const pgState = new PostgresState(options.database);
      this.state = this.shared = pgState;
      this.blobs =
        options.blobStore === 'database' ? new PgBlobStore(pgState.pool, options.dataDir, () => pgState.open()) : new FolderBlobStore(options.dataDir, true);
      const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
      const presence = new PgPresence({
        url: options.database,
        node: this.node!,
        ttlMs: options.presenceTtlMs,
        tell: (sessionId, event) => this.events.emit(sessionId, event),
        announce: (sessionId) => this.relay?.announcePresence(sessionId),
        log,
      });
      this.presence = this.sharedPresence = presence;
      this.relay = new PgEventRelay(options.database, this.node!, {
        hydrate: async (sessionId, type, round) => ({ type, round: await this.round(sessionId, round) }),
        deliver: (sessionId, event) => {
          // Another process opened or closed a round: this one follows (deadline timer, admissions).
          if (event.type === 'round-opened' || event.type === 'round-closed')
            void this.serial(sessionId, () => this.syncLive(sessionId)).catch(() => undefined);
          this.events.emit(sessionId, event);
        },
        presenceChanged: (sessionId) => presence.changedElsewhere(sessionId),
        log,
      });
      // The passage records share the state's pool and schema; a data folder that still holds
      // records in SQLite (from before they moved into PostgreSQL) has them moved first.
      let ready: Promise<void> | undefined;
      records = new PgPassageRecords(pgState.pool, () => {
        ready ??= pgState
          .open()
          .then(() => (folder.legacyPassages ? moveLegacyPassageRecords(pgState.pool, folder.legacyPassages, log) : undefined))
          .catch((e: unknown) => {
            ready = undefined;
            throw e;
          });
        return ready;
      });
      if (options.pgvector) pgvector = new PgvectorPassageStore(records as PgPassageRecords, pgState.pool, options.database, { log, ...options.pgvector });
    } else {
      this.state = new SqliteState(this.db!);
      this.blobs = new FolderBlobStore(options.dataDir);
      records = new SqlitePassageRecords(this.db!);
      this.presence = new LocalPresence(this.events);
    }
    this.passages =
      pgvector ??
      (options.passageStore
        ? new LancePassageStore(records, { ...options.passageStore, shared: options.database !== undefined }, () => this.state.sessionIds())
        : new EmbeddedPassageStore(records));
    this.trainingQuestions = new TrainingQuestionStore(this.state);
    this.passageIntake = new PassageIntake({
      passages: this.passages,
      checks: records,
      config: (id) => this.config(id),
      encoderVersion: (id) => this.state.latestInstalledVersion(id),
      readModel: async (id, v) => readFileSync(await this.blobs.get(modelKey(id, v))),
    });
    this.random = options.random ?? Math.random;
  }

  // ------------------------------------------------------------------ files

  private sessionDir(sessionId: string): string {
    return join(this.options.dataDir, 'sessions', sessionId);
  }

  /** This process's copy of a model version (another process's may first need `blobs.get`). */
  modelPath(sessionId: string, version: number): string {
    return this.blobs.path(modelKey(sessionId, version));
  }

  private roundDir(sessionId: string, round: number): string {
    return join(this.options.dataDir, roundKey(sessionId, round));
  }

  /** A running-sum file: the round's (one process), or `node`'s partial sum (several processes). */
  private sumKey(sessionId: string, round: number, seq: number, node: string | null = this.node): string {
    return `${roundKey(sessionId, round)}/${node === null ? `sum-${seq}.safetensors` : `sum-${node}-${seq}.safetensors`}`;
  }

  private sumPath(sessionId: string, round: number, seq: number, node: string | null = this.node): string {
    return this.blobs.path(this.sumKey(sessionId, round, seq, node));
  }

  private deltaKey(sessionId: string, round: number, seq: number, node: string | null = this.node): string {
    return `${roundKey(sessionId, round)}/${node === null ? `delta-${seq}.safetensors` : `delta-${node}-${seq}.safetensors`}`;
  }

  /** A model version, fetched from the blob store when this process lacks it (503 when nobody has it intact). */
  private async readModelVersion(sessionId: string, version: number): Promise<NamedTensors> {
    return decodeModel(readFileSync(await this.modelFileOf(sessionId, version)), `model v${version}`);
  }

  private async modelFileOf(sessionId: string, version: number): Promise<string> {
    try {
      return await this.blobs.get(modelKey(sessionId, version));
    } catch (e) {
      if (e instanceof BlobUnavailableError) throw new ApiError(503, 'model_unavailable', `model version ${version} cannot be read: ${e.message}`);
      throw e;
    }
  }

  /** Emits to this process's event streams and, with several processes, to theirs (server/event-relay.ts). */
  publish(sessionId: string, event: ServerEvent): void {
    this.events.emit(sessionId, event);
    this.relay?.publish(sessionId, event);
  }

  /** Runs `fn` after every earlier mutation of the same session has finished. */
  private serial<T>(sessionId: string, fn: () => T | Promise<T>): Promise<T> {
    const prev = this.chains.get(sessionId) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    this.chains.set(
      sessionId,
      next.catch(() => undefined),
    );
    return next;
  }

  // ------------------------------------------------------------------ sessions

  async createSession(input: SessionConfigInput, initialModel?: Uint8Array): Promise<CreatedSession> {
    let strategy: Strategy;
    try {
      strategy = createStrategy(input.strategy ?? 'fedavg', input.strategyParams ?? {});
    } catch (e) {
      if (e instanceof StrategyConfigError) throw badRequest(e.code, e.message);
      throw e;
    }
    const training = input.training ?? {};
    // Every setting participants will read must fit its schema now, not fail in each tab later.
    const problems = trainingConfigProblems(training);
    if (problems.length > 0) throw badRequest('invalid_training_config', problems.join('; '));
    const pool = input.trainingQuestions ? preparePool(input.trainingQuestions) : undefined;
    const config: SessionConfig = {
      name: input.name,
      models: input.models,
      training,
      roundPolicy: { ...DEFAULT_ROUND_POLICY, ...input.roundPolicy },
      trainedPrefixes: input.trainedPrefixes ?? [''],
      strategy: strategy.name,
      strategyParams: strategy.params,
      updateLimits: defaultUpdateLimits(training, strategy, input.updateLimits),
      passages: passagePolicyOf(input),
      ...(pool ? { trainingQuestions: pool.policy } : {}),
    };
    if (strategy.storage === 'running-sum' && config.updateLimits.maxWeightShare < 1) {
      throw badRequest(
        'invalid_update_limits',
        `strategy "${strategy.name}" streams a running sum and cannot cap weight shares (maxWeightShare must be 1); choose a robust strategy such as norm-clip to cap them`,
      );
    }
    const adapterPrefixes = loraAdapterPrefixes(parseTrainingConfig(training));
    // Clients train only the adapters of a LoRA session (src/corag/model-bundle.ts trainableForWirePrefixes),
    // and query-encoder adapters that no prefix aggregates would be built and never trained.
    if (
      adapterPrefixes &&
      (!config.trainedPrefixes.every((p) => adapterPrefixes.some((a) => p.startsWith(a))) ||
        !adapterPrefixes.every((a) => config.trainedPrefixes.some((p) => p.startsWith(a))))
    ) {
      const what = adapterPrefixes.length > 1 ? "the reader's and the query encoder's adapters (training.loraQueryTargets)" : "the reader's adapters only";
      throw badRequest(
        'invalid_lora_session',
        `a LoRA session (training.loraRank) trains and aggregates ${what}: its trainedPrefixes must be ${JSON.stringify(adapterPrefixes)}, not ${JSON.stringify(config.trainedPrefixes)}`,
      );
    }
    if (config.roundPolicy.minUpdates > config.roundPolicy.minClients) {
      throw badRequest(
        'invalid_round_policy',
        `roundPolicy.minUpdates (${config.roundPolicy.minUpdates}) cannot exceed minClients (${config.roundPolicy.minClients})`,
      );
    }
    const model = initialModel ? this.validateModel(config, initialModel) : undefined;
    const id = newId();
    const adminToken = newToken();
    const joinCode = newJoinCode();
    mkdirSync(join(this.sessionDir(id), 'models'), { recursive: true });
    if (model) {
      writeFileAtomic(this.modelPath(id, 0), [model]);
      await this.blobs.put(modelKey(id, 0));
    }
    await this.passages.createSession(id, config.models).catch((e: unknown) => {
      throw e instanceof ApiError
        ? e
        : new ApiError(503, 'passage_store_unavailable', `the passage store could not be prepared (${(e as Error).message}); try again later`);
    });
    await this.state.createSession({
      id,
      config: JSON.stringify(config),
      adminTokenHash: hashToken(adminToken),
      joinCode,
      withModel: model !== undefined,
      ...(pool ? { questions: pool.ordered } : {}),
      createdAt: nowIso(),
    });
    return { session: await this.sessionInfo(id), adminToken, joinCode };
  }

  /** Checks a model upload and returns it re-encoded as F32 safetensors. */
  private validateModel(config: SessionConfig, bytes: Uint8Array): Uint8Array {
    let tensors: Map<string, NamedTensor>;
    try {
      tensors = decodeModel(bytes, 'model');
    } catch (e) {
      // Whatever the bytes are, the answer is a 400 naming the problem, never a 5xx.
      throw badRequest('malformed_safetensors', e instanceof SafetensorsError ? e.message : `model: ${(e as Error).message}`);
    }
    for (const [name, t] of tensors) {
      const bad = t.data.findIndex((v) => !Number.isFinite(v));
      if (bad >= 0) throw badRequest('non_finite', `model tensor "${name}" holds a non-finite value at flat index ${bad}`);
    }
    if (![...tensors.keys()].some((n) => isTrained(config, n))) {
      throw badRequest('no_trained_tensors', `no model tensor matches the session's trained prefixes ${JSON.stringify(config.trainedPrefixes)}`);
    }
    return encodeModel(tensors);
  }

  private async sessionRow(sessionId: string): Promise<{ config: SessionConfig; currentVersion: number | null; joinCode: string }> {
    const row = await this.state.session(sessionId);
    if (!row) throw notFound('session_not_found', `session "${sessionId}" does not exist`);
    return { config: withDefaults(JSON.parse(row.config) as SessionConfig), currentVersion: row.currentVersion, joinCode: row.joinCode };
  }

  async config(sessionId: string): Promise<SessionConfig> {
    return (await this.sessionRow(sessionId)).config;
  }

  async joinCode(sessionId: string): Promise<string> {
    return (await this.sessionRow(sessionId)).joinCode;
  }

  sessionIds(): Promise<string[]> {
    return this.state.sessionIds();
  }

  async sessionInfo(sessionId: string): Promise<SessionInfo> {
    const { config, currentVersion } = await this.sessionRow(sessionId);
    const clients = await this.state.clientCount(sessionId);
    const last = await this.state.lastRound(sessionId);
    return {
      id: sessionId,
      config,
      currentVersion,
      clients,
      online: await this.presence.online(sessionId),
      passages: await this.passages.count(sessionId),
      round: last ? await this.roundInfo(last) : null,
    };
  }

  /** Resolves a bearer token to its role in `sessionId`; anything else is 401. */
  async authenticate(sessionId: string, token: string | undefined): Promise<Principal> {
    if (!token) throw unauthorized();
    const principal = await this.state.principal(sessionId, hashToken(token));
    if (!principal) throw unauthorized('the bearer token is not valid for this session');
    return principal;
  }

  /** The training questions `clientId` is handed (its shard) and the session's held-out set. */
  async trainingQuestionsFor(sessionId: string, clientId: string) {
    return this.trainingQuestions.forClient(sessionId, (await this.config(sessionId)).trainingQuestions, clientId);
  }

  /**
   * Adds a client to the session with join code `code`. With `idempotencyKey` (a random secret the
   * joining client picked for this join, src/federated/protocol.ts JOIN_KEY) the join happens once:
   * the same key and code again within JOIN_KEY_WINDOW_MS — a resend after a lost answer, to this
   * or another coordinator on the same state — answers with the same client id and a fresh token
   * that replaces the client's stored token hash (tokens are stored hashed, so the first answer's
   * token cannot be sent again; nobody received it, so nothing is lost by invalidating it).
   * Security trade-off: within the window, whoever holds the key and the code can take the
   * client's identity (and cut off whoever holds its current token), so the key must be as secret
   * as a token: ≥ 128 bits of randomness by protocol, sent only with the join, stored only as its
   * SHA-256, and forgotten after the window. Sealing the first token with a server key (one key
   * every coordinator must share, whose leak with the database reveals live tokens) or deriving
   * tokens from a secret (none revocable) would return the identical token at a higher cost.
   */
  async join(code: string, name?: string, idempotencyKey?: string): Promise<JoinResult> {
    if (idempotencyKey !== undefined && !JOIN_KEY.test(idempotencyKey)) throw badRequest('invalid_idempotency_key', `an idempotency key is ${JOIN_KEY.source}`);
    const sessionId = await this.state.sessionIdByJoinCode(code.trim().toUpperCase());
    if (!sessionId) throw notFound('unknown_join_code', 'no session has this join code');
    const token = newToken();
    const now = new Date();
    const client = { id: newId(), sessionId, name: name ?? '', tokenHash: hashToken(token), joinedAt: now.toISOString() };
    let clientId = client.id;
    if (idempotencyKey === undefined) await this.state.addClient(client);
    else {
      const since = new Date(now.getTime() - JOIN_KEY_WINDOW_MS).toISOString();
      clientId = await this.state.addClientOnce(client, { hash: hashToken(idempotencyKey), since });
    }
    const policy = (await this.config(sessionId)).roundPolicy;
    if (policy.autoStart) void this.serial(sessionId, () => this.maybeAutoStart(sessionId)).catch(() => undefined);
    return { sessionId, clientId, token };
  }

  // ------------------------------------------------------------------ models

  /** Admin: install a new global model version (not while a round is open). */
  replaceModel(sessionId: string, bytes: Uint8Array): Promise<{ version: number }> {
    return this.serial(sessionId, async () => {
      const { config, currentVersion } = await this.sessionRow(sessionId);
      await this.syncLive(sessionId);
      if (this.live.has(sessionId)) throw conflict('round_open', 'the global model cannot be replaced while a round is open');
      const model = this.validateModel(config, bytes);
      const version = currentVersion === null ? 0 : currentVersion + 1;
      mkdirSync(join(this.sessionDir(sessionId), 'models'), { recursive: true });
      writeFileAtomic(this.modelPath(sessionId, version), [model]);
      await this.blobs.put(modelKey(sessionId, version));
      await this.state.installModel(sessionId, currentVersion, version, nowIso());
      return { version };
    });
  }

  /** Path of an existing model version's file, or 404. */
  async modelFile(sessionId: string, version: number): Promise<string> {
    if (!(await this.state.hasModelVersion(sessionId, version))) throw notFound('version_not_found', `session has no model version ${version}`);
    return this.modelFileOf(sessionId, version);
  }

  // ------------------------------------------------------------------ rounds

  private async roundInfo(r: RoundRecord): Promise<RoundInfo> {
    const live = r.state === 'open' || r.state === 'closing' ? this.live.get(r.sessionId) : undefined;
    // With several processes a round's updates are spread over them: the shared state counts them all.
    const accepted = live && live.number === r.number && !this.shared ? live.accepted.size : await this.state.updateCount(r.sessionId, r.number);
    return {
      sessionId: r.sessionId,
      round: r.number,
      state: r.state,
      baseVersion: r.baseVersion,
      resultVersion: r.resultVersion,
      participants: r.participants,
      accepted,
      openedAt: r.openedAt,
      deadlineAt: r.deadlineAt,
      closedAt: r.closedAt,
      config: r.config,
      metrics: r.metrics,
      failureReason: r.failureReason,
    };
  }

  async round(sessionId: string, round: number | 'current'): Promise<RoundInfo> {
    await this.sessionRow(sessionId);
    const row = round === 'current' ? await this.state.lastRound(sessionId) : await this.state.round(sessionId, round);
    if (!row) throw notFound('round_not_found', round === 'current' ? 'no round has been opened in this session yet' : `round ${round} does not exist`);
    return this.roundInfo(row);
  }

  private strategyOf(config: SessionConfig): Strategy {
    return createStrategy(config.strategy, config.strategyParams);
  }

  private async trainedShapes(sessionId: string, config: SessionConfig, version: number): Promise<Map<string, readonly number[]>> {
    const model = await this.readModelVersion(sessionId, version);
    const shapes = new Map<string, readonly number[]>();
    for (const [name, t] of model) if (isTrained(config, name)) shapes.set(name, t.shape);
    return shapes;
  }

  /** Admin: open the next round now. */
  openRound(sessionId: string): Promise<RoundInfo> {
    return this.serial(sessionId, () => this.openRoundNow(sessionId));
  }

  private async openRoundNow(sessionId: string): Promise<RoundInfo> {
    const { config, currentVersion } = await this.sessionRow(sessionId);
    if (currentVersion === null) throw conflict('no_model', 'upload the initial global model before opening a round');
    const policy = config.roundPolicy;
    // One transaction with the session's row locked: no other process opens a round meanwhile.
    const row = await this.state.openRound(sessionId, currentVersion, (number, candidates) => {
      if (candidates.length < policy.minClients) {
        throw conflict('not_enough_clients', `a round needs at least ${policy.minClients} joined clients; ${candidates.length} have joined`);
      }
      const plan = this.strategyOf(config).configureRound({
        round: number,
        candidates,
        fraction: policy.fraction,
        minClients: policy.minClients,
        training: config.training,
        random: this.random,
      });
      const opened = new Date();
      const deadline = new Date(opened.getTime() + policy.deadlineSeconds * 1000);
      return { participants: plan.participants, config: plan.config, openedAt: opened.toISOString(), deadlineAt: deadline.toISOString() };
    });
    await this.goLive(sessionId, row, config);
    const info = await this.roundInfo(row);
    this.publish(sessionId, { type: 'round-opened', round: info });
    return info;
  }

  /** Loads an open round into memory (on open, or on restart from its committed state). */
  private async goLive(sessionId: string, row: RoundRecord, config: SessionConfig): Promise<LiveRound> {
    const shapes = await this.trainedShapes(sessionId, config, row.baseVersion);
    const strategy = this.strategyOf(config);
    const dir = this.roundDir(sessionId, row.number);
    mkdirSync(dir, { recursive: true });
    const rows = await this.state.updates(sessionId, row.number);
    // This process's position: the round's (one process), or its own partial (several; a new node starts at 0).
    const own = this.shared ? (await this.shared.partials(sessionId, row.number)).find((p) => p.node === this.node) : undefined;
    const seq = this.shared ? (own?.sumSeq ?? 0) : row.sumSeq;
    const weightTotal = this.shared ? (own?.weightTotal ?? 0) : row.weightTotal;
    // Files the database does not point at were written by an update that never committed. With
    // several processes, another one may be writing its next file right now: the round's folder
    // is cleaned when it closes instead.
    if (!this.shared) {
      const named = strategy.storage === 'running-sum' ? new Set([`sum-${row.sumSeq}.safetensors`]) : new Set(rows.map((r) => `delta-${r.sumSeq}.safetensors`));
      for (const f of readdirSync(dir)) if (!named.has(f)) rmSync(join(dir, f), { force: true });
    }
    const sum =
      strategy.storage !== 'running-sum'
        ? null
        : seq > 0
          ? readSumFile(await this.blobs.get(this.sumKey(sessionId, row.number, seq)), shapes, weightTotal)
          : emptyRunningSum(shapes);
    const accepted = new Set(rows.map((r) => r.clientId));
    const live: LiveRound = {
      number: row.number,
      baseVersion: row.baseVersion,
      participants: new Set(row.participants),
      shapes,
      strategy,
      sum,
      seq,
      metricSums: this.shared ? (own?.metricSums ?? {}) : row.metricSums,
      accepted,
    };
    const wait = Math.max(0, Date.parse(row.deadlineAt) - Date.now());
    live.timer = setTimeout(() => void this.closeRound(sessionId, row.number, 'deadline').catch(() => undefined), Math.min(wait, 2 ** 31 - 1));
    live.timer.unref();
    this.live.set(sessionId, live);
    return live;
  }

  /**
   * A new path under the data folder's tmp/ for an update body to be streamed into (server/app.ts);
   * tmp/ is emptied on every start, so a body a crash left there is deleted.
   */
  uploadTempPath(): string {
    return join(this.tmpDir(), `update-${newId()}.part`);
  }

  private tmpDir(): string {
    // Each process its own: the data folder may be shared, and a start empties this folder.
    return this.node === null ? join(this.options.dataDir, 'tmp') : join(this.options.dataDir, 'tmp', this.node);
  }

  /**
   * Accepts one client's delta for `round`: validated, added to the running sum (or stored as a
   * delta file), committed. `body` is the update's bytes, or the temp file it was streamed into
   * (`uploadTempPath`), read in chunks; that file is deleted when this settles, whatever the outcome.
   */
  acceptUpdate(sessionId: string, round: number, clientId: string, body: Uint8Array | UploadedFile): Promise<UpdateReceipt> {
    let upload: UploadedFile;
    if (body instanceof Uint8Array) {
      upload = { path: this.uploadTempPath(), bytes: body.byteLength };
      writeFileSync(upload.path, body, { flag: 'wx' });
    } else upload = body;
    const done = this.serial(sessionId, () => this.acceptUpdateFile(sessionId, round, clientId, upload));
    return done.finally(() => rmSync(upload.path, { force: true }));
  }

  private async acceptUpdateFile(sessionId: string, round: number, clientId: string, upload: UploadedFile): Promise<UpdateReceipt> {
    const { config } = await this.sessionRow(sessionId);
    await this.syncLive(sessionId);
    const live = await this.liveRoundTaking(sessionId, round, clientId);
    crashPoint('upload:received');
    let accepted = 0;
    // 1. Validate ALL of it, reading the file in chunks, before anything changes.
    let update: UpdateFile;
    try {
      update = await openUpdateFile(upload.path, live.shapes);
    } catch (e) {
      if (e instanceof UpdateError) throw badRequest(e.code, e.message);
      throw badRequest('malformed_update', `update could not be decoded: ${(e as Error).message}`);
    }
    try {
      if (update.round !== round) throw badRequest('round_mismatch', `update metadata names round ${update.round} but was sent to round ${round}`);
      if (update.baseVersion !== live.baseVersion) {
        throw conflict('stale_base_version', `delta was computed against version ${update.baseVersion}; round ${round} trains version ${live.baseVersion}`);
      }
      const metrics = acceptedMetrics(update.metrics);
      const norm = update.norm;
      if (!Number.isFinite(norm)) throw badRequest('non_finite', `the delta's L2 norm is not finite (${norm})`);
      const weight = cappedWeight(update.numExamples, config.updateLimits.maxExamplesPerUpdate);
      const seq = live.seq + 1;
      const metricSums = { ...live.metricSums };
      for (const [k, v] of Object.entries(metrics)) metricSums[k] = (metricSums[k] ?? 0) + weight * v;
      const before = live.sum?.weightTotal ?? 0;
      // 2. Durable file first (a new sum, or this delta), then one transaction, then memory. The
      // values are read from the upload's file a second time, chunk by chunk.
      const newKey = live.sum ? this.sumKey(sessionId, round, seq) : this.deltaKey(sessionId, round, seq);
      const newFile = this.blobs.path(newKey);
      try {
        if (live.sum) {
          await addToRunningSum(update, live.sum, weight);
          writeSumFile(newFile, live.sum);
        } else {
          await writeDeltaFileFrom(update, newFile);
        }
        // Other processes read it from the blob store (the closer merges it, or takes over a dead process's share).
        await this.blobs.put(newKey);
        crashPoint('upload:sum-written');
        // The round's row locked; refused if the round moved on (closed, or another update took this position).
        const record = {
          sessionId,
          round,
          clientId,
          numExamples: update.numExamples,
          weight,
          sumSeq: seq,
          bytes: upload.bytes,
          norm,
          metricSums,
          acceptedAt: nowIso(),
        };
        if (this.shared) accepted = (await this.shared.acceptPartialUpdate(record, this.node!)).accepted;
        else await this.state.acceptUpdate(record);
      } catch (e) {
        // Nothing committed: go back to exactly what the database points at.
        rmSync(newFile, { force: true });
        await this.blobs.delete(newKey).catch(() => undefined);
        if (live.sum) {
          live.sum = live.seq > 0 ? readSumFile(this.sumPath(sessionId, round, live.seq), live.shapes, before) : emptyRunningSum(live.shapes);
        }
        throw e;
      }
      if (live.sum && live.seq > 0) {
        rmSync(this.sumPath(sessionId, round, live.seq), { force: true });
        // Superseded by the partial sum just committed: no process will read it again.
        await this.blobs.delete(this.sumKey(sessionId, round, live.seq));
      }
      live.seq = seq;
      live.metricSums = metricSums;
    } finally {
      await update.close();
    }
    live.accepted.add(clientId);
    crashPoint('upload:committed');
    // With several processes the count is the shared state's, taken in the accept's transaction:
    // the process whose accept completes the round closes it.
    const acceptedNow = this.shared ? accepted : live.accepted.size;
    this.publish(sessionId, { type: 'update-accepted', round, clientId, accepted: acceptedNow });
    const complete = acceptedNow === live.participants.size;
    if (complete) void this.closeRound(sessionId, round, 'complete').catch(() => undefined);
    return { round, clientId, numExamples: update.numExamples, accepted: acceptedNow, roundComplete: complete };
  }

  // ------------------------------------------------------------------ admission before the body
  // Read-only checks the HTTP edge makes from the request line and headers, before it reads a byte
  // of an upload (server/app.ts), so a refused sender never gets a body buffered or an upload slot.
  // They throw the same ApiErrors acceptUpdate / replaceModel would; those still check everything
  // again once the body is in (the round can close while it arrives).

  /** Would `clientId`'s update for `round` be considered now? Returns how many tensors it must carry. */
  async admitUpdate(sessionId: string, round: number, clientId: string): Promise<{ expectedTensors: number }> {
    await this.sessionRow(sessionId);
    if (this.shared) await this.serial(sessionId, () => this.syncLive(sessionId));
    return { expectedTensors: (await this.liveRoundTaking(sessionId, round, clientId)).shapes.size };
  }

  /** The open round `round` if it takes an update from `clientId` now (selected, none accepted yet); else the ApiError saying why. */
  private async liveRoundTaking(sessionId: string, round: number, clientId: string): Promise<LiveRound> {
    const live = this.live.get(sessionId);
    if (!live || live.number !== round) {
      const row = await this.state.round(sessionId, round);
      if (!row) throw notFound('round_not_found', `round ${round} does not exist`);
      // A retry whose first attempt landed (and closed the round) learns that, not "closed".
      if (await this.state.hasUpdate(sessionId, round, clientId)) {
        throw conflict('duplicate_update', `this client's update for round ${round} was already accepted (the round has closed since)`);
      }
      throw conflict(
        'round_closed',
        `round ${round} is ${row.state === 'failed' ? 'over (failed)' : 'closed'}; updates for it are refused — wait for the next round`,
      );
    }
    if (!live.participants.has(clientId)) throw forbidden('not_selected', `this client was not selected for round ${round}`);
    if (live.accepted.has(clientId)) throw conflict('duplicate_update', `this client's update for round ${round} was already accepted`);
    return live;
  }

  /** Would an admin's model upload be considered now (the session exists, no round is open)? */
  async admitModel(sessionId: string): Promise<void> {
    await this.sessionRow(sessionId);
    if (this.shared) await this.serial(sessionId, () => this.syncLive(sessionId));
    if (this.live.has(sessionId)) throw conflict('round_open', 'the global model cannot be replaced while a round is open');
  }

  /** Ends a round: aggregate what arrived (≥ minUpdates) into a new version, or fail it. */
  closeRound(sessionId: string, round: number, reason: 'complete' | 'deadline' | 'admin'): Promise<RoundInfo> {
    return this.serial(sessionId, () => this.closeRoundNow(sessionId, round, reason));
  }

  private async closeRoundNow(sessionId: string, round: number, reason: 'complete' | 'deadline' | 'admin'): Promise<RoundInfo> {
    if (this.shared) return this.closeSharedRound(this.shared, sessionId, round, reason);
    const live = this.live.get(sessionId);
    if (!live || live.number !== round) {
      if (reason !== 'admin') return this.round(sessionId, round);
      const row = await this.state.round(sessionId, round);
      if (!row) throw notFound('round_not_found', `round ${round} does not exist`);
      throw conflict('round_closed', `round ${round} is already ${row.state}`);
    }
    const { config } = await this.sessionRow(sessionId);
    clearTimeout(live.timer);
    const closedAt = nowIso();
    const fail = (why: string) => this.state.failRound(sessionId, round, closedAt, why);
    if (live.accepted.size < config.roundPolicy.minUpdates) {
      await fail(`too_few_updates: ${live.accepted.size} accepted, the round policy needs at least ${config.roundPolicy.minUpdates}`);
    } else {
      await this.state.markClosing(sessionId, round);
      crashPoint('aggregate:start');
      const strategy = live.strategy;
      const global = await this.readModelVersion(sessionId, live.baseVersion);
      const rows = await this.state.updates(sessionId, live.number);
      const result = this.aggregate(sessionId, live, config, rows);
      await this.publishAggregate(sessionId, round, live.baseVersion, global, result, closedAt, fail, async () => {
        const committed = (await this.state.round(sessionId, round))!;
        return strategy.evaluate(live.metricSums, committed.weightTotal);
      });
    }
    this.live.delete(sessionId);
    rmSync(this.roundDir(sessionId, round), { recursive: true, force: true });
    const info = await this.round(sessionId, round);
    this.publish(sessionId, { type: 'round-closed', round: info });
    await this.maybeAutoStart(sessionId);
    return info;
  }

  /** Publishes `global + aggregate` as version baseVersion + 1, or fails the round when the aggregate is not what the strategy promises. */
  private async publishAggregate(
    sessionId: string,
    round: number,
    baseVersion: number,
    global: NamedTensors,
    result: AggregateResult,
    closedAt: string,
    fail: (why: string) => Promise<void>,
    metrics: () => Promise<Record<string, number>>,
  ): Promise<void> {
    // Published only if it is what the strategy promises: finite, and within its norm bound.
    const problem = checkAggregate(global, result);
    if (problem) return fail(problem);
    const updated = applyDelta(global, result.delta);
    const nonFinite = [...updated].find(([, t]) => t.data.some((v) => !Number.isFinite(v)));
    if (nonFinite) return fail(`non_finite_model: global + aggregate overflows float32 in tensor "${nonFinite[0]}"`);
    for (const [name, t] of updated) (global as Map<string, NamedTensor>).set(name, t);
    const version = baseVersion + 1;
    // Deterministic from committed state, so a crash before the commit below just redoes it.
    writeFileAtomic(this.modelPath(sessionId, version), [encodeModel(global)]);
    await this.blobs.put(modelKey(sessionId, version));
    crashPoint('aggregate:written');
    await this.state.publishRound(sessionId, round, version, closedAt, await metrics());
  }

  /**
   * Brings this process's view of a session's round in line with the shared state (several
   * processes): a round another process opened goes live here (its deadline timer too), one it
   * closed is dropped. Runs in the session's chain. Nothing to do with one process.
   */
  private async syncLive(sessionId: string): Promise<void> {
    if (!this.shared) return;
    const row = await this.state.lastRound(sessionId);
    const active = row && (row.state === 'open' || row.state === 'closing') ? row : undefined;
    const live = this.live.get(sessionId);
    if (live && live.number !== active?.number) {
      clearTimeout(live.timer);
      this.live.delete(sessionId);
      // Another process closed it: this process's files of it (its own share, or copies) are done with.
      if (this.blobs.kind === 'database') rmSync(this.roundDir(sessionId, live.number), { recursive: true, force: true });
    }
    if (active && !this.live.has(sessionId) && !this.closed) await this.goLive(sessionId, active, (await this.sessionRow(sessionId)).config);
  }

  /**
   * Closes a round with several processes sharing the state: only the process holding the round's
   * close claim aggregates (the others find it claimed or closed and do nothing), from every
   * process's partial sum (FedAvg) or every stored delta (robust strategies) in the shared folder.
   */
  private async closeSharedRound(shared: SharedRoundState, sessionId: string, round: number, reason: 'complete' | 'deadline' | 'admin'): Promise<RoundInfo> {
    const row = await this.state.round(sessionId, round);
    if (!row) throw notFound('round_not_found', `round ${round} does not exist`);
    const release = row.state === 'open' || row.state === 'closing' ? await shared.claimClose(sessionId, round) : undefined;
    if (!release) {
      await this.syncLive(sessionId);
      if (reason !== 'admin') return this.round(sessionId, round);
      const now = (await this.state.round(sessionId, round))!;
      throw conflict('round_closed', `round ${round} is already ${now.state}${now.state === 'closing' ? ' (another coordinator process is closing it)' : ''}`);
    }
    try {
      const live = this.live.get(sessionId);
      if (live) clearTimeout(live.timer);
      const { config } = await this.sessionRow(sessionId);
      const closedAt = nowIso();
      const fail = (why: string) => this.state.failRound(sessionId, round, closedAt, why);
      // Claimed: the round is 'closing', so no process commits another update to it.
      const rows = await this.state.updates(sessionId, round);
      if (rows.length < config.roundPolicy.minUpdates) {
        await fail(`too_few_updates: ${rows.length} accepted, the round policy needs at least ${config.roundPolicy.minUpdates}`);
      } else {
        crashPoint('aggregate:start');
        const strategy = this.strategyOf(config);
        const shapes = await this.trainedShapes(sessionId, config, row.baseVersion);
        const global = await this.readModelVersion(sessionId, row.baseVersion);
        const committed = (await this.state.round(sessionId, round))!;
        const result = await this.aggregateShared(shared, sessionId, committed, strategy, shapes, config, rows);
        await this.publishAggregate(sessionId, round, row.baseVersion, global, result, closedAt, fail, async () =>
          strategy.evaluate(committed.metricSums, committed.weightTotal),
        );
      }
      this.live.delete(sessionId);
      rmSync(this.roundDir(sessionId, round), { recursive: true, force: true });
      await this.blobs.deletePrefix(`${roundKey(sessionId, round)}/`);
    } finally {
      await release();
    }
    const info = await this.round(sessionId, round);
    this.publish(sessionId, { type: 'round-closed', round: info });
    await this.maybeAutoStart(sessionId);
    return info;
  }

  /** The aggregate over every process's share of a round: merged partial sums, or all deltas in accept order. */
  private async aggregateShared(
    shared: SharedRoundState,
    sessionId: string,
    row: RoundRecord,
    strategy: Strategy,
    shapes: ReadonlyMap<string, readonly number[]>,
    config: SessionConfig,
    rows: readonly UpdateRecord[],
  ): Promise<AggregateResult> {
    const updates: AcceptedUpdate[] = rows.map((r) => ({ weight: r.weight, norm: r.norm ?? Number.POSITIVE_INFINITY }));
    if (strategy.storage === 'running-sum') {
      const partials = await shared.partials(sessionId, row.number);
      // Every process's partial sum, fetched from the blob store where another process wrote it.
      const parts: Array<{ path: string; weightTotal: number }> = [];
      for (const p of partials.filter((q) => q.sumSeq > 0))
        parts.push({ path: await this.blobs.get(this.sumKey(sessionId, row.number, p.sumSeq, p.node)), weightTotal: p.weightTotal });
      // A round a single process (no node) accepted into before the upgrade: its running sum holds the rest.
      const rest = row.weightTotal - partials.reduce((a, p) => a + p.weightTotal, 0);
      if (row.sumSeq > 0) parts.push({ path: await this.blobs.get(this.sumKey(sessionId, row.number, row.sumSeq, null)), weightTotal: rest });
      return strategy.aggregate(mergeSumFiles(parts, shapes), updates);
    }
    const paths: string[] = [];
    for (const r of rows) paths.push(await this.blobs.get(this.deltaKey(sessionId, row.number, r.sumSeq, r.node ?? null)));
    const deltas = fileDeltaChunks(paths, shapes);
    try {
      return strategy.aggregate(deltas, updates, config.updateLimits.maxWeightShare);
    } finally {
      deltas.close();
    }
  }

  /** The round's aggregated delta, from the running sum or from the stored deltas (in accept order). */
  private aggregate(sessionId: string, live: LiveRound, config: SessionConfig, rows: readonly UpdateRecord[]): AggregateResult {
    // A norm unknown (an update accepted before norms were recorded, by FedAvg) bounds nothing.
    const updates: AcceptedUpdate[] = rows.map((r) => ({ weight: r.weight, norm: r.norm ?? Number.POSITIVE_INFINITY }));
    const strategy = live.strategy;
    if (strategy.storage === 'running-sum') return strategy.aggregate(live.sum!, updates);
    const deltas = fileDeltaChunks(
      rows.map((r) => this.blobs.path(this.deltaKey(sessionId, live.number, r.sumSeq))),
      live.shapes,
    );
    try {
      return strategy.aggregate(deltas, updates, config.updateLimits.maxWeightShare);
    } finally {
      deltas.close();
    }
  }

  private async maybeAutoStart(sessionId: string): Promise<void> {
    await this.syncLive(sessionId);
    if (this.closed || this.live.has(sessionId)) return;
    const { config, currentVersion } = await this.sessionRow(sessionId);
    if (!config.roundPolicy.autoStart || currentVersion === null) return;
    const clients = await this.state.clientCount(sessionId);
    if (clients >= config.roundPolicy.minClients && !this.closed) await this.openRoundNow(sessionId);
  }

  /**
   * Restart: reload every open round from its committed state (deleting orphan files) and finish
   * rounds that were complete or closing when the process died.
   */
  async resume(): Promise<void> {
    await this.state.open();
    await this.relay?.start();
    await this.sharedPresence?.start();
    if (this.blobs instanceof PgBlobStore) await this.sweepRoundBlobs(this.blobs);
    for (const row of await this.state.activeRounds()) {
      const { config } = await this.sessionRow(row.sessionId);
      const live = await this.goLive(row.sessionId, row, config);
      const accepted = this.shared ? await this.state.updateCount(row.sessionId, row.number) : live.accepted.size;
      // With several processes a 'closing' round is finished here only if its closer is gone (closeSharedRound's claim).
      const finished = row.state === 'closing' || accepted === live.participants.size || Date.parse(row.deadlineAt) <= Date.now();
      if (finished) await this.closeRound(row.sessionId, row.number, row.state === 'closing' || accepted === live.participants.size ? 'complete' : 'deadline');
    }
    for (const id of await this.sessionIds()) await this.serial(id, () => this.maybeAutoStart(id)).catch(() => undefined);
  }

  /**
   * Deletes the stored sums and deltas of rounds that are over: what a closing process that died
   * after publishing (before deleting them) left behind. The keys are listed BEFORE the active
   * rounds are read, so a round opened in between is not mistaken for an old one.
   */
  private async sweepRoundBlobs(blobs: PgBlobStore): Promise<void> {
    const keys = await blobs.keys('sessions/');
    const active = new Set((await this.state.activeRounds()).map((r) => `${roundKey(r.sessionId, r.number)}/`));
    for (const key of keys) {
      const round = /^sessions\/[^/]+\/rounds\/\d+\//.exec(key)?.[0];
      if (round && !active.has(round)) await blobs.delete(key);
    }
  }

  /** Stops timers and closes the databases (after in-flight mutations finish). */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.chains.values()]);
    for (const live of this.live.values()) clearTimeout(live.timer);
    this.live.clear();
    this.passageIntake.dispose();
    // Before the relay: the others hear that this process's clients left.
    await this.presence.close();
    await this.relay?.close();
    await this.passages.close();
    await this.state.close();
    this.db?.close();
  }
}

/** A model version's blob key (and its path under the data folder). */
function modelKey(sessionId: string, version: number): string {
  return `sessions/${sessionId}/models/v${version}.safetensors`;
}

/** The folder (and blob key prefix) of a round's sums and deltas. */
function roundKey(sessionId: string, round: number): string {
  return `sessions/${sessionId}/rounds/${round}`;
}

/** Why an aggregate must not be published, or null when it may: finite and within the strategy's bound. */
export function checkAggregate(global: NamedTensors, result: AggregateResult): string | null {
  for (const [name, d] of result.delta) {
    const g = global.get(name);
    if (!g || g.data.length !== d.length) return `aggregate_shape: the aggregate's tensor "${name}" does not match the global model`;
  }
  const norm = deltaNorm(result.delta);
  if (!Number.isFinite(norm)) return `non_finite_aggregate: the aggregated delta's L2 norm is ${norm}`;
  // float64 rounding only: a bound the strategy guarantees by construction holds to ~1e-12.
  if (norm > result.normBound * (1 + 1e-9) + 1e-30) {
    return `aggregate_norm_exceeds_bound: the aggregated delta's L2 norm ${norm.toPrecision(6)} exceeds the strategy's bound ${result.normBound.toPrecision(6)}`;
  }
  return null;
}

/**
 * The metrics an update may bring: finite numbers under the known keys (UPDATE_METRIC_RANGES) and
 * in their ranges. Unknown keys are dropped; a known key out of range refuses the update.
 */
export function acceptedMetrics(metrics: Readonly<Record<string, number>>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [key, value] of Object.entries(metrics)) {
    if (!Object.prototype.hasOwnProperty.call(UPDATE_METRIC_RANGES, key)) continue;
    const [lo, hi] = UPDATE_METRIC_RANGES[key];
    if (!Number.isFinite(value) || value < lo || value > hi) {
      throw badRequest('invalid_metrics', `update metric "${key}" must be a finite number in [${lo}, ${hi}], got ${value}`);
    }
    out[key] = value;
  }
  return out;
}

/** Fills what a config stored before a field existed lacks (fedavg, no caps beyond the defaults). */
function withDefaults(config: SessionConfig): SessionConfig {
  const strategy = createStrategy(config.strategy, config.strategyParams ?? {});
  return {
    ...config,
    strategyParams: strategy.params,
    updateLimits: config.updateLimits ?? defaultUpdateLimits(config.training, strategy, undefined),
  };
}

/** The session's update limits: what it set, else the defaults documented on UpdateLimits. */
function defaultUpdateLimits(training: SessionConfig['training'], strategy: Strategy, input: Partial<UpdateLimits> | undefined): UpdateLimits {
  return {
    maxExamplesPerUpdate: input?.maxExamplesPerUpdate ?? defaultMaxExamples(training, DEFAULT_MAX_EXAMPLES_PER_UPDATE),
    maxWeightShare: input?.maxWeightShare ?? (strategy.storage === 'running-sum' ? 1 : DEFAULT_MAX_WEIGHT_SHARE),
  };
}

export function isTrained(config: SessionConfig, name: string): boolean {
  return isTrainedTensor(config.trainedPrefixes, name);
}

export { ApiError };
