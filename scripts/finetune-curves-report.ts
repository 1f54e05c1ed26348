/**
 * npx tsx scripts/finetune-curves-report.ts <curves.json …> --out docs/crab/finetune-curves
 *
 * Gathers the runs of one or more scripts/finetune-curves.ts outputs (a device grid writes one file
 * per configuration) into `<out>/curves.json`, draws the dev curves as SVG (dev NLL with retrieved
 * passages, dev NLL with the gold passage, dev recall@k, each against training steps, one line per
 * learning rate × trained parts) and prints a markdown table of every point, so the choice of the
 * local-training recipe can be re-read and re-drawn from committed numbers.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { lineChartSvg, type PlotSeries } from '../src/crab/plot';
import { optionValue } from './options';

interface Point {
  step: number;
  trainNll: number;
  devNllRetrieved: number;
  devNllGold: number;
  devRecallAtK: number;
  devEm?: number;
  devF1?: number;
}
interface Run {
  lr: number;
  trainable: string;
  points: Point[];
}
interface Curves {
  config: Record<string, unknown>;
  runs: Run[];
}

const argv = process.argv.slice(2);
const out = optionValue(argv, 'out', 'docs/crab/finetune-curves');
const inputs = argv.filter((a, i) => !a.startsWith('--') && argv[i - 1] !== '--out');
if (inputs.length === 0) {
  process.stderr.write('usage: finetune-curves-report.ts <curves.json …> [--out DIR]\n');
  process.exit(2);
}
const files = inputs.map((f) => ({ file: f, curves: JSON.parse(readFileSync(f, 'utf8')) as Curves }));
// A configuration measured in several files (a longer run repeated later) keeps its longest curve.
const byKey = new Map<string, Run & { source: string }>();
for (const { file, curves } of files) {
  for (const run of curves.runs) {
    if (run.points.length < 2) continue; // a baseline-only run
    // Runs that also scored EM are kept beside the NLL-only ones (their points are the EM's).
    const key = `${run.trainable} lr ${run.lr}${run.points.some((p) => p.devEm !== undefined) ? ' (with EM)' : ''}`;
    const kept = byKey.get(key);
    if (!kept || kept.points.length < run.points.length) byKey.set(key, { ...run, source: file });
  }
}
const runs = [...byKey.values()].sort((a, b) => a.trainable.localeCompare(b.trainable) || a.lr - b.lr);
mkdirSync(out, { recursive: true });
writeFileSync(join(out, 'curves.json'), JSON.stringify({ sources: files.map((f) => ({ file: f.file, config: f.curves.config })), runs }, null, 1));

const series = (value: (p: Point) => number): PlotSeries[] =>
  runs.map((r) => ({
    name: `${r.trainable === 'reader' ? 'reader' : 'reader+query'} ${r.lr}${r.points.some((p) => p.devEm !== undefined) ? ' (EM run)' : ''}`,
    points: r.points.map((p) => ({ x: p.step, y: value(p) })),
  }));
const charts = [
  { name: 'dev-nll.svg', title: 'Dev gold-answer NLL, top-k retrieved (lower is better)', yLabel: 'NLL (nats/token)', value: (p: Point) => p.devNllRetrieved },
  { name: 'dev-gold-nll.svg', title: 'Dev gold-answer NLL, gold passage given', yLabel: 'NLL (nats/token)', value: (p: Point) => p.devNllGold },
  { name: 'dev-recall.svg', title: 'Dev recall@k of a relevant passage', yLabel: 'recall@k (%)', value: (p: Point) => 100 * p.devRecallAtK },
  { name: 'train-nll.svg', title: 'Train gold-answer NLL (64 training pairs)', yLabel: 'NLL (nats/token)', value: (p: Point) => p.trainNll },
];
for (const c of charts) {
  writeFileSync(
    join(out, c.name),
    lineChartSvg({ title: c.title, xLabel: 'local training steps (a fresh AdamW every 6)', yLabel: c.yLabel, series: series(c.value), fitY: true }),
  );
}

const lines = [
  '| trained | lr | step | train NLL | dev NLL | dev NLL (gold passage) | dev R@k | dev EM | dev F1 |',
  '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
];
const pct = (x: number | undefined) => (x === undefined ? '' : (100 * x).toFixed(1));
for (const r of runs) {
  for (const p of r.points) {
    lines.push(
      `| ${r.trainable} | ${r.lr} | ${p.step} | ${p.trainNll.toFixed(3)} | ${p.devNllRetrieved.toFixed(3)} | ${p.devNllGold.toFixed(3)} | ${pct(p.devRecallAtK)} | ${pct(p.devEm)} | ${pct(p.devF1)} |`,
    );
  }
}
process.stdout.write(lines.join('\n') + '\n');
process.stderr.write(`wrote ${out}/curves.json and ${charts.map((c) => c.name).join(', ')}\n`);
