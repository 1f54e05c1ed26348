/**
 * Okapi BM25 over an in-memory inverted index: exact, deterministic, no dependencies.
 *
 * Scoring follows Lucene's BM25Similarity, which Pyserini uses (defaults k1 = 0.9, b = 0.4):
 *
 *   score(q, d) = Σ_{t ∈ q} idf(t) · tf(t,d) / (tf(t,d) + k1 · (1 − b + b · |d| / avgdl))
 *   idf(t)      = ln(1 + (N − df(t) + 0.5) / (df(t) + 0.5))
 *
 * The sum runs over query tokens, so a term repeated in the query counts once per occurrence
 * (Pyserini's bag-of-words query boosts a term by its query frequency). Lucene dropped the
 * constant factor (k1 + 1) from the numerator; it does not change any ranking. Unlike Lucene we
 * keep exact document lengths instead of its one-byte length quantisation, so scores can differ
 * from Pyserini's in the last digits while the formula is the same.
 *
 * Ties are broken by document id (ascending; ids made only of digits compare as numbers), so the
 * top-k list is a pure function of the corpus and the query.
 */

/**
 * Lucene's English stop word set (EnglishAnalyzer.ENGLISH_STOP_WORDS_SET), the one Pyserini's
 * default analyzer removes.
 */
export const ENGLISH_STOPWORDS: ReadonlySet<string> = new Set([
  'a',
  'an',
  'and',
  'are',
  'as',
  'at',
  'be',
  'but',
  'by',
  'for',
  'if',
  'in',
  'into',
  'is',
  'it',
  'no',
  'not',
  'of',
  'on',
  'or',
  'such',
  'that',
  'the',
  'their',
  'then',
  'there',
  'these',
  'they',
  'this',
  'to',
  'was',
  'will',
  'with',
]);

export interface Bm25TokenizerOptions {
  /** Remove ENGLISH_STOPWORDS (true), a custom set, or nothing (false, the default). */
  stopwords?: boolean | ReadonlySet<string>;
}

// A word is a maximal run of letters, digits and combining marks; everything else separates words.
const WORD = /[\p{L}\p{N}\p{M}]+/gu;

/**
 * The BM25 tokenizer: Unicode NFKC, lower case, split into maximal runs of letters / digits /
 * combining marks (so "U.S.-based" gives "u", "s", "based" and "don't" gives "don", "t"), then
 * optionally drop stop words. No stemming.
 */
export function tokenizeForBm25(text: string, options: Bm25TokenizerOptions = {}): string[] {
  const stop = stopwordSet(options.stopwords);
  const tokens = text.normalize('NFKC').toLowerCase().match(WORD) ?? [];
  return stop ? tokens.filter((t) => !stop.has(t)) : tokens;
}

function stopwordSet(option: Bm25TokenizerOptions['stopwords']): ReadonlySet<string> | null {
  if (option === true) return ENGLISH_STOPWORDS;
  if (!option) return null;
  return option;
}

export interface Bm25Options extends Bm25TokenizerOptions {
  k1?: number;
  b?: number;
}

/** Pyserini's defaults. */
export const PYSERINI_BM25 = { k1: 0.9, b: 0.4 } as const;

export interface Bm25Document {
  id: string;
  /** Everything that is searchable (callers usually join title and text). */
  text: string;
}

export interface Bm25Hit {
  id: string;
  /** Position of the document in the array the index was built from. */
  index: number;
  score: number;
}

interface Postings {
  docs: number[];
  freqs: number[];
}

/** Orders ids ascending; two ids made only of digits compare as numbers ("9" before "10"). */
export function compareIds(a: string, b: string): number {
  const numeric = /^\d+$/;
  if (numeric.test(a) && numeric.test(b)) {
    const x = a.replace(/^0+(?=\d)/, '');
    const y = b.replace(/^0+(?=\d)/, '');
    if (x.length !== y.length) return x.length - y.length;
    return x < y ? -1 : x > y ? 1 : 0;
  }
  return a < b ? -1 : a > b ? 1 : 0;
}

export class Bm25Index {
  readonly k1: number;
  readonly b: number;
  readonly averageLength: number;
  private readonly ids: string[];
  private readonly lengths: Uint32Array;
  /** k1 · (1 − b + b · |d| / avgdl) per document, precomputed. */
  private readonly lengthNorm: Float64Array;
  /** idRank[d] = position of document d when all documents are sorted by id: the tie-breaker. */
  private readonly idRank: Uint32Array;
  private readonly postings = new Map<string, Postings>();
  private readonly tokenizer: Bm25TokenizerOptions;
  // Scratch accumulator reused by every search (scores are reset after each query).
  private readonly scratch: Float64Array;

  constructor(documents: readonly Bm25Document[], options: Bm25Options = {}) {
    this.k1 = options.k1 ?? PYSERINI_BM25.k1;
    this.b = options.b ?? PYSERINI_BM25.b;
    if (!(this.k1 >= 0) || !(this.b >= 0 && this.b <= 1)) {
      throw new RangeError(`BM25 needs k1 >= 0 and 0 <= b <= 1 (got k1=${this.k1}, b=${this.b})`);
    }
    this.tokenizer = { stopwords: options.stopwords };
    const n = documents.length;
    this.ids = documents.map((d) => d.id);
    this.lengths = new Uint32Array(n);
    let total = 0;
    documents.forEach((doc, d) => {
      const tokens = tokenizeForBm25(doc.text, this.tokenizer);
      this.lengths[d] = tokens.length;
      total += tokens.length;
      const counts = new Map<string, number>();
      for (const t of tokens) counts.set(t, (counts.get(t) ?? 0) + 1);
      for (const [term, freq] of counts) {
        let p = this.postings.get(term);
        if (!p) this.postings.set(term, (p = { docs: [], freqs: [] }));
        p.docs.push(d);
        p.freqs.push(freq);
      }
    });
    this.averageLength = n > 0 ? total / n : 0;
    this.lengthNorm = this.lengths.reduce((norms, length, d) => {
      const relative = this.averageLength > 0 ? length / this.averageLength : 0;
      norms[d] = this.k1 * (1 - this.b + this.b * relative);
      return norms;
    }, new Float64Array(n));
    // Documents in id order (a stable sort: the same order as sorting their indices by id).
    const byId = this.ids.map((id, d) => ({ id, d })).sort((x, y) => compareIds(x.id, y.id));
    this.idRank = new Uint32Array(n);
    byId.forEach(({ id, d }, rank) => {
      if (byId[rank - 1]?.id === id) throw new Error(`BM25: duplicate document id "${id}"`);
      this.idRank[d] = rank;
    });
    this.scratch = new Float64Array(n);
  }

  get size(): number {
    return this.ids.length;
  }

  /** Number of indexed tokens of document `index` (after stop word removal). */
  documentLength(index: number): number {
    const length = this.lengths[index];
    if (length === undefined) throw new RangeError(`BM25: no document ${index} (the index holds ${this.size})`);
    return length;
  }

  /** Lucene's idf of a (tokenized) term; terms absent from the corpus have df = 0. */
  idf(term: string): number {
    const df = this.postings.get(term)?.docs.length ?? 0;
    return Math.log(1 + (this.size - df + 0.5) / (df + 0.5));
  }

  /** The BM25 score of one document for a query (the quantity search ranks by). */
  score(query: string, index: number): number {
    let score = 0;
    for (const term of tokenizeForBm25(query, this.tokenizer)) {
      const p = this.postings.get(term);
      if (!p) continue;
      const at = p.docs.indexOf(index);
      const tf = p.freqs[at];
      const norm = this.lengthNorm[index];
      // Absent from the document (at = -1), or no such document: the term adds nothing.
      if (tf === undefined || norm === undefined) continue;
      score += this.idf(term) * (tf / (tf + norm));
    }
    return score;
  }

  /**
   * The k best documents, best first; only documents sharing at least one term with the query
   * (score > 0) are returned, so the list can be shorter than k.
   */
  search(query: string, k: number): Bm25Hit[] {
    if (!Number.isInteger(k) || k < 0) throw new RangeError(`BM25 search: k must be a non-negative integer, got ${k}`);
    const scores = this.scratch;
    const touched: number[] = [];
    for (const term of tokenizeForBm25(query, this.tokenizer)) {
      const p = this.postings.get(term);
      if (!p) continue;
      const idf = this.idf(term);
      for (let i = 0; i < p.docs.length; i++) {
        const d = p.docs[i];
        const tf = p.freqs[i];
        const score = d === undefined ? undefined : scores[d];
        const norm = d === undefined ? undefined : this.lengthNorm[d];
        // Postings are built in step (docs[i] has freqs[i]) from the indexed documents.
        if (d === undefined || tf === undefined || score === undefined || norm === undefined) throw new Error(`BM25: postings of "${term}" out of step`);
        if (score === 0) touched.push(d);
        scores[d] = score + idf * (tf / (tf + norm));
      }
    }
    const best = this.selectTop(touched, k);
    const hits = best.map((d) => ({ id: this.idOf(d), index: d, score: scores[d] ?? NaN }));
    for (const d of touched) scores[d] = 0;
    return hits;
  }

  private idOf(d: number): string {
    const id = this.ids[d];
    if (id === undefined) throw new RangeError(`BM25: no document ${d} (the index holds ${this.size})`);
    return id;
  }

  /** true when document x ranks before y: higher score, or equal score and smaller id. */
  private before(x: number, y: number): boolean {
    const sx = this.scratch[x] ?? NaN;
    const sy = this.scratch[y] ?? NaN;
    return sx > sy || (sx === sy && (this.idRank[x] ?? NaN) < (this.idRank[y] ?? NaN));
  }

  /** Top k of `candidates` with a bounded heap whose root is the worst kept document. */
  private selectTop(candidates: number[], k: number): number[] {
    const heap: number[] = [];
    // Heap positions are always inside the heap: a miss is a bug, not a document.
    const at = (i: number): number => {
      const d = heap[i];
      if (d === undefined) throw new RangeError(`BM25: no document at heap position ${i} of ${heap.length}`);
      return d;
    };
    const worse = (i: number, j: number) => this.before(at(j), at(i));
    const swap = (i: number, j: number) => ([heap[i], heap[j]] = [at(j), at(i)]);
    const siftDown = (i: number) => {
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let w = i;
        if (l < heap.length && worse(l, w)) w = l;
        if (r < heap.length && worse(r, w)) w = r;
        if (w === i) return;
        swap(i, w);
        i = w;
      }
    };
    for (const d of candidates) {
      if (heap.length < k) {
        heap.push(d);
        for (let i = heap.length - 1; i > 0;) {
          const parent = (i - 1) >> 1;
          if (!worse(i, parent)) break;
          swap(i, parent);
          i = parent;
        }
      } else if (k > 0 && this.before(d, at(0))) {
        heap[0] = d;
        siftDown(0);
      }
    }
    return heap.sort((x, y) => (this.before(x, y) ? -1 : 1));
  }
}
