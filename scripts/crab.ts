/**
 * The CRAB experiment runner from one command:
 *
 *   npm run crab -- --config configs/crab/quick.json [--out results/<name>] [--backend wasm]
 *
 * Builds (or reuses) the CRAB splits, starts the real coordinator on 127.0.0.1 (ephemeral port,
 * temp data folder), runs every method × shots × store × seed of the config with headless
 * clients over HTTP, and writes results/<name>/{results.json, predictions.jsonl, summary.json,
 * results.md, *.svg}. scripts/crab-rescore.ts recomputes summary.json and the tables from
 * predictions.jsonl alone.
 */
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { initBackend, parseBackendName } from '../src/model/backend';
import { parsePredictionsJsonl } from '../src/crab/predictions';
import { buildResults, markdownReport, reportFiles, type CrabResults } from '../src/crab/report';
import { scoreRun } from '../src/crab/scoring';
import { CrabRunner } from '../src/crab/runner';
import type { ExperimentResult } from '../src/crab/round-scores';
import { parseRunnerConfig, type RunnerConfig } from '../src/crab/runner-config';
import { bundleLoader, loadCrabData, TINY_MODEL, writeOutputs } from '../src/platform/node/crab-runner';
import { startCrabCoordinator } from '../server/crab-coordinator';
import { formatDuration, formatProgress } from '../src/crab/runner-progress';

const HELP = `usage: npm run crab -- --config FILE [--out DIR] [--backend cpu|wasm|webgpu]
       npm run crab -- --rerender results/<run>/results.json   (tables and plots again, no training)

  --config FILE   runner config (configs/crab/quick.json, quick-pretrained.json, paper.json)
  --out DIR       output folder (default results/<config name>)
  --backend NAME  override the config's TF.js backend
  --rerender FILE rewrite summary.json, results.md and the plots beside FILE (a results.json)
                  from the predictions.jsonl beside it
`;

/** Recomputes the summary, tables and plots of a finished (or interrupted) run from its predictions. */
function rerender(file: string): void {
  const dir = dirname(resolve(file));
  const saved = JSON.parse(readFileSync(file, 'utf8')) as CrabResults;
  const predictions = parsePredictionsJsonl(readFileSync(join(dir, 'predictions.jsonl'), 'utf8'));
  const results: CrabResults = { ...saved, config: parseRunnerConfig(saved.config), summary: scoreRun(predictions) };
  const paths = writeOutputs(dir, reportFiles(results, predictions));
  process.stderr.write(`wrote ${paths.join(', ')}\n`);
  process.stdout.write(markdownReport(results));
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { config: { type: 'string' }, out: { type: 'string' }, backend: { type: 'string' }, rerender: { type: 'string' }, help: { type: 'boolean' } },
  });
  if (values.rerender) return rerender(values.rerender);
  if (values.help || !values.config) {
    process.stdout.write(HELP);
    process.exit(values.help ? 0 : 2);
  }
  const parsed = parseRunnerConfig(JSON.parse(readFileSync(values.config, 'utf8')));
  const config: RunnerConfig = values.backend ? { ...parsed, backend: parseBackendName(values.backend) as RunnerConfig['backend'] } : parsed;
  const outDir = resolve(values.out ?? `results/${config.name}`);
  const tty = process.stderr.isTTY;
  const clear = () => (tty ? '\r\x1b[K' : '');
  const log = (line: string) => process.stderr.write(`${clear()}${line}\n`);

  const backend = await initBackend(config.backend);
  log(`backend ${backend.name}${backend.detail ? ` (${backend.detail})` : ''}${backend.fallbackReason ? `; fallback: ${backend.fallbackReason}` : ''}`);
  const data = await loadCrabData(config, log);
  const coordinator = await startCrabCoordinator();
  log(`coordinator at ${coordinator.url}`);

  const startedAt = new Date();
  const experiments: ExperimentResult[] = [];
  const resultsOf = () =>
    buildResults(
      {
        name: config.name,
        config,
        backend: backend.name,
        startedAt: startedAt.toISOString(),
        seconds: (Date.now() - startedAt.getTime()) / 1000,
        data: { cache: config.data.cache, manifest: data.manifest },
      },
      experiments,
    );
  const write = () => {
    const { results, predictions } = resultsOf();
    return { results, paths: writeOutputs(outDir, reportFiles(results, predictions)) };
  };
  let lastDraw = 0;
  const runner = new CrabRunner(config, {
    data,
    loadBundle: bundleLoader(config),
    // A pretrained retriever is the same file for every seed: embed the passages once.
    retrieverSameForEverySeed: config.models.retriever !== TINY_MODEL,
    coordinatorUrl: coordinator.url,
    log,
    onProgress: (p) => {
      const now = Date.now();
      // A redrawn line on a terminal; one line every 10 s in a log file.
      if (now - lastDraw < (tty ? 200 : 10_000) && p.done < p.total) return;
      lastDraw = now;
      const line = formatProgress(p, (now - startedAt.getTime()) / 1000, 24);
      process.stderr.write(tty ? `${clear()}${line.slice(0, (process.stderr.columns ?? 120) - 1)}` : `${line}\n`);
    },
    onExperiment: (e) => {
      experiments.push(e);
      write(); // partial results survive an interrupted run
    },
  });
  log(
    `${runner.experiments.length} experiments: ${config.methods.join(', ')} × ${config.shots.join('/')} shots × ${config.seeds.length} seed(s)${config.storeAblation ? ` + store ablation (${config.storeAblation.stores.join(', ')})` : ''}`,
  );
  try {
    await runner.run();
  } finally {
    await coordinator.close();
  }
  const { results, paths } = write();
  log(`done in ${formatDuration(results.seconds)}; wrote ${paths.join(', ')}`);
  process.stdout.write(markdownReport(results));
}

main().catch((e) => {
  process.stderr.write(`\ncrab: ${(e as Error).stack ?? e}\n`);
  process.exit(1);
});
