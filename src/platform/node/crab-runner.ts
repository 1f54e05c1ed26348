/**
 * The Node edge of the CRAB runner: the built data (read from its cache folder, built there when
 * missing or built with other settings), model checkpoints from `tiny`, a folder, a URL or a hub
 * id, and the output files
 * results/<run>/{results.json, results.md, *.svg}.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { memoryModelSource } from '../../corag/memory-source';
import { ModelBundle } from '../../corag/model-bundle';
import { resolveModelSource, type ModelSource } from '../../model/checkpoint';
import { tinyBertConfig, tinyCheckpointFiles, tinyT5Config } from '../../model/tiny';
import { folderModelSource } from './folder-source';
import { readCrabCache, type CrabCache } from './crab-files';
import { buildCrabMini, CRAB_FORMAT } from './crab-mini-builder';
import { DEFAULT_CRAB_CONFIG } from '../../crab/build';
import type { RunnerConfig } from '../../crab/runner-config';

/** The model spec that names a seeded random tiny model (src/model/tiny.ts). */
export const TINY_MODEL = 'tiny';

const REPO = resolve(new URL('../../..', import.meta.url).pathname);
const TOKENIZERS = join(REPO, 'public/models/tokenizers');

function folderFiles(dir: string): Map<string, Uint8Array> {
  return new Map(readdirSync(dir).map((name) => [name, new Uint8Array(readFileSync(join(dir, name)))]));
}

/** Where a model spec's files come from; `tiny` generates a seeded checkpoint with the repo's tokenizers. */
export function modelSource(spec: string, kind: 'reader' | 'retriever', seed: number): ModelSource {
  if (spec === TINY_MODEL) {
    // Reader and retriever get different weight streams from one seed.
    const files =
      kind === 'reader'
        ? new Map([...folderFiles(join(TOKENIZERS, 't5')), ...tinyCheckpointFiles('t5', tinyT5Config(), 2 * seed + 1)])
        : new Map([...folderFiles(join(TOKENIZERS, 'bert-base-uncased')), ...tinyCheckpointFiles('bert', tinyBertConfig(), 2 * seed + 2)]);
    return memoryModelSource(`tiny-${kind === 'reader' ? 't5' : 'contriever'} (seed ${seed})`, files);
  }
  return resolveModelSource(spec, { openFolder: folderModelSource });
}

/**
 * The initial bundle of a seed. Pretrained checkpoints are the same for every seed (seeds then
 * vary the batch order only); `tiny` models differ per seed.
 */
export function bundleLoader(config: RunnerConfig): (seed: number) => Promise<ModelBundle> {
  return (seed) =>
    ModelBundle.fromCheckpoints({
      reader: modelSource(config.models.reader, 'reader', seed),
      retriever: modelSource(config.models.retriever, 'retriever', seed),
    });
}

/**
 * The CRAB data of the config: the cache folder when its manifest has the current format and was
 * built with the same seed and enough clients and shots, otherwise built there first (src/platform/node/crab-mini-builder.ts).
 */
export async function loadCrabData(config: RunnerConfig, log: (line: string) => void = () => {}): Promise<CrabCache> {
  const dir = resolve(config.data.cache);
  const shots = [...new Set([...config.shots, ...(config.storeAblation ? [config.storeAblation.shots] : [])])];
  const manifestPath = join(dir, 'manifest.json');
  const reason = (() => {
    if (!existsSync(manifestPath)) return 'no built data there';
    const manifest = JSON.parse(readFileSync(manifestPath, 'utf8')) as { format?: string; config: { seed: number; clients: number; shots: number[] } };
    if (manifest.format !== CRAB_FORMAT) return `it was built as ${manifest.format ?? 'an older format'}, not ${CRAB_FORMAT}`;
    const built = manifest.config;
    if (built.seed !== config.data.seed) return `it was built with seed ${built.seed}`;
    if (config.clients !== null && built.clients < config.clients) return `it has ${built.clients} clients`;
    const missing = shots.filter((s) => !built.shots.includes(s));
    if (missing.length) return `it lacks ${missing.join(', ')}-shot stores`;
    return null;
  })();
  if (reason !== null) {
    log(`building CRAB into ${dir} (${reason})`);
    buildCrabMini({
      out: dir,
      dataDir: config.data.dataDir,
      config: {
        seed: config.data.seed,
        clients: Math.max(config.clients ?? DEFAULT_CRAB_CONFIG.clients, DEFAULT_CRAB_CONFIG.clients),
        shots: [...new Set([...DEFAULT_CRAB_CONFIG.shots, ...shots])].sort((a, b) => a - b),
      },
      log,
    });
  } else {
    log(`reusing the CRAB data in ${dir}`);
  }
  return readCrabCache(dir);
}

/** Writes files into `dir` (created), returning their paths. */
export function writeOutputs(dir: string, files: ReadonlyArray<{ name: string; text: string }>): string[] {
  mkdirSync(dir, { recursive: true });
  return files.map((f) => {
    const path = join(dir, f.name);
    writeFileSync(path, f.text);
    return path;
  });
}
