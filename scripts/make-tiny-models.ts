/**
 * Writes tiny random checkpoints in Hugging Face layout, with the real tokenizers:
 *   <out>/t5/          config.json, model.safetensors, tokenizer files (T5 reader)
 *   <out>/contriever/  config.json, model.safetensors, tokenizer files (BERT retriever)
 *
 * Usage: tsx scripts/make-tiny-models.ts --out <dir> [--seed N] [--t5-layout gated-gelu|relu]
 * Same seed -> byte-identical files.
 */
import { copyFile, mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { tinyBertConfig, tinyCheckpointFiles, tinyT5Config, type CheckpointFiles } from '../src/model/tiny';

const TOKENIZERS = fileURLToPath(new URL('../public/models/tokenizers/', import.meta.url));

const USAGE = 'usage: tsx scripts/make-tiny-models.ts --out <dir> [--seed N] [--t5-layout gated-gelu|relu]';

async function writeModel(folder: string, files: CheckpointFiles, tokenizerFolder: string): Promise<void> {
  await mkdir(folder, { recursive: true });
  for (const [name, bytes] of files) await writeFile(join(folder, name), bytes);
  // Tokenizer files and their licence notices travel with the model.
  for (const name of await readdir(tokenizerFolder)) await copyFile(join(tokenizerFolder, name), join(folder, name));
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      out: { type: 'string' },
      seed: { type: 'string', default: '0' },
      't5-layout': { type: 'string', default: 'gated-gelu' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return;
  }
  if (!values.out) throw new Error(`--out is required\n${USAGE}`);
  const seed = Number(values.seed);
  if (!Number.isSafeInteger(seed) || seed < 0) throw new Error(`--seed must be a non-negative integer, got "${values.seed}"`);
  const layout = values['t5-layout'];
  if (layout !== 'gated-gelu' && layout !== 'relu') throw new Error(`--t5-layout must be gated-gelu or relu, got "${layout}"`);

  const t5Folder = join(values.out, 't5');
  const bertFolder = join(values.out, 'contriever');
  await writeModel(t5Folder, tinyCheckpointFiles('t5', tinyT5Config(layout), seed), join(TOKENIZERS, 't5'));
  await writeModel(bertFolder, tinyCheckpointFiles('bert', tinyBertConfig(), seed), join(TOKENIZERS, 'bert-base-uncased'));
  console.log(`wrote tiny T5 (${layout}) to ${t5Folder} and tiny Contriever to ${bertFolder} (seed ${seed})`);
}

main().catch((e: Error) => {
  console.error(e.message);
  process.exit(1);
});
