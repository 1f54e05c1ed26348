/**
 * The pretraining run in Node (the edge: files, clock, console). Used by `npm run pretrain` and
 * by the GPU bundle (bench/pretrain.gpu.ts). A work folder holds everything a run needs and makes:
 *   data.json.gz                  prepared ids (written by `preparePretrainWork`)
 *   tokenizers/{reader,retriever}/ trimmed tokenizer files
 *   checkpoint/                   the last complete checkpoint, crash-safe, in parts ≤ 15 MiB (checkpoint-files.ts)
 * Training resumes from checkpoint/ when it exists, saves it every `checkpointEveryMinutes` and at
 * the end, and exports the HF folders to `exportDir`.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { loadBertCheckpoint, loadT5Checkpoint } from '../../model/checkpoint';
import type { ParameterStore } from '../../model/params';
import { TextTokenizer } from '../../model/tokenizer';
import { folderModelSource } from './folder-source';
import { parsePretrainConfig, type PretrainConfig } from '../../pretrain/config';
import { parseDprPassages, squadParagraphPassages, type CorpusPassage } from '../../pretrain/corpus';
import { parsePretrainData, preparePretrainData, type PretrainData } from '../../pretrain/data';
import { exportCheckpoints, type TokenizerFiles } from '../../pretrain/export';
import { readCheckpointFiles, saveCheckpointFiles } from './pretrain-checkpoint-files';
import { Pretrainer } from '../../pretrain/trainer';
import { trimUnigramTokenizer, trimWordPieceTokenizer } from '../../pretrain/vocab-trim';

const readJson = (path: string): unknown => JSON.parse(readFileSync(path, 'utf8'));

export function loadPretrainConfig(path: string): { config: PretrainConfig; baseDir: string } {
  return { config: parsePretrainConfig(readJson(path)), baseDir: dirname(resolve(path)) };
}

/** The corpus the config names: DPR passages and/or SQuAD paragraph texts. */
export function loadCorpus(config: PretrainConfig, baseDir: string): CorpusPassage[] {
  const at = (p: string) => (isAbsolute(p) ? p : join(baseDir, p));
  const out: CorpusPassage[] = [];
  if (config.data.dprPassages) out.push(...parseDprPassages(readFileSync(at(config.data.dprPassages), 'utf8')));
  if (config.data.squadParagraphs) out.push(...squadParagraphPassages(readJson(at(config.data.squadParagraphs)), config.data.maxWords));
  if (out.length === 0) throw new Error('pretrain config: the corpus is empty (set data.dprPassages and/or data.squadParagraphs)');
  return out;
}

/** Extra text whose pieces the trimmed vocabularies keep: the reader's prompt words and common question words. */
export const PROMPT_TEXT =
  'question: answer: title: context: What who Who whom whose when When where Where which Which why Why how How many much is are was were did does do the of in ? .';

/** Builds the trimmed tokenizers and the prepared data into `workDir` (from the full tokenizers in `tokenizerDir`). */
export function preparePretrainWork(config: PretrainConfig, baseDir: string, tokenizerDir: string, workDir: string, log = console.log): PretrainData {
  const corpus = loadCorpus(config, baseDir);
  const texts = [...corpus.flatMap((p) => [p.title, p.text, `title: ${p.title} context: ${p.text}`, `${p.title} ${p.text}`]), PROMPT_TEXT];
  const trimmed = {
    reader: trimUnigramTokenizer(
      readJson(join(tokenizerDir, 't5/tokenizer.json')) as Record<string, unknown>,
      readJson(join(tokenizerDir, 't5/tokenizer_config.json')) as Record<string, unknown>,
      texts,
    ),
    retriever: trimWordPieceTokenizer(
      readJson(join(tokenizerDir, 'bert-base-uncased/tokenizer.json')) as Record<string, unknown>,
      readJson(join(tokenizerDir, 'bert-base-uncased/tokenizer_config.json')) as Record<string, unknown>,
      texts,
    ),
  };
  const maps = { reader: join(tokenizerDir, 't5/special_tokens_map.json'), retriever: join(tokenizerDir, 'bert-base-uncased/special_tokens_map.json') };
  for (const side of ['reader', 'retriever'] as const) {
    const dir = join(workDir, 'tokenizers', side);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(trimmed[side].tokenizerJson));
    writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(trimmed[side].tokenizerConfig, null, 2) + '\n');
    writeFileSync(join(dir, 'special_tokens_map.json'), readFileSync(maps[side]));
  }
  const reader = TextTokenizer.fromJson(trimmed.reader.tokenizerJson, trimmed.reader.tokenizerConfig, 'trimmed T5');
  const retriever = TextTokenizer.fromJson(trimmed.retriever.tokenizerJson, trimmed.retriever.tokenizerConfig, 'trimmed BERT');
  const data = preparePretrainData(corpus, reader, retriever, { seed: config.seed, ...config.data });
  writeFileSync(join(workDir, 'data.json.gz'), gzipSync(JSON.stringify(data)));
  log(
    `prepared ${data.passages.length} passages, ${data.examples.length} examples; vocab reader ${data.readerVocabSize}, retriever ${data.retrieverVocabSize}`,
  );
  return data;
}

export function readPretrainData(workDir: string): PretrainData {
  return parsePretrainData(JSON.parse(gunzipSync(readFileSync(join(workDir, 'data.json.gz'))).toString('utf8')));
}

function readTokenizerFiles(dir: string): TokenizerFiles {
  return {
    tokenizerJson: readJson(join(dir, 'tokenizer.json')),
    tokenizerConfig: readJson(join(dir, 'tokenizer_config.json')),
    specialTokensMap: readJson(join(dir, 'special_tokens_map.json')),
  };
}

/** Reader and retriever weights of exported HF folders (`<dir>/reader`, `<dir>/retriever`). */
async function loadInitialWeights(dir: string): Promise<{ reader: ParameterStore; retriever: ParameterStore }> {
  const reader = await loadT5Checkpoint(folderModelSource(join(dir, 'reader')), { tokenizer: false });
  const retriever = await loadBertCheckpoint(folderModelSource(join(dir, 'retriever')), { tokenizer: false });
  return { reader: reader.params, retriever: retriever.params };
}

export interface TrainOptions {
  readonly workDir: string;
  /** Where to write reader/ and retriever/ HF folders at the end (omit: no export). */
  readonly exportDir?: string;
  /** Stop (after checkpointing) when this much wall time has passed. */
  readonly maxMinutes?: number;
  /** Stop after this step even if config.steps is larger (the LR schedule still uses config.steps). */
  readonly stopAtStep?: number;
  /** Start a fresh run (no checkpoint in the work folder) from these exported reader/ and retriever/ folders. */
  readonly initFrom?: string;
  /** Aborting it stops the run after the current step, with a checkpoint and the export (Ctrl-C). */
  readonly signal?: AbortSignal;
  readonly backend: string;
  readonly log?: (line: string) => void;
}

function formatDuration(s: number): string {
  if (!Number.isFinite(s)) return '?';
  const m = Math.floor(s / 60);
  return m > 0 ? `${m}m${String(Math.round(s % 60)).padStart(2, '0')}s` : `${s.toFixed(0)}s`;
}

/** Trains (resuming when a checkpoint exists) until done or out of time; returns the last step. */
export async function runPretraining(config: PretrainConfig, options: TrainOptions): Promise<number> {
  const log = options.log ?? console.log;
  const data = readPretrainData(options.workDir);
  const checkpointDir = join(options.workDir, 'checkpoint');
  const saved = readCheckpointFiles(checkpointDir);
  const trainer = saved
    ? Pretrainer.resume(config, data, saved)
    : Pretrainer.create(config, data, options.initFrom ? await loadInitialWeights(options.initFrom) : undefined);
  try {
    const sizes = trainer.numParameters;
    log(
      `${saved ? `resumed at step ${trainer.step}` : options.initFrom ? `continued from ${options.initFrom} (new optimizer)` : 'fresh run'} on ${options.backend}: reader ${(sizes.reader / 1e6).toFixed(2)}M, retriever ${(sizes.retriever / 1e6).toFixed(2)}M parameters; ${data.passages.length} passages, ${data.examples.length} examples`,
    );
    const start = Date.now();
    let lastCheckpoint = start;
    const firstStep = trainer.step;
    const end = Math.min(config.steps, options.stopAtStep ?? Infinity);
    const objectives = ['reader', 'contrastive', 'pdist', 'ict', 'copy'] as const;
    const sums = { reader: 0, contrastive: 0, pdist: 0, ict: 0, copy: 0 };
    let n = 0;
    while (trainer.step < end) {
      // A step only awaits promises that settle as microtasks (the wasm/cpu backends), so without
      // this the event loop — and a Ctrl-C handler aborting `signal` — would never get a turn.
      await new Promise((resolve) => setImmediate(resolve));
      if (options.signal?.aborted) {
        log(`stopping at step ${trainer.step} (interrupted)`);
        break;
      }
      const l = await trainer.trainStep();
      for (const o of objectives) sums[o] += l[o];
      n++;
      const now = Date.now();
      if (l.step % config.logEvery === 0 || l.step === end) {
        const rate = (l.step - firstStep) / ((now - start) / 1000);
        // Objectives switched off in this phase report NaN and are left out of the line.
        const losses = objectives.filter((o) => !Number.isNaN(sums[o])).map((o) => `${o} ${(sums[o] / n).toFixed(o === 'pdist' ? 4 : 3)}`);
        const percent = ((100 * l.step) / config.steps).toFixed(1);
        log(
          `step ${l.step}/${config.steps} (${percent}%)  ${losses.join('  ')}  lr ${l.lr.toExponential(2)}  ${rate.toFixed(2)} step/s  ETA ${formatDuration((end - l.step) / rate)}`,
        );
        for (const o of objectives) sums[o] = 0;
        n = 0;
      }
      const outOfTime = options.maxMinutes !== undefined && now - start > options.maxMinutes * 60_000;
      if (now - lastCheckpoint > config.checkpointEveryMinutes * 60_000) {
        saveCheckpointFiles(checkpointDir, await trainer.saveCheckpoint());
        lastCheckpoint = now;
        log(`checkpoint at step ${trainer.step}`);
      }
      if (outOfTime) {
        log(`stopping at step ${trainer.step} (out of time)`);
        break;
      }
    }
    // Always checkpointed at the end: a finished, timed-out or interrupted run resumes from here.
    saveCheckpointFiles(checkpointDir, await trainer.saveCheckpoint());
    log(`checkpoint at step ${trainer.step}`);
    if (options.exportDir) {
      const tokenizers = {
        reader: readTokenizerFiles(join(options.workDir, 'tokenizers/reader')),
        retriever: readTokenizerFiles(join(options.workDir, 'tokenizers/retriever')),
      };
      const files = await exportCheckpoints(trainer, tokenizers, { generator: 'corag-web pretrain', step: String(trainer.step) });
      for (const [side, folder] of Object.entries(files)) {
        const dir = join(options.exportDir, side);
        mkdirSync(dir, { recursive: true });
        for (const [name, bytes] of folder) writeFileSync(join(dir, name), bytes);
      }
      log(`exported reader/ and retriever/ to ${options.exportDir} at step ${trainer.step}`);
    }
    return trainer.step;
  } finally {
    trainer.dispose();
  }
}
