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
import { type QAPair as TrainingPair } from '../corag/local-training';
import type { ModelBundle } from '../corag/model-bundle';
import { embedPassages } from '../corag/retrieve';
import type { ExperimentSpec, RunnerConfig } from './runner-config';
import { experimentGrid } from './runner-config';
import { clientView, collaborativeView, type StoreLayout } from './stores';
import type { Passage } from './types';
import { ExperimentResult } from './round-scores';
import { CrabPair, clientPairs, devStoreView, stepsPerRound } from './run-data';
import { RunContext, RunnerDeps, SeedRun } from './seed-run';

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
        // A LoRA run's version 0 must hold the adapters (A seeded, B = 0: the base model's outputs).
        const lora = this.config.training.lora;
        if (lora) bundle.enableLora(lora);
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
