/**
 * The experiments of one seed: one model bundle, its initial weights and its passage embeddings,
 * and for each (method, shots, store) cell the rounds of training and the evaluation after each:
 * RAG-Local (each client alone), Centralized (pooled) and the federated methods (closed-book,
 * CoRAG) through the real coordinator with FederatedCoragClient. Also what a run depends on
 * (RunnerDeps: data, model loader, coordinator URL, progress and logging hooks).
 */
import { evaluate, type EvaluationResult } from '../corag/evaluate';
import { FederatedCoragClient, MemoryModelCache } from '../corag/federated-client';
import { trainLocally, type LocalTrainingOptions, type QAPair as TrainingPair } from '../corag/local-training';
import type { ModelBundle } from '../corag/model-bundle';
import { CoordinatorPassageSource, LocalPassageStore, type PassageSource, type RetrievedPassage } from '../corag/retrieve';
import { trainableForWirePrefixes } from '../corag/model-bundle';
import { CoragClient } from '../federated/client';
import { QUERY_ENCODER_LORA_WIRE_PREFIX, QUERY_ENCODER_WIRE_PREFIX, READER_LORA_WIRE_PREFIX, READER_WIRE_PREFIX } from '../federated/protocol';
import type { EvalSplit, PredictionRow } from './predictions';
import type { ExperimentSpec, Method, RunnerConfig } from './runner-config';
import { clientView, type StoreLayout } from './stores';
import type { Passage } from './types';
import {
  ClientEvaluation,
  ExperimentResult,
  RoundEvaluation,
  RoundLoss,
  RoundScore,
  SplitScores,
  aggregateScores,
  devSelectedRounds,
  meanLoss,
} from './round-scores';
import { CrabPair, CrabRunData, devStoreView, stepsPerRound } from './run-data';

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

/** The adapters a LoRA run trains and its sessions aggregate: the reader's, and the query encoder's with `queryTargets`. */
function loraPrefixes(lora: { readonly queryTargets: readonly string[] }): string[] {
  return lora.queryTargets.length > 0 ? [READER_LORA_WIRE_PREFIX, QUERY_ENCODER_LORA_WIRE_PREFIX] : [READER_LORA_WIRE_PREFIX];
}

const FEDERATED: ReadonlySet<Method> = new Set(['closed-book', 'corag']);

/** What the experiments of a seed need from the runner. */
export interface RunContext {
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
export class SeedRun {
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
      // Under LoRA the base weights are frozen (bundle.enableLora): every method trains the adapters.
      trainable: t.lora ? trainableForWirePrefixes(loraPrefixes(t.lora)) : closedBook ? 'reader' : t.trainedParts,
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
    const trainedPrefixes = t.lora
      ? loraPrefixes(t.lora)
      : closedBook || t.trainedParts === 'reader'
        ? [READER_WIRE_PREFIX]
        : [READER_WIRE_PREFIX, QUERY_ENCODER_WIRE_PREFIX];
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
        ...(t.lora
          ? {
              loraRank: t.lora.rank,
              loraAlpha: t.lora.alpha,
              loraTargets: t.lora.targets.join(','),
              loraSeed: t.lora.seed,
              ...(t.lora.queryTargets.length > 0 ? { loraQueryTargets: t.lora.queryTargets.join(',') } : {}),
            }
          : {}),
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
