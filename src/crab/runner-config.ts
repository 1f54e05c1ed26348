/**
 * The CRAB experiment runner's configuration: which data, which models, which methods at which
 * shot counts and stores, and the training/evaluation hyper-parameters. Parsed from JSON
 * (configs/crab/*.json) into a fully defaulted, checked value; a mistake is reported with the
 * key that holds it.
 */
import type { WireDtype } from '../federated/codec';
import type { RetrieverLoss } from '../corag/local-training';
import { LORA_TARGETS, type LoraTarget } from '../model/lora-targets';
import { TRAINING_STORES, type TrainingStoreName } from './stores';

/** The paper's four comparisons. */
export const METHODS = ['closed-book', 'rag-local', 'corag', 'centralized'] as const;
export type Method = (typeof METHODS)[number];

export const METHOD_LABELS: Record<Method, string> = {
  'closed-book': 'Closed-book',
  'rag-local': 'RAG-Local',
  corag: 'CoRAG',
  centralized: 'Centralized',
};

/** Which parameters the trained methods update (closed-book always trains the reader only). */
export type TrainedParts = 'reader' | 'reader+query-encoder';

export interface ModelSpec {
  /**
   * `tiny` (a seeded random tiny model, src/model/tiny.ts, with the repo's tokenizers), a folder
   * (`./path`, `/abs`), an http(s) URL base or a Hugging Face hub id.
   */
  readonly reader: string;
  readonly retriever: string;
}

export interface DataSpec {
  /** Folder of a built CRAB (scripts/build-crab-mini.ts output); built there when missing. */
  readonly cache: string;
  /** Build from NQ-open + DPR files in this folder instead of SQuAD (see docs/CRAB.md). */
  readonly dataDir?: string;
  /** The build's seed (the split); independent of the runner's seeds. */
  readonly seed: number;
}

export interface TrainingSpec {
  /** Optimizer steps per client per round; when null, `localEpochs` passes over its QA pairs. */
  readonly localSteps: number | null;
  readonly localEpochs: number;
  readonly batchSize: number;
  readonly lr: number;
  readonly retrieverLr: number;
  /** Passages per question while training (paper: 40). */
  readonly k: number;
  /** Tokens per (question, passage) reader input (paper: 384). */
  readonly maxLength: number;
  readonly retrieverLoss: RetrieverLoss;
  readonly trainedParts: TrainedParts;
  readonly warmupSteps: number;
  readonly weightDecay: number;
  readonly clipNorm: number;
  /**
   * LoRA sessions (docs/CLIENT-CORE.md "LoRA sessions"): every method trains rank-r adapters on
   * the reader's attention over a frozen base (and on the query encoder's `queryTargets`),
   * the federated methods aggregate the adapters only (trainedPrefixes ["reader.lora."], plus
   * "query_encoder.lora."). null: full fine-tuning of `trainedParts`.
   */
  readonly lora: LoraSpec | null;
}

/** `training.lora` of a runner config: the session keys loraRank, loraAlpha, loraTargets, loraSeed, loraQueryTargets. */
export interface LoraSpec {
  readonly rank: number;
  /** Default 2·rank (scale alpha/r = 2, as a session's default). */
  readonly alpha: number;
  /** Default q, v. */
  readonly targets: readonly LoraTarget[];
  /** Seeds the A matrices (default 0). */
  readonly seed: number;
  /** The query encoder's projections that get adapters too (default none); needs trainedParts "reader+query-encoder". */
  readonly queryTargets: readonly LoraTarget[];
}

export interface EvaluationSpec {
  /** Test questions per client (the first n of its test split; null = all). */
  readonly testPerClient: number | null;
  /** Dev questions per client (the first n of its dev split; null = all), answered after every round for round selection. */
  readonly devPerClient: number | null;
  readonly k: number;
  readonly maxNewTokens: number;
  readonly numBeams: number;
  readonly batchSize: number;
  /** Answers restricted to whole-word spans of the retrieved passages (src/corag/extractive.ts); the paper generates freely. */
  readonly extractive: boolean;
  /**
   * Copy-decoding weight (src/model/t5/copy-decoding.ts); null: the reader's own
   * `corag.copy_decoding_weight` from its config.json (off when it has none).
   */
  readonly copyWeight: number | null;
}

export interface StoreAblationSpec {
  readonly shots: number;
  readonly methods: readonly Method[];
  readonly stores: readonly TrainingStoreName[];
}

export interface RunnerConfig {
  /** Names the output folder results/<name>/. */
  readonly name: string;
  readonly backend: 'cpu' | 'wasm' | 'webgpu';
  readonly data: DataSpec;
  readonly models: ModelSpec;
  /** The first n clients of the split take part (null = all of the built split's clients). */
  readonly clients: number | null;
  readonly shots: readonly number[];
  readonly methods: readonly Method[];
  /** Training store of the main table (paper: REL). */
  readonly store: TrainingStoreName;
  /** The store ablation table (paper: Table 2); null = none. */
  readonly storeAblation: StoreAblationSpec | null;
  /** Repetitions; each seeds the tiny models' weights and the batch order. */
  readonly seeds: readonly number[];
  readonly rounds: number;
  readonly training: TrainingSpec;
  readonly evaluation: EvaluationSpec;
  /** Passage token limit for Contriever embeddings. */
  readonly passageMaxLength: number;
  /** Wire dtype of the clients' deltas. */
  readonly updateDtype: WireDtype;
}

export const DEFAULT_TRAINING: TrainingSpec = {
  localSteps: null,
  localEpochs: 1,
  batchSize: 4,
  lr: 1e-4,
  retrieverLr: 1e-5,
  k: 40,
  maxLength: 384,
  retrieverLoss: 'pdist',
  trainedParts: 'reader+query-encoder',
  warmupSteps: 0,
  weightDecay: 0.01,
  clipNorm: 1,
  lora: null,
};

export const DEFAULT_EVALUATION: EvaluationSpec = {
  testPerClient: null,
  devPerClient: null,
  k: 40,
  maxNewTokens: 16,
  numBeams: 1,
  batchSize: 8,
  extractive: false,
  copyWeight: null,
};

export class RunnerConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RunnerConfigError';
  }
}

type Json = Record<string, unknown>;

function object(value: unknown, key: string): Json {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new RunnerConfigError(`${key} must be an object`);
  return value as Json;
}

/** Rejects keys the schema does not know (a typo would otherwise silently keep a default). */
function known(json: Json, key: string, keys: readonly string[]): void {
  for (const k of Object.keys(json))
    if (!keys.includes(k)) throw new RunnerConfigError(`${key ? `${key}.` : ''}${k} is not a known setting (expected one of ${keys.join(', ')})`);
}

function str(json: Json, key: string, path: string, fallback?: string): string {
  const v = json[key] ?? fallback;
  if (typeof v !== 'string' || v.trim() === '') throw new RunnerConfigError(`${path}${key} must be a non-empty string`);
  return v;
}

function bool(json: Json, key: string, path: string, fallback: boolean): boolean {
  const v = json[key] ?? fallback;
  if (typeof v !== 'boolean') throw new RunnerConfigError(`${path}${key} must be true or false, got ${JSON.stringify(v)}`);
  return v;
}

function num(json: Json, key: string, path: string, fallback: number, check: (n: number) => boolean = (n) => n > 0, what = 'a positive number'): number {
  const v = json[key] ?? fallback;
  if (typeof v !== 'number' || !Number.isFinite(v) || !check(v)) throw new RunnerConfigError(`${path}${key} must be ${what}, got ${JSON.stringify(v)}`);
  return v;
}

const isPositiveInt = (n: number) => Number.isInteger(n) && n > 0;
const int = (json: Json, key: string, path: string, fallback: number) => num(json, key, path, fallback, isPositiveInt, 'a positive integer');

function oneOf<T extends string>(value: unknown, allowed: readonly T[], key: string): T {
  if (typeof value !== 'string' || !allowed.includes(value as T))
    throw new RunnerConfigError(`${key} must be one of ${allowed.join(', ')}, got ${JSON.stringify(value)}`);
  return value as T;
}

function list<T>(value: unknown, key: string, item: (v: unknown, key: string) => T): T[] {
  if (!Array.isArray(value) || value.length === 0) throw new RunnerConfigError(`${key} must be a non-empty array`);
  const out = value.map((v, i) => item(v, `${key}[${i}]`));
  if (new Set(out).size !== out.length) throw new RunnerConfigError(`${key} lists a value twice`);
  return out;
}

const positiveInt = (v: unknown, key: string) => {
  if (typeof v !== 'number' || !isPositiveInt(v)) throw new RunnerConfigError(`${key} must be a positive integer, got ${JSON.stringify(v)}`);
  return v;
};
const nonNegativeInt = (v: unknown, key: string) => {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw new RunnerConfigError(`${key} must be a non-negative integer, got ${JSON.stringify(v)}`);
  return v;
};

function parseLora(value: unknown, trainedParts: TrainedParts): LoraSpec | null {
  if (value === undefined || value === null) return null;
  const json = object(value, 'training.lora');
  known(json, 'training.lora', ['rank', 'alpha', 'targets', 'seed', 'queryTargets']);
  const p = 'training.lora.';
  const queryTargets = json.queryTargets === undefined ? [] : list(json.queryTargets, `${p}queryTargets`, (v, key) => oneOf(v, LORA_TARGETS, key));
  const queryEncoder = queryTargets.length > 0;
  // A LoRA session's updates carry adapters only (the coordinator refuses other trained
  // prefixes): the query encoder trains beside the reader exactly when it has adapters, and it
  // gets a gradient only from the retriever loss that trainedParts "reader+query-encoder" turns on.
  if (trainedParts !== (queryEncoder ? 'reader+query-encoder' : 'reader'))
    throw new RunnerConfigError(
      queryEncoder
        ? `${p}queryTargets needs training.trainedParts "reader+query-encoder" (the query encoder's adapters are trained by the retriever loss)`
        : 'training.lora needs training.trainedParts "reader" (LoRA sessions train adapters only; training.lora.queryTargets adds the query encoder\'s)',
    );
  if (json.rank === undefined) throw new RunnerConfigError('training.lora.rank is required (it turns LoRA on)');
  const rank = num(json, 'rank', p, 0, (n) => Number.isInteger(n) && n >= 1 && n <= 1024, 'an integer from 1 to 1024');
  return {
    rank,
    alpha: num(json, 'alpha', p, 2 * rank),
    targets: list(json.targets ?? ['q', 'v'], `${p}targets`, (v, key) => oneOf(v, LORA_TARGETS, key)),
    seed: num(json, 'seed', p, 0, (n) => Number.isInteger(n) && n >= 0, 'a non-negative integer'),
    queryTargets,
  };
}

function parseTraining(value: unknown): TrainingSpec {
  const json = object(value ?? {}, 'training');
  const d = DEFAULT_TRAINING;
  known(json, 'training', Object.keys(d));
  const p = 'training.';
  const localSteps = json.localSteps === undefined || json.localSteps === null ? d.localSteps : int(json, 'localSteps', p, 1);
  const lr = num(json, 'lr', p, d.lr);
  const trainedParts = oneOf(json.trainedParts ?? d.trainedParts, ['reader', 'reader+query-encoder'] as const, `${p}trainedParts`);
  return {
    localSteps,
    localEpochs: int(json, 'localEpochs', p, d.localEpochs),
    batchSize: int(json, 'batchSize', p, d.batchSize),
    lr,
    retrieverLr: num(json, 'retrieverLr', p, d.retrieverLr),
    k: int(json, 'k', p, d.k),
    maxLength: int(json, 'maxLength', p, d.maxLength),
    retrieverLoss: oneOf(json.retrieverLoss ?? d.retrieverLoss, ['pdist', 'adist', 'none'] as const, `${p}retrieverLoss`),
    trainedParts,
    warmupSteps: num(json, 'warmupSteps', p, d.warmupSteps, (n) => Number.isInteger(n) && n >= 0, 'a non-negative integer'),
    weightDecay: num(json, 'weightDecay', p, d.weightDecay, (n) => n >= 0, 'a non-negative number'),
    clipNorm: num(json, 'clipNorm', p, d.clipNorm),
    lora: parseLora(json.lora, trainedParts),
  };
}

function parseEvaluation(value: unknown): EvaluationSpec {
  const json = object(value ?? {}, 'evaluation');
  const d = DEFAULT_EVALUATION;
  known(json, 'evaluation', Object.keys(d));
  const p = 'evaluation.';
  return {
    testPerClient: json.testPerClient === undefined || json.testPerClient === null ? d.testPerClient : int(json, 'testPerClient', p, 1),
    devPerClient: json.devPerClient === undefined || json.devPerClient === null ? d.devPerClient : int(json, 'devPerClient', p, 1),
    k: int(json, 'k', p, d.k),
    maxNewTokens: int(json, 'maxNewTokens', p, d.maxNewTokens),
    numBeams: int(json, 'numBeams', p, d.numBeams),
    batchSize: int(json, 'batchSize', p, d.batchSize),
    extractive: bool(json, 'extractive', p, d.extractive),
    copyWeight:
      json.copyWeight === undefined || json.copyWeight === null ? d.copyWeight : num(json, 'copyWeight', p, 0, (n) => n >= 0 && n <= 1, 'a number in [0, 1]'),
  };
}

const CONFIG_KEYS = [
  '$comment',
  'name',
  'backend',
  'data',
  'models',
  'clients',
  'shots',
  'methods',
  'store',
  'storeAblation',
  'seeds',
  'rounds',
  'training',
  'evaluation',
  'passageMaxLength',
  'updateDtype',
] as const;

/** Parses a runner config (the JSON of configs/crab/*.json); unknown keys and bad values throw RunnerConfigError. */
export function parseRunnerConfig(value: unknown): RunnerConfig {
  const json = object(value, 'the config');
  known(json, '', CONFIG_KEYS);
  const name = str(json, 'name', '');
  if (!/^[A-Za-z0-9._-]+$/.test(name))
    throw new RunnerConfigError(`name must be usable as a folder name (letters, digits, . _ -), got ${JSON.stringify(name)}`);
  const data = object(json.data ?? {}, 'data');
  known(data, 'data', ['cache', 'dataDir', 'seed']);
  const models = object(json.models, 'models');
  known(models, 'models', ['reader', 'retriever']);
  const storeOf = (v: unknown, key: string) => oneOf(v, TRAINING_STORES, key);
  const methodOf = (v: unknown, key: string) => oneOf(v, METHODS, key);
  let storeAblation: StoreAblationSpec | null = null;
  if (json.storeAblation !== undefined && json.storeAblation !== null) {
    const a = object(json.storeAblation, 'storeAblation');
    known(a, 'storeAblation', ['shots', 'methods', 'stores']);
    storeAblation = {
      shots: positiveInt(a.shots, 'storeAblation.shots'),
      methods: list(a.methods ?? ['corag'], 'storeAblation.methods', methodOf),
      stores: list(a.stores, 'storeAblation.stores', storeOf),
    };
  }
  const config: RunnerConfig = {
    name,
    backend: oneOf(json.backend ?? 'wasm', ['cpu', 'wasm', 'webgpu'] as const, 'backend'),
    data: {
      cache: str(data, 'cache', 'data.', 'results/cache/crab-mini'),
      ...(data.dataDir !== undefined ? { dataDir: str(data, 'dataDir', 'data.') } : {}),
      seed: num(data, 'seed', 'data.', 0, (n) => Number.isInteger(n) && n >= 0, 'a non-negative integer'),
    },
    models: { reader: str(models, 'reader', 'models.'), retriever: str(models, 'retriever', 'models.') },
    clients: json.clients === undefined || json.clients === null ? null : positiveInt(json.clients, 'clients'),
    shots: list(json.shots ?? [16, 32, 64], 'shots', positiveInt),
    methods: list(json.methods ?? METHODS, 'methods', methodOf),
    store: storeOf(json.store ?? 'REL', 'store'),
    storeAblation,
    seeds: list(json.seeds ?? [0], 'seeds', nonNegativeInt),
    rounds: positiveInt(json.rounds ?? 1, 'rounds'),
    training: parseTraining(json.training),
    evaluation: parseEvaluation(json.evaluation),
    passageMaxLength: positiveInt(json.passageMaxLength ?? 512, 'passageMaxLength'),
    updateDtype: oneOf(json.updateDtype ?? 'F32', ['F32', 'F16'] as const, 'updateDtype'),
  };
  return config;
}

/** One cell of the experiment grid: a method trained on a store at a shot count, with one seed. */
export interface ExperimentSpec {
  readonly method: Method;
  readonly shots: number;
  readonly store: TrainingStoreName;
  readonly seed: number;
}

/**
 * Every experiment the config asks for, main table first, then the store ablation; a cell both
 * tables need (e.g. CoRAG on REL at the ablation's shot count) runs once.
 */
export function experimentGrid(config: RunnerConfig): ExperimentSpec[] {
  const out: ExperimentSpec[] = [];
  const seen = new Set<string>();
  const add = (e: ExperimentSpec) => {
    // Closed-book never retrieves while training, so its store does not matter: keep one cell.
    const key = `${e.method}/${e.shots}/${e.method === 'closed-book' ? '-' : e.store}/${e.seed}`;
    if (!seen.has(key)) {
      seen.add(key);
      out.push(e);
    }
  };
  for (const seed of config.seeds) {
    for (const shots of config.shots) for (const method of config.methods) add({ method, shots, store: config.store, seed });
    const a = config.storeAblation;
    if (a) for (const store of a.stores) for (const method of a.methods) add({ method, shots: a.shots, store, seed });
  }
  return out;
}
