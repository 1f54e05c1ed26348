/**
 * The CRAB runner end to end: a CRAB-mini built into a temp folder (2 clients, 2 shots), tiny
 * random models, the real coordinator on 127.0.0.1, all four methods for one round; plus the
 * config parser, the experiment grid and the score aggregation.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { reportFiles, summarize, type CrabResults } from '../../src/crab/report';
import { aggregateScores, bestNllRound, bestRound, CrabRunner, type RoundScore } from '../../src/crab/runner';
import { experimentGrid, parseRunnerConfig, RunnerConfigError } from '../../src/crab/runner-config';
import { bundleLoader, loadCrabData, startCoordinator } from '../../src/crab/runner-node';
import { clientView } from '../../src/crab/stores';
import { initBackend } from '../../src/model/backend';

describe('CrabRunner over the real coordinator', () => {
  const dir = mkdtempSync(join(tmpdir(), 'crab-runner-test-'));
  let coordinator: Awaited<ReturnType<typeof startCoordinator>>;
  const requests: string[] = [];
  // Every request the runner's clients send, as "METHOD /path" (proof the bytes went over HTTP).
  const recordingFetch: typeof fetch = (input, init) => {
    const url = new URL(typeof input === 'string' ? input : input instanceof URL ? input.href : input.url);
    requests.push(`${init?.method ?? 'GET'} ${url.pathname}`);
    return fetch(input, init);
  };
  beforeAll(async () => {
    await initBackend('wasm');
    coordinator = await startCoordinator();
  });
  afterAll(async () => {
    await coordinator?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('builds the splits, runs all four methods for a round and writes results, tables and plots from them', async () => {
    const config = parseRunnerConfig({
      name: 'test-run',
      backend: 'wasm',
      data: { cache: join(dir, 'crab'), seed: 0 },
      models: { reader: 'tiny', retriever: 'tiny' },
      clients: 2,
      shots: [2],
      store: 'ONLY-REL',
      seeds: [0],
      rounds: 1,
      training: { localSteps: 1, batchSize: 2, lr: 1e-3, retrieverLr: 1e-3, k: 2, maxLength: 32 },
      evaluation: { testPerClient: 2, k: 2, maxNewTokens: 4 },
      passageMaxLength: 32,
    });
    // The cache folder is empty: loadCrabData builds CRAB-mini there (from ../shared's SQuAD dev).
    const data = await loadCrabData(config);
    expect(data.stores.training['2']).toBeDefined();

    const progress: number[] = [];
    const runner = new CrabRunner(config, {
      data,
      loadBundle: bundleLoader(config),
      coordinatorUrl: coordinator.url,
      fetch: recordingFetch,
      onProgress: (p) => progress.push(p.done / p.total),
    });
    const experiments = await runner.run();

    expect(experiments.map((e) => e.method)).toEqual(['closed-book', 'rag-local', 'corag', 'centralized']);
    for (const e of experiments) {
      expect(e.rounds.map((r) => r.round)).toEqual([0, 1]);
      for (const r of e.rounds) {
        expect(r.perClient).toHaveLength(2);
        for (const c of r.perClient) expect(c.count).toBe(2);
        expect(r.exactMatch).toBeGreaterThanOrEqual(0);
        expect(r.f1).toBeGreaterThanOrEqual(r.exactMatch - 1e-12);
        // The gold-answer NLL of every evaluation: positive, finite, its perplexity beside it.
        for (const c of r.perClient) expect(c.answerTokens).toBeGreaterThanOrEqual(2 * 2);
        expect(r.answerNll).toBeGreaterThan(0);
        expect(r.perplexity).toBeCloseTo(Math.exp(r.answerNll), 6);
      }
      expect(e.bestNll).toEqual({ round: 1, answerNll: e.rounds[1].answerNll });
      expect(e.rounds[0].trainLoss).toBeNull();
      expect(e.rounds[1].trainLoss).toBeGreaterThan(0);
      expect(e.best.round).toBe(1);
      // What client 0's final model answered to its first test questions, kept to be read.
      expect(e.samples!.map((x) => x.question)).toEqual(data.qa.filter((q) => q.client === 0 && q.split === 'test').sort((a, b) => a.position - b.position).slice(0, 2).map((q) => q.question));
      expect(e.aggregation).toBe(e.method === 'centralized' ? 'micro' : 'client-average');
    }
    // FedAvg rounds happened on the coordinator: the global version advanced from 0 to 1.
    const byMethod = new Map(experiments.map((e) => [e.method, e]));
    expect(byMethod.get('corag')!.globalVersions).toEqual([0, 1]);
    expect(byMethod.get('closed-book')!.globalVersions).toEqual([0, 1]);
    expect(byMethod.get('rag-local')!.globalVersions).toBeNull();
    // Two sessions (closed-book, CoRAG), each with an upload per client, two joins, model downloads,
    // CoRAG's passages contributed and searched over HTTP.
    const count = (re: RegExp) => requests.filter((r) => re.test(r)).length;
    expect(count(/^POST \/api\/sessions$/)).toBe(2);
    expect(count(/^POST \/api\/join$/)).toBe(4);
    expect(count(/^PUT \/api\/sessions\/[^/]+\/rounds\/1\/update$/)).toBe(4);
    expect(count(/^GET \/api\/sessions\/[^/]+\/model\/0$/)).toBe(4);
    expect(count(/^GET \/api\/sessions\/[^/]+\/model\/1$/)).toBe(2);
    expect(count(/^POST \/api\/sessions\/[^/]+\/passages$/)).toBeGreaterThanOrEqual(2);
    expect(count(/^POST \/api\/sessions\/[^/]+\/passages\/search$/)).toBeGreaterThanOrEqual(2);
    // CoRAG's clients hold the same ONLY-REL store; each contributed its view.
    const onlyRel = data.stores.training['2']['ONLY-REL'];
    expect(byMethod.get('corag')!.trainingStoreSizes).toEqual([0, 1].map((c) => clientView(onlyRel, c).length));
    expect(byMethod.get('corag')!.trainingStoreSizes[0]).toBeGreaterThan(0);
    expect(progress.at(-1)).toBeCloseTo(1, 10);

    const results: CrabResults = {
      format: 'crab-results/1', name: config.name, config, backend: 'wasm', startedAt: new Date(0).toISOString(), seconds: 1,
      data: { cache: config.data.cache }, experiments, summary: summarize(experiments),
    };
    const files = new Map(reportFiles(results).map((f) => [f.name, f.text]));
    expect([...files.keys()]).toEqual(['results.json', 'results.md', 'em-vs-round-2shot.svg', 'nll-vs-round-2shot.svg', 'em-vs-shots.svg']);
    const json = JSON.parse(files.get('results.json')!) as CrabResults;
    expect(json.experiments).toHaveLength(4);
    expect(json.summary.map((r) => r.method)).toEqual(['closed-book', 'rag-local', 'corag', 'centralized']);
    const md = files.get('results.md')!;
    for (const e of experiments) {
      const label = { 'closed-book': 'Closed-book', 'rag-local': 'RAG-Local', corag: 'CoRAG', centralized: 'Centralized' }[e.method];
      expect(md).toContain(`| ${label} | ${(e.best.exactMatch * 100).toFixed(1)} |`);
      expect(md).toContain(`| ${label} | ${e.bestNll.answerNll.toFixed(3)} |`);
    }
    expect(json.experiments[0].rounds[0].answerNll).toBe(experiments[0].rounds[0].answerNll);
    expect(files.get('em-vs-round-2shot.svg')!.match(/<g class="series"/g)).toHaveLength(4);
  }, 120_000);
});

/** A round from per-client [EM, F1, answers, gold-answer NLL]. */
function round(round: number, perClient: Array<[number, number, number, number?]>): RoundScore {
  const scores = perClient.map(([exactMatch, f1, count, answerNll = 1]) => ({ exactMatch, f1, count, answerNll, answerTokens: 2 * count }));
  return { round, ...aggregateScores(scores, 'client-average'), perClient: scores, trainLoss: round ? 1 : null };
}

describe('score aggregation', () => {
  it('averages clients equally, or counts every answer once (micro) for Centralized', () => {
    const clients = [{ exactMatch: 1, f1: 1, count: 1, answerNll: 2, answerTokens: 2 }, { exactMatch: 0.25, f1: 0.5, count: 3, answerNll: 4, answerTokens: 6 }];
    expect(aggregateScores(clients, 'client-average')).toEqual({ exactMatch: 0.625, f1: 0.75, answerNll: 3, perplexity: Math.exp(3) });
    // Micro NLL: every answer token once, (2·2 + 4·6) / 8.
    expect(aggregateScores(clients, 'micro')).toEqual({ exactMatch: (1 + 0.75) / 4, f1: (1 + 1.5) / 4, answerNll: 3.5, perplexity: Math.exp(3.5) });
  });

  it('picks the trained round with the lowest NLL (never round 0, earlier round on ties), whatever EM says', () => {
    const rounds = [round(0, [[0, 0, 2, 1]]), round(1, [[0.5, 0.5, 2, 3]]), round(2, [[0, 0, 2, 2]]), round(3, [[0, 0, 2, 2]])];
    expect(bestNllRound(rounds)).toEqual({ round: 2, answerNll: 2 });
    expect(bestRound(rounds).round).toBe(1);
  });

  it('picks the best trained round by EM (never round 0, earlier round on ties)', () => {
    const rounds = [round(0, [[0.9, 0.9, 2]]), round(1, [[0.2, 0.3, 2]]), round(2, [[0.5, 0.6, 2]]), round(3, [[0.5, 0.9, 2]])];
    expect(bestRound(rounds)).toEqual({ round: 2, exactMatch: 0.5, f1: 0.6 });
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
    expect(parseRunnerConfig({ ...minimal, evaluation: { copyWeight: 0.5 } }).evaluation.copyWeight).toBe(0.5);
    expect(() => parseRunnerConfig({ ...minimal, evaluation: { copyWeight: 2 } })).toThrow(/evaluation\.copyWeight/);
    expect(() => parseRunnerConfig({ ...minimal, trainng: {} })).toThrow(/trainng is not a known setting/);
    expect(() => parseRunnerConfig({ ...minimal, training: { lr: -1 } })).toThrow(/training\.lr must be a positive number/);
    expect(() => parseRunnerConfig({ ...minimal, methods: ['corag', 'fedprox'] })).toThrow(RunnerConfigError);
    expect(() => parseRunnerConfig({ ...minimal, store: 'REL-2' })).toThrow(/store must be one of/);
    expect(() => parseRunnerConfig({ ...minimal, name: '../x' })).toThrow(/folder name/);
  });

  it('grids methods × shots × seeds, then the store ablation, running a shared cell once', () => {
    const c = parseRunnerConfig({
      ...minimal, shots: [16, 64], methods: ['closed-book', 'corag'], seeds: [0, 1],
      storeAblation: { shots: 64, methods: ['corag', 'closed-book'], stores: ['REL', 'IRR'] },
    });
    const grid = experimentGrid(c).map((e) => `${e.method}/${e.shots}/${e.store}/${e.seed}`);
    expect(grid).toEqual([
      'closed-book/16/REL/0', 'corag/16/REL/0', 'closed-book/64/REL/0', 'corag/64/REL/0', 'corag/64/IRR/0',
      'closed-book/16/REL/1', 'corag/16/REL/1', 'closed-book/64/REL/1', 'corag/64/REL/1', 'corag/64/IRR/1',
    ]);
  });
});
