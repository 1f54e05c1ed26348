/**
 * The one CoRAG client runtime: browser tabs (workers/train.worker.ts, a thin comlink adapter over
 * it), the CRAB runner and headless Node clients run rounds through `FederatedCoragClient`, over the
 * coordinator's real protocol (src/federated/client.ts).
 *
 * `run()` follows the session's event stream and reconnects when it is lost (3 s apart; a 401 ends
 * it), and dispatches each round this client is selected for without awaiting it, so events keep
 * flowing while a round trains. One round's journey: SSE `round-opened` (or the `hello` snapshot of
 * an open round) naming this client → global version N from the cache or a download with progress
 * (then cached) → applied to the bundle → trainLocally with the round's hyper-parameters on the
 * current training input (setTraining / stopTraining) → delta = local − N for the session's trained
 * tensors, encoded into ONE body → a single PUT, retried while the round is open → one update per
 * round, never a second → `round-closed` → the host's hook (evaluation of the new version).
 */
import { CoragClient, CoragHttpError } from '../federated/client';
import { parseTrainingConfig, trainingConfigProblems, type AddPassagesResult, type RoundInfo, type ServerEvent, type SessionInfo } from '../federated/protocol';
import type { WireDtype } from '../federated/codec';
import { evaluate, type EvaluateOptions, type EvaluationResult } from './evaluate';
import { trainLocally, type LocalTrainingOptions, type LocalTrainingResult, type QAPair, type TrainProgress } from './local-training';
import { trainableForWirePrefixes, type ModelBundle } from './model-bundle';
import { embedPassages, type EmbedOptions, type PassageSource, type PassageText } from './retrieve';
import { atStage, isAbort, RoundStageError, TrainingInputError } from './errors';
import type { FitPlan } from './training-fit';
import type { LoraConfig, LoraTarget } from '../model/lora';

/** Where downloaded global versions are kept (the browser backs it with IndexedDB). Versions are immutable. */
export interface ModelCache {
  get(sessionId: string, version: number): Promise<Uint8Array | undefined>;
  put(sessionId: string, version: number, bytes: Uint8Array): Promise<void>;
}

/** Keeps the most recent versions in memory. */
export class MemoryModelCache implements ModelCache {
  private readonly entries = new Map<string, Uint8Array>();

  constructor(private readonly capacity = 2) {}

  async get(sessionId: string, version: number): Promise<Uint8Array | undefined> {
    return this.entries.get(`${sessionId}/${version}`);
  }

  async put(sessionId: string, version: number, bytes: Uint8Array): Promise<void> {
    this.entries.set(`${sessionId}/${version}`, bytes);
    while (this.entries.size > this.capacity) this.entries.delete(this.entries.keys().next().value!);
  }
}

/** The training options a client can fix itself; the round's config fills the rest. */
export type TrainingDefaults = Partial<Omit<LocalTrainingOptions, 'signal' | 'onProgress' | 'onFit'>>;

/** What a client reports as it goes (for a UI, a progress display or logs). */
export type ClientEvent =
  /** Every event of the session's stream, as it arrives (run). */
  | { readonly type: 'server'; readonly event: ServerEvent }
  /** The event stream connected (its `hello` arrived) or was lost; `message` says why and what happens next. */
  | { readonly type: 'connection'; readonly online: boolean; readonly message?: string }
  | { readonly type: 'round-skipped'; readonly round: number; readonly reason: string }
  | { readonly type: 'downloading'; readonly round: number; readonly version: number; readonly cached: boolean }
  /** Bytes of a global version downloaded so far (`total` undefined when the server sends no length). */
  | { readonly type: 'download-progress'; readonly round: number; readonly version: number; readonly loaded: number; readonly total?: number }
  /** Global `version` is applied to the bundle. */
  | { readonly type: 'model-loaded'; readonly round: number; readonly version: number; readonly cached: boolean; readonly bytes: number }
  /** The round's model and passage source are ready: training starts. */
  | { readonly type: 'training-started'; readonly round: number }
  | { readonly type: 'training'; readonly round: number; readonly progress: TrainProgress }
  /** The memory check made the round's step smaller to fit this client (src/corag/training-fit.ts). */
  | { readonly type: 'step-adapted'; readonly round: number; readonly plan: Extract<FitPlan, { kind: 'adapted' }> }
  | { readonly type: 'uploaded'; readonly round: number; readonly numExamples: number; readonly bytes: number; readonly body: Uint8Array }
  | { readonly type: 'upload-refused'; readonly round: number; readonly code: string; readonly message: string }
  | { readonly type: 'upload-retrying'; readonly round: number; readonly attempt: number; readonly delayMs: number; readonly message: string }
  | { readonly type: 'round-closed'; readonly round: RoundInfo };

export interface ClientCredentials {
  readonly sessionId: string;
  readonly clientId: string;
  readonly token: string;
}

/**
 * Where a round's training retrieves from: a source, or a function asked once per round (at its
 * retrieve stage), for a source that changes between rounds (a tab's own passages).
 */
export type TrainingSource = PassageSource | (() => PassageSource | Promise<PassageSource>);

/** What this client trains on in the rounds it takes part in. */
interface TrainingInput {
  readonly qaPairs: readonly QAPair[];
  readonly source: TrainingSource;
}

/**
 * Runs tasks one at a time. The model queue (FederatedClientOptions.queue): rounds, evaluations and
 * a host's questions take turns, so a question asked mid-round never sees half-applied weights.
 */
export class SerialQueue {
  private tail: Promise<unknown> = Promise.resolve();

  run<T>(task: () => Promise<T>): Promise<T> {
    const next = this.tail.then(task, task);
    this.tail = next.catch(() => undefined);
    return next;
  }
}

export interface FederatedClientOptions {
  readonly bundle: ModelBundle;
  /** What to train on from the start; without it (and `passageSource`) the client trains once setTraining is called. */
  readonly qaPairs?: readonly QAPair[];
  /** Where training retrieves from; a function receives this client's coordinator connection (called once). */
  readonly passageSource?: PassageSource | ((client: CoragClient, sessionId: string) => PassageSource);
  readonly cache?: ModelCache;
  /** Overrides of the round's hyper-parameters (the benchmark fixes its own). */
  readonly training?: TrainingDefaults;
  readonly updateDtype?: WireDtype;
  readonly uploadRetry?: UploadRetryPolicy;
  /** The queue `run()`'s rounds and evaluateGlobal take their turn in (share it with the host's other model work); default: one per client. */
  readonly queue?: SerialQueue;
  /** Wait before following the event stream again after it was lost or ended (default 3 s). */
  readonly reconnectDelayMs?: number;
  readonly onEvent?: (e: ClientEvent) => void;
}

/** What failed in the background of `run()`: a round's part (download to upload) or the round-closed hook. */
export interface BackgroundFailure {
  readonly during: 'round' | 'round-closed';
  readonly round: number;
  /** For `round-closed`: the version the round produced. */
  readonly version?: number | null;
}

export interface RunOptions {
  /** Stop once this client has trained in this many rounds (default: no limit). */
  readonly maxRounds?: number;
  /** Stops following and aborts the round in training. */
  readonly signal?: AbortSignal;
  /**
   * A round's part or the round-closed hook failed (aborts are not reported). Without it, the first
   * failure ends `run()`, which rejects with it.
   */
  readonly onError?: (error: unknown, failure: BackgroundFailure) => void;
  /** After every `round-closed` event (e.g. evaluate the new version: evaluateGlobal); not awaited by the event loop. */
  readonly onRoundClosed?: (round: RoundInfo) => Promise<void>;
}

/**
 * How a failed upload (lost connection, 5xx, 429, 408) is retried within its round. A trained update
 * is minutes of a user's compute, so it is not dropped at the first network hiccup; retries stop
 * at the round's deadline (the coordinator would refuse it after), on abort, or after `attempts`.
 */
export interface UploadRetryPolicy {
  /**
   * Tries in all, the first included. Default: as many as fit before the round's deadline (6 when
   * the round names no valid deadline).
   */
  readonly attempts?: number;
  /** Wait before the first retry; doubles each time (default 1 s). */
  readonly initialDelayMs?: number;
  /** Cap on one wait (default 30 s). */
  readonly maxDelayMs?: number;
}

const DEFAULT_UPLOAD_RETRY = { initialDelayMs: 1000, maxDelayMs: 30_000 };
const ATTEMPTS_WITHOUT_DEADLINE = 6;

/**
 * A failure worth retrying: no HTTP answer at all, a server error, "too many requests" (also this
 * client's earlier attempt still in flight), or 408: the body stalled on the way and was cut off.
 */
function isTransient(e: unknown): boolean {
  return !(e instanceof CoragHttpError) || e.status >= 500 || e.status === 429 || e.status === 408;
}

/** Resolves after `ms`, or rejects with the abort reason as soon as `signal` aborts. */
function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    signal?.throwIfAborted();
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** The round's training settings (read once by the protocol's parseTrainingConfig) → local training options. */
export function trainingOptionsFromRound(config: RoundInfo['config']): TrainingDefaults {
  const t = parseTrainingConfig(config);
  const out: TrainingDefaults = {
    lr: t.learningRate,
    retrieverLr: t.retrieverLearningRate,
    steps: t.localSteps,
    epochs: t.localEpochs,
    k: t.passagesPerQuestion,
    maxLength: t.maxLength,
    batchSize: t.batchSize,
    warmupSteps: t.warmupSteps,
    weightDecay: t.weightDecay,
    clipNorm: t.clipNorm,
    seed: t.seed,
    retrieverLoss: t.retrieverLoss,
    // 'refuse': tabs whose memory cannot hold the session's step refuse instead of lowering its batch.
    memoryFit: t.memoryFit,
  };
  return Object.fromEntries(Object.entries(out).filter(([, v]) => v !== undefined)) as TrainingDefaults;
}

/**
 * The session's LoRA option (src/model/lora.ts) from its training config (typed by the protocol's
 * trainingConfigSchema), null when it has none. Keys: `loraRank` (r; its presence turns LoRA on),
 * `loraAlpha` (default 2·r, so the scale alpha/r is 2), `loraTargets` (comma-separated among q, k,
 * v, o; default "q,v"), `loraSeed` (seeds A; default 0), `loraQueryTargets` (the query
 * encoder's projections that get adapters too, same syntax as loraTargets; default none). Such a session's trainedPrefixes are ["reader.lora."]
 * (READER_LORA_WIRE_PREFIX), plus "query_encoder.lora." with loraQueryTargets. The coordinator refuses bad values when the session
 * is created; a round that still carries one (a session stored before, a hostile server) fails
 * here rather than training a different adapter than the others do.
 */
export function loraConfigFromTraining(config: RoundInfo['config']): LoraConfig | null {
  const bad = trainingConfigProblems(config).filter((p) => p.startsWith('training.lora'));
  if (bad.length > 0) throw new TrainingInputError('bad_round_config', `the session's LoRA settings are invalid: ${bad.join('; ')}`);
  const t = parseTrainingConfig(config);
  if (t.loraRank === undefined) return null;
  // The schema's pattern admits only LoRA target names between the commas.
  const names = (list: string) => list.split(',').map((name) => name.trim() as LoraTarget);
  const targets = names(t.loraTargets ?? 'q,v');
  return {
    rank: t.loraRank,
    alpha: t.loraAlpha ?? 2 * t.loraRank,
    targets,
    seed: t.loraSeed ?? 0,
    ...(t.loraQueryTargets !== undefined ? { queryTargets: names(t.loraQueryTargets) } : {}),
  };
}

/**
 * Global version `version` as safetensors bytes: from `cache` when it holds it, else downloaded
 * through `client` (with progress) and put in the cache before it is returned.
 */
export async function globalVersionBytes(
  client: CoragClient,
  sessionId: string,
  version: number,
  cache: ModelCache,
  onProgress?: (loaded: number, total: number | undefined) => void,
): Promise<{ bytes: Uint8Array; cached: boolean }> {
  const hit = await cache.get(sessionId, version);
  if (hit) return { bytes: hit, cached: true };
  const bytes = await client.downloadModel(sessionId, version, onProgress);
  await cache.put(sessionId, version, bytes);
  return { bytes, cached: false };
}

/** What `run()` keeps while it follows the session. */
interface Following {
  readonly signal?: AbortSignal;
  readonly onError: (error: unknown, failure: BackgroundFailure) => void;
  /** After each round's part settles (ends run() at maxRounds). */
  readonly afterRound: () => void;
}

export class FederatedCoragClient {
  private readonly cache: ModelCache;
  private readonly queue: SerialQueue;
  /** Rounds this client started to train in (or was refused in): one update per round, never a second. */
  private readonly done = new Set<number>();
  private trained = 0;
  private info: SessionInfo;
  private input: TrainingInput | null = null;
  private latestRound: RoundInfo | null;
  private following: Following | undefined;
  /** Rounds' parts and hooks dispatched by run() and not settled yet. */
  private readonly inflight = new Set<Promise<unknown>>();

  private constructor(
    readonly client: CoragClient,
    session: SessionInfo,
    readonly clientId: string,
    private readonly options: FederatedClientOptions,
  ) {
    this.info = session;
    this.latestRound = session.round;
    this.cache = options.cache ?? new MemoryModelCache();
    this.queue = options.queue ?? new SerialQueue();
    if (session.config.models.embeddingDim !== options.bundle.embeddingDim) {
      throw new TrainingInputError(
        'model_mismatch',
        `session "${session.config.name}" stores ${session.config.models.embeddingDim}-dimensional embeddings but this retriever makes ${options.bundle.embeddingDim}`,
      );
    }
    if (options.qaPairs && options.passageSource) {
      const source = typeof options.passageSource === 'function' ? options.passageSource(client, session.id) : options.passageSource;
      this.input = { qaPairs: options.qaPairs, source };
    }
  }

  /** Joins a session with its join code (`server` is a CoragClient without a token). */
  static async join(server: CoragClient, joinCode: string, name: string | undefined, options: FederatedClientOptions): Promise<FederatedCoragClient> {
    const joined = await server.join(joinCode, name);
    const client = server.withToken(joined.token);
    return new FederatedCoragClient(client, await client.session(joined.sessionId), joined.clientId, options);
  }

  /**
   * Reconnects with credentials kept from an earlier join (a browser tab stores them in
   * IndexedDB, so a reload keeps its identity and its place in an open round).
   */
  static async resume(server: CoragClient, credentials: ClientCredentials, options: FederatedClientOptions): Promise<FederatedCoragClient> {
    const client = server.withToken(credentials.token);
    return new FederatedCoragClient(client, await client.session(credentials.sessionId), credentials.clientId, options);
  }

  /** What resume() needs; secret (the token is the client's identity). */
  get credentials(): ClientCredentials {
    return { sessionId: this.session.id, clientId: this.clientId, token: this.client.token! };
  }

  /** The session as last seen (at join, then each `hello` of the event stream). */
  get session(): SessionInfo {
    return this.info;
  }

  /** The latest round this client has seen (open or closed), or null. */
  get currentRound(): RoundInfo | null {
    return this.latestRound;
  }

  get bundle(): ModelBundle {
    return this.options.bundle;
  }

  /** Rounds this client has trained and uploaded in. */
  get roundsTrained(): number {
    return this.trained;
  }

  /** The passage source training retrieves from, when it is a fixed one. */
  get source(): PassageSource {
    const source = this.input?.source;
    if (!source || typeof source === 'function') throw new Error('this client has no fixed training passage source');
    return source;
  }

  /** True while the client has a training input (setTraining, or qaPairs + passageSource at construction). */
  get training(): boolean {
    return this.input !== null;
  }

  /**
   * Takes part in the rounds this client is selected for from now on, training on `qaPairs` and
   * retrieving from `source`; while `run()` follows the session, also in the round open right now
   * (unless this client already took part in it).
   */
  setTraining(qaPairs: readonly QAPair[], source: TrainingSource): void {
    this.input = { qaPairs, source };
    if (this.following && this.latestRound?.state === 'open') this.dispatch(this.latestRound);
  }

  /** Takes part in no further round (a round already training finishes and uploads). */
  stopTraining(): void {
    this.input = null;
  }

  /** Runs `task` in this client's model queue (after the round in training, if any). */
  exclusive<T>(task: () => Promise<T>): Promise<T> {
    return this.queue.run(task);
  }

  /**
   * Embeds passages with the bundle's passage encoder (client-side, as the protocol requires) and
   * contributes them to the collaborative store. Returns the store ids, in order (duplicates
   * resolve to the existing id). The encoder must be the session's: apply a global version first.
   */
  async contributePassages(passages: readonly PassageText[], options: EmbedOptions = {}): Promise<number[]> {
    const embeddings = await embedPassages(this.bundle, passages, options);
    const results = await this.contributeEmbedded(passages.length, (i) => ({ ...passages[i], embedding: embeddings[i] }));
    return results.map((r) => r.id);
  }

  /**
   * Contributes `count` passages already embedded with the session's passage encoder, in batches
   * (CoragClient.addPassagesInBatches); `passageAt(i)` is asked only when its batch is sent.
   */
  contributeEmbedded(count: number, passageAt: (i: number) => PassageText & { readonly embedding: ArrayLike<number> }): Promise<AddPassagesResult['results']> {
    return this.client.addPassagesInBatches(this.session.id, count, (i) => {
      const p = passageAt(i);
      return { title: p.title, text: p.text, embedding: Array.from(p.embedding), encoder: this.session.config.models.passageEncoder };
    });
  }

  /** Sets the bundle to global `version`, from the cache when it has it, else downloaded with progress. */
  async loadGlobal(version: number, round = 0): Promise<void> {
    const emit = this.options.onEvent;
    let bytes = await this.cache.get(this.session.id, version);
    const cached = bytes !== undefined;
    emit?.({ type: 'downloading', round, version, cached });
    if (!bytes) {
      bytes = await this.client.downloadModel(this.session.id, version, (loaded, total) =>
        emit?.({ type: 'download-progress', round, version, loaded, total }),
      );
      await this.cache.put(this.session.id, version, bytes);
    }
    this.bundle.applyGlobal(bytes, version);
    emit?.({ type: 'model-loaded', round, version, cached, bytes: bytes.byteLength });
  }

  /**
   * Scores global `version` on `qaPairs` (src/corag/evaluate.ts), in the model queue: the version
   * is applied first (the download stage), then `source` is resolved and searched (the retrieve
   * stage). `round`: the round that produced the version, for the download events.
   */
  evaluateGlobal(
    version: number,
    qaPairs: readonly QAPair[],
    source: TrainingSource,
    options: EvaluateOptions & { round?: number },
  ): Promise<EvaluationResult> {
    return this.queue.run(async () => {
      await atStage('download', () => this.loadGlobal(version, options.round));
      const resolved = typeof source === 'function' ? await atStage('retrieve', async () => source()) : source;
      const staged: PassageSource = { name: resolved.name, search: (queries, k) => atStage('retrieve', () => resolved.search(queries, k)) };
      return evaluate(this.bundle, qaPairs, staged, options);
    });
  }

  /**
   * Trains on an open round this client was selected for and uploads its delta once. A failure
   * is a TrainingInputError (what it was given cannot be trained on) or a RoundStageError naming
   * the stage (download, retrieve, train, upload) with the original error as its cause. Returns
   * null when it does not take part (already did, not selected, not open, no training input).
   */
  participate(round: RoundInfo, signal?: AbortSignal): Promise<LocalTrainingResult | null> {
    return this.participateWith(round, this.input, signal);
  }

  private async participateWith(round: RoundInfo, input: TrainingInput | null, signal?: AbortSignal): Promise<LocalTrainingResult | null> {
    if (this.done.has(round.round)) return null;
    if (round.state !== 'open' || !round.participants.includes(this.clientId) || !input) {
      const reason = round.state !== 'open' ? `round is ${round.state}` : !input ? 'not training' : 'not selected';
      this.options.onEvent?.({ type: 'round-skipped', round: round.round, reason });
      return null;
    }
    this.done.add(round.round);
    const lora = loraConfigFromTraining(round.config);
    if (lora) {
      // Adapters first (A seeded as every client seeds it, B = 0); the global version then sets their values.
      try {
        this.bundle.enableLora(lora);
      } catch (e) {
        throw new TrainingInputError('bad_round_config', `round ${round.round}'s LoRA settings cannot be used: ${(e as Error).message}`);
      }
    }
    await atStage('download', () => this.loadGlobal(round.baseVersion, round.round), round.round);
    const options = { ...trainingOptionsFromRound(round.config), ...this.options.training };
    if (options.lr === undefined || options.k === undefined) {
      throw new TrainingInputError('bad_round_config', `round ${round.round} names no learning rate or passages per question (k), and this client sets none`);
    }
    const from = input.source;
    const source = typeof from === 'function' ? await atStage('retrieve', async () => from(), round.round) : from;
    this.options.onEvent?.({ type: 'training-started', round: round.round });
    // Retrieval failures inside come out as the 'retrieve' stage (trainLocally wraps its searches).
    const result = await atStage(
      'train',
      () =>
        trainLocally(this.bundle, input.qaPairs, source, {
          // Train what the session aggregates (a client's own `trainable` still wins, e.g. CRAB's closed-book).
          trainable: trainableForWirePrefixes(this.session.config.trainedPrefixes),
          ...(options as LocalTrainingOptions),
          signal,
          onProgress: (progress) => this.options.onEvent?.({ type: 'training', round: round.round, progress }),
          onFit: (plan) => {
            if (plan.kind === 'adapted') this.options.onEvent?.({ type: 'step-adapted', round: round.round, plan });
          },
        }),
      round.round,
    );
    // The whole body is built before the request starts: the coordinator never sees half an update.
    const trainedNames = this.bundle.wireNamesMatching(this.session.config.trainedPrefixes);
    const body = await atStage(
      'train',
      () =>
        this.bundle.encodeDelta(
          trainedNames,
          {
            round: round.round,
            numExamples: result.numExamples,
            metrics: { loss: result.metrics.loss, readerLoss: result.metrics.readerLoss, retrieverLoss: result.metrics.retrieverLoss },
          },
          this.options.updateDtype,
        ),
      round.round,
    );
    signal?.throwIfAborted();
    try {
      await this.uploadWithRetry(round, body, signal);
    } catch (e) {
      // A refusal (round closed by the deadline, not a participant) ends this round for us.
      if (isTransient(e)) throw isAbort(e) ? e : new RoundStageError('upload', e, round.round);
      const refusal = e as CoragHttpError;
      this.options.onEvent?.({ type: 'upload-refused', round: round.round, code: refusal.code, message: refusal.message });
      return result;
    }
    this.trained++;
    this.options.onEvent?.({ type: 'uploaded', round: round.round, numExamples: result.numExamples, bytes: body.byteLength, body });
    return result;
  }

  /**
   * PUTs one update, retrying transient failures with exponential backoff (UploadRetryPolicy).
   * The body is sent whole each time and the coordinator accepts one update per client and round,
   * so a retry can never count twice: a `duplicate_update` answer to a retry (or to the first
   * attempt resent by failoverFetch to another coordinator after its connection was lost) means
   * an earlier send did land (its response was lost) and counts as success.
   */
  private async uploadWithRetry(round: RoundInfo, body: Uint8Array, signal?: AbortSignal): Promise<void> {
    const deadline = Date.parse(round.deadlineAt);
    const policy = { ...DEFAULT_UPLOAD_RETRY, attempts: Number.isFinite(deadline) ? Infinity : ATTEMPTS_WITHOUT_DEADLINE, ...this.options.uploadRetry };
    let delay = policy.initialDelayMs;
    for (let attempt = 1; ; attempt++) {
      try {
        await this.client.uploadUpdate(this.session.id, round.round, body);
        return;
      } catch (e) {
        // Also on the first attempt when failoverFetch sent it again to another coordinator.
        if (e instanceof CoragHttpError && e.code === 'duplicate_update' && (attempt > 1 || e.resent)) return;
        const wait = Math.min(delay, policy.maxDelayMs);
        if (!isTransient(e) || attempt >= policy.attempts || Date.now() + wait >= deadline) throw e;
        this.options.onEvent?.({ type: 'upload-retrying', round: round.round, attempt, delayMs: wait, message: (e as Error).message });
        await sleep(wait, signal);
        delay *= 2;
      }
    }
  }

  /**
   * Follows the session's events and takes part in every round it is selected for while it has a
   * training input, until it has trained in `maxRounds` rounds, `signal` aborts or the coordinator
   * refuses this client (401). A lost or ended stream is followed again after `reconnectDelayMs`
   * (its `hello` snapshot catches up). Rounds are dispatched, not awaited: they take their turn in
   * the model queue while the stream keeps being read, and their failures go to `onError`.
   * Resolves once what it dispatched has settled.
   */
  async run(options: RunOptions = {}): Promise<void> {
    if (this.following) throw new Error('this client is already following its session');
    const stream = new AbortController();
    const onAbort = () => stream.abort(options.signal?.reason);
    options.signal?.addEventListener('abort', onAbort);
    if (options.signal?.aborted) onAbort();
    let failure: { error: unknown } | undefined;
    const emit = this.options.onEvent;
    this.following = {
      signal: options.signal,
      onError:
        options.onError ??
        ((error) => {
          failure ??= { error };
          stream.abort();
        }),
      afterRound: () => {
        if (options.maxRounds !== undefined && this.trained >= options.maxRounds) stream.abort();
      },
    };
    const following = this.following;
    try {
      while (!stream.signal.aborted) {
        try {
          for await (const event of this.client.events(this.session.id, stream.signal)) {
            emit?.({ type: 'server', event });
            if (event.type === 'hello') {
              this.info = event.session;
              this.latestRound = event.session.round;
              emit?.({ type: 'connection', online: true });
              if (event.session.round) this.dispatch(event.session.round);
            } else if (event.type === 'round-opened') {
              this.latestRound = event.round;
              this.dispatch(event.round);
            } else if (event.type === 'round-closed') {
              this.latestRound = event.round;
              emit?.({ type: 'round-closed', round: event.round });
              if (options.onRoundClosed) {
                const round = event.round;
                this.track(options.onRoundClosed(round), (e) =>
                  following.onError(e, { during: 'round-closed', round: round.round, version: round.resultVersion }),
                );
              }
            }
          }
        } catch (e) {
          if (stream.signal.aborted) break;
          const refused = e instanceof CoragHttpError && e.status < 500;
          emit?.({
            type: 'connection',
            online: false,
            message: refused
              ? (e as Error).message
              : `lost the connection to the coordinator (${(e as Error).message}); retrying in ${Math.round(this.reconnectDelayMs / 1000)} s — nothing stored is lost, an interrupted upload is never half-sent`,
          });
          if (refused && (e as CoragHttpError).status === 401) break;
        }
        await sleep(this.reconnectDelayMs, stream.signal).catch(() => undefined);
      }
      while (this.inflight.size > 0) await Promise.allSettled([...this.inflight]);
    } finally {
      options.signal?.removeEventListener('abort', onAbort);
      stream.abort();
      this.following = undefined;
    }
    if (failure) throw failure.error;
  }

  private get reconnectDelayMs(): number {
    return this.options.reconnectDelayMs ?? 3000;
  }

  /** Queues this client's part in `round` (with the training input of this moment) without awaiting it. */
  private dispatch(round: RoundInfo): void {
    const following = this.following;
    if (!following) return;
    const input = this.input;
    const part = this.queue.run(() => this.participateWith(round, input, following.signal));
    this.track(
      part.then(() => following.afterRound()),
      (e) => following.onError(e, { during: 'round', round: round.round }),
    );
  }

  /** Keeps `work` in flight until it settles; a failure that is no abort goes to `onError`. */
  private track(work: Promise<unknown>, onError: (e: unknown) => void): void {
    const tracked = work.catch((e) => {
      if (!isAbort(e)) onError(e);
    });
    this.inflight.add(tracked);
    void tracked.finally(() => this.inflight.delete(tracked));
  }
}
