/**
 * What a CRAB run reports: results.json (every experiment's per-round scores and training
 * losses), predictions.jsonl (every answered question; the source of every table), summary.json
 * (src/crab/scoring.ts: dev-selected rounds, macro and micro scores, paired-bootstrap CIs, claim
 * verdicts), a markdown report of those tables, and SVG plots (EM and NLL vs round per shot count,
 * EM vs shots per method). Pure functions of the results.
 */
import { lineChartSvg } from './plot';
import { predictionsJsonl, type PredictionRow } from './predictions';
import { METHOD_LABELS, METHODS, type Method, type RunnerConfig } from './runner-config';
import type { ExperimentResult } from './round-scores';
import type { ConfidenceInterval } from './bootstrap';
import { METRICS, scoreRun, type BootstrapSettings, type CellSummary, type CrabSummary, type Metric, type Scores } from './scoring';
import { STORE_DESCRIPTIONS } from './stores';

/** An experiment as results.json stores it: its predictions live in predictions.jsonl. */
export type StoredExperiment = Omit<ExperimentResult, 'predictions'>;

export interface CrabResults {
  readonly format: 'crab-results/2';
  readonly name: string;
  readonly config: RunnerConfig;
  readonly backend: string;
  readonly startedAt: string;
  readonly seconds: number;
  readonly data: { readonly cache: string; readonly manifest?: unknown };
  readonly experiments: readonly StoredExperiment[];
  readonly summary: CrabSummary;
}

/** The results of finished experiments: predictions pooled, summary scored from them. */
export function buildResults(
  head: Omit<CrabResults, 'format' | 'experiments' | 'summary'>,
  experiments: readonly ExperimentResult[],
  bootstrap?: BootstrapSettings,
): { results: CrabResults; predictions: PredictionRow[] } {
  const predictions = experiments.flatMap((e) => e.predictions);
  const stored = experiments.map(({ predictions: _, ...rest }) => rest);
  return { results: { format: 'crab-results/2', ...head, experiments: stored, summary: scoreRun(predictions, bootstrap) }, predictions };
}

const METRIC_TITLES: Record<Metric, string> = {
  em: 'Test exact match (%)',
  f1: 'Test F1 (%)',
  nll: 'Test gold-answer NLL (nats per answer token; lower is better)',
};

/** A score in the metric's unit: EM/F1 in percent, NLL in nats. */
export function formatScore(value: number, metric: Metric): string {
  if (Number.isNaN(value)) return '–';
  return metric === 'nll' ? value.toFixed(3) : (value * 100).toFixed(1);
}

const signed = (text: string) => (text.startsWith('-') || text === '–' ? text : `+${text}`);

/** "+4.2 [+0.8, +7.9]" (EM/F1 in points, NLL in nats). */
export function formatInterval(ci: ConfidenceInterval, metric: Metric): string {
  return `${signed(formatScore(ci.estimate, metric))} [${signed(formatScore(ci.low, metric))}, ${signed(formatScore(ci.high, metric))}]`;
}

/** A markdown table; numbers right-aligned, the `textColumns` (default: the first) left-aligned. */
function table(header: readonly string[], rows: readonly (readonly string[])[], textColumns: readonly number[] = [0]): string {
  const line = (cells: readonly string[]) => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map((_, i) => (textColumns.includes(i) ? '---' : '---:'))), ...rows.map(line)].join('\n');
}

const methodLabel = (m: Method) => METHOD_LABELS[m];

/** One metric for every cell: round 0, dev-selected (macro ± std over seeds, micro), last round, Δ vs round 0 with CI. */
export function metricTable(summary: CrabSummary, metric: Metric): string {
  const rows = summary.cells.map((c) => {
    const seeds = c.seeds.length;
    const selected = formatScore(c.macro.selected[metric], metric) + (seeds > 1 ? ` ± ${formatScore(c.selectedStd[metric], metric)}` : '');
    const rounds = c.selection.map((s) => (metric === 'nll' ? s.nllRound : s.emRound)).join(', ');
    return [
      methodLabel(c.method),
      String(c.shots),
      c.store,
      formatScore(c.macro.roundZero[metric], metric),
      selected,
      formatScore(c.micro.selected[metric], metric),
      formatScore(c.macro.last[metric], metric),
      formatInterval(c.trainedVsRoundZero[metric], metric),
      rounds,
      `${c.testQuestions} × ${seeds}`,
    ];
  });
  return table(
    [
      'Method',
      'Shots',
      'Store',
      'round 0',
      'dev-selected',
      'micro',
      'last round',
      'Δ selected − round 0 [95% CI]',
      'selected round(s)',
      'test questions × seeds',
    ],
    rows,
    [0, 2],
  );
}

/** Every stated difference with its paired-bootstrap CI. */
export function comparisonTable(summary: CrabSummary): string {
  const rows = summary.comparisons.map((c) => [c.label, String(c.a.shots), c.a.store, ...METRICS.map((m) => formatInterval(c.difference[m], m))]);
  return table(['Comparison (dev-selected rounds)', 'Shots', 'Store', 'Δ EM (points)', 'Δ F1 (points)', 'Δ NLL (nats)'], rows, [0, 2]);
}

/** The paper's claims: one verdict word per metric, and the contrasts behind it. */
export function claimsTable(summary: CrabSummary): string {
  const rows = summary.claims.map((c) => [
    c.statement,
    ...METRICS.map((m) => `${c.verdicts[m]} (${c.parts.map((p) => formatInterval(p.difference[m], m)).join('; ')})`),
  ]);
  return table(['Claim', 'EM', 'F1', 'NLL (lower is better)'], rows);
}

function byRound(values: readonly number[], metric: Metric | 'loss'): string {
  return values.map((v) => (metric === 'loss' ? (Number.isNaN(v) ? '–' : v.toFixed(2)) : formatScore(v, metric))).join(' → ');
}

/** Mean-over-seeds curves: train loss (and its reader part), dev and test NLL and dev EM per round (where fine-tuning helps or hurts). */
export function curvesTable(summary: CrabSummary, experiments: readonly StoredExperiment[]): string {
  const rows = summary.cells.map((c: CellSummary) => {
    const mine = experiments.filter((e) => e.method === c.method && e.shots === c.shots && e.store === c.store);
    const rounds = c.testByRound.length;
    const meanOf = (f: (r: StoredExperiment['rounds'][number]) => number | null | undefined) =>
      Array.from({ length: rounds - 1 }, (_, i) => {
        const xs = mine.map((e) => (e.rounds[i + 1] ? f(e.rounds[i + 1]) : null)).filter((x): x is number => typeof x === 'number');
        return xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN;
      });
    const loss = meanOf((r) => r.trainLoss);
    const readerLoss = meanOf((r) => r.trainReaderLoss);
    return [
      methodLabel(c.method),
      String(c.shots),
      c.store,
      byRound(loss, 'loss'),
      byRound(readerLoss, 'loss'),
      byRound(
        c.devByRound.map((s) => s.nll),
        'nll',
      ),
      byRound(
        c.testByRound.map((s) => s.nll),
        'nll',
      ),
      byRound(
        c.devByRound.map((s) => s.em),
        'em',
      ),
    ];
  });
  return table(
    [
      'Method',
      'Shots',
      'Store',
      'train loss (reader + retriever), rounds 1…',
      'of which reader',
      'dev NLL, rounds 0…',
      'test NLL, rounds 0…',
      'dev EM %, rounds 0…',
    ],
    rows,
    [0, 2],
  );
}

/** The tables of a summary (and, when given, the experiments' training curves). */
export function summaryMarkdown(summary: CrabSummary, experiments: readonly StoredExperiment[] = []): string {
  const out: string[] = [];
  const b = summary.bootstrap;
  out.push(
    `Scoring: ${summary.scoring}.`,
    '',
    `Confidence intervals: ${Math.round(b.confidence * 100)}% ${b.resampling}; ${b.replicates} replicates, seed ${b.seed}. ` +
      'Verdicts: supported / contradicted when the interval lies wholly on the claimed / opposite side of 0, otherwise undecided.',
    '',
  );
  for (const m of METRICS) out.push(`${METRIC_TITLES[m]}:`, '', metricTable(summary, m), '');
  if (summary.comparisons.length) out.push('Differences between methods, test, each at its dev-selected round(s):', '', comparisonTable(summary), '');
  if (summary.claims.length) out.push("The paper's claims (estimate [95% CI] of each contrast behind the word):", '', claimsTable(summary), '');
  const stores = [...new Set(summary.cells.map((c) => c.store))];
  if (stores.length > 1)
    out.push(
      'Stores:',
      '',
      table(
        ['Store', 'What each client holds'],
        stores.map((s) => [s, STORE_DESCRIPTIONS[s]]),
      ),
      '',
    );
  if (experiments.length) out.push('Curves (mean over seeds; round 0 = the initial model):', '', curvesTable(summary, experiments), '');
  return out.join('\n');
}

/** The whole markdown report of a run. */
export function markdownReport(results: CrabResults): string {
  const c = results.config;
  const t = c.training;
  const out: string[] = [];
  out.push(`# CRAB results: ${results.name}`, '');
  out.push(
    `Backend ${results.backend}; reader \`${c.models.reader}\`, retriever \`${c.models.retriever}\`; ` +
      `${c.clients ?? 'all'} clients; store ${c.store}; ${c.rounds} round(s) of ` +
      `${t.localSteps !== null ? `${t.localSteps} step(s)` : `${t.localEpochs} epoch(s)`} (batch ${t.batchSize}, lr ${t.lr}, retriever lr ${t.retrieverLr}, ` +
      `k ${t.k}, ${t.maxLength} tokens, ${t.trainedParts}, ${t.retrieverLoss}); test k ${c.evaluation.k}, ` +
      `${c.evaluation.testPerClient ?? 'all'} test and ${c.evaluation.devPerClient ?? 'all'} dev questions per client; ` +
      `${c.seeds.length} seed(s) (${c.seeds.join(', ')}); ${(results.seconds / 60).toFixed(1)} min.`,
    '',
  );
  out.push(summaryMarkdown(results.summary, results.experiments));
  out.push(
    'Plots: ' +
      plotFiles(results.summary)
        .map((f) => `[${f.name}](${f.name})`)
        .join(', '),
    '',
  );
  return out.join('\n');
}

const MAIN_STORE = (summary: CrabSummary) => (summary.cells.some((c) => c.store === 'REL') ? 'REL' : summary.cells[0]?.store);

/** EM and NLL vs round (one chart each per shot count of the main store) and dev-selected EM vs shots. */
export function plotFiles(summary: CrabSummary): Array<{ name: string; text: string }> {
  const store = MAIN_STORE(summary);
  const main = summary.cells.filter((c) => c.store === store);
  const shotsList = [...new Set(main.map((c) => c.shots))].sort((a, b) => a - b);
  const methods = METHODS.filter((m) => main.some((c) => c.method === m));
  const cell = (m: Method, shots: number) => main.find((c) => c.method === m && c.shots === shots);
  const curve = (metric: 'em' | 'nll', scale: number) => (shots: number) => ({
    name: `${metric}-vs-round-${shots}shot.svg`,
    text: lineChartSvg({
      title: metric === 'em' ? `Test EM vs round, ${shots}-shot, ${store} (client-averaged)` : `Test gold-answer NLL vs round, ${shots}-shot, ${store}`,
      xLabel: 'round (0 = initial model)',
      yLabel: metric === 'em' ? 'test EM (%)' : 'test NLL (nats/token, lower is better)',
      fitY: metric === 'nll',
      xTicks: Array.from({ length: Math.max(...main.map((c) => c.testByRound.length)) }, (_, r) => r),
      series: methods.flatMap((m) => {
        const c = cell(m, shots);
        return c ? [{ name: METHOD_LABELS[m], points: c.testByRound.map((s: Scores, x) => ({ x, y: s[metric] * scale })) }] : [];
      }),
    }),
  });
  return [
    ...shotsList.map(curve('em', 100)),
    ...shotsList.map(curve('nll', 1)),
    {
      name: 'em-vs-shots.svg',
      text: lineChartSvg({
        title: `Test EM at the dev-selected round vs shots, ${store}`,
        xLabel: 'training QA pairs per client',
        yLabel: 'test EM (%)',
        categoricalX: true,
        xTicks: shotsList,
        series: methods.map((m) => ({
          name: METHOD_LABELS[m],
          points: shotsList.flatMap((shots) => {
            const c = cell(m, shots);
            return c ? [{ x: shots, y: c.macro.selected.em * 100, err: c.selectedStd.em * 100 }] : [];
          }),
        })),
      }),
    },
  ];
}

/** Every output file of a run: results.json, predictions.jsonl, summary.json, results.md and the plots. */
export function reportFiles(results: CrabResults, predictions: readonly PredictionRow[]): Array<{ name: string; text: string }> {
  return [
    { name: 'results.json', text: JSON.stringify(results, null, 2) + '\n' },
    { name: 'predictions.jsonl', text: predictionsJsonl(predictions) },
    { name: 'summary.json', text: JSON.stringify(results.summary, null, 2) + '\n' },
    { name: 'results.md', text: markdownReport(results) },
    ...plotFiles(results.summary),
  ];
}
