/**
 * Re-scores a CRAB run from its per-question predictions alone, so anyone can check every number:
 *
 *   npx tsx scripts/crab-rescore.ts <dir> [--replicates N] [--seed N] [--confidence 0.95]
 *
 * Reads <dir>/predictions.jsonl, selects rounds on dev, recomputes the macro/micro tables, the
 * paired-bootstrap CIs and the claim verdicts (src/crab/scoring.ts), and writes
 * <dir>/summary.json and <dir>/summary.md (prints the markdown too). Needs nothing but the file.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { parsePredictionsJsonl } from '../src/crab/predictions';
import { summaryMarkdown } from '../src/crab/report';
import { DEFAULT_BOOTSTRAP, scoreRun } from '../src/crab/scoring';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { replicates: { type: 'string' }, seed: { type: 'string' }, confidence: { type: 'string' }, help: { type: 'boolean' } },
});
if (values.help || positionals.length !== 1) {
  process.stdout.write('usage: npx tsx scripts/crab-rescore.ts <run folder with predictions.jsonl> [--replicates N] [--seed N] [--confidence C]\n');
  process.exit(values.help ? 0 : 2);
}
const dir = resolve(positionals[0]);
const rows = parsePredictionsJsonl(readFileSync(join(dir, 'predictions.jsonl'), 'utf8'));
const number = (v: string | undefined, fallback: number) => (v === undefined ? fallback : Number(v));
const summary = scoreRun(rows, {
  replicates: number(values.replicates, DEFAULT_BOOTSTRAP.replicates),
  seed: number(values.seed, DEFAULT_BOOTSTRAP.seed),
  confidence: number(values.confidence, DEFAULT_BOOTSTRAP.confidence),
});
const markdown = `# CRAB re-score of ${positionals[0]}\n\n${rows.length} predictions.\n\n${summaryMarkdown(summary)}`;
writeFileSync(join(dir, 'summary.json'), JSON.stringify(summary, null, 2) + '\n');
writeFileSync(join(dir, 'summary.md'), markdown);
process.stderr.write(`wrote ${join(dir, 'summary.json')} and summary.md\n`);
process.stdout.write(markdown);
