/**
 * Update codec: a client's weight delta (local − global, trained tensors only) as ONE safetensors
 * body, fp32 or fp16, with the round, base version, example count and metrics in its metadata.
 * decodeUpdate is the server's gate: it checks every name, shape, dtype and value against the
 * global model before anything is aggregated, and names the problem when it refuses.
 */
import {
  bytesPerElement,
  parseSafetensors,
  readTensor,
  writeSafetensors,
  SafetensorsError,
  type ParsedSafetensors,
  type TensorToWrite,
} from '../model/safetensors';
import { UPDATE_METADATA } from './protocol';

/** A named tensor as plain data; the coordinator never needs TF.js. */
export interface NamedTensor {
  readonly shape: readonly number[];
  readonly data: Float32Array;
}
export type NamedTensors = ReadonlyMap<string, NamedTensor>;

export type WireDtype = 'F32' | 'F16';

export interface UpdateMeta {
  readonly round: number;
  readonly baseVersion: number;
  readonly numExamples: number;
  readonly metrics: Readonly<Record<string, number>>;
}

export interface DecodedUpdate extends UpdateMeta {
  readonly deltas: Map<string, NamedTensor>;
}

/** Why an update was refused; `code` is the stable error code the HTTP layer returns. */
export class UpdateError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'UpdateError';
  }
}

export function encodeUpdate(deltas: NamedTensors, meta: UpdateMeta, dtype: WireDtype = 'F32'): Uint8Array {
  const tensors = new Map<string, TensorToWrite>();
  for (const [name, t] of deltas) tensors.set(name, { shape: t.shape, data: t.data, dtype });
  return writeSafetensors(tensors, {
    [UPDATE_METADATA.round]: String(meta.round),
    [UPDATE_METADATA.baseVersion]: String(meta.baseVersion),
    [UPDATE_METADATA.numExamples]: String(meta.numExamples),
    [UPDATE_METADATA.metrics]: JSON.stringify(meta.metrics),
  });
}

function integerField(meta: Record<string, string>, key: string, min: number): number {
  const raw = meta[key];
  if (raw === undefined) throw new UpdateError('missing_metadata', `update metadata lacks "${key}"`);
  if (!/^\d{1,15}$/.test(raw) || Number(raw) < min) {
    throw new UpdateError('invalid_metadata', `update metadata "${key}" must be an integer >= ${min}, got ${JSON.stringify(raw)}`);
  }
  return Number(raw);
}

function metricsField(meta: Record<string, string>): Record<string, number> {
  const raw = meta[UPDATE_METADATA.metrics];
  if (raw === undefined || raw === '') return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    throw new UpdateError('invalid_metadata', `update metadata "${UPDATE_METADATA.metrics}" is not JSON`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new UpdateError('invalid_metadata', `update metadata "${UPDATE_METADATA.metrics}" must be a JSON object`);
  }
  const entries = Object.entries(parsed as Record<string, unknown>);
  if (entries.length > 32) throw new UpdateError('invalid_metadata', 'update metrics: at most 32 entries');
  const out: Record<string, number> = {};
  for (const [k, v] of entries) {
    if (k.length > 64 || typeof v !== 'number' || !Number.isFinite(v)) {
      throw new UpdateError('invalid_metadata', `update metric "${k.slice(0, 64)}" must be a finite number with a name of at most 64 characters`);
    }
    out[k] = v;
  }
  return out;
}

/**
 * The checks decodeUpdate makes from an update's parsed header alone, in its order: metadata
 * (round, base version, example count, metrics), then every tensor's name, dtype, shape and
 * alignment, then that none is missing. Shared with the coordinator's streamed reader
 * (server/update-file.ts), which then checks the values chunk by chunk.
 */
export function checkUpdateHeader(
  file: Pick<ParsedSafetensors, 'tensors' | 'metadata' | 'dataOffset'>,
  expected: ReadonlyMap<string, readonly number[]>,
): UpdateMeta {
  const meta = file.metadata as Record<string, string>;
  const round = integerField(meta, UPDATE_METADATA.round, 1);
  const baseVersion = integerField(meta, UPDATE_METADATA.baseVersion, 0);
  const numExamples = integerField(meta, UPDATE_METADATA.numExamples, 1);
  const metrics = metricsField(meta);

  for (const [name, info] of file.tensors) {
    const want = expected.get(name);
    if (!want) throw new UpdateError('unknown_tensor', `tensor "${name}" is not a trained parameter of this session's model`);
    if (info.dtype !== 'F32' && info.dtype !== 'F16') {
      throw new UpdateError('wrong_dtype', `tensor "${name}" has dtype ${info.dtype}; deltas must be F32 or F16`);
    }
    if (info.shape.length !== want.length || info.shape.some((d, i) => d !== want[i])) {
      throw new UpdateError('wrong_shape', `tensor "${name}" has shape [${info.shape.join(',')}] but the global model has [${want.join(',')}]`);
    }
    // Our encoder always aligns (header padded to 8 bytes, one dtype per update); a tensor at an
    // offset that is not a multiple of its element size is refused rather than guessed at.
    const offsetInFile = file.dataOffset + info.begin;
    if (offsetInFile % bytesPerElement(info.dtype) !== 0) {
      throw new UpdateError(
        'misaligned_tensor',
        `tensor "${name}" (${info.dtype}) starts at byte ${offsetInFile} of the body, not a multiple of ${bytesPerElement(info.dtype)}`,
      );
    }
  }
  for (const name of expected.keys()) {
    if (!file.tensors.has(name)) throw new UpdateError('missing_tensor', `update lacks trained tensor "${name}"`);
  }
  return { round, baseVersion, numExamples, metrics };
}

/**
 * Parses and validates an update against the tensors it must contain (`expected`: name → shape,
 * the trained subset of the global model). Throws UpdateError naming the first problem.
 */
export function decodeUpdate(body: Uint8Array, expected: ReadonlyMap<string, readonly number[]>): DecodedUpdate {
  let file;
  try {
    file = parseSafetensors(body, 'update');
  } catch (e) {
    if (e instanceof SafetensorsError) throw new UpdateError('malformed_safetensors', e.message);
    throw e;
  }
  const { round, baseVersion, numExamples, metrics } = checkUpdateHeader(file, expected);
  const deltas = new Map<string, NamedTensor>();
  for (const name of expected.keys()) {
    let read;
    try {
      read = readTensor(file, name);
    } catch (e) {
      throw new UpdateError('malformed_safetensors', `tensor "${name}": ${(e as Error).message}`);
    }
    const { shape, data } = read;
    const values = data as Float32Array;
    const elements = expected.get(name)!.reduce((a, b) => a * b, 1);
    if (!(values instanceof Float32Array) || values.length !== elements) {
      throw new UpdateError('malformed_safetensors', `tensor "${name}" decoded to ${values.length} values; its shape holds ${elements}`);
    }
    for (let i = 0; i < values.length; i++) {
      if (!Number.isFinite(values[i])) {
        throw new UpdateError('non_finite', `tensor "${name}" holds a non-finite value (${values[i]}) at flat index ${i}`);
      }
    }
    deltas.set(name, { shape, data: values });
  }
  return { round, baseVersion, numExamples, metrics, deltas };
}

/** Reads a model (all float tensors, widened to float32) from safetensors bytes. */
export function decodeModel(bytes: Uint8Array, source = 'model'): Map<string, NamedTensor> {
  const file = parseSafetensors(bytes, source);
  const out = new Map<string, NamedTensor>();
  for (const [name, info] of file.tensors) {
    if (info.dtype !== 'F32' && info.dtype !== 'F16' && info.dtype !== 'BF16') {
      throw new SafetensorsError(`${source}: tensor "${name}" has dtype ${info.dtype}; model weights must be F32, F16 or BF16`);
    }
    const { shape, data } = readTensor(file, name);
    out.set(name, { shape, data: data as Float32Array });
  }
  return out;
}

/** A model as one F32 safetensors body. */
export function encodeModel(tensors: NamedTensors, metadata?: Record<string, string>): Uint8Array {
  const out = new Map<string, TensorToWrite>();
  for (const [name, t] of tensors) out.set(name, { shape: t.shape, data: t.data, dtype: 'F32' });
  return writeSafetensors(out, metadata);
}
