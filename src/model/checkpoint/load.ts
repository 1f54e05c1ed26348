/**
 * Checkpoint -> ParameterStore. The generic loader takes every tensor as it is; the typed
 * loaders (t5.ts, bert.ts) go through `buildCheckedParameters`, which checks the checkpoint
 * against the parameter table a config implies, so a model never runs on weights that do not
 * fit it.
 */
import * as tf from '@tensorflow/tfjs-core';
import { ParameterStore } from '../params';
import { readTensor } from '../safetensors';
import { loadTokenizer, type TextTokenizer } from '../tokenizer';
import { type ModelSource } from './source';
import { CheckpointError, readCheckpointWeights, readConfigJson, type CheckpointProgress, type CheckpointWeights, type WeightLocation } from './weights';

export interface LoadCheckpointOptions {
  /** Byte progress per file (config, weights, shards). */
  onProgress?: CheckpointProgress;
}

export interface LoadedCheckpoint {
  /** The parsed config.json, unvalidated. */
  readonly config: Record<string, unknown>;
  /**
   * Every floating-point tensor of the checkpoint, as float32 variables named as in the file; integer
   * tensors are buffers (e.g. BERT's `position_ids`), not parameters, and are left out. The caller owns it.
   */
  readonly params: ParameterStore;
}

function isFloat(location: WeightLocation): boolean {
  const d = location.info.dtype;
  return d === 'F32' || d === 'F16' || d === 'BF16' || d === 'F64';
}

function toFloatTensor(name: string, location: WeightLocation): tf.Tensor {
  if (!isFloat(location)) {
    throw new CheckpointError(`tensor "${name}" in ${location.file} has dtype ${location.info.dtype}; model parameters must be F32, F16 or BF16`);
  }
  const { shape, data } = readTensor(location.parsed, location.info.name);
  return tf.tensor(data instanceof Float32Array ? data : Float32Array.from(data), shape, 'float32');
}

/** Builds a store from chosen tensors, disposing what was built if any tensor fails. */
function buildStore(entries: Iterable<[string, WeightLocation]>): ParameterStore {
  const params = new ParameterStore();
  try {
    for (const [name, location] of entries) params.set(name, toFloatTensor(name, location));
  } catch (e) {
    params.dispose();
    throw e;
  }
  return params;
}

/** Loads `config.json` and all weights (single file or shards) of a Hugging Face checkpoint. */
export async function loadCheckpoint(source: ModelSource, options: LoadCheckpointOptions = {}): Promise<LoadedCheckpoint> {
  const config = await readConfigJson(source);
  const weights = await readCheckpointWeights(source, options.onProgress);
  const floats = [...weights.tensors].filter(([, location]) => isFloat(location));
  return { config, params: buildStore(floats) };
}

/** How a model reads a checkpoint's tensor names. */
export interface ParameterNaming {
  /** Model family for messages ("T5", "BERT"). */
  readonly model: string;
  /**
   * The canonical name a checkpoint tensor stands for, or `null` for a known tensor this model
   * does not use (pooler, aliases of the shared embedding). Unknown names map to themselves.
   */
  canonical(checkpointName: string): string | null;
}

const MAX_NAMES_IN_MESSAGE = 5;

function listNames(names: string[]): string {
  const shown = names
    .slice(0, MAX_NAMES_IN_MESSAGE)
    .map((n) => `"${n}"`)
    .join(', ');
  return names.length > MAX_NAMES_IN_MESSAGE ? `${shown} and ${names.length - MAX_NAMES_IN_MESSAGE} more` : shown;
}

/**
 * Checks a checkpoint against the expected parameter table and loads exactly those parameters:
 * every expected name present once with its expected shape; nothing unexpected besides the
 * tensors `naming` declares harmless.
 */
export function buildCheckedParameters(
  weights: CheckpointWeights,
  expected: ReadonlyMap<string, readonly number[]>,
  naming: ParameterNaming,
  sourceName: string,
): ParameterStore {
  const chosen = new Map<string, WeightLocation>();
  const unexpected: string[] = [];
  for (const [fileName, location] of weights.tensors) {
    const name = naming.canonical(fileName);
    if (name === null) continue;
    const shape = expected.get(name);
    if (!shape) {
      unexpected.push(fileName);
      continue;
    }
    const previous = chosen.get(name);
    if (previous) {
      throw new CheckpointError(
        `${sourceName}: tensor "${name}" appears twice ("${previous.info.name}" in ${previous.file} and "${fileName}" in ${location.file})`,
      );
    }
    const actual = location.info.shape;
    if (actual.length !== shape.length || actual.some((d, i) => d !== shape[i])) {
      throw new CheckpointError(
        `shape mismatch: tensor "${fileName}" in ${sourceName}/${location.file} has shape [${actual.join(', ')}] but the ${naming.model} config expects [${shape.join(', ')}]`,
      );
    }
    chosen.set(name, location);
  }
  const missing = [...expected.keys()].filter((n) => !chosen.has(n));
  if (missing.length) {
    throw new CheckpointError(`missing tensor: ${sourceName} lacks ${missing.length} ${naming.model} parameter(s) the config calls for: ${listNames(missing)}`);
  }
  if (unexpected.length) {
    throw new CheckpointError(
      `${sourceName} holds ${unexpected.length} tensor(s) that are not part of a ${naming.model} model with this config: ${listNames(unexpected)} (does config.json match the weights?)`,
    );
  }
  return buildStore(chosen);
}

export interface LoadModelOptions extends LoadCheckpointOptions {
  /** Where the tokenizer comes from: the checkpoint's own source (default), another source, or false for none. */
  tokenizer?: ModelSource | false;
}

export interface LoadedModel<Config> {
  readonly config: Config;
  /** Parameters under their canonical Hugging Face names; the caller owns (and disposes) them. */
  readonly params: ParameterStore;
  /** null only when loading was asked to skip it (`tokenizer: false`). */
  readonly tokenizer: TextTokenizer | null;
  /** Where it was loaded from, for display. */
  readonly source: string;
}

/** The loading steps both typed loaders share; `describeModel` parses the config and names tensors. */
export async function loadTypedCheckpoint<Config>(
  source: ModelSource,
  options: LoadModelOptions,
  describeModel: (
    configJson: Record<string, unknown>,
    sourceName: string,
  ) => {
    config: Config;
    expected: ReadonlyMap<string, readonly number[]>;
    naming: ParameterNaming;
    vocabSize: number;
  },
): Promise<LoadedModel<Config>> {
  const sourceName = source.describe();
  const configJson = await readConfigJson(source);
  const { config, expected, naming, vocabSize } = describeModel(configJson, sourceName);
  // The tokenizer is small and fails fast: check it before downloading the weights.
  const tokenizer = options.tokenizer === false ? null : await loadTokenizer(options.tokenizer ?? source);
  if (tokenizer && tokenizer.vocabSize > vocabSize) {
    throw new CheckpointError(
      `tokenizer does not fit the model: it has ${tokenizer.vocabSize} tokens but the ${naming.model} embedding in ${sourceName} has only ${vocabSize} rows`,
    );
  }
  const weights = await readCheckpointWeights(source, options.onProgress);
  const params = buildCheckedParameters(weights, expected, naming, sourceName);
  return { config, params, tokenizer, source: sourceName };
}
