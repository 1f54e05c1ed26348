/**
 * An admitted update read from the temp file its body was streamed into (server/upload-body.ts
 * `receiveUploadToFile`), in bounded memory: the header is parsed first (its size is already
 * bounded), then every tensor's bytes are read in chunks of `chunkBytes`, so validating and
 * aggregating an upload holds O(chunk) of it, never O(body).
 *
 * `openUpdateFile` makes every check decodeUpdate (src/federated/codec.ts) makes, in its order and
 * with its error codes and messages: the safetensors structure, the metadata, each tensor's name,
 * dtype, shape and alignment, none missing, then each value finite; it also computes the delta's L2
 * norm exactly as deltaNorm would (float64, tensors in the round's order). It touches no state.
 * A second pass then adds the values to FedAvg's running sum (`addToRunningSum`, the arithmetic of
 * addWeighted) or writes them as an F32 delta file atomically (`writeDeltaFileFrom`, the bytes
 * writeDeltaFile would write), chunk by chunk.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { checkUpdateHeader, UpdateError, type UpdateMeta } from '../src/federated/codec';
import type { RunningSum } from '../src/federated/strategy';
import { bytesPerElement, decodeFloatChunk, parseSafetensorsHeader, safetensorsHeaderLength, SafetensorsError } from '../src/model/safetensors';
import { writeFileAtomicStreamed } from '../src/platform/node/atomic-file';

/** Bytes of an upload read at a time (a multiple of every element size). */
export const UPDATE_CHUNK_BYTES = 1 << 20;

interface TensorSpan {
  readonly name: string;
  readonly shape: readonly number[];
  readonly dtype: 'F32' | 'F16';
  /** Absolute byte offset of the first element in the file. */
  readonly offset: number;
  readonly elements: number;
}

/** A validated update on disk; close() releases the file. */
export interface UpdateFile extends UpdateMeta {
  /** The file's size in bytes. */
  readonly bytes: number;
  /** L2 norm of the whole delta (float64). */
  readonly norm: number;
  /** The round's trained tensors, in its order, where they lie in the file. */
  readonly tensors: readonly TensorSpan[];
  /** Calls `visit` with each tensor's values in order, `chunkBytes` of the file at a time (float32). */
  forEachChunk(visit: (tensor: TensorSpan, start: number, values: Float32Array) => void | Promise<void>): Promise<void>;
  close(): Promise<void>;
}

async function readFully(fh: FileHandle, into: Uint8Array, position: number): Promise<void> {
  let got = 0;
  while (got < into.byteLength) {
    const { bytesRead } = await fh.read(into, got, into.byteLength - got, position + got);
    if (bytesRead === 0) throw new UpdateError('malformed_safetensors', `update: the file ended at byte ${position + got}`);
    got += bytesRead;
  }
}

/**
 * Opens and validates the update at `path` against the round's trained tensors (`expected`: name →
 * shape). Throws UpdateError naming the first problem (the file is closed then).
 */
export async function openUpdateFile(path: string, expected: ReadonlyMap<string, readonly number[]>, chunkBytes = UPDATE_CHUNK_BYTES): Promise<UpdateFile> {
  if (chunkBytes % 8 !== 0 || chunkBytes <= 0) throw new Error('chunkBytes must be a positive multiple of 8');
  const fh = await open(path, 'r');
  try {
    const size = (await fh.stat()).size;
    let tensorsInfo;
    let metadata;
    let dataOffset;
    try {
      const first8 = new Uint8Array(8);
      if (size >= 8) await readFully(fh, first8, 0);
      const n = safetensorsHeaderLength(first8, size, 'update');
      if (8 + n > size) throw new SafetensorsError(`update: truncated file: header needs ${n} bytes but only ${size - 8} follow`);
      const headerBytes = new Uint8Array(n);
      await readFully(fh, headerBytes, 8);
      dataOffset = 8 + n;
      ({ tensors: tensorsInfo, metadata } = parseSafetensorsHeader(headerBytes, size - dataOffset, 'update'));
    } catch (e) {
      if (e instanceof SafetensorsError) throw new UpdateError('malformed_safetensors', e.message);
      throw e;
    }
    const meta = checkUpdateHeader({ tensors: tensorsInfo, metadata, dataOffset }, expected);
    const tensors: TensorSpan[] = [...expected].map(([name, shape]) => {
      const info = tensorsInfo.get(name)!;
      return {
        name,
        shape,
        dtype: info.dtype as 'F32' | 'F16',
        offset: dataOffset + info.begin,
        elements: (info.end - info.begin) / bytesPerElement(info.dtype),
      };
    });
    const raw = new Uint8Array(chunkBytes);
    const values = new Float32Array(chunkBytes / 2);
    const forEachChunk = async (visit: (tensor: TensorSpan, start: number, values: Float32Array) => void | Promise<void>): Promise<void> => {
      for (const t of tensors) {
        const bpe = bytesPerElement(t.dtype);
        const perChunk = chunkBytes / bpe;
        for (let start = 0; start < t.elements; start += perChunk) {
          const len = Math.min(perChunk, t.elements - start);
          const bytes = raw.subarray(0, len * bpe);
          await readFully(fh, bytes, t.offset + start * bpe);
          decodeFloatChunk(t.dtype, bytes, values);
          await visit(t, start, values.subarray(0, len));
        }
      }
    };
    // First pass: every value finite, and the L2 norm (deltaNorm's float64 sum, in the same order).
    let squares = 0;
    await forEachChunk((t, start, v) => {
      for (let i = 0; i < v.length; i++) {
        const x = v[i];
        if (!Number.isFinite(x)) throw new UpdateError('non_finite', `tensor "${t.name}" holds a non-finite value (${x}) at flat index ${start + i}`);
        squares += x * x;
      }
    });
    return { ...meta, bytes: size, norm: Math.sqrt(squares), tensors, forEachChunk, close: () => fh.close() };
  } catch (e) {
    await fh.close();
    throw e;
  }
}

/** sum += weight · update, chunk by chunk (the arithmetic of addWeighted). Shapes were checked by openUpdateFile. */
export async function addToRunningSum(file: UpdateFile, sum: RunningSum, weight: number): Promise<void> {
  for (const t of file.tensors) {
    if (sum.sums.get(t.name)?.data.length !== t.elements) throw new Error(`running sum has no tensor "${t.name}" of ${t.elements} elements`);
  }
  await file.forEachChunk((t, start, v) => {
    const a = sum.sums.get(t.name)!.data;
    for (let i = 0; i < v.length; i++) a[start + i] += weight * v[i];
  });
  sum.weightTotal += weight;
}

/**
 * Writes the update's tensors as an F32 safetensors delta file at `path` (the bytes writeDeltaFile
 * would write: tensors in the round's order, no metadata), atomically and durably
 * (writeFileAtomicStreamed: a temp file in the same folder, fsync, rename, fsync the folder).
 */
export async function writeDeltaFileFrom(file: UpdateFile, path: string): Promise<void> {
  const header: Record<string, unknown> = {};
  let offset = 0;
  for (const t of file.tensors) {
    header[t.name] = { dtype: 'F32', shape: [...t.shape], data_offsets: [offset, offset + t.elements * 4] };
    offset += t.elements * 4;
  }
  let json = Buffer.from(JSON.stringify(header), 'utf8');
  const pad = (8 - (json.byteLength % 8)) % 8;
  if (pad) json = Buffer.concat([json, Buffer.alloc(pad, 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.byteLength));
  await writeFileAtomicStreamed(path, async (write) => {
    await write(len);
    await write(json);
    const bytes = Buffer.alloc(UPDATE_CHUNK_BYTES * 2);
    await file.forEachChunk(async (_t, _start, v) => {
      for (let i = 0; i < v.length; i++) bytes.writeFloatLE(v[i], 4 * i);
      await write(bytes.subarray(0, v.length * 4));
    });
  });
}
