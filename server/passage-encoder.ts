/**
 * The session's frozen passage encoder, held by the coordinator so it can recompute contributed
 * embeddings instead of trusting them (server/passage-intake.ts) and embed the demo passages itself
 * (server/demo.ts). Config and tokenizer come from the session's `models.passageEncoder` id, the
 * way a browser tab resolves it (src/platform/browser/session-bundle.ts): `corag/tiny-contriever …`
 * (src/model/tiny with the app's bert-base-uncased tokenizer), a folder of the web app under
 * public/ (e.g. models/demo/retriever), or a hub id / http(s) URL (downloaded: config.json and
 * tokenizer.json only). The weights are the `passage_encoder.*` tensors of the session's global
 * model. Embedding runs through the same code as the browser (embedPassages), on Node's wasm
 * backend (cpu when wasm cannot start).
 */
import { existsSync } from 'node:fs';
import { isAbsolute, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { PASSAGE_ENCODER_WIRE_PREFIX } from '../src/corag/model-bundle';
import { embedPassages, type PassageText } from '../src/corag/retrieve';
import { decodeModel } from '../src/federated/codec';
import type { BertConfig } from '../src/model/bert/config';
import { bertParameterShapes } from '../src/model/bert/config';
import { parseBertCheckpointConfig, readConfigJson } from '../src/model/checkpoint';
import { isHubModelId, resolveModelSource, type ModelSource } from '../src/model/checkpoint/source';
import { Contriever } from '../src/model/contriever';
import { ParameterStore } from '../src/model/params';
import { tinyBertConfig } from '../src/model/tiny';
import { loadTokenizer, type TextTokenizer } from '../src/model/tokenizer';
import { folderModelSource } from '../src/platform/node/folder-source';

const PUBLIC_DIR = fileURLToPath(new URL('../public/', import.meta.url));
const TINY_RETRIEVER = /^corag\/tiny-contriever\b/;
const BERT_TOKENIZER = () => folderModelSource(PUBLIC_DIR + 'models/tokenizers/bert-base-uncased');

/** Where the config and tokenizer of a passage-encoder id come from (undefined: an unknown id). */
export function passageEncoderFiles(id: string): { readonly config: ModelSource | 'tiny'; readonly describe: string } | undefined {
  if (TINY_RETRIEVER.test(id)) return { config: 'tiny', describe: `${id} (src/model/tiny)` };
  if (!/^[a-z]+:/i.test(id) && !id.includes('..')) {
    // A folder of the web app (what browsers fetch), or a path on disk that lies inside public/.
    for (const folder of [resolve(PUBLIC_DIR, id), resolve(id)]) {
      const inside = relative(PUBLIC_DIR, folder);
      if (inside === '' || inside.startsWith('..') || isAbsolute(inside)) continue;
      if (existsSync(folder + sep + 'config.json')) return { config: folderModelSource(folder), describe: folder };
    }
  }
  if (/^https?:\/\//i.test(id) || isHubModelId(id)) {
    const source = resolveModelSource(id);
    return { config: source, describe: source.describe() };
  }
  return undefined;
}

async function tokenizerFor(source: ModelSource | 'tiny'): Promise<TextTokenizer> {
  if (source !== 'tiny' && (await source.fetchFile('tokenizer.json'))) return loadTokenizer(source);
  return loadTokenizer(BERT_TOKENIZER());
}

/** The tfjs backend embedding runs on: the process's current one, else wasm (cpu if wasm fails). */
async function ensureBackend(): Promise<string> {
  const { initBackend } = await import('../src/model/backend');
  // tf.getBackend() initialises the best registered backend when none is set; only set one
  // ourselves when nothing was chosen yet (tests and the CLI pick theirs first).
  const engine = tf.engine() as unknown as { backendName: string | null };
  if (!engine.backendName) await initBackend(['wasm', 'cpu']);
  return tf.getBackend();
}

export class PassageEncoderError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PassageEncoderError';
  }
}

/** One session's frozen passage encoder (config, tokenizer, `passage_encoder.*` weights). */
export class FrozenPassageEncoder {
  private constructor(
    private readonly contriever: Contriever,
    readonly tokenizer: TextTokenizer,
    readonly id: string,
    readonly backend: string,
  ) {}

  get config(): BertConfig {
    return this.contriever.config;
  }

  get dim(): number {
    return this.contriever.config.hidden_size;
  }

  /**
   * Loads the encoder named `id` with the weights of `globalModel` (safetensors bytes in the wire
   * namespace). Throws PassageEncoderError saying why it cannot (unknown id, offline hub, missing
   * tensors, a dimension that is not the session's).
   */
  static async load(id: string, globalModel: Uint8Array, expectedDim: number): Promise<FrozenPassageEncoder> {
    const files = passageEncoderFiles(id);
    if (!files)
      throw new PassageEncoderError(
        `"${id}" names no passage encoder the coordinator can load (expected corag/tiny-contriever…, a folder of the web app, a hub id or an http(s) URL)`,
      );
    let config: BertConfig;
    let tokenizer: TextTokenizer;
    try {
      config = files.config === 'tiny' ? tinyBertConfig() : parseBertCheckpointConfig(await readConfigJson(files.config), files.describe);
      tokenizer = await tokenizerFor(files.config);
    } catch (e) {
      throw new PassageEncoderError(`cannot load the config or tokenizer of passage encoder "${id}" from ${files.describe}: ${(e as Error).message}`);
    }
    if (config.hidden_size !== expectedDim)
      throw new PassageEncoderError(`passage encoder "${id}" makes ${config.hidden_size}-dimensional embeddings but the session stores ${expectedDim}`);
    const global = decodeModel(globalModel, 'global model');
    const backend = await ensureBackend();
    const store = new ParameterStore();
    try {
      for (const [name, shape] of bertParameterShapes(config)) {
        const t = global.get(PASSAGE_ENCODER_WIRE_PREFIX + name);
        if (!t)
          throw new PassageEncoderError(
            `the session's global model has no "${PASSAGE_ENCODER_WIRE_PREFIX}${name}" tensor, so the coordinator cannot recompute passage embeddings`,
          );
        if (!tf.util.arraysEqual([...t.shape], [...shape]))
          throw new PassageEncoderError(`"${PASSAGE_ENCODER_WIRE_PREFIX}${name}" has shape [${t.shape}] but the config of "${id}" implies [${shape}]`);
        store.set(name, tf.tensor(t.data, [...t.shape], 'float32'), false);
      }
      // Contriever holds two sides; the query side is never used here (a copy of the passage side).
      return new FrozenPassageEncoder(Contriever.fromParameters(config, store), tokenizer, id, backend);
    } finally {
      store.dispose();
    }
  }

  /** Passage embeddings exactly as a browser tab computes them (title + text, 512 tokens). */
  async embed(
    passages: readonly PassageText[],
    options: { batchSize?: number; onProgress?: (done: number, total: number) => void } = {},
  ): Promise<Float32Array[]> {
    const rows = await embedPassages({ retriever: this.contriever, retrieverTokenizer: this.tokenizer }, passages, {
      batchSize: options.batchSize ?? 16,
      onProgress: options.onProgress,
    });
    return rows.map((r) => r.slice());
  }

  dispose(): void {
    this.contriever.dispose();
  }
}
