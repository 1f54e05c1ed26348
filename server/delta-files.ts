/**
 * The accepted deltas of a round for strategies that need all of them at close (norm-clip, median,
 * trimmed-mean, multi-krum, centered-clip): each accepted update's validated delta is written as
 * an immutable F32 safetensors file `rounds/<n>/delta-<seq>.safetensors`, atomically, BEFORE the
 * transaction that records the update with that seq (the same protocol as the FedAvg sum files:
 * an orphan from a crash is deleted on restart; a committed one is named by its updates row).
 * At close they are read back in coordinate chunks with positioned reads, so aggregation holds
 * O(clients × chunk) values, never O(clients × model). Disk: O(clients × model) until the round
 * closes and its folder is removed.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { endianness } from 'node:os';
import { encodeModel, type NamedTensors } from '../src/federated/codec';
import type { DeltaChunks } from '../src/federated/strategies/delta-chunks';
import { writeFileAtomic } from '../src/platform/node/atomic-file';

if (endianness() !== 'LE') throw new Error('the delta-file reader assumes a little-endian machine');

export function writeDeltaFile(path: string, deltas: NamedTensors): void {
  writeFileAtomic(path, [encodeModel(deltas)]);
}

interface OpenDelta {
  readonly fd: number;
  /** Absolute byte offset of each tensor's first element. */
  readonly offsets: ReadonlyMap<string, number>;
}

function openDelta(path: string, shapes: ReadonlyMap<string, readonly number[]>): OpenDelta {
  const fd = openSync(path, 'r');
  try {
    const size = fstatSync(fd).size;
    const lenBytes = Buffer.alloc(8);
    if (readSync(fd, lenBytes, 0, 8, 0) !== 8) throw new Error(`${path}: truncated delta file`);
    const headerLen = Number(lenBytes.readBigUInt64LE(0));
    if (8 + headerLen > size) throw new Error(`${path}: truncated delta file header`);
    const headerBytes = Buffer.alloc(headerLen);
    readSync(fd, headerBytes, 0, headerLen, 8);
    const header = JSON.parse(headerBytes.toString('utf8')) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
    const offsets = new Map<string, number>();
    for (const [name, shape] of shapes) {
      const t = header[name];
      const elements = shape.reduce((a, b) => a * b, 1);
      if (!t || t.dtype !== 'F32' || t.shape.join(',') !== shape.join(',') || t.data_offsets[1] - t.data_offsets[0] !== elements * 4) {
        throw new Error(`${path}: delta file lacks F32 tensor "${name}" [${shape.join(',')}]`);
      }
      const begin = 8 + headerLen + t.data_offsets[0];
      if (begin + elements * 4 > size) throw new Error(`${path}: delta file is truncated in tensor "${name}"`);
      offsets.set(name, begin);
    }
    return { fd, offsets };
  } catch (e) {
    closeSync(fd);
    const message = (e as Error).message;
    throw new Error(message.startsWith(path) ? message : `${path}: ${message}`);
  }
}

/** The delta files `paths` (in that order) as DeltaChunks; call close() when done. */
export function fileDeltaChunks(
  paths: readonly string[],
  shapes: ReadonlyMap<string, readonly number[]>,
  chunkElements = 65_536,
): DeltaChunks & { close(): void } {
  const files: OpenDelta[] = [];
  try {
    for (const p of paths) files.push(openDelta(p, shapes));
  } catch (e) {
    for (const f of files) closeSync(f.fd);
    throw e;
  }
  const tensors = [...shapes].map(([name, shape]) => ({ name, size: shape.reduce((a, b) => a * b, 1) }));
  const buffers = files.map(() => new Float32Array(chunkElements));
  return {
    count: files.length,
    tensors,
    forEachChunk(visit) {
      for (const t of tensors) {
        for (let start = 0; start < t.size; start += chunkElements) {
          const len = Math.min(chunkElements, t.size - start);
          const rows = files.map((f, i) => {
            const view = new Uint8Array(buffers[i].buffer, 0, len * 4);
            const position = f.offsets.get(t.name)! + start * 4;
            let got = 0;
            while (got < view.byteLength) {
              const n = readSync(f.fd, view, got, view.byteLength - got, position + got);
              if (n === 0) throw new Error(`delta file ended early in tensor "${t.name}"`);
              got += n;
            }
            return buffers[i].subarray(0, len);
          });
          visit(t.name, start, rows);
        }
      }
    },
    close() {
      for (const f of files) closeSync(f.fd);
    },
  };
}
