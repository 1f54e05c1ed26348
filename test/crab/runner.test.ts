/**
 * The CRAB runner end to end: a CRAB-mini built into a temp folder (2 clients, 2 shots), tiny
 * random models, the real coordinator on 127.0.0.1, all four methods for two rounds on the SPLIT
 * store (so which client's passages each method retrieves is visible); plus the config parser,
 * the experiment grid, the dev store and the score aggregation.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parsePredictionsJsonl } from '../../src/crab/predictions';
import { buildResults, reportFiles } from '../../src/crab/report';
import { CrabRunner } from '../../src/crab/runner';
import { aggregateScores } from '../../src/crab/round-scores';
import { devStoreView } from '../../src/crab/run-data';
import type { TrainingRetrieval } from '../../src/crab/seed-run';
import { scoreRows, scoreRun, selectRounds } from '../../src/crab/scoring';
import { experimentGrid, parseRunnerConfig, RunnerConfigError } from '../../src/crab/runner-config';
import { bundleLoader, loadCrabData } from '../../src/platform/node/crab-runner';
import { startCrabCoordinator } from '../../server/crab-coordinator';
import { clientView, collaborativeView, TRAINING_STORES } from '../../src/crab/stores';
import { initBackend } from '../../src/model/backend';

describe('CrabRunner over the real coordinator', () => {
  const dir = mkdtempSync(join(tmpdir(), 'crab-runner-test-'));
  let coordinator: Awaited<ReturnType<typeof startCrabCoordinator>>;
  const requests: string[] = [];
  // Every request the runner's clients send, as "METHOD /path" (proof the bytes went over HTTP).
  const recordingFetch: typeof fetch = (input, init) => {
    const url = new URL(typeof input === 'string' ? input : input instanceof URL ? input.href : input.url);
    requests.push(`${init?.method ?? 'GET'} ${url.pathname}`);
    return fetch(input, init);
  };
  beforeAll(async () => {
    await initBackend('wasm');
    coordinator = await startCrabCoordinator();
  });
  afterAll(async () => {
    await coordinator?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('builds the splits, runs all four methods for two rounds with dev and test after each, and writes predictions, summary, tables and plots from them', async () => {
    const config = parseRunnerConfig({
      name: 'test-run',
      backend: 'wasm',
      data: { cache: join(dir, 'crab'), seed: 0 },
      models: { reader: 'tiny', retriever: 'tiny' },
      clients: 2,
      shots: [2],
      store: 'SPLIT',
      seeds: [0],
      rounds: 2,
      training: { localSteps: 1, batchSize: 2, lr: 1e-3, retrieverLr: 1e-3, k: 2, maxLength: 32 },
      evaluation: { testPerClient: 2, devPerClient: 2, k: 2, maxNewTokens: 4 },
      passageMaxLength: 32,
    });
    // The cache folder is empty: loadCrabData builds CRAB-mini there (from ../shared's SQuAD dev).
    const data = await loadCrabData(config);
    expect(data.stores.training['2']).toBeDefined();

    const progress: number[] = [];
    const retrievals: TrainingRetrieval[] = [];
    const runner = new CrabRunner(config, {
      data,
      loadBundle: bundleLoader(config),
      coordinatorUrl: coordinator.url,
      fetch: recordingFetch,
      onProgress: (p) => progress.push(p.done / p.total),
      onTrainingRetrieval: (r) => retrievals.push(r),
    });
    const experiments = await runner.run();

    expect(experiments.map((e) => e.method)).toEqual(['closed-book', 'rag-local', 'corag', 'centralized']);
    const testIds = (c: number) =>
      data.qa
        .filter((q) => q.client === c && q.split === 'test')
        .sort((x, y) => x.position - y.position)
        .slice(0, 2)
        .map((q) => q.id);
    const devIds = (c: number) =>
      data.qa
        .filter((q) => q.client === c && q.split === 'dev')
        .sort((x, y) => x.position - y.position)
        .slice(0, 2)
        .map((q) => q.id);
    for (const e of experiments) {
      expect(e.rounds.map((r) => r.round)).toEqual([0, 1, 2]);
      // One prediction per (round, split, client, question), named by the SQuAD id.
      expect(e.predictions).toHaveLength(3 * 2 * (2 + 2));
      for (const r of e.rounds) {
        const rows = (split: 'dev' | 'test') => e.predictions.filter((p) => p.round === r.round && p.split === split);
        expect(rows('test').map((p) => p.question_id)).toEqual([...testIds(0), ...testIds(1)]);
        expect(rows('dev').map((p) => p.question_id)).toEqual([...devIds(0), ...devIds(1)]);
        // Every method's round scores are the client average of its own predictions (micro beside it).
        const test = scoreRows(rows('test'), 'macro');
        expect(r.exactMatch).toBeCloseTo(test.em, 12);
        expect(r.f1).toBeCloseTo(test.f1, 12);
        expect(r.answerNll).toBeCloseTo(test.nll, 9);
        expect(r.micro.answerNll).toBeCloseTo(scoreRows(rows('test'), 'micro').nll, 9);
        expect(r.dev.answerNll).toBeCloseTo(scoreRows(rows('dev'), 'macro').nll, 9);
        for (const c of r.perClient) expect(c.answerTokens).toBeGreaterThanOrEqual(2 * 2);
        expect(r.answerNll).toBeGreaterThan(0);
        expect(r.perplexity).toBeCloseTo(Math.exp(r.answerNll), 6);
      }
      // Rounds are selected from the dev predictions, whatever test says.
      const dev = new Map(
        [0, 1, 2].map(
          (round) =>
            [
              round,
              scoreRows(
                e.predictions.filter((p) => p.round === round && p.split === 'dev'),
                'macro',
              ),
            ] as const,
        ),
      );
      expect(e.selected).toEqual(selectRounds(dev));
      expect(e.selected.lastRound).toBe(2);
      expect(e.rounds[0].trainLoss).toBeNull();
      expect(e.rounds[1].trainLoss).toBeGreaterThan(0);
      // The reader's part of the loss, beside the total (the retriever's KL adds a non-negative rest).
      expect(e.rounds[1].trainReaderLoss).toBeGreaterThan(0);
      expect(e.rounds[1].trainReaderLoss!).toBeLessThanOrEqual(e.rounds[1].trainLoss! + 1e-6);
      // What client 0's final model answered to its first test questions, kept to be read.
      expect(e.samples!.map((x) => x.question)).toEqual(
        data.qa
          .filter((q) => q.client === 0 && q.split === 'test')
          .sort((a, b) => a.position - b.position)
          .slice(0, 2)
          .map((q) => q.question),
      );
    }
    // FedAvg rounds happened on the coordinator: the global version advanced 0 -> 1 -> 2.
    const byMethod = new Map(experiments.map((e) => [e.method, e]));
    expect(byMethod.get('corag')!.globalVersions).toEqual([0, 1, 2]);
    expect(byMethod.get('closed-book')!.globalVersions).toEqual([0, 1, 2]);
    expect(byMethod.get('rag-local')!.globalVersions).toBeNull();
    // Closed-book trains the reader alone: its loss is all reader loss.
    expect(byMethod.get('closed-book')!.rounds[2].trainReaderLoss).toBeCloseTo(byMethod.get('closed-book')!.rounds[2].trainLoss!, 6);
    // Two sessions (closed-book, CoRAG), each with an upload per client per round, two joins, model downloads,
    // CoRAG's passages contributed and searched over HTTP.
    const count = (re: RegExp) => requests.filter((r) => re.test(r)).length;
    expect(count(/^POST \/api\/sessions$/)).toBe(2);
    expect(count(/^POST \/api\/join$/)).toBe(4);
    expect(count(/^PUT \/api\/sessions\/[^/]+\/rounds\/1\/update$/)).toBe(4);
    expect(count(/^PUT \/api\/sessions\/[^/]+\/rounds\/2\/update$/)).toBe(4);
    expect(count(/^GET \/api\/sessions\/[^/]+\/model\/0$/)).toBe(4);
    expect(count(/^POST \/api\/sessions\/[^/]+\/passages$/)).toBeGreaterThanOrEqual(2);
    expect(count(/^POST \/api\/sessions\/[^/]+\/passages\/search$/)).toBeGreaterThanOrEqual(2);

    // SPLIT: each client holds its own relevant passages and its own background slice.
    const split = data.stores.training['2'].SPLIT;
    const views = [0, 1].map((c) => new Set(clientView(split, c)));
    const union = collaborativeView({ ...split, perClient: split.perClient.slice(0, 2) });
    const idOf = new Map(data.passages.map((p) => [`${p.title}\n${p.text}`, p.id]));
    const retrieved = (method: string, client: number | 'pooled') =>
      retrievals.filter((r) => r.method === method && r.client === client).flatMap((r) => r.passages.map((p) => idOf.get(`${p.title}\n${p.text}`)!));
    for (const c of [0, 1]) {
      // RAG-Local never sees another client's passage ...
      const local = retrieved('rag-local', c);
      expect(local.length).toBeGreaterThan(0);
      expect(local.filter((id) => !views[c].has(id))).toEqual([]);
    }
    // ... while CoRAG's clients retrieve from the collaborative store, other clients' passages included.
    const foreign = [0, 1].flatMap((c) => retrieved('corag', c).filter((id) => !views[c].has(id)));
    expect(foreign.length).toBeGreaterThan(0);
    expect(foreign.every((id) => union.includes(id))).toBe(true);
    expect(byMethod.get('corag')!.trainingStoreSizes).toEqual([0, 1].map((c) => views[c].size));
    // Centralized pools the stores (the union of both views) and the pairs (both clients' questions in every round).
    expect(byMethod.get('centralized')!.trainingStoreSizes).toEqual([union.length, union.length]);
    const pooled = retrieved('centralized', 'pooled');
    expect(pooled.every((id) => union.includes(id))).toBe(true);
    expect(retrievals.filter((r) => r.method === 'centralized').reduce((a, r) => a + r.queries, 0)).toBe(2 * 2 * 2); // rounds × clients × shots
    expect(retrievals.filter((r) => r.method === 'rag-local' && r.client === 0).reduce((a, r) => a + r.queries, 0)).toBe(2 * 2); // rounds × its own shots
    expect(progress.at(-1)).toBeCloseTo(1, 10);

    const { results, predictions } = buildResults(
      { name: config.name, config, backend: 'wasm', startedAt: new Date(0).toISOString(), seconds: 1, data: { cache: config.data.cache } },
      experiments,
      { replicates: 100, confidence: 0.95, seed: 0 },
    );
    const files = new Map(reportFiles(results, predictions).map((f) => [f.name, f.text]));
    expect([...files.keys()]).toEqual([
      'results.json',
      'predictions.jsonl',
      'summary.json',
      'results.md',
      'em-vs-round-2shot.svg',
      'nll-vs-round-2shot.svg',
      'em-vs-shots.svg',
    ]);
    // Anyone can re-score: predictions.jsonl alone gives the same summary.
    expect(scoreRun(parsePredictionsJsonl(files.get('predictions.jsonl')!), { replicates: 100, confidence: 0.95, seed: 0 })).toEqual(results.summary);
    const md = files.get('results.md')!;
    for (const e of experiments) {
      const label = { 'closed-book': 'Closed-book', 'rag-local': 'RAG-Local', corag: 'CoRAG', centralized: 'Centralized' }[e.method];
      const nll = e.rounds[e.selected.nllRound].answerNll.toFixed(3);
      expect(md).toContain(`| ${label} | 2 | SPLIT | ${e.rounds[0].answerNll.toFixed(3)} | ${nll} | `);
    }
    expect(files.get('em-vs-round-2shot.svg')!.match(/<g class="series"/g)).toHaveLength(4);
  }, 240_000);

  it("holds each client's dev relevant passages and test background, and no passage of any training store", async () => {
    const data = await loadCrabData(
      parseRunnerConfig({ name: 'x', models: { reader: 'tiny', retriever: 'tiny' }, data: { cache: join(dir, 'crab'), seed: 0 }, clients: 2, shots: [2] }),
    );
    for (const c of [0, 1]) {
      const view = new Set(devStoreView(data, c));
      for (const q of data.qa.filter((r) => r.client === c && r.split === 'dev')) for (const id of q.relevant) expect(view.has(id)).toBe(true);
      for (const shots of Object.keys(data.stores.training))
        for (const store of TRAINING_STORES) {
          expect(collaborativeView(data.stores.training[shots][store]).filter((id) => view.has(id))).toEqual([]);
        }
    }
  }, 60_000);
});

describe('score aggregation', () => {
  it('averages clients equally, or counts every answer once (micro), for every method', () => {
    const clients = [
      { exactMatch: 1, f1: 1, count: 1, answerNll: 2, answerTokens: 2 },
      { exactMatch: 0.25, f1: 0.5, count: 3, answerNll: 4, answerTokens: 6 },
    ];
    expect(aggregateScores(clients, 'client-average')).toEqual({ exactMatch: 0.625, f1: 0.75, answerNll: 3, perplexity: Math.exp(3) });
    // Micro NLL: every answer token once, (2·2 + 4·6) / 8.
    expect(aggregateScores(clients, 'micro')).toEqual({ exactMatch: (1 + 0.75) / 4, f1: (1 + 1.5) / 4, answerNll: 3.5, perplexity: Math.exp(3.5) });
  });
});

describe('runner config', () => {
  const minimal = { name: 'x', models: { reader: 'tiny', retriever: 'tiny' } };

  it('fills the paper defaults and rejects unknown keys and bad values naming the key', () => {
    const c = parseRunnerConfig(minimal);
    expect(c.shots).toEqual([16, 32, 64]);
    expect(c.methods).toEqual(['closed-book', 'rag-local', 'corag', 'centralized']);
    expect(c.training.k).toBe(40);
    expect(c.training.maxLength).toBe(384);
    expect(c.evaluation.extractive).toBe(false); // the paper generates answers freely
    expect(parseRunnerConfig({ ...minimal, evaluation: { extractive: true } }).evaluation.extractive).toBe(true);
    expect(() => parseRunnerConfig({ ...minimal, evaluation: { extractive: 'yes' } })).toThrow(/evaluation\.extractive must be true or false/);
    expect(c.evaluation.copyWeight).toBeNull(); // the reader's own copy_decoding_weight
    expect([c.evaluation.testPerClient, c.evaluation.devPerClient]).toEqual([null, null]); // all 32 test and 16 dev questions
    expect(parseRunnerConfig({ ...minimal, evaluation: { devPerClient: 4 } }).evaluation.devPerClient).toBe(4);
    expect(() => parseRunnerConfig({ ...minimal, evaluation: { devPerClient: 0 } })).toThrow(/evaluation\.devPerClient must be a positive integer/);
    expect(parseRunnerConfig({ ...minimal, evaluation: { copyWeight: 0.5 } }).evaluation.copyWeight).toBe(0.5);
    expect(() => parseRunnerConfig({ ...minimal, evaluation: { copyWeight: 2 } })).toThrow(/evaluation\.copyWeight/);
    expect(() => parseRunnerConfig({ ...minimal, trainng: {} })).toThrow(/trainng is not a known setting/);
    expect(() => parseRunnerConfig({ ...minimal, training: { lr: -1 } })).toThrow(/training\.lr must be a positive number/);
    expect(() => parseRunnerConfig({ ...minimal, methods: ['corag', 'fedprox'] })).toThrow(RunnerConfigError);
    expect(() => parseRunnerConfig({ ...minimal, store: 'REL-2' })).toThrow(/store must be one of/);
    expect(() => parseRunnerConfig({ ...minimal, name: '../x' })).toThrow(/folder name/);
  });

  it("parses every shipped config; paper.json has the paper's batch 64, lr 4e-5, 8 clients with all 32 test and 16 dev questions, 3 seeds", () => {
    const dirOf = new URL('../../configs/crab/', import.meta.url);
    for (const name of readdirSync(dirOf)) expect(() => parseRunnerConfig(JSON.parse(readFileSync(new URL(name, dirOf), 'utf8')))).not.toThrow();
    const paper = parseRunnerConfig(JSON.parse(readFileSync(new URL('paper.json', dirOf), 'utf8')));
    expect([
      paper.training.batchSize,
      paper.training.lr,
      paper.clients,
      paper.evaluation.testPerClient,
      paper.evaluation.devPerClient,
      paper.seeds.length,
    ]).toEqual([64, 4e-5, 8, null, null, 3]);
  });

  it('grids methods × shots × seeds, then the store ablation, running a shared cell once', () => {
    const c = parseRunnerConfig({
      ...minimal,
      shots: [16, 64],
      methods: ['closed-book', 'corag'],
      seeds: [0, 1],
      storeAblation: { shots: 64, methods: ['corag', 'closed-book'], stores: ['REL', 'IRR'] },
    });
    const grid = experimentGrid(c).map((e) => `${e.method}/${e.shots}/${e.store}/${e.seed}`);
    expect(grid).toEqual([
      'closed-book/16/REL/0',
      'corag/16/REL/0',
      'closed-book/64/REL/0',
      'corag/64/REL/0',
      'corag/64/IRR/0',
      'closed-book/16/REL/1',
      'corag/16/REL/1',
      'closed-book/64/REL/1',
      'corag/64/REL/1',
      'corag/64/IRR/1',
    ]);
  });
});
