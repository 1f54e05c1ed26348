/**
 * The accepted deltas of a round as robust strategies read them: coordinate chunk by coordinate
 * chunk, every client's values for the same range side by side. A coordinate-wise median or a
 * distance between two clients needs all clients at once, but never the whole model at once, so a
 * strategy working through this interface holds O(clients × chunk) values, not O(clients × model).
 * The coordinator's implementation reads the round's delta files (server/delta-files.ts); the
 * in-memory one here serves unit tests, the benchmark and the robustness table.
 */
import type { NamedTensors } from '../codec';

export interface DeltaChunks {
  /** Number of deltas (accepted updates), in a fixed order every pass repeats. */
  readonly count: number;
  /** Trained tensors and their element counts, in visiting order. */
  readonly tensors: ReadonlyArray<{ readonly name: string; readonly size: number }>;
  /**
   * Visits every coordinate once: rows[i] holds delta i's values for coordinates
   * [start, start + rows[i].length) of tensor `name`. Rows are only valid during the call.
   */
  forEachChunk(visit: (name: string, start: number, rows: readonly Float32Array[]) => void): void;
}

/** A delta per trained tensor, float64, as strategies produce it. */
export type DeltaVector = Map<string, Float64Array>;

export function zeroDelta(tensors: DeltaChunks['tensors']): DeltaVector {
  return new Map(tensors.map((t) => [t.name, new Float64Array(t.size)]));
}

/**
 * out[start + j] += k · row[j] for the chunk `row` of a tensor whose sum is `out`: the step every
 * weighted-mean strategy repeats. Refuses a chunk that does not fit (a reader bug), so the loop's
 * reads are all in range.
 */
export function addScaledChunk(out: Float64Array, start: number, k: number, row: Float32Array): void {
  if (start < 0 || start + row.length > out.length)
    throw new RangeError(`delta chunk [${start}, ${start + row.length}) is outside its ${out.length}-value tensor`);
  for (let j = 0; j < row.length; j++) out[start + j] = (out[start + j] ?? NaN) + k * (row[j] ?? NaN);
}

export function deltaNorm(delta: ReadonlyMap<string, ArrayLike<number>>): number {
  let s = 0;
  for (const d of delta.values()) {
    for (let i = 0; i < d.length; i++) {
      const v = d[i] ?? NaN; // i < d.length: never NaN
      s += v * v;
    }
  }
  return Math.sqrt(s);
}

/** Deltas held in memory, chunked as the file-backed reader would chunk them. */
export function inMemoryDeltaChunks(deltas: readonly NamedTensors[], chunkElements = 65_536): DeltaChunks {
  const [first] = deltas;
  if (!first) throw new Error('no deltas');
  const tensors = [...first].map(([name, t]) => ({ name, size: t.data.length }));
  for (const d of deltas) {
    for (const t of tensors) if (d.get(t.name)?.data.length !== t.size) throw new Error(`every delta needs tensor "${t.name}" of ${t.size} elements`);
  }
  return {
    count: deltas.length,
    tensors,
    forEachChunk(visit) {
      for (const t of tensors) {
        for (let start = 0; start < t.size; start += chunkElements) {
          const end = Math.min(t.size, start + chunkElements);
          visit(
            t.name,
            start,
            deltas.map((d) => d.get(t.name)!.data.subarray(start, end)),
          );
        }
      }
    },
  };
}
