/**
 * Builds CRAB offline and deterministically from files on disk (docs/CRAB.md has the recipe and
 * the sizes); the command line is scripts/build-crab-mini.ts, and the CRAB runner builds a
 * missing dataset through buildCrabMini.
 *
 * Default: CRAB-mini from SQuAD v1.1 dev (../shared/data/squad/dev-v1.1.json) into
 * results/cache/crab-mini/. With --data-dir, passages come from DIR's psgs_w100*.tsv (already
 * 100-word passages, not re-chunked) and QA pairs from DIR's NQ-open.train.jsonl /
 * NQ-open.dev.jsonl (first level of subfolders searched too). --demo DIR also writes the shipped
 * demo split (SQuAD only). Output: passages.jsonl, qa.jsonl, splits.json, stores.json and
 * manifest.json (config, sizes, sha256 of inputs and outputs; no timestamps or absolute paths).
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildCrab, crabFiles, DEFAULT_CRAB_CONFIG, type CrabConfig, type CrabDataset } from '../../crab/build';
import { selectDemo } from '../../crab/demo';
import { parseSquadJson, readDprPassagesTsv, readNqOpenJsonl, readPassagesJsonl, readQaJsonl } from '../../crab/loaders';
import { squadToCorpus } from '../../crab/squad';
import type { Passage, QAPair } from '../../crab/types';
import { readLinesSync, sha256File, sha256Hex } from './crab-files';

export const REPO = fileURLToPath(new URL('../../..', import.meta.url));
export const DEFAULT_SQUAD = resolve(REPO, '../shared/data/squad/dev-v1.1.json');
export const DEFAULT_OUT = resolve(REPO, 'results/cache/crab-mini');

export interface BuildOptions {
  /** SQuAD v1.1 json (used unless dataDir is given). */
  squad?: string;
  /** Folder with psgs_w100*.tsv and NQ-open jsonl files. */
  dataDir?: string;
  out: string;
  config?: Partial<CrabConfig>;
  /** Words per passage when chunking SQuAD paragraphs. */
  words?: number;
  /** Also write the demo split here (SQuAD only). */
  demo?: { dir: string; articles: number; maxQa: number };
  log?: (line: string) => void;
}

/** crab/2: hard negatives exclude passages that contain a gold answer (crab/1 kept them). */
export const CRAB_FORMAT = 'crab/2';

export interface Manifest {
  format: typeof CRAB_FORMAT;
  name: string;
  config: CrabConfig;
  chunking: { maxWords: number; sentenceAware: boolean } | null;
  inputs: Array<{ file: string; bytes: number; sha256: string }>;
  stats: CrabDataset['stats'];
  files: Array<{ file: string; bytes: number; sha256: string }>;
}

interface Corpus {
  name: string;
  passages: Passage[];
  qaPairs: QAPair[];
  inputs: string[];
  chunking: Manifest['chunking'];
}

function loadSquad(path: string, words: number): Corpus {
  const articles = parseSquadJson(readFileSync(path, 'utf8'), { source: basename(path) });
  const chunking = { maxWords: words, sentenceAware: true };
  return { name: 'crab-mini (SQuAD v1.1 dev)', ...squadToCorpus(articles, chunking), inputs: [path], chunking };
}

/** Files in dir and its direct subfolders whose name matches, sorted by name. */
function findFiles(dir: string, pattern: RegExp): string[] {
  const found: string[] = [];
  for (const entry of readdirSync(dir).sort()) {
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) {
      for (const inner of readdirSync(path).sort()) if (pattern.test(inner)) found.push(join(path, inner));
    } else if (pattern.test(entry)) found.push(path);
  }
  return found.sort((a, b) => basename(a).localeCompare(basename(b)));
}

function readQaFile(path: string): QAPair[] {
  const source = basename(path).replace(/\.jsonl$/, '');
  const first = readLinesSync(path).next().value ?? '';
  // NQ-open names its answers "answer"; the generic format "answers".
  return /"answers"\s*:/.test(first) ? [...readQaJsonl(readLinesSync(path), { source })] : [...readNqOpenJsonl(readLinesSync(path), { source })];
}

function loadDataDir(dir: string): Corpus {
  if (!existsSync(dir)) throw new Error(`--data-dir ${dir} does not exist`);
  const tsv = findFiles(dir, /^psgs_w100.*\.tsv$/);
  const jsonlPassages = tsv.length ? [] : findFiles(dir, /^(corpus|passages)\.jsonl$/);
  const qaFiles = findFiles(dir, /^NQ-open\.(train|dev)\.jsonl$/);
  if (tsv.length + jsonlPassages.length === 0) throw new Error(`--data-dir ${dir}: no psgs_w100*.tsv (or corpus.jsonl / passages.jsonl) found`);
  if (qaFiles.length === 0) throw new Error(`--data-dir ${dir}: no NQ-open.train.jsonl or NQ-open.dev.jsonl found`);
  const passages = [
    ...tsv.flatMap((f) => [...readDprPassagesTsv(readLinesSync(f), { source: basename(f) })]),
    ...jsonlPassages.flatMap((f) => [...readPassagesJsonl(readLinesSync(f), { source: basename(f) })]),
  ];
  const qaPairs = qaFiles.flatMap(readQaFile);
  return { name: 'crab (NQ-open + DPR psgs_w100)', passages, qaPairs, inputs: [...tsv, ...jsonlPassages, ...qaFiles], chunking: null };
}

function fileEntry(path: string, name = basename(path)) {
  return { file: name, bytes: statSync(path).size, sha256: sha256File(path) };
}

function writeDemo(dataset: CrabDataset, allQa: QAPair[], corpus: Corpus, options: NonNullable<BuildOptions['demo']>, seed: number): string[] {
  const titles = [...new Set(corpus.passages.map((p) => p.title))].slice(0, options.articles);
  // Categories of every QA pair (not only the split ones) decide which questions the demo can answer.
  const demo = selectDemo(corpus.passages, allQa, dataset.categories, { titles, maxQa: options.maxQa, seed });
  mkdirSync(options.dir, { recursive: true });
  const jsonl = (items: readonly unknown[]) => items.map((x) => JSON.stringify(x)).join('\n') + '\n';
  writeFileSync(join(options.dir, 'passages.jsonl'), jsonl(demo.passages));
  writeFileSync(join(options.dir, 'qa.jsonl'), jsonl(demo.qaPairs));
  writeFileSync(join(options.dir, 'NOTICE.md'), demoNotice(titles, demo.passages.length, demo.qaPairs.length, corpus.chunking!.maxWords));
  return titles;
}

function demoNotice(titles: string[], passages: number, qa: number, words: number): string {
  return `# Demo data: NOTICE

The files in this folder (passages.jsonl, qa.jsonl) are derived from the **Stanford Question
Answering Dataset (SQuAD) v1.1**, development set, by Pranav Rajpurkar, Jian Zhang, Konstantin
Lopyrev and Percy Liang (2016), https://rajpurkar.github.io/SQuAD-explorer/, licensed under the
Creative Commons Attribution-ShareAlike 4.0 International licence (CC BY-SA 4.0,
https://creativecommons.org/licenses/by-sa/4.0/). SQuAD's paragraphs are excerpts of English
Wikipedia articles (Wikipedia contributors, CC BY-SA).

These derived files are distributed under the same licence, CC BY-SA 4.0.

## What was changed
- Only the articles ${titles.map((t) => `"${t}"`).join(', ')} are included.
- Article titles: underscores replaced by spaces.
- Each paragraph was split into passages of about ${words} words at sentence ends (text otherwise
  unchanged); ${passages} passages in passages.jsonl (\`{"id","title","text"}\`).
- ${qa} of the questions on these articles are included in qa.jsonl (\`{"id","question","answers",
  "relevant"}\`; id and answers as in SQuAD, answer offsets dropped). \`relevant\` lists the
  passages that BM25 ranks in its top 5 for the question and answer and that contain an answer
  (the CRAB recipe, docs/CRAB.md); only questions whose relevant passages are all included here
  were kept.

Produced by \`npx tsx scripts/build-crab-mini.ts --demo public/demo\` from
dev-v1.1.json (sha256 95aa6a52d5d6a735563366753ca50492a658031da74f301ac5238b03966972c9).
`;
}

export function buildCrabMini(options: BuildOptions): { manifest: Manifest; manifestSha256: string; dataset: CrabDataset } {
  const log = options.log ?? (() => {});
  const config: CrabConfig = { ...DEFAULT_CRAB_CONFIG, ...options.config };
  const corpus = options.dataDir ? loadDataDir(options.dataDir) : loadSquad(options.squad ?? DEFAULT_SQUAD, options.words ?? 100);
  log(`${corpus.name}: ${corpus.passages.length} passages, ${corpus.qaPairs.length} QA pairs`);
  const dataset = buildCrab(corpus.passages, corpus.qaPairs, config);
  log(`${dataset.stats.qaWithRelevant} QA pairs have a relevant passage; ${dataset.stats.qaInSplits} in the splits; background ${dataset.stats.background}`);

  mkdirSync(options.out, { recursive: true });
  const files = crabFiles(dataset);
  for (const f of files) writeFileSync(join(options.out, f.name), f.text);
  const manifest: Manifest = {
    format: CRAB_FORMAT,
    name: corpus.name,
    config,
    chunking: corpus.chunking,
    inputs: corpus.inputs.map((p) => fileEntry(p)),
    stats: dataset.stats,
    files: files.map((f) => ({ file: f.name, bytes: Buffer.byteLength(f.text), sha256: sha256Hex(f.text) })),
  };
  const manifestText = JSON.stringify(manifest, null, 2) + '\n';
  writeFileSync(join(options.out, 'manifest.json'), manifestText);
  log(`wrote ${options.out}`);

  if (options.demo) {
    if (options.dataDir) throw new Error('--demo is built from SQuAD only (drop --data-dir)');
    const titles = writeDemo(dataset, corpus.qaPairs, corpus, options.demo, config.seed);
    log(`wrote demo split (${titles.join(', ')}) to ${options.demo.dir}`);
  }
  return { manifest, manifestSha256: sha256Hex(manifestText), dataset };
}
