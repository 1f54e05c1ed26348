/**
 * A headless CoRAG participant over the coordinator's real protocol (src/federated/client.ts):
 * browser tabs and Node CLI clients (the benchmark) run the same code.
 *
 * One round's journey: SSE `round-opened` (or the `hello` snapshot of an open round) naming this
 * client → global version N from the cache or a download (then cached) → applied to the bundle →
 * trainLocally with the round's hyper-parameters → delta = local − N for the session's trained
 * tensors, encoded into ONE body → a single PUT → wait for the next round.
 */
import { CoragClient, CoragHttpError } from '../federated/client';
import type { RoundInfo, SessionInfo } from '../federated/protocol';
import type { WireDtype } from '../federated/codec';
import { trainLocally, type LocalTrainingOptions, type LocalTrainingResult, type QAPair, type RetrieverLoss, type TrainProgress } from './local-training';
import { trainableForWirePrefixes, type ModelBundle } from './model-bundle';
import { embedPassages, type EmbedOptions, type PassageSource, type PassageText } from './retrieve';
import { atStage, isAbort, RoundStageError, TrainingInputError } from './errors';
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
export type TrainingDefaults = Partial<Omit<LocalTrainingOptions, 'signal' | 'onProgress'>>;

/** What a client reports as it goes (for a UI, a progress display or logs). */
export type ClientEvent =
  | { readonly type: 'round-skipped'; readonly round: number; readonly reason: string }
  | { readonly type: 'downloading'; readonly round: number; readonly version: number; readonly cached: boolean }
  | { readonly type: 'training'; readonly round: number; readonly progress: TrainProgress }
  | { readonly type: 'uploaded'; readonly round: number; readonly numExamples: number; readonly bytes: number; readonly body: Uint8Array }
  | { readonly type: 'upload-refused'; readonly round: number; readonly code: string; readonly message: string }
  | { readonly type: 'upload-retrying'; readonly round: number; readonly attempt: number; readonly delayMs: number; readonly message: string }
  | { readonly type: 'round-closed'; readonly round: RoundInfo };

export interface ClientCredentials {
  readonly sessionId: string;
  readonly clientId: string;
  readonly token: string;
}

export interface FederatedClientOptions {
  readonly bundle: ModelBundle;
  readonly qaPairs: readonly QAPair[];
  /** Where training retrieves from; a function receives this client's coordinator connection. */
  readonly passageSource: PassageSource | ((client: CoragClient, sessionId: string) => PassageSource);
  readonly cache?: ModelCache;
  /** Overrides of the round's hyper-parameters (the benchmark fixes its own). */
  readonly training?: TrainingDefaults;
  readonly updateDtype?: WireDtype;
  readonly uploadRetry?: UploadRetryPolicy;
  readonly onEvent?: (e: ClientEvent) => void;
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

/**
 * Session `training` keys (server/demo.ts, the session form) → local training options. Numbers
 * may arrive as numeric strings (the coordinator's JSON schema coerces scalars to strings).
 */
export function trainingOptionsFromRound(config: RoundInfo['config']): TrainingDefaults {
  const num = (key: string) => {
    const v = config[key];
    const n = typeof v === 'number' ? v : typeof v === 'string' && v.trim() !== '' ? Number(v) : NaN;
    return Number.isFinite(n) ? n : undefined;
  };
  const out: Record<string, unknown> = {
    lr: num('learningRate') ?? num('lr'),
    retrieverLr: num('retrieverLearningRate'),
    steps: num('localSteps') ?? num('steps'),
    epochs: num('localEpochs') ?? num('epochs'),
    k: num('passagesPerQuestion') ?? num('k'),
    maxLength: num('maxLength'),
    batchSize: num('batchSize'),
    warmupSteps: num('warmupSteps'),
    weightDecay: num('weightDecay'),
    clipNorm: num('clipNorm'),
    seed: num('seed'),
  };
  const loss = config.retrieverLoss;
  if (loss === 'pdist' || loss === 'adist' || loss === 'none') out.retrieverLoss = loss as RetrieverLoss;
  return Object.fromEntries(Object.entries(out).filter(([, v]) => v !== undefined)) as TrainingDefaults;
}

/**
 * The session's LoRA option (src/model/lora.ts) from its training config, null when it has none.
 * Keys: `loraRank` (r; its presence turns LoRA on), `loraAlpha` (default 2·r, so the scale
 * alpha/r is 2), `loraTargets` (comma-separated among q, k, v, o; default "q,v"), `loraSeed` (seeds
 * A; default 0). Such a session's trainedPrefixes are ["reader.lora."] (READER_LORA_WIRE_PREFIX).
 */
export function loraConfigFromTraining(config: RoundInfo['config']): LoraConfig | null {
  const num = (key: string) => {
    const v = config[key];
    const n = typeof v === 'number' ? v : typeof v === 'string' && v.trim() !== '' ? Number(v) : NaN;
    return Number.isFinite(n) ? n : undefined;
  };
  if (config.loraRank === undefined) return null;
  const rank = num('loraRank');
  if (rank === undefined) throw new TrainingInputError('bad_round_config', `the session's loraRank ${JSON.stringify(config.loraRank)} is not a number`);
  const targets = String(config.loraTargets ?? 'q,v')
    .split(',')
    .map((t) => t.trim())
    .filter((t) => t !== '') as LoraTarget[];
  return { rank, alpha: num('loraAlpha') ?? 2 * rank, targets, seed: num('loraSeed') ?? 0 };
}

export class FederatedCoragClient {
  readonly source: PassageSource;
  private readonly cache: ModelCache;
  /** Rounds this client already uploaded to (or was refused in): never twice. */
  private readonly done = new Set<number>();
  private trained = 0;

  private constructor(
    readonly client: CoragClient,
    readonly session: SessionInfo,
    readonly clientId: string,
    private readonly options: FederatedClientOptions,
  ) {
    this.cache = options.cache ?? new MemoryModelCache();
    this.source = typeof options.passageSource === 'function' ? options.passageSource(client, session.id) : options.passageSource;
    if (session.config.models.embeddingDim !== options.bundle.embeddingDim) {
      throw new TrainingInputError(
        'model_mismatch',
        `session "${session.config.name}" stores ${session.config.models.embeddingDim}-dimensional embeddings but this retriever makes ${options.bundle.embeddingDim}`,
      );
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

  get bundle(): ModelBundle {
    return this.options.bundle;
  }

  /** Rounds this client has trained and uploaded in. */
  get roundsTrained(): number {
    return this.trained;
  }

  /**
   * Embeds passages with the bundle's passage encoder (client-side, as the protocol requires) and
   * contributes them to the collaborative store. Returns the store ids, in order (duplicates
   * resolve to the existing id). The encoder must be the session's: apply a global version first.
   */
  async contributePassages(passages: readonly PassageText[], options: EmbedOptions = {}): Promise<number[]> {
    const embeddings = await embedPassages(this.bundle, passages, options);
    const results = await this.client.addPassagesInBatches(this.session.id, passages.length, (i) => ({
      title: passages[i].title,
      text: passages[i].text,
      embedding: Array.from(embeddings[i]),
      encoder: this.session.config.models.passageEncoder,
    }));
    return results.map((r) => r.id);
  }

  /** Sets the bundle to global `version`, from the cache when it has it. */
  async loadGlobal(version: number, round = 0): Promise<void> {
    let bytes = await this.cache.get(this.session.id, version);
    this.options.onEvent?.({ type: 'downloading', round, version, cached: bytes !== undefined });
    if (!bytes) {
      bytes = await this.client.downloadModel(this.session.id, version);
      await this.cache.put(this.session.id, version, bytes);
    }
    this.bundle.applyGlobal(bytes, version);
  }

  /**
   * Trains on an open round this client was selected for and uploads its delta once. A failure
   * is a TrainingInputError (what it was given cannot be trained on) or a RoundStageError naming
   * the stage (download, retrieve, train, upload) with the original error as its cause.
   */
  async participate(round: RoundInfo, signal?: AbortSignal): Promise<LocalTrainingResult | null> {
    if (this.done.has(round.round)) return null;
    if (round.state !== 'open' || !round.participants.includes(this.clientId)) {
      this.options.onEvent?.({ type: 'round-skipped', round: round.round, reason: round.state !== 'open' ? `round is ${round.state}` : 'not selected' });
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
    // Retrieval failures inside come out as the 'retrieve' stage (trainLocally wraps its searches).
    const result = await atStage(
      'train',
      () =>
        trainLocally(this.bundle, this.options.qaPairs, this.source, {
          // Train what the session aggregates (a client's own `trainable` still wins, e.g. CRAB's closed-book).
          trainable: trainableForWirePrefixes(this.session.config.trainedPrefixes),
          ...(options as LocalTrainingOptions),
          signal,
          onProgress: (progress) => this.options.onEvent?.({ type: 'training', round: round.round, progress }),
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
   * so a retry can never count twice: a `duplicate_update` answer to a retry means an earlier
   * attempt did land (its response was lost) and counts as success.
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
        if (attempt > 1 && e instanceof CoragHttpError && e.code === 'duplicate_update') return;
        const wait = Math.min(delay, policy.maxDelayMs);
        if (!isTransient(e) || attempt >= policy.attempts || Date.now() + wait >= deadline) throw e;
        this.options.onEvent?.({ type: 'upload-retrying', round: round.round, attempt, delayMs: wait, message: (e as Error).message });
        await sleep(wait, signal);
        delay *= 2;
      }
    }
  }

  /**
   * Follows the session's events and takes part in every round it is selected for, until it has
   * trained in `maxRounds` rounds (default: no limit) or `signal` aborts.
   */
  async run(options: { maxRounds?: number; signal?: AbortSignal } = {}): Promise<void> {
    const stop = new AbortController();
    const onAbort = () => stop.abort(options.signal?.reason);
    options.signal?.addEventListener('abort', onAbort);
    const enough = () => options.maxRounds !== undefined && this.trained >= options.maxRounds;
    try {
      for await (const event of this.client.events(this.session.id, stop.signal)) {
        if (event.type === 'hello' && event.session.round) await this.participate(event.session.round, stop.signal);
        else if (event.type === 'round-opened') await this.participate(event.round, stop.signal);
        else if (event.type === 'round-closed') this.options.onEvent?.({ type: 'round-closed', round: event.round });
        if (enough()) break;
      }
    } catch (e) {
      if (!stop.signal.aborted) throw e;
    } finally {
      options.signal?.removeEventListener('abort', onAbort);
      stop.abort();
    }
  }
}
