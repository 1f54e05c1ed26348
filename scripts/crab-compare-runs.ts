/**
 * Two or more CRAB runs of the same questions, compared per round against a baseline run, from
 * their predictions.jsonl alone (src/crab/arm-comparison.ts: paired, client-stratified bootstrap
 * of run − baseline):
 *
 *   npx tsx scripts/crab-compare-runs.ts --split dev --out <file.json> <baseline dir> <run dir>...
 *
 * Prints a markdown table (EM, F1, NLL per round, each run against the baseline) and writes the
 * numbers as JSON to --out when given. Used for docs/CRAB-RESULTS.md "LoRA vs full reader
 * fine-tuning, federated" (issue 20).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { parseArgs } from 'node:util';
import { compareArms, type ArmContrast } from '../src/crab/arm-comparison';
import { parsePredictionsJsonl, type EvalSplit } from '../src/crab/predictions';
import { METRICS } from '../src/crab/scoring';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { split: { type: 'string', default: 'dev' }, out: { type: 'string' }, replicates: { type: 'string', default: '2000' }, help: { type: 'boolean' } },
});
if (values.help || positionals.length < 2) {
  process.stdout.write('usage: npx tsx scripts/crab-compare-runs.ts [--split dev|test] [--out file.json] <baseline run dir> <run dir>...\n');
  process.exit(values.help ? 0 : 2);
}
const split = values.split as EvalSplit;
const load = (dir: string) => parsePredictionsJsonl(readFileSync(join(dir, 'predictions.jsonl'), 'utf8'));
const [baseDir, ...runDirs] = positionals;
const base = load(baseDir);
const rounds = [...new Set(base.filter((r) => r.split === split).map((r) => r.round))].sort((x, y) => x - y);
const pct = (x: number, metric: string) => (metric === 'nll' ? x.toFixed(3) : (100 * x).toFixed(1));
const signed = (x: number, metric: string) => (x >= 0 ? '+' : '') + pct(x, metric);

const out: Record<string, ArmContrast[]> = {};
const lines = [
  `${split}, run − ${basename(baseDir)} (paired bootstrap 95 % CI, ${values.replicates} replicates; EM/F1 in %, NLL in nats/token)`,
  '',
  '| run | round | questions | metric | baseline | run | run − baseline [95 % CI] | verdict of run > baseline |',
  '| --- | ---: | ---: | --- | ---: | ---: | --- | --- |',
];
for (const dir of runDirs) {
  const rows = load(dir);
  out[basename(dir)] = [];
  for (const round of rounds) {
    for (const metric of METRICS) {
      const c = compareArms(base, rows, { split, round, metric, replicates: Number(values.replicates) });
      out[basename(dir)].push(c);
      const d = c.difference;
      lines.push(
        `| ${basename(dir)} | ${round} | ${c.questions} | ${metric} | ${pct(c.a, metric)} | ${pct(c.b, metric)} | ${signed(d.estimate, metric)} [${signed(d.low, metric)}, ${signed(d.high, metric)}] | ${c.verdict} |`,
      );
    }
  }
}
process.stdout.write(lines.join('\n') + '\n');
if (values.out) writeFileSync(values.out, JSON.stringify({ split, baseline: basename(baseDir), comparisons: out }, null, 2) + '\n');
