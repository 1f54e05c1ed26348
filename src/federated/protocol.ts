/**
 * The coordinator's wire protocol: the types both sides speak and the JSON schemas the server
 * validates every JSON body against (also published in /api/openapi.json). Weights never travel as
 * JSON: models and deltas are safetensors bodies (see ./codec). No Node or DOM APIs here.
 */

/**
 * The global model's wire namespace: every tensor a coordinator stores, serves or aggregates is
 * named `<part prefix><Hugging Face name>`. Clients map these to their local stores
 * (src/corag/model-bundle.ts); sessions name what they train by these prefixes.
 */
export const READER_WIRE_PREFIX = 'reader.';
export const QUERY_ENCODER_WIRE_PREFIX = 'query_encoder.';
export const PASSAGE_ENCODER_WIRE_PREFIX = 'passage_encoder.';
/**
 * The reader's LoRA adapters (src/model/lora.ts): a LoRA session (training config `loraRank`, see
 * src/corag/federated-client.ts `loraConfigFromTraining`) trains exactly these, so its
 * trainedPrefixes are [READER_LORA_WIRE_PREFIX] and an update carries the adapters only.
 */
export const READER_LORA_WIRE_PREFIX = `${READER_WIRE_PREFIX}lora.`;

/**
 * Whether a session with `trainedPrefixes` (SessionConfig.trainedPrefixes) trains — and so
 * aggregates, and accepts deltas for — the global tensor `name`. The one rule both sides apply.
 */
export function isTrainedTensor(trainedPrefixes: readonly string[], name: string): boolean {
  return trainedPrefixes.some((p) => name.startsWith(p));
}

/** When a round opens, whom it selects, and when it closes. */
export interface RoundPolicy {
  /** Fraction of joined clients selected for a round (at least minClients are selected). */
  readonly fraction: number;
  /** A round cannot open with fewer joined clients than this. */
  readonly minClients: number;
  /** At the deadline the round aggregates if at least this many updates arrived, else it fails. */
  readonly minUpdates: number;
  /** Seconds from opening until stragglers are dropped. */
  readonly deadlineSeconds: number;
  /** Open the next round automatically when one ends and enough clients have joined. */
  readonly autoStart: boolean;
}

/** Ids of the models a session trains; clients check them before loading weights. */
export interface SessionModels {
  /** Reader checkpoint id (a Hugging Face id or folder name; informational for the server). */
  readonly reader: string;
  /** Passage encoder id; every contributed embedding must name exactly this id. */
  readonly passageEncoder: string;
  /** Embedding dimension every contributed embedding and search query must have. */
  readonly embeddingDim: number;
}

export interface SessionConfig {
  readonly name: string;
  readonly models: SessionModels;
  /** Client-side training hyper-parameters (learning rate, steps, k...), handed out with each round. */
  readonly training: Readonly<Record<string, string | number | boolean>>;
  readonly roundPolicy: RoundPolicy;
  /**
   * Name prefixes of the trained parameters ('' = all). Every update must carry exactly the global
   * tensors matching one of them, so all deltas in a round are comparable.
   */
  readonly trainedPrefixes: readonly string[];
  /** Aggregation strategy name (see ./strategy: fedavg, norm-clip, median, trimmed-mean, multi-krum, centered-clip). */
  readonly strategy: string;
  /** The strategy's numeric parameters, defaults filled in (each strategy documents its own). */
  readonly strategyParams: Readonly<Record<string, number>>;
  /** What one update can weigh: num_examples is self-reported. */
  readonly updateLimits: UpdateLimits;
  /**
   * How the coordinator checks and bounds contributed passages (embedding spot-checks, quotas).
   * Sessions stored before this setting existed have none: read it with `passagePolicyOf`.
   */
  readonly passages?: PassagePolicy;
  /**
   * The session hands its participants training questions (a classroom shard each, as an organiser
   * would): GET /api/sessions/:id/training-questions. Absent: participants bring their own.
   */
  readonly trainingQuestions?: TrainingQuestionPolicy;
}

/**
 * How a session's pool of training questions is handed out (server/training-questions.ts). The
 * pool is shuffled once with `seed`; the first `heldOut` questions are never part of a shard and
 * are the evaluation set every participant scores new global versions on; the rest are cut into
 * shards of `perClient` by join order (the n-th client to join gets shard n), so shards are
 * disjoint until the pool runs out and then wrap around.
 */
export interface TrainingQuestionPolicy {
  /** Questions in the pool, held-out ones included. */
  readonly pool: number;
  readonly perClient: number;
  readonly heldOut: number;
  readonly seed: number;
}

export interface TrainingQuestion {
  readonly question: string;
  readonly answers: readonly string[];
}

/** GET /api/sessions/:id/training-questions: this client's shard and the held-out evaluation set. */
export interface TrainingQuestionsResponse {
  /** 0-based shard number (the client's join order). */
  readonly shard: number;
  readonly questions: readonly TrainingQuestion[];
  readonly evaluation: readonly TrainingQuestion[];
}

/** Limits of a question pool a session is created with. */
export const MAX_TRAINING_QUESTIONS = 10_000;

/**
 * What the coordinator does with contributed passages (server/passage-intake.ts, docs/COORDINATOR.md
 * "Passage trust"). Embeddings are recomputed with the session's frozen passage encoder:
 * - `sample` (default): all of a client's first batch (at most `firstBatchChecks` of it) and
 *   `sampleFraction` of every later batch (at least `minSampleChecks`); once a client has sent a
 *   mismatching embedding, every later batch of it is checked whole;
 * - `all`: every new passage of every batch;
 * - `off`: client embeddings are trusted (only their dimension and finiteness are checked). Only
 *   for sessions whose participants are all trusted (benchmarks, tests with made-up encoders).
 * Without `off`, a session whose passage encoder the coordinator cannot load refuses
 * contributions (503 `passage_encoder_unavailable`) rather than store unchecked embeddings.
 */
export interface PassagePolicy {
  readonly embeddingCheck: 'sample' | 'all' | 'off';
  readonly firstBatchChecks: number;
  readonly sampleFraction: number;
  readonly minSampleChecks: number;
  /** Passages one client may have contributed (duplicates of others' passages count too). */
  readonly maxPassagesPerClient: number;
  /** Bytes (UTF-8 title + text + 4 bytes per embedding value) one client may have contributed. */
  readonly maxBytesPerClient: number;
  readonly maxPassagesPerSession: number;
  readonly maxBytesPerSession: number;
}

export const DEFAULT_PASSAGE_POLICY: PassagePolicy = {
  embeddingCheck: 'sample',
  firstBatchChecks: 16,
  sampleFraction: 0.1,
  minSampleChecks: 2,
  maxPassagesPerClient: 20_000,
  maxBytesPerClient: 64 * 2 ** 20,
  maxPassagesPerSession: 200_000,
  maxBytesPerSession: 1024 * 2 ** 20,
};

/** A session's passage policy, defaults filled in (also for sessions stored without one). */
export function passagePolicyOf(config: { readonly passages?: Partial<PassagePolicy> }): PassagePolicy {
  return { ...DEFAULT_PASSAGE_POLICY, ...config.passages };
}

/** Caps on one update's influence (see docs/COORDINATOR.md, "Robust aggregation"). */
export interface UpdateLimits {
  /**
   * num_examples above this counts as this (the update is not refused). Default: the examples one
   * round of the session's training processes, localSteps × batchSize, when the session's training
   * config names both; else DEFAULT_MAX_EXAMPLES_PER_UPDATE.
   */
  readonly maxExamplesPerUpdate: number;
  /**
   * Largest share of a round's total weight one update can hold (stored-delta strategies; with
   * fewer than 1/maxWeightShare updates, equal shares). FedAvg streams and cannot reweight what it
   * has summed: it requires 1.
   */
  readonly maxWeightShare: number;
}

/** Sample cap when the training config does not say how many examples a round uses. */
export const DEFAULT_MAX_EXAMPLES_PER_UPDATE = 10_000;
/** Weight-share cap of the robust strategies unless the session sets one. */
export const DEFAULT_MAX_WEIGHT_SHARE = 0.25;

export const DEFAULT_ROUND_POLICY: RoundPolicy = {
  fraction: 1,
  minClients: 1,
  minUpdates: 1,
  deadlineSeconds: 600,
  autoStart: false,
};

export type RoundState = 'open' | 'closing' | 'closed' | 'failed';

export interface RoundInfo {
  readonly sessionId: string;
  readonly round: number;
  readonly state: RoundState;
  /** Global model version the deltas of this round are taken against. */
  readonly baseVersion: number;
  /** Version produced by this round (closed rounds only). */
  readonly resultVersion: number | null;
  readonly participants: readonly string[];
  readonly accepted: number;
  readonly openedAt: string;
  readonly deadlineAt: string;
  readonly closedAt: string | null;
  /** Hyper-parameters the strategy hands to participants. */
  readonly config: Readonly<Record<string, string | number | boolean>>;
  /** Example-weighted client metrics (closed rounds). */
  readonly metrics: Readonly<Record<string, number>>;
  /** Why a failed round failed (too few updates, a non-finite or out-of-bound aggregate); else null. */
  readonly failureReason: string | null;
}

export interface SessionInfo {
  readonly id: string;
  readonly config: SessionConfig;
  readonly currentVersion: number | null;
  /** Clients that have joined (ever). */
  readonly clients: number;
  /** Distinct joined clients holding an open event stream right now (admin streams not counted). */
  readonly online: number;
  readonly passages: number;
  readonly round: RoundInfo | null;
}

export interface CreatedSession {
  readonly session: SessionInfo;
  readonly adminToken: string;
  readonly joinCode: string;
}

export interface JoinResult {
  readonly sessionId: string;
  readonly clientId: string;
  readonly token: string;
}

export interface UpdateReceipt {
  readonly round: number;
  readonly clientId: string;
  readonly numExamples: number;
  readonly accepted: number;
  /** All selected participants have reported: the round is closing now. */
  readonly roundComplete: boolean;
}

export interface PassageInput {
  readonly title: string;
  readonly text: string;
  /** Passage embedding computed client-side with `encoder`. */
  readonly embedding: readonly number[];
  /** Must equal the session's models.passageEncoder. */
  readonly encoder: string;
}

export interface Passage {
  readonly id: number;
  readonly title: string;
  readonly text: string;
  readonly clientId: string;
  readonly hash: string;
}

export interface AddPassagesResult {
  /** One entry per input passage, in order. */
  readonly results: ReadonlyArray<{ readonly id: number; readonly duplicate: boolean }>;
}

export interface SearchHit {
  readonly id: number;
  readonly score: number;
  readonly passage: Passage;
  /** The stored passage embedding, when the search asked `withEmbeddings`. */
  readonly embedding?: number[];
}

/**
 * A search that returns embeddings sends dim numbers per hit (~15 KB for 768 dimensions): k is
 * capped lower for it. Training asks for them so Perplexity Distillation can score retrieved
 * passages with the frozen passage encoder's vectors instead of re-embedding them.
 */
export const MAX_SEARCH_K_WITH_EMBEDDINGS = 100;

export interface ContributionCount {
  readonly clientId: string;
  readonly passages: number;
}

/** Events pushed over SSE (`event:` is the type, `data:` the JSON of the whole object). */
export type ServerEvent =
  | { readonly type: 'hello'; readonly session: SessionInfo }
  | { readonly type: 'round-opened'; readonly round: RoundInfo }
  | { readonly type: 'update-accepted'; readonly round: number; readonly clientId: string; readonly accepted: number }
  | { readonly type: 'round-closed'; readonly round: RoundInfo }
  | { readonly type: 'passages-changed'; readonly total: number; readonly added: number; readonly removed: number }
  /** The number of distinct clients with an open event stream changed. */
  | { readonly type: 'presence'; readonly online: number };

/** Every 4xx/5xx body: a stable machine code and a message a person can act on. */
export interface ErrorBody {
  readonly error: string;
  readonly message: string;
}

/** Metadata keys an update carries inside its safetensors header. */
export const UPDATE_METADATA = {
  round: 'corag.round',
  baseVersion: 'corag.base_version',
  numExamples: 'corag.num_examples',
  /** JSON object of finite numbers (e.g. train loss), averaged by examples at round close. */
  metrics: 'corag.metrics',
} as const;

/**
 * The update metrics the coordinator keeps, with the range a real value lies in: what the browser
 * client sends (src/corag/federated-client.ts: mean train losses). Losses are ≥ 0 in exact
 * arithmetic, but a KL-based retriever loss can round to a tiny negative, so the range bounds the
 * magnitude only. A known key outside its range is refused (the update is not plausible); unknown
 * keys are dropped, not refused, so a newer client that reports more does not lose its update —
 * they never reach the round's record.
 */
export const UPDATE_METRIC_RANGES: Readonly<Record<string, readonly [number, number]>> = {
  loss: [-1e6, 1e6],
  readerLoss: [-1e6, 1e6],
  retrieverLoss: [-1e6, 1e6],
};

// ---------------------------------------------------------------- JSON schemas

const scalarRecord = {
  type: 'object',
  maxProperties: 64,
  // number and boolean first: with type coercion on, anyOf's first match wins, and a string branch
  // first would turn every number into a string.
  additionalProperties: { anyOf: [{ type: 'number' }, { type: 'boolean' }, { type: 'string', maxLength: 256 }] },
} as const;

export const roundPolicySchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    fraction: { type: 'number', exclusiveMinimum: 0, maximum: 1 },
    minClients: { type: 'integer', minimum: 1, maximum: 100_000 },
    minUpdates: { type: 'integer', minimum: 1, maximum: 100_000 },
    deadlineSeconds: { type: 'number', exclusiveMinimum: 0, maximum: 7 * 24 * 3600 },
    autoStart: { type: 'boolean' },
  },
} as const;

export const passagePolicySchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    embeddingCheck: { type: 'string', enum: ['sample', 'all', 'off'] },
    firstBatchChecks: { type: 'integer', minimum: 1, maximum: 256 },
    sampleFraction: { type: 'number', minimum: 0, maximum: 1 },
    minSampleChecks: { type: 'integer', minimum: 1, maximum: 256 },
    maxPassagesPerClient: { type: 'integer', minimum: 0, maximum: 1e9 },
    maxBytesPerClient: { type: 'integer', minimum: 0, maximum: 2 ** 50 },
    maxPassagesPerSession: { type: 'integer', minimum: 0, maximum: 1e9 },
    maxBytesPerSession: { type: 'integer', minimum: 0, maximum: 2 ** 50 },
  },
} as const;

/** One question with its gold answers (a pool entry, and each item the route returns). */
export const trainingQuestionSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['question', 'answers'],
  properties: {
    question: { type: 'string', minLength: 1, maxLength: 1000 },
    answers: { type: 'array', minItems: 1, maxItems: 32, items: { type: 'string', minLength: 1, maxLength: 500 } },
  },
} as const;

export const createSessionSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['name', 'models'],
  properties: {
    name: { type: 'string', minLength: 1, maxLength: 200 },
    models: {
      type: 'object',
      additionalProperties: false,
      required: ['reader', 'passageEncoder', 'embeddingDim'],
      properties: {
        reader: { type: 'string', minLength: 1, maxLength: 200 },
        passageEncoder: { type: 'string', minLength: 1, maxLength: 200 },
        embeddingDim: { type: 'integer', minimum: 1, maximum: 8192 },
      },
    },
    training: scalarRecord,
    roundPolicy: roundPolicySchema,
    trainedPrefixes: { type: 'array', maxItems: 256, items: { type: 'string', maxLength: 300 } },
    strategy: { type: 'string', maxLength: 64 },
    strategyParams: { type: 'object', maxProperties: 16, additionalProperties: { type: 'number' } },
    updateLimits: {
      type: 'object',
      additionalProperties: false,
      properties: {
        maxExamplesPerUpdate: { type: 'integer', minimum: 1, maximum: 1e12 },
        maxWeightShare: { type: 'number', exclusiveMinimum: 0, maximum: 1 },
      },
    },
    passages: passagePolicySchema,
    trainingQuestions: {
      type: 'object',
      additionalProperties: false,
      required: ['questions'],
      properties: {
        questions: { type: 'array', minItems: 1, maxItems: MAX_TRAINING_QUESTIONS, items: trainingQuestionSchema },
        perClient: { type: 'integer', minimum: 1, maximum: MAX_TRAINING_QUESTIONS },
        heldOut: { type: 'integer', minimum: 0, maximum: MAX_TRAINING_QUESTIONS },
        seed: { type: 'integer', minimum: 0, maximum: 2 ** 32 - 1 },
      },
    },
  },
} as const;

export const joinSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['code'],
  properties: {
    code: { type: 'string', minLength: 1, maxLength: 64 },
    name: { type: 'string', maxLength: 100 },
  },
} as const;

/** Passage text limit (characters); Atlas-style passages are ~100 words. */
export const MAX_PASSAGE_TEXT = 20_000;
export const MAX_PASSAGES_PER_REQUEST = 256;

export const addPassagesSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['passages'],
  properties: {
    passages: {
      type: 'array',
      minItems: 1,
      maxItems: MAX_PASSAGES_PER_REQUEST,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['text', 'embedding', 'encoder'],
        properties: {
          title: { type: 'string', maxLength: 1000 },
          text: { type: 'string', minLength: 1, maxLength: MAX_PASSAGE_TEXT },
          embedding: { type: 'array', minItems: 1, maxItems: 8192, items: { type: 'number' } },
          encoder: { type: 'string', minLength: 1, maxLength: 200 },
        },
      },
    },
  },
} as const;

export const searchSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['embedding'],
  properties: {
    embedding: { type: 'array', minItems: 1, maxItems: 8192, items: { type: 'number' } },
    k: { type: 'integer', minimum: 1, maximum: 1000 },
    withEmbeddings: { type: 'boolean' },
  },
} as const;

/**
 * GET /api/sessions/:id response, published in the OpenAPI document. Config and round are passed
 * through whole (additionalProperties), so the serializer never drops a field added to them.
 */
export const sessionInfoSchema = {
  type: 'object',
  required: ['id', 'config', 'currentVersion', 'clients', 'online', 'passages', 'round'],
  additionalProperties: true,
  properties: {
    id: { type: 'string' },
    config: { type: 'object', additionalProperties: true },
    currentVersion: { type: ['integer', 'null'] },
    clients: { type: 'integer', description: 'clients that have joined the session' },
    online: { type: 'integer', description: 'distinct joined clients holding an open event stream now (admin streams not counted)' },
    passages: { type: 'integer' },
    round: { type: ['object', 'null'], additionalProperties: true },
  },
} as const;

/** GET /api/sessions/:id/training-questions response, published in the OpenAPI document. */
export const trainingQuestionsResponseSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['shard', 'questions', 'evaluation'],
  properties: {
    shard: { type: 'integer', minimum: 0, description: "this client's shard: its place in the join order" },
    questions: { type: 'array', items: trainingQuestionSchema, description: 'the questions this client trains on' },
    evaluation: { type: 'array', items: trainingQuestionSchema, description: 'held-out questions, in no shard: score each new global version on them' },
  },
} as const;

export const errorBodySchema = {
  type: 'object',
  required: ['error', 'message'],
  properties: { error: { type: 'string' }, message: { type: 'string' } },
} as const;
