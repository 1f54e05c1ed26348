/**
 * The round's running sum Σ weight·delta on disk: a safetensors file of F64 tensors (float64 so a
 * thousand fp32 deltas add up without drift). Each accepted update writes a NEW file
 * `sum-<seq>.safetensors` atomically; SQLite records which seq is in effect in the same
 * transaction that records the update, so a crash between the two leaves an orphan file that the
 * restart deletes — never a sum that counts an update the database does not.
 */
import { readFileSync } from 'node:fs';
import { endianness } from 'node:os';
import { parseSafetensors } from '../src/model/safetensors';
import { emptyRunningSum, type RunningSum } from '../src/federated/strategy';
import { writeFileAtomic } from '../src/platform/node/atomic-file';

if (endianness() !== 'LE') throw new Error('the running-sum file format assumes a little-endian machine');

export function writeSumFile(path: string, sum: RunningSum): void {
  const header: Record<string, unknown> = { __metadata__: { weight_total: String(sum.weightTotal) } };
  let offset = 0;
  for (const [name, t] of sum.sums) {
    header[name] = { dtype: 'F64', shape: [...t.shape], data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const headerBytes = Buffer.from(json, 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(headerBytes.byteLength));
  const chunks: Uint8Array[] = [len, headerBytes];
  for (const t of sum.sums.values()) chunks.push(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  writeFileAtomic(path, chunks);
}

/** Reads a sum file written by writeSumFile; shapes must match the round's trained tensors. */
export function readSumFile(path: string, shapes: ReadonlyMap<string, readonly number[]>, weightTotal: number): RunningSum {
  const file = parseSafetensors(readFileSync(path), path);
  const sums = new Map<string, { shape: readonly number[]; data: Float64Array }>();
  for (const [name, shape] of shapes) {
    const info = file.tensors.get(name);
    if (!info || info.dtype !== 'F64' || info.shape.join(',') !== shape.join(',')) {
      throw new Error(`${path}: running sum lacks F64 tensor "${name}" [${shape.join(',')}]`);
    }
    const start = file.dataOffset + info.begin;
    // Copy (the sum is mutated in place by later updates); Buffer#slice would only be a view.
    const copy = new Uint8Array(info.end - info.begin);
    copy.set(file.bytes.subarray(start, file.dataOffset + info.end));
    sums.set(name, { shape, data: new Float64Array(copy.buffer) });
  }
  return { sums, weightTotal };
}

/**
 * The round's running sum over several coordinator processes: each process's partial sum file
 * (with its weight total) added in float64, as one process would have summed the same updates
 * (only the order of the additions differs: ~1e-16 relative).
 */
export function mergeSumFiles(parts: ReadonlyArray<{ path: string; weightTotal: number }>, shapes: ReadonlyMap<string, readonly number[]>): RunningSum {
  const merged = emptyRunningSum(shapes);
  for (const part of parts) {
    const sum = readSumFile(part.path, shapes, part.weightTotal);
    for (const [name, t] of sum.sums) {
      const acc = merged.sums.get(name)!.data;
      for (let i = 0; i < acc.length; i++) acc[i] += t.data[i];
    }
    merged.weightTotal += part.weightTotal;
  }
  return merged;
}
