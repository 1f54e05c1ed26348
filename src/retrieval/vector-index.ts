/**
 * Maximum-inner-product search over passage embeddings, behind one interface so the client can
 * keep its personal store in memory, persist it (IndexedDB in the browser) and swap in an ANN
 * index later without touching callers.
 *
 * ExactVectorIndex is the implementation: one growable row-major Float32Array, a linear scan and a
 * size-k min-heap (partial selection, O(n log k)), so recall is 1.0 by construction. voy-search
 * was measured against it and removed (docs/ARCHITECTURE.md "Vector index: exact, measured").
 * No Node or DOM APIs here.
 */

export interface ScoredId {
  readonly id: number;
  readonly score: number;
}

export interface VectorIndex {
  readonly dim: number;
  readonly size: number;
  /**
   * Adds one embedding per id (`embeddings` row-major [ids.length, dim], or one array per id).
   * Re-adding an id replaces its embedding.
   */
  add(ids: readonly number[], embeddings: Float32Array | readonly ArrayLike<number>[]): void;
  /** The k ids with the largest inner product with `query`, best first (ties: smaller id first). */
  search(query: ArrayLike<number>, k: number): ScoredId[];
  /** Removes the ids present; returns how many were removed. */
  remove(ids: readonly number[]): number;
  has(id: number): boolean;
  /** The stored embedding of `id` (a copy), or undefined. */
  embedding(id: number): Float32Array | undefined;
  /** A compact binary snapshot (restore with the implementation's static `restore`). */
  serialize(): Uint8Array;
}

const MAGIC = 0x58495643; // "CVIX" little-endian
const FORMAT_VERSION = 1;
const HEADER_BYTES = 16;

/** Min-heap of (score, id) of bounded size, whose root is the worst of the kept candidates. */
class TopK {
  private readonly scores: number[] = [];
  private readonly ids: number[] = [];

  constructor(private readonly k: number) {}

  /** The kept candidate at heap position i (callers stay inside the heap: a miss is a bug). */
  private entry(i: number): { score: number; id: number } {
    const score = this.scores[i];
    const id = this.ids[i];
    if (score === undefined || id === undefined) throw new RangeError(`TopK: no candidate at heap position ${i} of ${this.scores.length}`);
    return { id, score };
  }

  /** a is worse than b: lower score, or equal score and larger id. */
  private worse(i: number, j: number): boolean {
    const a = this.entry(i),
      b = this.entry(j);
    return a.score < b.score || (a.score === b.score && a.id > b.id);
  }

  private swap(i: number, j: number): void {
    const a = this.entry(i),
      b = this.entry(j);
    [this.scores[i], this.scores[j]] = [b.score, a.score];
    [this.ids[i], this.ids[j]] = [b.id, a.id];
  }

  offer(id: number, score: number): void {
    if (this.scores.length < this.k) {
      this.scores.push(score);
      this.ids.push(id);
      for (let i = this.scores.length - 1; i > 0;) {
        const parent = (i - 1) >> 1;
        if (!this.worse(i, parent)) break;
        this.swap(i, parent);
        i = parent;
      }
      return;
    }
    const root = this.entry(0);
    if (score < root.score || (score === root.score && id > root.id)) return;
    this.scores[0] = score;
    this.ids[0] = id;
    for (let i = 0; ;) {
      const l = 2 * i + 1,
        r = l + 1;
      let m = i;
      if (l < this.scores.length && this.worse(l, m)) m = l;
      if (r < this.scores.length && this.worse(r, m)) m = r;
      if (m === i) break;
      this.swap(i, m);
      i = m;
    }
  }

  sorted(): ScoredId[] {
    return this.ids.map((_, i) => this.entry(i)).sort((a, b) => b.score - a.score || a.id - b.id);
  }
}

export class ExactVectorIndex implements VectorIndex {
  private matrix: Float32Array;
  private ids: number[] = [];
  private readonly rowOf = new Map<number, number>();

  constructor(
    readonly dim: number,
    initialCapacity = 256,
  ) {
    if (!Number.isInteger(dim) || dim <= 0) throw new Error(`vector index: dimension must be a positive integer, got ${dim}`);
    this.matrix = new Float32Array(dim * Math.max(1, initialCapacity));
  }

  get size(): number {
    return this.ids.length;
  }

  has(id: number): boolean {
    return this.rowOf.has(id);
  }

  add(ids: readonly number[], embeddings: Float32Array | readonly ArrayLike<number>[]): void {
    const flat = embeddings instanceof Float32Array;
    const rows = flat ? embeddings.length / this.dim : embeddings.length;
    if (rows !== ids.length) throw new Error(`vector index: ${ids.length} ids but ${rows} embeddings of dimension ${this.dim}`);
    ids.forEach((id, i) => {
      if (!Number.isSafeInteger(id)) throw new Error(`vector index: id ${id} is not a safe integer`);
      const row = flat ? embeddings.subarray(i * this.dim, (i + 1) * this.dim) : embeddings[i];
      if (!row) throw new Error(`vector index: no embedding for id ${id}`);
      if (row.length !== this.dim) throw new Error(`vector index: embedding of id ${id} has ${row.length} values, the index has dimension ${this.dim}`);
      this.put(id, row);
    });
  }

  private put(id: number, embedding: ArrayLike<number>): void {
    let row = this.rowOf.get(id);
    if (row === undefined) {
      row = this.ids.length;
      if ((row + 1) * this.dim > this.matrix.length) {
        const grown = new Float32Array(Math.max(this.matrix.length * 2, (row + 1) * this.dim));
        grown.set(this.matrix);
        this.matrix = grown;
      }
      this.ids.push(id);
      this.rowOf.set(id, row);
    }
    this.matrix.set(embedding, row * this.dim);
  }

  /** O(dim) per id: the last row moves into the hole. */
  remove(ids: readonly number[]): number {
    let removed = 0;
    for (const id of ids) {
      const row = this.rowOf.get(id);
      if (row === undefined) continue;
      const last = this.ids.length - 1;
      if (row !== last) {
        this.matrix.copyWithin(row * this.dim, last * this.dim, (last + 1) * this.dim);
        const moved = this.ids[last];
        if (moved === undefined) throw new Error(`vector index: row ${last} has no id`);
        this.ids[row] = moved;
        this.rowOf.set(moved, row);
      }
      this.ids.pop();
      this.rowOf.delete(id);
      removed++;
    }
    return removed;
  }

  embedding(id: number): Float32Array | undefined {
    const row = this.rowOf.get(id);
    return row === undefined ? undefined : this.matrix.slice(row * this.dim, (row + 1) * this.dim);
  }

  search(query: ArrayLike<number>, k: number): ScoredId[] {
    if (query.length !== this.dim) throw new Error(`vector index: query has ${query.length} values, the index has dimension ${this.dim}`);
    if (!Number.isInteger(k) || k <= 0) throw new Error(`vector index: k must be a positive integer, got ${k}`);
    const top = new TopK(Math.min(k, this.ids.length));
    const q = Float32Array.from(query);
    const dim = this.dim;
    const m = this.matrix;
    const ids = this.ids;
    for (let row = 0; row < ids.length; row++) {
      let dot = 0;
      const base = row * dim;
      // q has dim values (checked above) and the matrix dim per row: `?? NaN` never applies.
      for (let j = 0; j < dim; j++) dot += (q[j] ?? NaN) * (m[base + j] ?? NaN);
      top.offer(ids[row] ?? NaN, dot); // row < ids.length: never NaN
    }
    return top.sorted();
  }

  /** Header (magic, format, dim, count), then float64 ids, then the float32 rows. */
  serialize(): Uint8Array {
    const count = this.ids.length;
    const bytes = new Uint8Array(HEADER_BYTES + count * 8 + count * this.dim * 4);
    const view = new DataView(bytes.buffer);
    view.setUint32(0, MAGIC, true);
    view.setUint32(4, FORMAT_VERSION, true);
    view.setUint32(8, this.dim, true);
    view.setUint32(12, count, true);
    this.ids.forEach((id, i) => view.setFloat64(HEADER_BYTES + i * 8, id, true));
    const rows = this.matrix.subarray(0, count * this.dim);
    new Uint8Array(bytes.buffer, HEADER_BYTES + count * 8).set(new Uint8Array(rows.buffer, rows.byteOffset, rows.byteLength));
    return bytes;
  }

  static restore(bytes: Uint8Array): ExactVectorIndex {
    if (bytes.byteLength < HEADER_BYTES) throw new Error(`vector index snapshot: ${bytes.byteLength} bytes is shorter than its header`);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    if (view.getUint32(0, true) !== MAGIC) throw new Error('vector index snapshot: wrong magic number (not a serialized ExactVectorIndex)');
    const format = view.getUint32(4, true);
    if (format !== FORMAT_VERSION) throw new Error(`vector index snapshot: unsupported format version ${format}`);
    const dim = view.getUint32(8, true);
    const count = view.getUint32(12, true);
    const expected = HEADER_BYTES + count * 8 + count * dim * 4;
    if (bytes.byteLength !== expected)
      throw new Error(`vector index snapshot: ${bytes.byteLength} bytes, expected ${expected} for ${count} rows of dimension ${dim}`);
    const index = new ExactVectorIndex(dim, count);
    const ids = Array.from({ length: count }, (_, i) => view.getFloat64(HEADER_BYTES + i * 8, true));
    // Copy the rows out (the snapshot's offset need not be 4-byte aligned).
    const rows = new Float32Array(bytes.slice(HEADER_BYTES + count * 8).buffer);
    index.add(ids, rows);
    return index;
  }
}
