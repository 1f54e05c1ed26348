/**
 * The coordinator's wire protocol, one source for both sides: each JSON shape is a TypeBox
 * definition that is at once the JSON Schema the server validates bodies against (and publishes in
 * /api/openapi.json), the schema the client checks every answer and event against (./wire-check),
 * and the TypeScript type (`Static`). Weights never travel as JSON: models and deltas are
 * safetensors bodies (see ./codec). No Node or DOM APIs here.
 */
import { Type, type Static, type TArrayOptions, type TObjectOptions, type TProperties, type TSchema } from 'typebox';
import { Value } from 'typebox/value';
import { LORA_TARGETS as LORA_TARGET_NAMES } from '../model/lora-targets';

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
 * trainingConfigSchema and src/corag/federated-client.ts `loraConfigFromTraining`) trains exactly these, so its
 * trainedPrefixes are [READER_LORA_WIRE_PREFIX] and an update carries the adapters only.
 */
export const READER_LORA_WIRE_PREFIX = `${READER_WIRE_PREFIX}lora.`;
/**
 * The query encoder's LoRA adapters (training config `loraQueryTargets`): such a session also
 * trains these, so its trainedPrefixes are [READER_LORA_WIRE_PREFIX, QUERY_ENCODER_LORA_WIRE_PREFIX].
 */
export const QUERY_ENCODER_LORA_WIRE_PREFIX = `${QUERY_ENCODER_WIRE_PREFIX}lora.`;

/**
 * Whether a session with `trainedPrefixes` (SessionConfig.trainedPrefixes) trains — and so
 * aggregates, and accepts deltas for — the global tensor `name`. The one rule both sides apply.
 */
export function isTrainedTensor(trainedPrefixes: readonly string[], name: string): boolean {
  return trainedPrefixes.some((p) => name.startsWith(p));
}

// ------------------------------------------------------------------ schema helpers
// Every wire shape below is ONE TypeBox definition: the JSON Schema the coordinator validates
// bodies with (and publishes in /api/openapi.json), the schema the client checks server answers
// and events against (./wire-check), and — through Static — the TypeScript type both sides use.

type ReadonlyProperties<P extends TProperties> = { [K in keyof P]: ReturnType<typeof Type.Readonly<P[K]>> };

/** An object schema whose Static type has readonly properties (the wire values are never mutated). */
function wireObject<P extends TProperties>(properties: P, options?: TObjectOptions) {
  const readonly = Object.fromEntries(Object.entries(properties).map(([k, v]) => [k, Type.Readonly(v)])) as ReadonlyProperties<P>;
  return Type.Object(readonly, options);
}

/** An array schema whose Static type is a readonly array. */
function list<T extends TSchema>(items: T, options?: TArrayOptions) {
  return Type.Immutable(Type.Array(items, options));
}

const nullable = <T extends TSchema>(schema: T) => Type.Union([schema, Type.Null()]);

/** `{type: 'string', enum}` (as the schemas were written by hand; TypeBox would write an anyOf of consts). */
function stringEnum<const V extends readonly string[]>(values: V) {
  return Type.Unsafe<V[number]>({ type: 'string', enum: [...values] });
}

/** A string-keyed map, `{type: 'object', additionalProperties: values}` (TypeBox's Record writes patternProperties). */
function recordOf<T extends TSchema>(values: T, options: TObjectOptions = {}) {
  return Type.Unsafe<Record<string, Static<T>>>({ type: 'object', ...options, additionalProperties: values });
}

/** Scalars of the free-form `training` record (and so of RoundInfo.config). */
const scalarRecordSchema = recordOf(
  // The HTTP edge validates with type coercion on (server/app.ts), and anyOf's first branch that
  // can be coerced wins: a string branch first would turn every number into a string, and a
  // number branch first turned `true` into 1. One branch with both types coerces only a value
  // that is neither (a numeric string becomes its number, "true"/"false" a boolean); a number or
  // a boolean arrives as sent.
  Type.Union([Type.Unsafe<number | boolean>({ type: ['number', 'boolean'] }), Type.String({ maxLength: 256 })]),
  {
    maxProperties: 64,
    description:
      'training settings handed to every participant with each round; read by parseTrainingConfig: learningRate (alias lr), retrieverLearningRate, ' +
      'localSteps (steps), localEpochs (epochs), passagesPerQuestion (k), maxLength, batchSize, warmupSteps, weightDecay, clipNorm, seed, ' +
      'retrieverLoss (pdist|adist|none), retrievalSource (shared|yours|both), memoryFit (adapt|refuse), loraRank (integer 1…1024: turns LoRA on), ' +
      'loraAlpha (> 0), loraTargets (comma-separated among q, k, v, o), loraSeed (integer >= 0), loraQueryTargets (comma-separated among q, k, v, o: the query encoder gets adapters too; needs loraRank); ' +
      'numbers may be numeric strings; ' +
      'a known setting whose value does not fit is refused when the session is created',
  },
);

// ------------------------------------------------------------------ training config

/** The session's free-form training record as it travels (SessionConfig.training, RoundInfo.config). */
export type TrainingRecord = Readonly<Static<typeof scalarRecordSchema>>;

/** A comma-separated list of LoRA target names (spaces around them allowed). */
const LORA_TARGETS_PATTERN = `^\\s*[${LORA_TARGET_NAMES.join('')}]\\s*(,\\s*[${LORA_TARGET_NAMES.join('')}]\\s*)*$`;

const trainingConfigSchema = wireObject({
  learningRate: Type.Optional(Type.Number()),
  retrieverLearningRate: Type.Optional(Type.Number()),
  localSteps: Type.Optional(Type.Number()),
  localEpochs: Type.Optional(Type.Number()),
  passagesPerQuestion: Type.Optional(Type.Number()),
  maxLength: Type.Optional(Type.Number()),
  batchSize: Type.Optional(Type.Number()),
  warmupSteps: Type.Optional(Type.Number()),
  weightDecay: Type.Optional(Type.Number()),
  clipNorm: Type.Optional(Type.Number()),
  seed: Type.Optional(Type.Number()),
  retrieverLoss: Type.Optional(stringEnum(['pdist', 'adist', 'none'])),
  /** What tabs retrieve from while training (src/corag/training-consent.ts); absent: the shared store. */
  retrievalSource: Type.Optional(stringEnum(['shared', 'yours', 'both'])),
  /** A tab whose memory cannot hold the step: 'adapt' (default) lowers its batch, 'refuse' refuses (src/corag/training-fit.ts). */
  memoryFit: Type.Optional(stringEnum(['adapt', 'refuse'])),
  // LoRA on the reader (src/model/lora.ts; read by src/corag/federated-client.ts loraConfigFromTraining).
  /** The adapters' rank r; its presence makes the session a LoRA session. Capped: no T5 projection is wider than 1024 rows in the models we load, and r above min(in, out) adds nothing. */
  loraRank: Type.Optional(Type.Integer({ minimum: 1, maximum: 1024 })),
  /** Scale numerator (the adapter output is multiplied by alpha / r); absent: 2·r. */
  loraAlpha: Type.Optional(Type.Number({ exclusiveMinimum: 0 })),
  /** Which attention projections get adapters, comma-separated; absent: "q,v". */
  loraTargets: Type.Optional(Type.String({ pattern: LORA_TARGETS_PATTERN, maxLength: 64 })),
  /** Seeds the adapters' A matrices (every client draws the same); absent: 0. */
  loraSeed: Type.Optional(Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER })),
  /**
   * The Contriever query encoder's attention projections that get adapters too, comma-separated
   * (BERT's query, key, value, attention.output.dense; the reader's rank, alpha and seed; wire
   * names `query_encoder.lora.*`). Absent: the reader's alone, as sessions stored before this key
   * existed mean. Needs loraRank. A list rather than a boolean, so the query encoder may take
   * other targets than the reader.
   */
  loraQueryTargets: Type.Optional(Type.String({ pattern: LORA_TARGETS_PATTERN, maxLength: 64 })),
});

/** The training record read once into its known settings (see parseTrainingConfig). */
export type TrainingConfig = Static<typeof trainingConfigSchema>;

/** What a known setting's value must be, for errors (from its schema). */
function mustBe(
  name: string,
  schema: TSchema & { type?: unknown; enum?: readonly string[]; minimum?: number; maximum?: number; exclusiveMinimum?: number },
): string {
  if (name === 'loraTargets' || name === 'loraQueryTargets') return `one or more of ${LORA_TARGET_NAMES.join(', ')}, comma-separated`;
  if (schema.enum) return `one of ${schema.enum.join(', ')}`;
  const bounds = [
    schema.minimum !== undefined ? `>= ${schema.minimum}` : '',
    schema.exclusiveMinimum !== undefined ? `> ${schema.exclusiveMinimum}` : '',
    schema.maximum !== undefined && schema.maximum < Number.MAX_SAFE_INTEGER ? `<= ${schema.maximum}` : '',
  ].filter((b) => b !== '');
  return `${schema.type === 'integer' ? 'an integer' : 'a finite number'}${bounds.length ? ` ${bounds.join(' and ')}` : ''}`;
}

/** Older short names a session may use instead of a setting's own (the setting's own name wins). */
const TRAINING_ALIASES: Readonly<Record<string, string>> = { learningRate: 'lr', localSteps: 'steps', localEpochs: 'epochs', passagesPerQuestion: 'k' };

type SettingSchema = TSchema & { type?: unknown; enum?: readonly string[] };
const trainingSettings = Object.entries(trainingConfigSchema.properties) as Array<[string, SettingSchema]>;

/** A raw value as the setting's type — numbers also from numeric strings — or undefined when it does not fit the schema. */
function settingValue(schema: SettingSchema, raw: unknown): unknown {
  const numeric = schema.type === 'number' || schema.type === 'integer';
  const candidate = numeric && typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : raw;
  return raw !== undefined && Value.Check(schema, candidate) ? candidate : undefined;
}

/** The names a setting may be given under: its own, then its alias. */
const namesOf = (name: string): string[] => (TRAINING_ALIASES[name] === undefined ? [name] : [name, TRAINING_ALIASES[name]]);

/**
 * The one reader of a session's `training` record (server/demo.ts, the session form, the CRAB
 * runner write it), driven by trainingConfigSchema: each setting it lists is read from its own
 * name or else (also when the own name's value does not fit) its alias (`learningRate`, else `lr`), numbers also as numeric strings; a value that
 * does not fit its schema (not a finite number, out of range, not one of the words) is left out,
 * as are keys the schema does not list. The coordinator refuses such values when a session is
 * created (trainingConfigProblems), so this leniency only matters for sessions stored before.
 */
export function parseTrainingConfig(record: TrainingRecord): TrainingConfig {
  const out: Record<string, unknown> = {};
  for (const [name, schema] of trainingSettings) {
    const value = namesOf(name)
      .map((field) => settingValue(schema, record[field]))
      .find((v) => v !== undefined);
    if (value !== undefined) out[name] = value;
  }
  return out as TrainingConfig;
}

/**
 * What is wrong with a training record: one line per known setting whose value parseTrainingConfig
 * would leave out, naming the field (`training.loraRank must be an integer >= 1 and <= 1024, got
 * "big"`). Empty when every known setting fits; unknown keys are not problems (the record is
 * free-form: sessions may carry notes).
 */
export function trainingConfigProblems(record: TrainingRecord): string[] {
  const problems: string[] = [];
  for (const [name, schema] of trainingSettings) {
    for (const field of namesOf(name)) {
      const raw = record[field];
      if (raw !== undefined && settingValue(schema, raw) === undefined)
        problems.push(`training.${field} must be ${mustBe(name, schema)}, got ${JSON.stringify(raw)}`);
    }
  }
  // The query encoder's adapters take the reader's rank, alpha, targets and seed: without a rank there are none.
  const typed = parseTrainingConfig(record);
  if (typed.loraQueryTargets !== undefined && typed.loraRank === undefined)
    problems.push("training.loraQueryTargets needs training.loraRank (the query encoder's adapters share the reader's LoRA settings)");
  return problems;
}

/**
 * The wire prefixes a LoRA session may train and aggregate: the reader's adapters, and the query
 * encoder's with `loraQueryTargets`; null when the session is not a LoRA session (no loraRank).
 */
export function loraAdapterPrefixes(training: TrainingConfig): string[] | null {
  if (training.loraRank === undefined) return null;
  return training.loraQueryTargets !== undefined ? [READER_LORA_WIRE_PREFIX, QUERY_ENCODER_LORA_WIRE_PREFIX] : [READER_LORA_WIRE_PREFIX];
}

// ------------------------------------------------------------------ session config

/** When a round opens, whom it selects, and when it closes. */
const roundPolicySchema = wireObject(
  {
    /** Fraction of joined clients selected for a round (at least minClients are selected). */
    fraction: Type.Number({ exclusiveMinimum: 0, maximum: 1 }),
    /** A round cannot open with fewer joined clients than this. */
    minClients: Type.Integer({ minimum: 1, maximum: 100_000 }),
    /** At the deadline the round aggregates if at least this many updates arrived, else it fails. */
    minUpdates: Type.Integer({ minimum: 1, maximum: 100_000 }),
    /** Seconds from opening until stragglers are dropped. */
    deadlineSeconds: Type.Number({ exclusiveMinimum: 0, maximum: 7 * 24 * 3600 }),
    /** Open the next round automatically when one ends and enough clients have joined. */
    autoStart: Type.Boolean(),
  },
  { additionalProperties: false },
);
export type RoundPolicy = Static<typeof roundPolicySchema>;

/** Ids of the models a session trains; clients check them before loading weights. */
const sessionModelsSchema = wireObject(
  {
    /** Reader checkpoint id (a Hugging Face id or folder name; informational for the server). */
    reader: Type.String({ minLength: 1, maxLength: 200 }),
    /** Passage encoder id; every contributed embedding must name exactly this id. */
    passageEncoder: Type.String({ minLength: 1, maxLength: 200 }),
    /** Embedding dimension every contributed embedding and search query must have. */
    embeddingDim: Type.Integer({ minimum: 1, maximum: 8192 }),
  },
  { additionalProperties: false },
);
export type SessionModels = Static<typeof sessionModelsSchema>;

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
const passagePolicySchema = wireObject(
  {
    embeddingCheck: stringEnum(['sample', 'all', 'off']),
    firstBatchChecks: Type.Integer({ minimum: 1, maximum: 256 }),
    sampleFraction: Type.Number({ minimum: 0, maximum: 1 }),
    minSampleChecks: Type.Integer({ minimum: 1, maximum: 256 }),
    /** Passages one client may have contributed (duplicates of others' passages count too). */
    maxPassagesPerClient: Type.Integer({ minimum: 0, maximum: 1e9 }),
    /** Bytes (UTF-8 title + text + 4 bytes per embedding value) one client may have contributed. */
    maxBytesPerClient: Type.Integer({ minimum: 0, maximum: 2 ** 50 }),
    maxPassagesPerSession: Type.Integer({ minimum: 0, maximum: 1e9 }),
    maxBytesPerSession: Type.Integer({ minimum: 0, maximum: 2 ** 50 }),
  },
  { additionalProperties: false },
);
export type PassagePolicy = Static<typeof passagePolicySchema>;

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
const updateLimitsSchema = wireObject(
  {
    /**
     * num_examples above this counts as this (the update is not refused). Default: the examples one
     * round of the session's training processes, localSteps × batchSize, when the session's training
     * config names both; else DEFAULT_MAX_EXAMPLES_PER_UPDATE.
     */
    maxExamplesPerUpdate: Type.Integer({ minimum: 1, maximum: 1e12 }),
    /**
     * Largest share of a round's total weight one update can hold (stored-delta strategies; with
     * fewer than 1/maxWeightShare updates, equal shares). FedAvg streams and cannot reweight what it
     * has summed: it requires 1.
     */
    maxWeightShare: Type.Number({ exclusiveMinimum: 0, maximum: 1 }),
  },
  { additionalProperties: false },
);
export type UpdateLimits = Static<typeof updateLimitsSchema>;

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

/** Limits of a question pool a session is created with. */
export const MAX_TRAINING_QUESTIONS = 10_000;

/**
 * How a session's pool of training questions is handed out (server/training-questions.ts). The
 * pool is shuffled once with `seed`; the first `heldOut` questions are never part of a shard and
 * are the evaluation set every participant scores new global versions on; the rest are cut into
 * shards of `perClient` by join order (the n-th client to join gets shard n), so shards are
 * disjoint until the pool runs out and then wrap around.
 */
const trainingQuestionPolicySchema = wireObject({
  /** Questions in the pool, held-out ones included. */
  pool: Type.Integer({ minimum: 0 }),
  perClient: Type.Integer({ minimum: 0 }),
  heldOut: Type.Integer({ minimum: 0 }),
  seed: Type.Integer({ minimum: 0 }),
});
export type TrainingQuestionPolicy = Static<typeof trainingQuestionPolicySchema>;

/** One question with its gold answers (a pool entry, and each item the route returns). */
const trainingQuestionSchema = wireObject(
  {
    question: Type.String({ minLength: 1, maxLength: 1000 }),
    answers: list(Type.String({ minLength: 1, maxLength: 500 }), { minItems: 1, maxItems: 32 }),
  },
  { additionalProperties: false },
);
export type TrainingQuestion = Static<typeof trainingQuestionSchema>;

/** GET /api/sessions/:id/training-questions: this client's shard and the held-out evaluation set. */
export const trainingQuestionsResponseSchema = wireObject(
  {
    /** 0-based shard number (the client's join order). */
    shard: Type.Integer({ minimum: 0, description: "this client's shard: its place in the join order" }),
    questions: list(trainingQuestionSchema, { description: 'the questions this client trains on' }),
    evaluation: list(trainingQuestionSchema, { description: 'held-out questions, in no shard: score each new global version on them' }),
  },
  { additionalProperties: false },
);
export type TrainingQuestionsResponse = Static<typeof trainingQuestionsResponseSchema>;

const sessionConfigSchema = wireObject({
  name: Type.String({ minLength: 1, maxLength: 200 }),
  models: sessionModelsSchema,
  /** Client-side training hyper-parameters (learning rate, steps, k...), handed out with each round: parseTrainingConfig. */
  training: scalarRecordSchema,
  roundPolicy: roundPolicySchema,
  /**
   * Name prefixes of the trained parameters ('' = all). Every update must carry exactly the global
   * tensors matching one of them, so all deltas in a round are comparable.
   */
  trainedPrefixes: list(Type.String({ maxLength: 300 }), { maxItems: 256 }),
  /** Aggregation strategy name (see ./strategy: fedavg, norm-clip, median, trimmed-mean, multi-krum, centered-clip). */
  strategy: Type.String({ maxLength: 64 }),
  /** The strategy's numeric parameters, defaults filled in (each strategy documents its own). */
  strategyParams: recordOf(Type.Number(), { maxProperties: 16 }),
  /** What one update can weigh: num_examples is self-reported. */
  updateLimits: updateLimitsSchema,
  /**
   * How the coordinator checks and bounds contributed passages (embedding spot-checks, quotas).
   * Sessions stored before this setting existed have none: read it with `passagePolicyOf`.
   */
  passages: Type.Optional(passagePolicySchema),
  /**
   * The session hands its participants training questions (a classroom shard each, as an organiser
   * would): GET /api/sessions/:id/training-questions. Absent: participants bring their own.
   */
  trainingQuestions: Type.Optional(trainingQuestionPolicySchema),
});
export type SessionConfig = Static<typeof sessionConfigSchema>;

// ------------------------------------------------------------------ rounds and sessions

const roundStateSchema = stringEnum(['open', 'closing', 'closed', 'failed']);
export type RoundState = Static<typeof roundStateSchema>;

export const roundInfoSchema = wireObject({
  sessionId: Type.String(),
  round: Type.Integer({ minimum: 1 }),
  state: roundStateSchema,
  /** Global model version the deltas of this round are taken against. */
  baseVersion: Type.Integer({ minimum: 0 }),
  /** Version produced by this round (closed rounds only). */
  resultVersion: nullable(Type.Integer({ minimum: 0 })),
  participants: list(Type.String()),
  accepted: Type.Integer({ minimum: 0 }),
  openedAt: Type.String(),
  deadlineAt: Type.String(),
  closedAt: nullable(Type.String()),
  /** Hyper-parameters the strategy hands to participants (the session's training record: parseTrainingConfig). */
  config: scalarRecordSchema,
  /** Example-weighted client metrics (closed rounds). */
  metrics: recordOf(Type.Number()),
  /** Why a failed round failed (too few updates, a non-finite or out-of-bound aggregate); else null. */
  failureReason: nullable(Type.String()),
});
export type RoundInfo = Static<typeof roundInfoSchema>;

/** GET /api/sessions/:id; also the `hello` event's snapshot. */
export const sessionInfoSchema = wireObject({
  id: Type.String(),
  config: sessionConfigSchema,
  currentVersion: nullable(Type.Integer({ minimum: 0 })),
  /** Clients that have joined (ever). */
  clients: Type.Integer({ minimum: 0, description: 'clients that have joined the session' }),
  /** Distinct joined clients holding an open event stream right now (admin streams not counted). */
  online: Type.Integer({ minimum: 0, description: 'distinct joined clients holding an open event stream now (admin streams not counted)' }),
  passages: Type.Integer({ minimum: 0 }),
  round: nullable(roundInfoSchema),
});
export type SessionInfo = Static<typeof sessionInfoSchema>;

/**
 * GET /api/peers: the other coordinator processes that serve this one's sessions (they share its
 * state: docs/DEPLOY.md §6), as base URLs; a client fails over to them when this one stops
 * answering (src/federated/peers.ts). Empty for a coordinator told no peers.
 */
export const peersSchema = wireObject({
  peers: list(Type.String({ pattern: '^https?://[^/]', description: "base URL of another coordinator process sharing this one's sessions" })),
});

export const createdSessionSchema = wireObject({
  session: sessionInfoSchema,
  adminToken: Type.String(),
  joinCode: Type.String(),
});
export type CreatedSession = Static<typeof createdSessionSchema>;

export const joinResultSchema = wireObject({
  sessionId: Type.String(),
  clientId: Type.String(),
  token: Type.String(),
});
export type JoinResult = Static<typeof joinResultSchema>;

/** PUT /api/sessions/:id/model: the version the upload became. */
export const modelVersionSchema = wireObject({ version: Type.Integer({ minimum: 0 }) });

export const updateReceiptSchema = wireObject({
  round: Type.Integer({ minimum: 1 }),
  clientId: Type.String(),
  numExamples: Type.Number({ minimum: 0 }),
  accepted: Type.Integer({ minimum: 0 }),
  /** All selected participants have reported: the round is closing now. */
  roundComplete: Type.Boolean(),
});
export type UpdateReceipt = Static<typeof updateReceiptSchema>;

// ------------------------------------------------------------------ passages

/** Passage text limit (characters); Atlas-style passages are ~100 words. */
export const MAX_PASSAGE_TEXT = 20_000;
export const MAX_PASSAGES_PER_REQUEST = 256;

const passageInputSchema = wireObject(
  {
    title: Type.Optional(Type.String({ maxLength: 1000 })),
    text: Type.String({ minLength: 1, maxLength: MAX_PASSAGE_TEXT }),
    /** Passage embedding computed client-side with `encoder`. */
    embedding: list(Type.Number(), { minItems: 1, maxItems: 8192 }),
    /** Must equal the session's models.passageEncoder. */
    encoder: Type.String({ minLength: 1, maxLength: 200 }),
  },
  { additionalProperties: false },
);
/** A passage as a client contributes it (`title` may be left out: it is stored as ''). */
export type PassageInput = Static<typeof passageInputSchema>;

const passageSchema = wireObject({
  id: Type.Integer({ minimum: 1 }),
  title: Type.String(),
  text: Type.String(),
  clientId: Type.String(),
  hash: Type.String(),
});
export type Passage = Static<typeof passageSchema>;

export const addPassagesResultSchema = wireObject({
  /** One entry per input passage, in order. */
  results: list(wireObject({ id: Type.Integer({ minimum: 1 }), duplicate: Type.Boolean() })),
});
export type AddPassagesResult = Static<typeof addPassagesResultSchema>;

const searchHitSchema = wireObject({
  id: Type.Integer({ minimum: 1 }),
  score: Type.Number(),
  passage: passageSchema,
  /** The stored passage embedding, when the search asked `withEmbeddings`. */
  embedding: Type.Optional(Type.Array(Type.Number())),
});
export type SearchHit = Static<typeof searchHitSchema>;

/** POST /api/sessions/:id/passages/search. */
export const searchResultSchema = wireObject({ hits: Type.Array(searchHitSchema) });
/** GET /api/sessions/:id/passages?ids=. */
export const passagesResultSchema = wireObject({ passages: Type.Array(passageSchema) });
/** DELETE /api/sessions/:id/passages/:pid: whether the passage left the store, and who still holds it. */
export const withdrawResultSchema = wireObject({
  id: Type.Integer({ minimum: 1 }),
  deleted: Type.Boolean(),
  contributorsLeft: Type.Integer({ minimum: 0 }),
});

/**
 * A search that returns embeddings sends dim numbers per hit (~15 KB for 768 dimensions): k is
 * capped lower for it. Training asks for them so Perplexity Distillation can score retrieved
 * passages with the frozen passage encoder's vectors instead of re-embedding them.
 */
export const MAX_SEARCH_K_WITH_EMBEDDINGS = 100;

const contributionCountSchema = wireObject({ clientId: Type.String(), passages: Type.Integer({ minimum: 0 }) });
export type ContributionCount = Static<typeof contributionCountSchema>;
/** GET /api/sessions/:id/contributions. */
export const contributionsResultSchema = wireObject({ counts: Type.Array(contributionCountSchema) });

// ------------------------------------------------------------------ events and errors

/**
 * Events pushed over SSE (`event:` is the type, `data:` the JSON of the whole object), one schema
 * per type: the client checks each event against its type's schema before anyone acts on it.
 */
export const serverEventSchemas = {
  hello: wireObject({ type: Type.Literal('hello'), session: sessionInfoSchema }),
  'round-opened': wireObject({ type: Type.Literal('round-opened'), round: roundInfoSchema }),
  'update-accepted': wireObject({
    type: Type.Literal('update-accepted'),
    round: Type.Integer({ minimum: 1 }),
    clientId: Type.String(),
    accepted: Type.Integer({ minimum: 0 }),
  }),
  'round-closed': wireObject({ type: Type.Literal('round-closed'), round: roundInfoSchema }),
  'passages-changed': wireObject({
    type: Type.Literal('passages-changed'),
    total: Type.Integer({ minimum: 0 }),
    added: Type.Integer({ minimum: 0 }),
    removed: Type.Integer({ minimum: 0 }),
  }),
  /** The number of distinct clients with an open event stream changed. */
  presence: wireObject({ type: Type.Literal('presence'), online: Type.Integer({ minimum: 0 }) }),
};
export type ServerEvent = { [T in keyof typeof serverEventSchemas]: Static<(typeof serverEventSchemas)[T]> }[keyof typeof serverEventSchemas];

/** Every 4xx/5xx body: a stable machine code and a message a person can act on. */
export const errorBodySchema = wireObject({ error: Type.String(), message: Type.String() });
export type ErrorBody = Static<typeof errorBodySchema>;

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

// ------------------------------------------------------------------ request bodies

/** POST /api/sessions: everything but name and models has a default. */
export const createSessionSchema = wireObject(
  {
    name: sessionConfigSchema.properties.name,
    models: sessionModelsSchema,
    training: Type.Optional(scalarRecordSchema),
    roundPolicy: Type.Optional(Type.Partial(roundPolicySchema, { additionalProperties: false })),
    trainedPrefixes: Type.Optional(sessionConfigSchema.properties.trainedPrefixes),
    strategy: Type.Optional(sessionConfigSchema.properties.strategy),
    strategyParams: Type.Optional(sessionConfigSchema.properties.strategyParams),
    updateLimits: Type.Optional(Type.Partial(updateLimitsSchema, { additionalProperties: false })),
    passages: Type.Optional(Type.Partial(passagePolicySchema, { additionalProperties: false })),
    /** Questions the session hands out, a shard per client (see TrainingQuestionPolicy). */
    trainingQuestions: Type.Optional(
      wireObject(
        {
          questions: list(trainingQuestionSchema, { minItems: 1, maxItems: MAX_TRAINING_QUESTIONS }),
          perClient: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_TRAINING_QUESTIONS })),
          heldOut: Type.Optional(Type.Integer({ minimum: 0, maximum: MAX_TRAINING_QUESTIONS })),
          seed: Type.Optional(Type.Integer({ minimum: 0, maximum: 2 ** 32 - 1 })),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);
/** The session config a creator supplies (POST /api/sessions). */
export type NewSession = Static<typeof createSessionSchema>;

/**
 * A join's idempotency key: 22–64 base64url characters (22 carry 132 bits, the least a key must
 * have, since within the coordinator's replay window it grants the client it created a new token).
 * A client picks a new random key per join and sends that same key again when it resends the join.
 */
export const JOIN_KEY = /^[A-Za-z0-9_-]{22,64}$/;

export const joinSchema = wireObject(
  {
    code: Type.String({ minLength: 1, maxLength: 64 }),
    name: Type.Optional(Type.String({ maxLength: 100 })),
    idempotencyKey: Type.Optional(
      Type.String({
        pattern: JOIN_KEY.source,
        description:
          'random per join (≥ 128 bits); the same key and code again within the replay window answer with the same client and a fresh token instead of a new client',
      }),
    ),
  },
  { additionalProperties: false },
);

export const addPassagesSchema = wireObject(
  { passages: list(passageInputSchema, { minItems: 1, maxItems: MAX_PASSAGES_PER_REQUEST }) },
  { additionalProperties: false },
);

export const searchSchema = wireObject(
  {
    embedding: list(Type.Number(), { minItems: 1, maxItems: 8192 }),
    k: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
    withEmbeddings: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);
