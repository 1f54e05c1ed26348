/**
 * Exact maximum-inner-product search over Float32 embeddings held in one growable row-major matrix.
 * Exact by construction (recall 1.0); an ANN index can replace it behind the same methods later.
 */

export interface ScoredId {
  readonly id: number;
  readonly score: number;
}

export class ExactInnerProductIndex {
  private matrix: Float32Array;
  private ids: number[] = [];
  private readonly rowOf = new Map<number, number>();

  constructor(readonly dim: number, initialCapacity = 1024) {
    this.matrix = new Float32Array(dim * initialCapacity);
  }

  get size(): number {
    return this.ids.length;
  }

  has(id: number): boolean {
    return this.rowOf.has(id);
  }

  add(id: number, embedding: ArrayLike<number>): void {
    if (embedding.length !== this.dim) throw new Error(`embedding has ${embedding.length} values, index dimension is ${this.dim}`);
    if (this.rowOf.has(id)) return;
    const row = this.ids.length;
    if ((row + 1) * this.dim > this.matrix.length) {
      const grown = new Float32Array(Math.max(this.matrix.length * 2, (row + 1) * this.dim));
      grown.set(this.matrix);
      this.matrix = grown;
    }
    this.matrix.set(embedding, row * this.dim);
    this.ids.push(id);
    this.rowOf.set(id, row);
  }

  /** O(dim): the last row moves into the hole. */
  remove(id: number): boolean {
    const row = this.rowOf.get(id);
    if (row === undefined) return false;
    const last = this.ids.length - 1;
    if (row !== last) {
      this.matrix.copyWithin(row * this.dim, last * this.dim, (last + 1) * this.dim);
      const movedId = this.ids[last];
      this.ids[row] = movedId;
      this.rowOf.set(movedId, row);
    }
    this.ids.pop();
    this.rowOf.delete(id);
    return true;
  }

  /** The k rows with the largest inner product with `query`, best first (ties: smaller id first). */
  search(query: ArrayLike<number>, k: number): ScoredId[] {
    if (query.length !== this.dim) throw new Error(`query has ${query.length} values, index dimension is ${this.dim}`);
    const q = query instanceof Float32Array ? query : Float32Array.from(query);
    const n = this.ids.length;
    const keep = Math.min(k, n);
    if (keep <= 0) return [];
    // Min-heap of the best `keep` so far: root is the weakest kept candidate.
    const heapScore = new Float64Array(keep);
    const heapRow = new Int32Array(keep);
    let size = 0;
    const m = this.matrix;
    const dim = this.dim;
    const worse = (sa: number, ra: number, sb: number, rb: number) => sa < sb || (sa === sb && this.ids[ra] > this.ids[rb]);
    for (let r = 0; r < n; r++) {
      let s = 0;
      const base = r * dim;
      for (let j = 0; j < dim; j++) s += m[base + j] * q[j];
      if (size < keep) {
        let i = size++;
        while (i > 0) {
          const p = (i - 1) >> 1;
          if (!worse(s, r, heapScore[p], heapRow[p])) break;
          heapScore[i] = heapScore[p];
          heapRow[i] = heapRow[p];
          i = p;
        }
        heapScore[i] = s;
        heapRow[i] = r;
      } else if (worse(heapScore[0], heapRow[0], s, r)) {
        let i = 0;
        for (;;) {
          const l = 2 * i + 1;
          if (l >= size) break;
          const c = l + 1 < size && worse(heapScore[l + 1], heapRow[l + 1], heapScore[l], heapRow[l]) ? l + 1 : l;
          if (!worse(heapScore[c], heapRow[c], s, r)) break;
          heapScore[i] = heapScore[c];
          heapRow[i] = heapRow[c];
          i = c;
        }
        heapScore[i] = s;
        heapRow[i] = r;
      }
    }
    const out: ScoredId[] = [];
    for (let i = 0; i < size; i++) out.push({ id: this.ids[heapRow[i]], score: heapScore[i] });
    return out.sort((a, b) => b.score - a.score || a.id - b.id);
  }
}
