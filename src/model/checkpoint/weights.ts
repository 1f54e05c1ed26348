/**
 * Reads a Hugging Face checkpoint's files from a ModelSource: `config.json`, and the weights as
 * one `model.safetensors` or as shards listed by `model.safetensors.index.json`
 * (`{"weight_map": {tensor: shard file}}`), else the same two layouts of `pytorch_model.bin`. Everything is parsed and cross-checked here, so the
 * loaders above see only consistent, named tensors and every error names the file at fault.
 */
import { parseSafetensors, SafetensorsError, type ParsedSafetensors, type TensorInfo } from '../safetensors';
import { type ModelSource } from './source';
import { isTorchBinError, readTorchBin, type TorchBinTensor } from './torch-bin';

export class CheckpointError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CheckpointError';
  }
}

export const CONFIG_FILE = 'config.json';
export const WEIGHTS_FILE = 'model.safetensors';
export const WEIGHTS_INDEX_FILE = 'model.safetensors.index.json';
/** PyTorch pickles (`torch.save`), read only when no safetensors weights exist (see torch-bin.ts). */
export const TORCH_WEIGHTS_FILE = 'pytorch_model.bin';
export const TORCH_WEIGHTS_INDEX_FILE = 'pytorch_model.bin.index.json';

/** Download progress of one file of the checkpoint. */
export interface FileProgress {
  readonly file: string;
  readonly loadedBytes: number;
  readonly totalBytes: number | undefined;
}

export type CheckpointProgress = (progress: FileProgress) => void;

/**
 * Where one tensor lives: its parsed file (shared by all tensors of a safetensors shard; a one-tensor
 * view for each tensor of a pytorch_model.bin) and header entry.
 */
export interface WeightLocation {
  readonly file: string;
  readonly parsed: ParsedSafetensors;
  readonly info: TensorInfo;
}

/** All tensors of a checkpoint by name, whichever file holds them. */
export interface CheckpointWeights {
  readonly tensors: ReadonlyMap<string, WeightLocation>;
  /** The weight files read, in order. */
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

function torchTensorLocation(file: string, name: string, tensor: TorchBinTensor): WeightLocation {
  // Each tensor becomes a one-tensor safetensors view over its (usually uncopied) bytes, so the
  // loaders read both formats the same way (readTensor widens F16/BF16 to float32).
  const info: TensorInfo = { name, dtype: tensor.dtype, shape: tensor.shape, begin: 0, end: tensor.bytes.byteLength };
  const parsed: ParsedSafetensors = { tensors: new Map([[name, info]]), metadata: {}, bytes: tensor.bytes, dataOffset: 0 };
  return { file, parsed, info };
}

function parseTorchWeightsFile(bytes: Uint8Array, location: string, file: string): Map<string, WeightLocation> {
  let tensors: Map<string, TorchBinTensor>;
  try {
    tensors = readTorchBin(bytes, location);
  } catch (e) {
    // Messages already start with the location; "refused ..." ones say the file may be malicious.
    if (isTorchBinError(e)) throw new CheckpointError(e.message);
    throw e;
  }
  const out = new Map<string, WeightLocation>();
  for (const [name, tensor] of tensors) out.set(name, torchTensorLocation(file, name, tensor));
  return out;
}

function parseSafetensorsWeightsFile(bytes: Uint8Array, location: string, file: string): Map<string, WeightLocation> {
  const parsed = parseWeightsFile(bytes, location);
  const out = new Map<string, WeightLocation>();
  for (const info of parsed.tensors.values()) out.set(info.name, { file, parsed, info });
  return out;
}

/** A weights format: its single file, its shard index, and how one file's tensors are read. */
interface WeightsFormat {
  readonly single: string;
  readonly index: string;
  parse(bytes: Uint8Array, location: string, file: string): Map<string, WeightLocation>;
}

/** In order of preference: safetensors (no code, zero-copy) first; the torch pickle only when it is all there is. */
const FORMATS: readonly WeightsFormat[] = [
  { single: WEIGHTS_FILE, index: WEIGHTS_INDEX_FILE, parse: parseSafetensorsWeightsFile },
  { single: TORCH_WEIGHTS_FILE, index: TORCH_WEIGHTS_INDEX_FILE, parse: parseTorchWeightsFile },
];

/**
 * Reads the weights from the first layout present: `model.safetensors`, the sharded
 * `model.safetensors.index.json`, `pytorch_model.bin`, then `pytorch_model.bin.index.json`.
 * Each shard is fetched once; the index and the shards must agree exactly (every indexed tensor in
 * its shard, no shard tensor missing from the index or claimed by two shards).
 */
export async function readCheckpointWeights(source: ModelSource, onProgress?: CheckpointProgress): Promise<CheckpointWeights> {
  for (const format of FORMATS) {
    const single = await fetchFile(source, format.single, onProgress);
    if (single) return { tensors: format.parse(single, where(source, format.single), format.single), files: [format.single] };
    const indexBytes = await fetchFile(source, format.index);
    if (indexBytes) return readShards(source, format, indexBytes, onProgress);
  }
  const names = FORMATS.flatMap((f) => [f.single, f.index]);
  throw new CheckpointError(`missing weights: ${source.describe()} has none of ${names.slice(0, -1).join(', ')} or ${names[names.length - 1]}`);
}

async function readShards(source: ModelSource, format: WeightsFormat, indexBytes: Uint8Array, onProgress?: CheckpointProgress): Promise<CheckpointWeights> {
  const indexLocation = where(source, format.index);
  const index = parseWeightIndex(indexBytes, indexLocation);
  const shardNames = [...new Set(index.values())];
  const tensors = new Map<string, WeightLocation>();
  // One shard at a time: shards of a large model are hundreds of megabytes each.
  for (const shard of shardNames) {
    const bytes = await fetchFile(source, shard, onProgress);
    if (!bytes) throw new CheckpointError(`missing shard: ${indexLocation} lists ${shard}, which ${source.describe()} does not have`);
    for (const [name, location] of format.parse(bytes, where(source, shard), shard)) {
      const listed = index.get(name);
      if (listed === undefined) {
        throw new CheckpointError(`${where(source, shard)} holds tensor "${name}", which ${format.index} does not list`);
      }
      if (listed !== shard) {
        throw new CheckpointError(`${where(source, shard)} holds tensor "${name}", which ${format.index} places in ${listed}`);
      }
      tensors.set(name, location);
    }
  }
  for (const [tensor, shard] of index) {
    if (!tensors.has(tensor)) {
      throw new CheckpointError(`missing tensor: ${indexLocation} places "${tensor}" in ${shard}, but that file does not contain it`);
    }
  }
  return { tensors, files: shardNames };
}
