/**
 * The session's frozen passage encoder, held by the coordinator so it can recompute contributed
 * embeddings instead of trusting them (server/passage-intake.ts) and embed the demo passages itself
 * (server/demo.ts). Config and tokenizer come from the session's `models.passageEncoder` id, the
 * way a browser tab resolves it (src/platform/browser/session-bundle.ts): `corag/tiny-contriever …`
 * (src/model/tiny with the app's bert-base-uncased tokenizer), a folder of the web app under
 * public/ (e.g. models/demo/retriever), or a hub id / http(s) URL (downloaded: config.json and
 * tokenizer.json only). The weights are the `passage_encoder.*` tensors of the session's global
 * model. Embedding runs through the same code as the browser's embedding worker
 * (src/corag/passage-encoder.ts): tfjs on Node's wasm backend (cpu when wasm cannot start) at
 * first, then ONNX Runtime Web's wasm build once its graph passed the same equality gate as in a
 * tab (issue 20: faster at equal embeddings); tfjs stays when it does not.
 */
import { existsSync } from 'node:fs';
import { isAbsolute, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { PASSAGE_ENCODER_WIRE_PREFIX } from '../src/corag/model-bundle';
import { PassageEncoder, type PassageEncoderOptions } from '../src/corag/passage-encoder';
import { parsePassageEncoderSetting, type PassageEncoderReport, type PassageEncoderSetting } from '../src/corag/passage-encoder-choice';
import type { PassageText } from '../src/corag/retrieve';
import { decodeModel } from '../src/federated/codec';
import type { BackendName } from '../src/model/backend';
import type { BertConfig } from '../src/model/bert/config';
import { bertParameterShapes } from '../src/model/bert/config';
import { parseBertCheckpointConfig, readConfigJson } from '../src/model/checkpoint';
import { isHubModelId, resolveModelSource, type ModelSource } from '../src/model/checkpoint/source';
import { configureOrtOnce } from '../src/model/onnx/ort-runtime';
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

/**
 * The engine setting when the caller gives none: CORAG_PASSAGE_ENCODER (auto | tfjs | onnx),
 * else auto. An unknown value is an error the operator sees at the first load.
 */
function settingFromEnvironment(): PassageEncoderSetting {
  return parsePassageEncoderSetting(process.env.CORAG_PASSAGE_ENCODER);
}

export class PassageEncoderError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PassageEncoderError';
  }
}

export interface FrozenPassageEncoderOptions {
  /**
   * Which engine recomputes embeddings (src/corag/passage-encoder-choice.ts): `auto` (default,
   * or CORAG_PASSAGE_ENCODER) = ONNX Runtime's wasm build once its graph passed the equality gate
   * against tfjs, tfjs until then and whenever it does not; `tfjs`; `onnx` (still gated).
   */
  readonly setting?: PassageEncoderSetting;
  /** Where a refused ONNX engine is said (default console.warn). */
  readonly warn?: (message: string) => void;
  /** Tests: other ONNX bytes or weights for the gate to refuse (PassageEncoderOptions.onnxModel). */
  readonly onnxModel?: PassageEncoderOptions['onnxModel'];
}

/**
 * One session's frozen passage encoder (config, tokenizer, `passage_encoder.*` weights), on the
 * tab's own two engines (src/corag/passage-encoder.ts): tfjs from the start, ONNX Runtime Web
 * (its wasm build runs in Node too) built and gated in the background, taking over once it passed.
 */
export class FrozenPassageEncoder {
  private constructor(
    private readonly encoder: PassageEncoder,
    readonly id: string,
    readonly backend: string,
  ) {}

  get config(): BertConfig {
    return this.encoder.config;
  }

  get tokenizer(): TextTokenizer {
    return this.encoder.tokenizer;
  }

  get dim(): number {
    return this.encoder.config.hidden_size;
  }

  /** Which engine recomputes now, and why. */
  get report(): PassageEncoderReport {
    return this.encoder.report;
  }

  /** Settles once the background ONNX build ended (switched or refused); at once when none runs. */
  get settled(): Promise<PassageEncoderReport> {
    return this.encoder.settled;
  }

  /**
   * Loads the encoder named `id` with the weights of `globalModel` (safetensors bytes in the wire
   * namespace). Throws PassageEncoderError saying why it cannot (unknown id, offline hub, missing
   * tensors, a dimension that is not the session's).
   */
  static async load(id: string, globalModel: Uint8Array, expectedDim: number, options: FrozenPassageEncoderOptions = {}): Promise<FrozenPassageEncoder> {
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
    return FrozenPassageEncoder.fromConfig(config, tokenizer, id, globalModel, options);
  }

  /** `load` with the config and tokenizer given (benches: shapes no folder holds). */
  static async fromConfig(
    config: BertConfig,
    tokenizer: TextTokenizer,
    id: string,
    globalModel: Uint8Array,
    options: FrozenPassageEncoderOptions = {},
  ): Promise<FrozenPassageEncoder> {
    let setting: PassageEncoderSetting;
    try {
      setting = options.setting ?? settingFromEnvironment();
    } catch (e) {
      throw new PassageEncoderError(`CORAG_PASSAGE_ENCODER: ${(e as Error).message}`);
    }
    const global = decodeModel(globalModel, 'global model');
    const weights = new Map<string, Float32Array>();
    for (const [name, shape] of bertParameterShapes(config)) {
      const t = global.get(PASSAGE_ENCODER_WIRE_PREFIX + name);
      if (!t)
        throw new PassageEncoderError(
          `the session's global model has no "${PASSAGE_ENCODER_WIRE_PREFIX}${name}" tensor, so the coordinator cannot recompute passage embeddings`,
        );
      if (!tf.util.arraysEqual([...t.shape], [...shape]))
        throw new PassageEncoderError(`"${PASSAGE_ENCODER_WIRE_PREFIX}${name}" has shape [${t.shape}] but the config of "${id}" implies [${shape}]`);
      weights.set(name, t.data);
    }
    const backend = await ensureBackend();
    // One thread, as tfjs's wasm backend has in Node: the coordinator's recompute should not take every core.
    configureOrtOnce({ threads: 1 });
    const encoder = PassageEncoder.fromWeights(config, tokenizer, weights, {
      setting,
      backend: { name: backend as BackendName },
      ...(options.warn ? { warn: options.warn } : {}),
      ...(options.onnxModel ? { onnxModel: options.onnxModel } : {}),
    });
    return new FrozenPassageEncoder(encoder, id, backend);
  }

  /** Passage embeddings as a browser tab computes them (title + text, 512 tokens), on the engine that runs now. */
  async embed(
    passages: readonly PassageText[],
    options: { batchSize?: number; onProgress?: (done: number, total: number) => void } = {},
  ): Promise<Float32Array[]> {
    const rows = await this.encoder.embed(passages, {
      batchSize: options.batchSize ?? 16,
      ...(options.onProgress ? { onProgress: options.onProgress } : {}),
    });
    return rows.map((r) => r.slice());
  }

  dispose(): Promise<void> {
    return this.encoder.dispose();
  }
}
