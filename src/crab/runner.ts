/**
 * The CRAB experiment runner: every (method, shots, store, seed) cell of a RunnerConfig, trained
 * and evaluated the way the paper compares them.
 *
 * - Closed-book: the reader alone (each question with an empty passage), trained with FedAvg
 *   over the coordinator like CoRAG, so the two differ only in retrieval.
 * - RAG-Local: each client trains alone on its own view of the training store (clientView).
 * - CoRAG: every client contributes its view to the coordinator's collaborative store and
 *   trains against it (top-k over HTTP); FedAvg over rounds, every byte through the real protocol.
 * - Centralized: one model on the pooled training pairs, retrieving from the union of the views.
 *
 * One round = `localSteps` (or `localEpochs`) of training per client; Centralized does the same
 * number of examples per round on the pooled data. After every round each client's test pairs
 * are answered with retrieval from its own test store, and its dev pairs from its dev store
 * (devStoreView). Reported per experiment: every question's prediction, EM, F1 and gold-answer
 * NLL (teacher forced given the same passages) for dev and test after every round (round 0 = the
 * initial model), the client-averaged and micro scores of every round (the same scoring for
 * every method), and the trained rounds selected on DEV (src/crab/scoring.ts selectRounds).
 *
 * Clients run one after another on ONE ModelBundle: each participation starts by applying the
 * global version it downloaded, so sharing the weights is exact and memory stays one model (a
 * GPU machine with t5-base × 8 clients would not hold eight). No Node API here: the caller
 * passes the data, a model loader and the coordinator URL (src/platform/node/crab-runner.ts for Node).
 */
import { evaluate, type EvaluationResult } from '../corag/evaluate';
import { FederatedCoragClient, MemoryModelCache } from '../corag/federated-client';
import { trainLocally, type LocalTrainingOptions, type QAPair as TrainingPair } from '../corag/local-training';
import type { ModelBundle } from '../corag/model-bundle';
import { CoordinatorPassageSource, embedPassages, LocalPassageStore, type PassageSource, type RetrievedPassage } from '../corag/retrieve';
import { CoragClient } from '../federated/client';
import { QUERY_ENCODER_WIRE_PREFIX, READER_WIRE_PREFIX } from '../federated/protocol';
import type { CrabQaRecord } from './build';
import type { EvalSplit, PredictionRow } from './predictions';
import type { ExperimentSpec, Method, RunnerConfig } from './runner-config';
import { selectRounds, type SeedSelection } from './scoring';
import { experimentGrid } from './runner-config';
import { clientView, collaborativeView, type StoreLayout, type TrainingStoreName } from './stores';
import type { Passage } from './types';

/** A built CRAB as the runner needs it (readCrabCache's value fits). */
export interface CrabRunData {
  readonly passages: readonly Passage[];
  readonly qa: readonly CrabQaRecord[];
  readonly stores: {
    readonly training: Readonly<Record<string, Readonly<Record<TrainingStoreName, StoreLayout>>>>;
    readonly test: StoreLayout;
  };
}

export interface ClientScore {
  readonly exactMatch: number;
  readonly f1: number;
  /** Mean token NLL (nats) of the client's gold answers (src/corag/evaluate). */
  readonly answerNll: number;
  /** Target tokens behind `answerNll`. */
  readonly answerTokens: number;
  readonly count: number;
}

/** Scores of one split and aggregation: EM/F1 in [0, 1], NLL in nats per answer token. */
export interface SplitScores {
  readonly exactMatch: number;
  readonly f1: number;
  readonly answerNll: number;
}

export interface RoundScore {
  readonly round: number;
  /** Client-averaged test scores in [0, 1] (every method: the mean over clients). */
  readonly exactMatch: number;
  readonly f1: number;
  /** Client-averaged test gold-answer NLL; lower is better. */
  readonly answerNll: number;
  /** exp(answerNll). */
  readonly perplexity: number;
  /** Test scores with every question (NLL: every answer token) counted once. */
  readonly micro: SplitScores;
  /** Client-averaged dev scores: what round selection looks at. */
  readonly dev: SplitScores;
  readonly perClient: readonly ClientScore[];
  readonly perClientDev: readonly ClientScore[];
  /** Mean training loss of the round, reader + retriever (null for round 0). */
  readonly trainLoss: number | null;
  /** Its reader part: the FiD token cross-entropy of the training answers (null for round 0). */
  readonly trainReaderLoss: number | null;
}

/** One answered question, before the experiment's method/shots/store/seed/round are attached. */
type AnsweredQuestion = Pick<PredictionRow, 'split' | 'client' | 'question_id' | 'prediction' | 'em' | 'f1' | 'nll_sum' | 'nll_tokens'>;

interface ClientEvaluation {
  readonly score: ClientScore;
  readonly questions: readonly AnsweredQuestion[];
}

/** Every client's test and dev evaluation of one round (indexed by client). */
interface RoundEvaluation {
  readonly test: ClientEvaluation[];
  readonly dev: ClientEvaluation[];
}

export interface ExperimentResult extends ExperimentSpec {
  /** Round 0 (initial model) to config.rounds. */
  readonly rounds: readonly RoundScore[];
  /** Trained rounds selected on dev (EM/F1: best dev EM; NLL: lowest dev NLL) and the last round. */
  readonly selected: Omit<SeedSelection, 'seed'>;
  /** One row per (round, split, client, question): the source of every table (predictions.jsonl). */
  readonly predictions: readonly PredictionRow[];
  /** Federated methods: the coordinator's global version after each round (0 = initial). */
  readonly globalVersions: readonly number[] | null;
  /** Passages each client could retrieve from while training (0 for closed-book). */
  readonly trainingStoreSizes: readonly number[];
  /** What the final model answered to the first test questions of client 0 (to read, not to score). */
  readonly samples?: readonly { readonly question: string; readonly answers: readonly string[]; readonly prediction: string }[];
  readonly seconds: number;
}

export interface RunnerProgress {
  /** Units of work done / planned (training steps + answered test questions + passage batches). */
  readonly done: number;
  readonly total: number;
  /** The experiment in progress (1-based) of `experiments`. */
  readonly experiment: number;
  readonly experiments: number;
  readonly label: string;
}

export interface RunnerDeps {
  readonly data: CrabRunData;
  /** A fresh copy of the initial model for a seed; the runner disposes it. */
  readonly loadBundle: (seed: number) => Promise<ModelBundle>;
  /**
   * True when every seed loads the same retriever weights (a pretrained checkpoint; seeds then
   * vary the batch order only): passages are embedded once for the whole run instead of per seed.
   */
  readonly retrieverSameForEverySeed?: boolean;
  /** Base URL of a running coordinator (buildApp) for the federated methods. */
  readonly coordinatorUrl: string;
  readonly fetch?: typeof fetch;
  readonly onProgress?: (p: RunnerProgress) => void;
  /** One line per finished experiment and notable step. */
  readonly log?: (line: string) => void;
  /** Called with each finished experiment (so a caller can save partial results). */
  readonly onExperiment?: (r: ExperimentResult) => void;
  readonly signal?: AbortSignal;
  /**
   * Called with what every training-time search returned, per method and client ('pooled' for
   * Centralized): lets a test check which store each method really retrieves from.
   */
  readonly onTrainingRetrieval?: (event: TrainingRetrieval) => void;
}

export interface TrainingRetrieval {
  readonly method: Method;
  readonly client: number | 'pooled';
  /** Query embeddings in this search call (one per training question of the batch). */
  readonly queries: number;
  readonly passages: readonly RetrievedPassage[];
}

/** `source` with every search reported to `deps.onTrainingRetrieval` (unchanged when there is none). */
function observed(source: PassageSource, deps: RunnerDeps, method: Method, client: TrainingRetrieval['client']): PassageSource {
  const report = deps.onTrainingRetrieval;
  if (!report) return source;
  return {
    name: source.name,
    async search(queries, k) {
      const hits = await source.search(queries, k);
      report({ method, client, queries: queries.length, passages: hits.flat() });
      return hits;
    },
  };
}

/** The "retrieval" of closed-book training: one empty passage, so the reader sees the question alone. */
export const NO_RETRIEVAL: PassageSource = {
  name: 'none',
  async search(queries) {
    return queries.map((): RetrievedPassage[] => [{ title: '', text: '', source: 'none', id: 0, score: 0 }]);
  },
};

const FEDERATED: ReadonlySet<Method> = new Set(['closed-book', 'corag']);

/** A QA pair with its dataset id (SQuAD's question id), which names it in predictions.jsonl. */
export interface CrabPair extends TrainingPair {
  readonly id: string;
}

/** A client's QA pairs of one split, in split order. */
export function clientPairs(qa: readonly CrabQaRecord[], client: number, split: CrabQaRecord['split'], limit: number | null): CrabPair[] {
  return qa
    .filter((r) => r.client === client && r.split === split && (limit === null || r.position < limit))
    .sort((a, b) => a.position - b.position)
    .map((r) => ({ id: r.id, question: r.question, answers: r.answers }));
}

/**
 * The passages a client's dev questions retrieve from: the relevant passages of its dev pairs
 * plus the background of its test store (the test store without its test pairs' relevant
 * passages). The build defines no dev store; this one is built like the test store and, like it,
 * shares no passage with any training store (dev pairs share no relevant passage with training
 * pairs, and the test background lies outside B_train).
 */
export function devStoreView(data: Pick<CrabRunData, 'qa' | 'stores'>, client: number): string[] {
  const testRelevant = new Set(data.qa.filter((r) => r.client === client && r.split === 'test').flatMap((r) => r.relevant));
  const background = clientView(data.stores.test, client).filter((id) => !testRelevant.has(id));
  const devRelevant = data.qa.filter((r) => r.client === client && r.split === 'dev').flatMap((r) => r.relevant);
  return [...new Set([...devRelevant, ...background])];
}

/** Optimizer steps one round of local training takes on `pairs` QA pairs. */
export function stepsPerRound(config: RunnerConfig, pairs: number, pooledClients = 1): number {
  const t = config.training;
  if (t.localSteps !== null) return t.localSteps * pooledClients;
  return Math.ceil(pairs / Math.min(t.batchSize, pairs)) * t.localEpochs;
}

function mean(xs: readonly number[]): number {
  return xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : 0;
}

/** A round's mean training loss (reader + retriever) and its reader part. */
interface RoundLoss {
  readonly loss: number;
  readonly readerLoss: number;
}

function meanLoss(xs: readonly RoundLoss[]): RoundLoss {
  return { loss: mean(xs.map((x) => x.loss)), readerLoss: mean(xs.map((x) => x.readerLoss)) };
}

/**
 * Client-averaged scores, or (micro) every answer counted once; the micro NLL counts every
 * answer token once, as one evaluation of the pooled test set would. Every method is reported
 * both ways (client-averaged first).
 */
export function aggregateScores(
  perClient: readonly ClientScore[],
  aggregation: 'client-average' | 'micro',
): { exactMatch: number; f1: number; answerNll: number; perplexity: number } {
  const withPerplexity = (s: { exactMatch: number; f1: number; answerNll: number }) => ({ ...s, perplexity: Math.exp(s.answerNll) });
  if (aggregation === 'client-average') {
    return withPerplexity({
      exactMatch: mean(perClient.map((c) => c.exactMatch)),
      f1: mean(perClient.map((c) => c.f1)),
      answerNll: mean(perClient.map((c) => c.answerNll)),
    });
  }
  const n = perClient.reduce((a, c) => a + c.count, 0);
  const sum = (f: (c: ClientScore) => number) => perClient.reduce((a, c) => a + f(c) * c.count, 0) / Math.max(n, 1);
  const tokens = perClient.reduce((a, c) => a + c.answerTokens, 0);
  const answerNll = perClient.reduce((a, c) => a + c.answerNll * c.answerTokens, 0) / Math.max(tokens, 1);
  return withPerplexity({ exactMatch: sum((c) => c.exactMatch), f1: sum((c) => c.f1), answerNll });
}

/** The trained rounds selected on dev scores (never on test); see src/crab/scoring.ts selectRounds. */
export function devSelectedRounds(rounds: readonly RoundScore[]): ExperimentResult['selected'] {
  return selectRounds(new Map(rounds.map((r) => [r.round, { em: r.dev.exactMatch, f1: r.dev.f1, nll: r.dev.answerNll }] as const)));
}

/** Runs one config's whole grid; returns the experiments in grid order. */
export class CrabRunner {
  private readonly clients: number;
  private readonly passageById: Map<string, Passage>;
  private readonly grid: ExperimentSpec[];
  private done = 0;
  private total = 0;
  private current = 0;

  constructor(
    readonly config: RunnerConfig,
    private readonly deps: RunnerDeps,
  ) {
    const built = deps.data.stores.test.perClient.length;
    this.clients = config.clients ?? built;
    if (this.clients > built) throw new Error(`the config asks for ${this.clients} clients but the CRAB data has ${built}`);
    this.passageById = new Map(deps.data.passages.map((p) => [p.id, p]));
    for (const s of new Set([...config.shots, ...(config.storeAblation ? [config.storeAblation.shots] : [])])) {
      if (!deps.data.stores.training[String(s)])
        throw new Error(`the CRAB data has no ${s}-shot stores (built: ${Object.keys(deps.data.stores.training).join(', ')})`);
    }
    this.grid = experimentGrid(config);
  }

  get experiments(): readonly ExperimentSpec[] {
    return this.grid;
  }

  private testPairs(client: number): CrabPair[] {
    return clientPairs(this.deps.data.qa, client, 'test', this.config.evaluation.testPerClient);
  }

  private devPairs(client: number): CrabPair[] {
    return clientPairs(this.deps.data.qa, client, 'dev', this.config.evaluation.devPerClient);
  }

  private trainPairs(client: number, shots: number): TrainingPair[] {
    const pairs = clientPairs(this.deps.data.qa, client, 'train', shots);
    if (pairs.length < shots) throw new Error(`client ${client} has ${pairs.length} training pairs, fewer than ${shots} shots`);
    return pairs;
  }

  private clientIds(): number[] {
    return Array.from({ length: this.clients }, (_, c) => c);
  }

  private layout(e: ExperimentSpec): StoreLayout {
    return this.deps.data.stores.training[String(e.shots)][e.store];
  }

  /** Passages of a store view: only this run's clients (the first `clients` of the split). */
  private collaborativeIds(layout: StoreLayout): string[] {
    return collaborativeView({ ...layout, perClient: layout.perClient.slice(0, this.clients) });
  }

  /** Planned units of one experiment: its training steps and answered test questions. */
  private plannedUnits(e: ExperimentSpec): number {
    const rounds = this.config.rounds;
    const tests = this.clientIds().reduce((a, c) => a + this.testPairs(c).length + this.devPairs(c).length, 0);
    const train =
      e.method === 'centralized'
        ? rounds * stepsPerRound(this.config, e.shots * this.clients, this.clients)
        : rounds * this.clients * stepsPerRound(this.config, e.shots);
    return train + (rounds + 1) * tests;
  }

  private advance(units: number, label: string): void {
    this.done += units;
    this.deps.onProgress?.({ done: this.done, total: this.total, experiment: this.current, experiments: this.grid.length, label });
  }

  async run(): Promise<ExperimentResult[]> {
    const results: ExperimentResult[] = [];
    const embedBatch = 32;
    const seeds = [...new Set(this.grid.map((e) => e.seed))];
    const passagesPerSeed = this.neededPassages().length;
    const embeddingRuns = this.deps.retrieverSameForEverySeed ? 1 : seeds.length;
    this.total = this.grid.reduce((a, e) => a + this.plannedUnits(e), 0) + embeddingRuns * Math.ceil(passagesPerSeed / embedBatch);
    let shared: Map<string, Float32Array> | null = null;
    for (const seed of seeds) {
      const bundle = await this.deps.loadBundle(seed);
      try {
        const initial = await bundle.exportGlobal({ crab: this.config.name, seed: String(seed) });
        // The passage encoder is frozen in every method, so one embedding per passage serves all.
        const embeddings: Map<string, Float32Array> = shared ?? (await this.embedNeeded(bundle, seed, embedBatch));
        if (this.deps.retrieverSameForEverySeed) shared = embeddings;
        const seedRun = new SeedRun(this.context(), bundle, initial, embeddings, seed);
        for (const e of this.grid.filter((x) => x.seed === seed)) {
          this.deps.signal?.throwIfAborted();
          this.current = this.grid.indexOf(e) + 1;
          const started = performance.now();
          const result = await seedRun.run(e);
          const full: ExperimentResult = { ...result, seconds: (performance.now() - started) / 1000 };
          results.push(full);
          this.deps.onExperiment?.(full);
          this.deps.log?.(
            `${e.method} ${e.shots}-shot ${e.store} seed ${e.seed}: test EM round 0 ${(full.rounds[0].exactMatch * 100).toFixed(1)}, dev-selected round ${full.selected.emRound} ${(full.rounds[full.selected.emRound].exactMatch * 100).toFixed(1)}; ` +
              `test NLL round 0 ${full.rounds[0].answerNll.toFixed(3)}, dev-selected round ${full.selected.nllRound} ${full.rounds[full.selected.nllRound].answerNll.toFixed(3)}; ${full.seconds.toFixed(0)} s`,
          );
        }
      } finally {
        bundle.dispose();
      }
    }
    return results;
  }

  /** Every passage some experiment trains or any client tests on (corpus order). */
  private neededPassages(): string[] {
    const ids = new Set<string>();
    for (const c of this.clientIds()) for (const id of [...clientView(this.deps.data.stores.test, c), ...devStoreView(this.deps.data, c)]) ids.add(id);
    for (const e of this.grid) if (e.method !== 'closed-book') for (const id of this.collaborativeIds(this.layout(e))) ids.add(id);
    return this.deps.data.passages.map((p) => p.id).filter((id) => ids.has(id));
  }

  private async embedNeeded(bundle: ModelBundle, seed: number, batchSize: number): Promise<Map<string, Float32Array>> {
    const ids = this.neededPassages();
    let reported = 0;
    const vectors = await embedPassages(
      bundle,
      ids.map((id) => this.passage(id)),
      {
        batchSize,
        maxLength: this.config.passageMaxLength,
        signal: this.deps.signal,
        onProgress: (done) => {
          const batches = Math.ceil(done / batchSize);
          this.advance(batches - reported, `seed ${seed}: embedding ${ids.length} passages`);
          reported = batches;
        },
      },
    );
    return new Map(ids.map((id, i) => [id, vectors[i]]));
  }

  private passage(id: string): Passage {
    const p = this.passageById.get(id);
    if (!p) throw new Error(`store passage ${id} is not in the CRAB passages`);
    return p;
  }

  private context(): RunContext {
    return {
      config: this.config,
      deps: this.deps,
      clients: this.clientIds(),
      passage: (id) => this.passage(id),
      testPairs: (c) => this.testPairs(c),
      devPairs: (c) => this.devPairs(c),
      trainPairs: (c, shots) => this.trainPairs(c, shots),
      layout: (e) => this.layout(e),
      collaborativeIds: (l) => this.collaborativeIds(l),
      advance: (units, label) => this.advance(units, label),
    };
  }
}

/** What the experiments of a seed need from the runner. */
interface RunContext {
  readonly config: RunnerConfig;
  readonly deps: RunnerDeps;
  readonly clients: readonly number[];
  passage(id: string): Passage;
  testPairs(client: number): CrabPair[];
  devPairs(client: number): CrabPair[];
  trainPairs(client: number, shots: number): TrainingPair[];
  layout(e: ExperimentSpec): StoreLayout;
  collaborativeIds(layout: StoreLayout): string[];
  advance(units: number, label: string): void;
}

/** The experiments of one seed: one bundle, its initial weights and its passage embeddings. */
class SeedRun {
  private readonly testStores = new Map<string, LocalPassageStore>();
  /** Round 0 is the same initial model for every method that retrieves (or every closed-book one). */
  private readonly roundZero = new Map<string, RoundEvaluation>();
  /** Client 0's first answers at its latest evaluation. */
  private lastSamples: NonNullable<ExperimentResult['samples']> = [];

  constructor(
    private readonly x: RunContext,
    private readonly bundle: ModelBundle,
    private readonly initial: Uint8Array,
    private readonly embeddings: ReadonlyMap<string, Float32Array>,
    private readonly seed: number,
  ) {}

  private get config(): RunnerConfig {
    return this.x.config;
  }

  private store(ids: readonly string[], name: string): LocalPassageStore {
    const store = LocalPassageStore.empty(this.bundle.embeddingDim, name);
    store.add(
      ids.map((id) => this.x.passage(id)),
      ids.map((id) => this.embeddings.get(id)!),
    );
    return store;
  }

  /** A client's test store, or the dev store built like it (devStoreView). */
  private evaluationStore(client: number, split: EvalSplit): LocalPassageStore {
    const key = `${split}-${client}`;
    let s = this.testStores.get(key);
    if (!s) {
      const ids = split === 'test' ? clientView(this.x.deps.data.stores.test, client) : devStoreView(this.x.deps.data, client);
      s = this.store(ids, key);
      this.testStores.set(key, s);
    }
    return s;
  }

  /** Training options of one client's round (seeded per client, so methods see the same batch order). */
  private trainingOptions(method: Method, steps: number, client: number): LocalTrainingOptions {
    const t = this.config.training;
    const closedBook = method === 'closed-book';
    return {
      k: closedBook ? 1 : t.k,
      maxLength: t.maxLength,
      steps,
      batchSize: t.batchSize,
      lr: t.lr,
      retrieverLr: t.retrieverLr,
      warmupSteps: t.warmupSteps,
      weightDecay: t.weightDecay,
      clipNorm: t.clipNorm,
      trainable: closedBook ? 'reader' : t.trainedParts,
      retrieverLoss: closedBook || t.trainedParts === 'reader' ? 'none' : t.retrieverLoss,
      seed: this.seed * 1000 + client,
      signal: this.x.deps.signal,
    };
  }

  /** The current weights answer client `client`'s test (or dev) pairs from its test (or dev) store. */
  private async evaluateSplit(method: Method, client: number, split: EvalSplit, label: string): Promise<ClientEvaluation> {
    const e = this.config.evaluation;
    const pairs = split === 'test' ? this.x.testPairs(client) : this.x.devPairs(client);
    let reported = 0;
    const result: EvaluationResult = await evaluate(this.bundle, pairs, method === 'closed-book' ? null : this.evaluationStore(client, split), {
      k: method === 'closed-book' ? 0 : e.k,
      maxLength: this.config.training.maxLength,
      maxNewTokens: e.maxNewTokens,
      numBeams: e.numBeams,
      extractive: e.extractive,
      ...(e.copyWeight === null ? {} : { copyWeight: e.copyWeight }),
      batchSize: e.batchSize,
      signal: this.x.deps.signal,
      onProgress: (done) => {
        this.x.advance(done - reported, label);
        reported = done;
      },
    });
    if (client === 0 && split === 'test')
      this.lastSamples = result.predictions.slice(0, 3).map((p) => ({ question: p.question, answers: p.answers, prediction: p.prediction }));
    return {
      score: { exactMatch: result.exactMatch, f1: result.f1, answerNll: result.answerNll, answerTokens: result.answerTokens, count: result.count },
      questions: result.predictions.map((p, i) => ({
        split,
        client,
        question_id: pairs[i].id,
        prediction: p.prediction,
        em: p.exactMatch === 1 ? 1 : 0,
        f1: p.f1,
        nll_sum: p.answerNllSum,
        nll_tokens: p.answerTokens,
      })),
    };
  }

  /** Test, then dev, of one client with the current weights. */
  private async evaluateClient(method: Method, client: number, label: string): Promise<{ test: ClientEvaluation; dev: ClientEvaluation }> {
    const test = await this.evaluateSplit(method, client, 'test', `${label}: testing`);
    const dev = await this.evaluateSplit(method, client, 'dev', `${label}: dev`);
    return { test, dev };
  }

  private async evaluateClients(method: Method, clients: readonly number[], label: string): Promise<RoundEvaluation> {
    const out: RoundEvaluation = { test: [], dev: [] };
    for (const c of clients) {
      const { test, dev } = await this.evaluateClient(method, c, `${label} client ${c}`);
      out.test[c] = test;
      out.dev[c] = dev;
    }
    return out;
  }

  /** Round 0 of the initial model, computed once per seed and retrieval mode. */
  private async initialScores(method: Method, label: string): Promise<RoundEvaluation> {
    const key = method === 'closed-book' ? 'closed-book' : 'retrieval';
    let scores = this.roundZero.get(key);
    if (!scores) {
      this.bundle.applyGlobal(this.initial, 0);
      scores = await this.evaluateClients(method, this.x.clients, `${label} round 0`);
      this.roundZero.set(key, scores);
    } else {
      this.x.advance(
        [...scores.test, ...scores.dev].reduce((a, s) => a + s.score.count, 0),
        `${label} round 0 (same initial model as before)`,
      );
    }
    return scores;
  }

  async run(e: ExperimentSpec): Promise<Omit<ExperimentResult, 'seconds'>> {
    if (FEDERATED.has(e.method)) return this.federated(e);
    if (e.method === 'rag-local') return this.local(e);
    return this.centralized(e);
  }

  private label(e: ExperimentSpec): string {
    return `${e.method} ${e.shots}-shot${e.method === 'closed-book' ? '' : ` ${e.store}`} seed ${e.seed}`;
  }

  private result(
    e: ExperimentSpec,
    perRound: RoundEvaluation[],
    losses: (RoundLoss | null)[],
    globalVersions: number[] | null,
    sizes: number[],
  ): Omit<ExperimentResult, 'seconds'> {
    const split = (s: { exactMatch: number; f1: number; answerNll: number }): SplitScores => ({ exactMatch: s.exactMatch, f1: s.f1, answerNll: s.answerNll });
    const rounds: RoundScore[] = perRound.map((evaluation, round) => {
      const perClient = evaluation.test.map((c) => c.score);
      const perClientDev = evaluation.dev.map((c) => c.score);
      return {
        round,
        ...aggregateScores(perClient, 'client-average'),
        micro: split(aggregateScores(perClient, 'micro')),
        dev: split(aggregateScores(perClientDev, 'client-average')),
        perClient,
        perClientDev,
        trainLoss: losses[round]?.loss ?? null,
        trainReaderLoss: losses[round]?.readerLoss ?? null,
      };
    });
    const predictions: PredictionRow[] = perRound.flatMap((evaluation, round) =>
      [...evaluation.test, ...evaluation.dev].flatMap((c) =>
        c.questions.map((q) => ({ method: e.method, shots: e.shots, store: e.store, seed: e.seed, round, ...q })),
      ),
    );
    return { ...e, rounds, selected: devSelectedRounds(rounds), predictions, globalVersions, trainingStoreSizes: sizes, samples: this.lastSamples };
  }

  /** RAG-Local: each client alone, from the initial weights, on its own view of the store. */
  private async local(e: ExperimentSpec): Promise<Omit<ExperimentResult, 'seconds'>> {
    const label = this.label(e);
    const clients = this.x.clients;
    const rounds = this.config.rounds;
    const perRound: RoundEvaluation[] = [await this.initialScores(e.method, label)];
    for (let r = 1; r <= rounds; r++) perRound.push({ test: [], dev: [] });
    const losses: RoundLoss[][] = Array.from({ length: rounds + 1 }, () => []);
    const sizes: number[] = [];
    for (const c of clients) {
      const view = clientView(this.x.layout(e), c);
      sizes.push(view.length);
      const source = observed(this.store(view, `local-${c}`), this.x.deps, e.method, c);
      const pairs = this.x.trainPairs(c, e.shots);
      this.bundle.applyGlobal(this.initial, 0);
      for (let r = 1; r <= rounds; r++) {
        const trained = await trainLocally(this.bundle, pairs, source, {
          ...this.trainingOptions(e.method, stepsPerRound(this.config, pairs.length), c),
          onProgress: (p) => this.x.advance(1, `${label} client ${c} round ${r}: step ${p.step}/${p.total}, loss ${p.loss.toFixed(3)}`),
        });
        losses[r].push(trained.metrics);
        const { test, dev } = await this.evaluateClient(e.method, c, `${label} client ${c} round ${r}`);
        perRound[r].test[c] = test;
        perRound[r].dev[c] = dev;
      }
    }
    return this.result(
      e,
      perRound,
      losses.map((l, r) => (r === 0 ? null : meanLoss(l))),
      null,
      sizes,
    );
  }

  /** Centralized: the pooled training pairs, the union of the clients' views, one model. */
  private async centralized(e: ExperimentSpec): Promise<Omit<ExperimentResult, 'seconds'>> {
    const label = this.label(e);
    const clients = this.x.clients;
    const ids = this.x.collaborativeIds(this.x.layout(e));
    const source = observed(this.store(ids, 'pooled'), this.x.deps, e.method, 'pooled');
    const pairs = clients.flatMap((c) => this.x.trainPairs(c, e.shots));
    const perRound: RoundEvaluation[] = [await this.initialScores(e.method, label)];
    const losses: (RoundLoss | null)[] = [null];
    this.bundle.applyGlobal(this.initial, 0);
    for (let r = 1; r <= this.config.rounds; r++) {
      const trained = await trainLocally(this.bundle, pairs, source, {
        ...this.trainingOptions(e.method, stepsPerRound(this.config, pairs.length, clients.length), 0),
        onProgress: (p) => this.x.advance(1, `${label} round ${r}: step ${p.step}/${p.total}, loss ${p.loss.toFixed(3)}`),
      });
      losses.push(trained.metrics);
      perRound.push(await this.evaluateClients(e.method, clients, `${label} round ${r}`));
    }
    return this.result(
      e,
      perRound,
      losses,
      null,
      clients.map(() => ids.length),
    );
  }

  /** CoRAG and closed-book: a coordinator session, every client joined over HTTP, FedAvg rounds. */
  private async federated(e: ExperimentSpec): Promise<Omit<ExperimentResult, 'seconds'>> {
    const label = this.label(e);
    const deps = this.x.deps;
    const clients = this.x.clients;
    const closedBook = e.method === 'closed-book';
    const t = this.config.training;
    const anon = new CoragClient(deps.coordinatorUrl, undefined, deps.fetch);
    const trainedPrefixes = closedBook || t.trainedParts === 'reader' ? [READER_WIRE_PREFIX] : [READER_WIRE_PREFIX, QUERY_ENCODER_WIRE_PREFIX];
    const created = await anon.createSession({
      name: `crab ${this.config.name} ${label}`,
      models: { reader: this.config.models.reader, passageEncoder: this.config.models.retriever, embeddingDim: this.bundle.embeddingDim },
      training: {
        learningRate: t.lr,
        retrieverLearningRate: t.retrieverLr,
        ...(t.localSteps !== null ? { localSteps: t.localSteps } : { localEpochs: t.localEpochs }),
        passagesPerQuestion: closedBook ? 1 : t.k,
        maxLength: t.maxLength,
        batchSize: t.batchSize,
        retrieverLoss: closedBook ? 'none' : t.retrieverLoss,
      },
      // Every client in every round; the deadline only guards against a client that never answers.
      roundPolicy: { fraction: 1, minClients: clients.length, minUpdates: clients.length, deadlineSeconds: 7 * 24 * 3600, autoStart: false },
      trainedPrefixes,
      // The benchmark's clients are this process: nothing to distrust, and the coordinator
      // recomputing their embeddings would only add to the measured time (server/passage-intake.ts).
      passages: { embeddingCheck: 'off' },
    });
    const sid = created.session.id;
    const admin = anon.withToken(created.adminToken);
    if ((await admin.uploadModel(sid, this.initial)).version !== 0) throw new Error(`${label}: the coordinator did not take the initial model as version 0`);

    const participants: FederatedCoragClient[] = [];
    for (const c of clients) {
      const pairs = this.x.trainPairs(c, e.shots);
      participants.push(
        await FederatedCoragClient.join(anon, created.joinCode, `client-${c}`, {
          bundle: this.bundle,
          qaPairs: pairs,
          passageSource: closedBook ? NO_RETRIEVAL : (client, session) => observed(new CoordinatorPassageSource(client, session), deps, e.method, c),
          // One version at a time: each client downloads every global version it trains from.
          cache: new MemoryModelCache(1),
          training: this.trainingOptions(e.method, stepsPerRound(this.config, pairs.length), c),
          updateDtype: this.config.updateDtype,
          onEvent: (ev) => {
            if (ev.type === 'training')
              this.x.advance(1, `${label} client ${c} round ${ev.round}: step ${ev.progress.step}/${ev.progress.total}, loss ${ev.progress.loss.toFixed(3)}`);
            if (ev.type === 'upload-refused') deps.log?.(`${label}: client ${c}'s update for round ${ev.round} was refused: ${ev.message}`);
          },
        }),
      );
    }
    const sizes = closedBook ? clients.map(() => 0) : await this.contribute(e, participants, label);

    const perRound: RoundEvaluation[] = [await this.initialScores(e.method, label)];
    const losses: (RoundLoss | null)[] = [null];
    const versions = [0];
    for (let r = 1; r <= this.config.rounds; r++) {
      const opened = await admin.openRound(sid);
      if (opened.participants.length !== clients.length)
        throw new Error(`${label}: round ${r} selected ${opened.participants.length} of ${clients.length} clients`);
      const roundLosses: RoundLoss[] = [];
      for (const p of participants) {
        // Each client reads the open round with its own token, as a browser tab would after SSE.
        const result = await p.participate(await p.client.round(sid, 'current'), deps.signal);
        if (result) roundLosses.push(result.metrics);
      }
      const closed = await waitForClose(admin, sid, opened.round, deps.signal);
      if (closed.state !== 'closed' || closed.resultVersion === null) throw new Error(`${label}: round ${r} ended ${closed.state}`);
      versions.push(closed.resultVersion);
      this.bundle.applyGlobal(await admin.downloadModel(sid, closed.resultVersion), closed.resultVersion);
      losses.push(meanLoss(roundLosses));
      perRound.push(await this.evaluateClients(e.method, clients, `${label} round ${r}`));
    }
    return this.result(e, perRound, losses, versions, sizes);
  }

  /**
   * Every client contributes its view of the training store to the collaborative store (the
   * coordinator keeps one copy of a passage several clients hold). Embeddings are the frozen
   * passage encoder's, computed once per seed: the same vectors contributePassages would send.
   */
  private async contribute(e: ExperimentSpec, participants: readonly FederatedCoragClient[], label: string): Promise<number[]> {
    const sizes: number[] = [];
    for (const [c, p] of participants.entries()) {
      const view = clientView(this.x.layout(e), c);
      sizes.push(view.length);
      await p.contributeEmbedded(view.length, (i) => {
        const passage = this.x.passage(view[i]);
        return { title: passage.title, text: passage.text, embedding: this.embeddings.get(view[i])! };
      });
      this.x.deps.log?.(`${label}: client ${c} contributed ${view.length} passages`);
    }
    return sizes;
  }
}

/** Polls a round until the coordinator has aggregated (or failed) it. */
async function waitForClose(admin: CoragClient, sid: string, round: number, signal?: AbortSignal) {
  for (;;) {
    const info = await admin.round(sid, round);
    if (info.state === 'closed' || info.state === 'failed') return info;
    signal?.throwIfAborted();
    await new Promise((r) => setTimeout(r, 25));
  }
}
