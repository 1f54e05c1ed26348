/**
 * Reads a Hugging Face checkpoint's files from a ModelSource: `config.json`, and the weights as
 * one `model.safetensors` or as shards listed by `model.safetensors.index.json`
 * (`{"weight_map": {tensor: shard file}}`). Everything is parsed and cross-checked here, so the
 * loaders above see only consistent, named tensors and every error names the file at fault.
 */
import { parseSafetensors, SafetensorsError, type ParsedSafetensors, type TensorInfo } from '../safetensors';
import { type ModelSource } from './source';

export class CheckpointError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CheckpointError';
  }
}

export const CONFIG_FILE = 'config.json';
export const WEIGHTS_FILE = 'model.safetensors';
export const WEIGHTS_INDEX_FILE = 'model.safetensors.index.json';

/** Download progress of one file of the checkpoint. */
export interface FileProgress {
  readonly file: string;
  readonly loadedBytes: number;
  readonly totalBytes: number | undefined;
}

export type CheckpointProgress = (progress: FileProgress) => void;

/** Where one tensor lives: its parsed file (shared by all tensors of a shard) and header entry. */
export interface WeightLocation {
  readonly file: string;
  readonly parsed: ParsedSafetensors;
  readonly info: TensorInfo;
}

/** All tensors of a checkpoint by name, whichever file holds them. */
export interface CheckpointWeights {
  readonly tensors: ReadonlyMap<string, WeightLocation>;
  /** The safetensors files read, in order. */
  readonly files: readonly string[];
}

function where(source: ModelSource, file: string): string {
  const base = source.describe();
  return `${base}${base.endsWith('/') ? '' : '/'}${file}`;
}

async function fetchFile(source: ModelSource, file: string, onProgress?: CheckpointProgress): Promise<Uint8Array | null> {
  return source.fetchFile(file, onProgress && ((loadedBytes, totalBytes) => onProgress({ file, loadedBytes, totalBytes })));
}

function parseJson(bytes: Uint8Array, location: string): unknown {
  try {
    return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (e) {
    throw new CheckpointError(`${location} is not valid JSON (${(e as Error).message})`);
  }
}

/** The parsed `config.json` object (not yet validated against a model type). */
export async function readConfigJson(source: ModelSource): Promise<Record<string, unknown>> {
  const bytes = await fetchFile(source, CONFIG_FILE);
  if (!bytes) throw new CheckpointError(`missing config.json: ${source.describe()} has no ${CONFIG_FILE}`);
  const json = parseJson(bytes, where(source, CONFIG_FILE));
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    throw new CheckpointError(`${where(source, CONFIG_FILE)} must hold a JSON object`);
  }
  return json as Record<string, unknown>;
}

function parseWeightsFile(bytes: Uint8Array, location: string): ParsedSafetensors {
  try {
    return parseSafetensors(bytes, location);
  } catch (e) {
    // parseSafetensors already prefixes its messages with the location we pass.
    if (e instanceof SafetensorsError) throw new CheckpointError(`corrupt safetensors: ${e.message}`);
    throw e;
  }
}

/** Parses and checks `model.safetensors.index.json`: tensor name -> shard file name. */
function parseWeightIndex(bytes: Uint8Array, location: string): Map<string, string> {
  const json = parseJson(bytes, location);
  const weightMap = (json as { weight_map?: unknown } | null)?.weight_map;
  if (weightMap === null || typeof weightMap !== 'object' || Array.isArray(weightMap)) {
    throw new CheckpointError(`${location} has no "weight_map" object (tensor name -> shard file)`);
  }
  const index = new Map<string, string>();
  for (const [tensor, shard] of Object.entries(weightMap as Record<string, unknown>)) {
    if (typeof shard !== 'string' || shard.length === 0) {
      throw new CheckpointError(`${location}: weight_map["${tensor}"] must be a shard file name, got ${JSON.stringify(shard)}`);
    }
    index.set(tensor, shard);
  }
  if (index.size === 0) throw new CheckpointError(`${location}: weight_map is empty`);
  return index;
}

/**
 * Reads the weights: `model.safetensors` when present, else the sharded layout. Each shard is
 * fetched once; the index and the shards must agree exactly (every indexed tensor in its shard,
 * no shard tensor missing from the index or claimed by two shards).
 */
export async function readCheckpointWeights(source: ModelSource, onProgress?: CheckpointProgress): Promise<CheckpointWeights> {
  const single = await fetchFile(source, WEIGHTS_FILE, onProgress);
  if (single) {
    const parsed = parseWeightsFile(single, where(source, WEIGHTS_FILE));
    const tensors = new Map<string, WeightLocation>();
    for (const info of parsed.tensors.values()) tensors.set(info.name, { file: WEIGHTS_FILE, parsed, info });
    return { tensors, files: [WEIGHTS_FILE] };
  }
  const indexBytes = await fetchFile(source, WEIGHTS_INDEX_FILE);
  if (!indexBytes) {
    throw new CheckpointError(`missing weights: ${source.describe()} has neither ${WEIGHTS_FILE} nor ${WEIGHTS_INDEX_FILE}`);
  }
  const indexLocation = where(source, WEIGHTS_INDEX_FILE);
  const index = parseWeightIndex(indexBytes, indexLocation);
  const shardNames = [...new Set(index.values())];
  const tensors = new Map<string, WeightLocation>();
  // One shard at a time: shards of a large model are hundreds of megabytes each.
  for (const shard of shardNames) {
    const bytes = await fetchFile(source, shard, onProgress);
    if (!bytes) throw new CheckpointError(`missing shard: ${indexLocation} lists ${shard}, which ${source.describe()} does not have`);
    const parsed = parseWeightsFile(bytes, where(source, shard));
    for (const info of parsed.tensors.values()) {
      const listed = index.get(info.name);
      if (listed === undefined) {
        throw new CheckpointError(`${where(source, shard)} holds tensor "${info.name}", which ${WEIGHTS_INDEX_FILE} does not list`);
      }
      if (listed !== shard) {
        throw new CheckpointError(`${where(source, shard)} holds tensor "${info.name}", which ${WEIGHTS_INDEX_FILE} places in ${listed}`);
      }
      tensors.set(info.name, { file: shard, parsed, info });
    }
  }
  for (const [tensor, shard] of index) {
    if (!tensors.has(tensor)) {
      throw new CheckpointError(`missing tensor: ${indexLocation} places "${tensor}" in ${shard}, but that file does not contain it`);
    }
  }
  return { tensors, files: shardNames };
}
