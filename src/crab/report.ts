/**
 * What a CRAB run reports: results.json (every experiment, every round, and the summary), a
 * markdown report in the paper's layout (methods × shots; store ablation), the test gold-answer
 * NLL beside EM/F1 (the learning signal where EM is still 0), and SVG plots (EM and NLL vs round
 * per shot count, EM vs shots per method). Pure functions of the results.
 */
import { lineChartSvg } from './plot';
import { METHOD_LABELS, METHODS, type ExperimentSpec, type Method, type RunnerConfig } from './runner-config';
import type { ExperimentResult } from './runner';
import { STORE_DESCRIPTIONS, type TrainingStoreName } from './stores';

export interface Stat {
  readonly mean: number;
  /** Sample standard deviation over seeds (0 with one seed). */
  readonly std: number;
}

/** One cell of a table: a method at a shot count on a store, over seeds. Scores in [0, 1]. */
export interface SummaryRow {
  readonly method: Method;
  readonly shots: number;
  readonly store: TrainingStoreName;
  readonly seeds: readonly number[];
  /** Best trained round's EM/F1 (client-averaged; micro for Centralized). */
  readonly exactMatch: Stat;
  readonly f1: Stat;
  /** EM of the initial model (round 0): what training must beat. */
  readonly roundZeroExactMatch: Stat;
  readonly roundZeroF1: Stat;
  readonly bestRounds: readonly number[];
  /** Mean over seeds of each round's EM (round 0 first): the EM-vs-round curve. */
  readonly exactMatchByRound: readonly number[];
  /** Mean over seeds of each round's training loss (null for round 0). */
  readonly trainLossByRound: readonly (number | null)[];
  /** Lowest test gold-answer NLL (nats per token) of a trained round; lower is better. */
  readonly answerNll: Stat;
  /** The initial model's test NLL (round 0): what training must go below. */
  readonly roundZeroAnswerNll: Stat;
  readonly bestNllRounds: readonly number[];
  /** Mean over seeds of each round's test NLL (round 0 first): the NLL-vs-round curve. */
  readonly answerNllByRound: readonly number[];
}

export interface CrabResults {
  readonly format: 'crab-results/1';
  readonly name: string;
  readonly config: RunnerConfig;
  readonly backend: string;
  readonly startedAt: string;
  readonly seconds: number;
  readonly data: { readonly cache: string; readonly manifest?: unknown };
  readonly experiments: readonly ExperimentResult[];
  readonly summary: readonly SummaryRow[];
}

export function stat(xs: readonly number[]): Stat {
  if (xs.length === 0) return { mean: NaN, std: NaN };
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  const variance = xs.length > 1 ? xs.reduce((a, x) => a + (x - mean) ** 2, 0) / (xs.length - 1) : 0;
  return { mean, std: Math.sqrt(variance) };
}

/** Groups experiments by (method, shots, store) and averages over seeds, in first-seen order. */
export function summarize(experiments: readonly ExperimentResult[]): SummaryRow[] {
  const groups = new Map<string, ExperimentResult[]>();
  for (const e of experiments) {
    const key = `${e.method}/${e.shots}/${e.store}`;
    groups.set(key, [...(groups.get(key) ?? []), e]);
  }
  return [...groups.values()].map((g) => {
    const rounds = Math.min(...g.map((e) => e.rounds.length));
    return {
      method: g[0].method,
      shots: g[0].shots,
      store: g[0].store,
      seeds: g.map((e) => e.seed),
      exactMatch: stat(g.map((e) => e.best.exactMatch)),
      f1: stat(g.map((e) => e.best.f1)),
      roundZeroExactMatch: stat(g.map((e) => e.rounds[0].exactMatch)),
      roundZeroF1: stat(g.map((e) => e.rounds[0].f1)),
      bestRounds: g.map((e) => e.best.round),
      exactMatchByRound: Array.from({ length: rounds }, (_, r) => stat(g.map((e) => e.rounds[r].exactMatch)).mean),
      trainLossByRound: Array.from({ length: rounds }, (_, r) => (r === 0 ? null : stat(g.map((e) => e.rounds[r].trainLoss ?? NaN)).mean)),
      // Results written before the NLL existed have none: NaN, shown as "–".
      answerNll: stat(g.map((e) => e.bestNll?.answerNll ?? NaN)),
      roundZeroAnswerNll: stat(g.map((e) => e.rounds[0].answerNll ?? NaN)),
      bestNllRounds: g.map((e) => e.bestNll?.round ?? NaN),
      answerNllByRound: Array.from({ length: rounds }, (_, r) => stat(g.map((e) => e.rounds[r].answerNll ?? NaN)).mean),
    };
  });
}

/** The summary row of a cell; closed-book does not depend on the store, so any store matches it. */
export function findRow(summary: readonly SummaryRow[], cell: Pick<ExperimentSpec, 'method' | 'shots' | 'store'>): SummaryRow | undefined {
  return summary.find((r) => r.method === cell.method && r.shots === cell.shots && (r.method === 'closed-book' || r.store === cell.store));
}

/** "12.5 ± 1.3" in percent (the ± only with several seeds). */
export function formatStat(s: Stat, seeds: number): string {
  const pct = (v: number) => (v * 100).toFixed(1);
  return seeds > 1 ? `${pct(s.mean)} ± ${pct(s.std)}` : pct(s.mean);
}

/** "2.345 ± 0.012" in nats (NLL is not a percentage); "–" where a result has no NLL. */
export function formatNll(s: Stat, seeds: number): string {
  if (Number.isNaN(s.mean)) return '–';
  return seeds > 1 ? `${s.mean.toFixed(3)} ± ${s.std.toFixed(3)}` : s.mean.toFixed(3);
}

/** A markdown table; numbers right-aligned, the `textColumns` (default: the first) left-aligned. */
function table(header: readonly string[], rows: readonly (readonly string[])[], textColumns: readonly number[] = [0]): string {
  const line = (cells: readonly string[]) => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map((_, i) => (textColumns.includes(i) ? '---' : '---:'))), ...rows.map(line)].join('\n');
}

const methodsIn = (summary: readonly SummaryRow[], wanted: readonly Method[]) => METHODS.filter((m) => wanted.includes(m) && summary.some((r) => r.method === m));

/** Methods × shots of the main store: one metric per cell (EM/F1 in %, NLL in nats). */
export function mainTable(results: Pick<CrabResults, 'config' | 'summary'>, metric: 'exactMatch' | 'f1' | 'answerNll' = 'exactMatch'): string {
  const { config, summary } = results;
  const format = metric === 'answerNll' ? formatNll : formatStat;
  const rows = methodsIn(summary, config.methods).map((m) => [
    METHOD_LABELS[m],
    ...config.shots.map((shots) => {
      const row = findRow(summary, { method: m, shots, store: config.store });
      return row ? format(row[metric], row.seeds.length) : '–';
    }),
  ]);
  return table(['Method', ...config.shots.map((s) => `${s}-shot`)], rows);
}

/** Round 0 vs best trained round for every main-table cell: is learning visible? */
export function learningTable(results: Pick<CrabResults, 'config' | 'summary'>): string {
  const { config, summary } = results;
  const rows: string[][] = [];
  for (const m of methodsIn(summary, config.methods)) {
    for (const shots of config.shots) {
      const row = findRow(summary, { method: m, shots, store: config.store });
      if (!row) continue;
      const n = row.seeds.length;
      const gain = row.exactMatch.mean - row.roundZeroExactMatch.mean;
      const nllChange = row.answerNll.mean - row.roundZeroAnswerNll.mean;
      rows.push([
        METHOD_LABELS[m], String(shots),
        formatStat(row.roundZeroExactMatch, n), formatStat(row.exactMatch, n), `${gain >= 0 ? '+' : ''}${(gain * 100).toFixed(1)}`,
        formatStat(row.roundZeroF1, n), formatStat(row.f1, n), row.bestRounds.join(', '),
        formatNll(row.roundZeroAnswerNll, n), formatNll(row.answerNll, n),
        Number.isNaN(nllChange) ? '–' : `${nllChange >= 0 ? '+' : ''}${nllChange.toFixed(3)}`,
        row.bestNllRounds.join(', '),
        row.trainLossByRound.filter((l): l is number => l !== null).map((l) => l.toFixed(2)).join(' → '),
      ]);
    }
  }
  return table(
    ['Method', 'Shots', 'EM round 0', 'EM best', 'Δ EM', 'F1 round 0', 'F1 best', 'best EM round(s)', 'NLL round 0', 'NLL best', 'Δ NLL', 'best NLL round(s)', 'train loss by round'],
    rows,
  );
}

/** Stores × methods at the ablation's shot count (paper: Table 2). */
export function storeAblationTable(results: Pick<CrabResults, 'config' | 'summary'>): string | null {
  const a = results.config.storeAblation;
  if (!a) return null;
  const methods = methodsIn(results.summary, a.methods);
  const rows = a.stores.map((store) => {
    const cells = methods.map((method) => findRow(results.summary, { method, shots: a.shots, store }));
    return [
      store,
      ...cells.map((row) => (row ? formatStat(row.exactMatch, row.seeds.length) : '–')),
      ...cells.map((row) => (row ? formatNll(row.answerNll, row.seeds.length) : '–')),
      STORE_DESCRIPTIONS[store],
    ];
  });
  const header = ['Training store', ...methods.map((m) => `${METHOD_LABELS[m]} EM`), ...methods.map((m) => `${METHOD_LABELS[m]} NLL`), 'What each client holds'];
  return table(header, rows, [0, 2 * methods.length + 1]);
}

/** The whole markdown report. */
export function markdownReport(results: CrabResults): string {
  const c = results.config;
  const t = c.training;
  const seeds = c.seeds.length;
  const out: string[] = [];
  out.push(`# CRAB results: ${results.name}`, '');
  out.push(
    `Backend ${results.backend}; reader \`${c.models.reader}\`, retriever \`${c.models.retriever}\`; ` +
      `${c.clients ?? 'all'} clients; store ${c.store}; ${c.rounds} round(s) of ` +
      `${t.localSteps !== null ? `${t.localSteps} step(s)` : `${t.localEpochs} epoch(s)`} (batch ${t.batchSize}, lr ${t.lr}, retriever lr ${t.retrieverLr}, ` +
      `k ${t.k}, ${t.maxLength} tokens, ${t.trainedParts}, ${t.retrieverLoss}); test k ${c.evaluation.k}, ` +
      `${c.evaluation.testPerClient ?? 'all'} test questions per client; ${seeds} seed(s) (${c.seeds.join(', ')}); ${(results.seconds / 60).toFixed(1)} min.`,
    '',
  );
  out.push(`Test exact match (%), best client-averaged round (Centralized: micro-average)${seeds > 1 ? ', mean ± std over seeds' : ''}:`, '', mainTable(results), '');
  out.push('Test F1 (%), same rounds:', '', mainTable(results, 'f1'), '');
  out.push(
    `Test gold-answer NLL (nats per answer token, teacher forced given the same top-${c.evaluation.k} passages; lower is better), lowest trained round; perplexity = exp(NLL):`,
    '',
    mainTable(results, 'answerNll'),
    '',
  );
  out.push(
    'Learning check: the initial model (round 0) against the best trained round (EM/F1: highest EM; NLL: lowest NLL, chosen separately):',
    '',
    learningTable(results),
    '',
  );
  const ablation = storeAblationTable(results);
  if (ablation) out.push(`Store ablation, ${c.storeAblation!.shots}-shot, test EM (%) and test gold-answer NLL (lowest trained round):`, '', ablation, '');
  out.push('Plots: ' + plotFiles(results).map((f) => `[${f.name}](${f.name})`).join(', '), '');
  return out.join('\n');
}

/** EM and NLL vs round (one chart each per shot count) and best EM vs shots (one line per method). */
export function plotFiles(results: Pick<CrabResults, 'config' | 'summary'>): Array<{ name: string; text: string }> {
  const { config, summary } = results;
  const methods = methodsIn(summary, config.methods);
  const hasNll = summary.some((r) => r.answerNllByRound.some((v) => !Number.isNaN(v)));
  const files = config.shots.map((shots) => ({
    name: `em-vs-round-${shots}shot.svg`,
    text: lineChartSvg({
      title: `Test EM vs round, ${shots}-shot, ${config.store}`,
      xLabel: 'round (0 = initial model)',
      yLabel: 'test EM (%)',
      xTicks: Array.from({ length: config.rounds + 1 }, (_, r) => r),
      series: methods.flatMap((m) => {
        const row = findRow(summary, { method: m, shots, store: config.store });
        return row ? [{ name: METHOD_LABELS[m], points: row.exactMatchByRound.map((y, x) => ({ x, y: y * 100 })) }] : [];
      }),
    }),
  }));
  if (hasNll) {
    for (const shots of config.shots) {
      files.push({
        name: `nll-vs-round-${shots}shot.svg`,
        text: lineChartSvg({
          title: `Test gold-answer NLL vs round, ${shots}-shot, ${config.store}`,
          xLabel: 'round (0 = initial model)',
          yLabel: 'test NLL (nats/token, lower is better)',
          fitY: true,
          xTicks: Array.from({ length: config.rounds + 1 }, (_, r) => r),
          series: methods.flatMap((m) => {
            const row = findRow(summary, { method: m, shots, store: config.store });
            return row ? [{ name: METHOD_LABELS[m], points: row.answerNllByRound.map((y, x) => ({ x, y })) }] : [];
          }),
        }),
      });
    }
  }
  files.push({
    name: 'em-vs-shots.svg',
    text: lineChartSvg({
      title: `Best test EM vs shots, ${config.store}`,
      xLabel: 'training QA pairs per client',
      yLabel: 'test EM (%)',
      categoricalX: true,
      xTicks: config.shots,
      series: methods.map((m) => ({
        name: METHOD_LABELS[m],
        points: config.shots.flatMap((shots) => {
          const row = findRow(summary, { method: m, shots, store: config.store });
          return row ? [{ x: shots, y: row.exactMatch.mean * 100, err: row.exactMatch.std * 100 }] : [];
        }),
      })),
    }),
  });
  return files;
}

/** Every output file of a run: results.json, results.md and the plots. */
export function reportFiles(results: CrabResults): Array<{ name: string; text: string }> {
  return [
    { name: 'results.json', text: JSON.stringify(results, null, 2) + '\n' },
    { name: 'results.md', text: markdownReport(results) },
    ...plotFiles(results),
  ];
}
