/**
 * Hybrid retrieval for questions over a tab's own passages: the Contriever ranking fused with a
 * BM25 keyword ranking of the same question (reciprocal rank fusion, src/retrieval/rank-fusion.ts).
 *
 * Why: a small retriever (the offline demo's, docs/MODEL-CARD.md) misses passages that share the
 * question's rare words, which BM25 finds at once; and even strong dense retrievers gain from exact
 * keyword matches on names and numbers. Only answering uses it: training, CRAB and evaluation
 * retrieve with the dense retriever alone, as CoRAG does, so what the federation learns is unchanged.
 */
import { Bm25Index, type Bm25Options } from '../retrieval/bm25';
import { reciprocalRankFusion } from '../retrieval/rank-fusion';
import { embedQueries, type PassageSource, type PassageText, type RetrievedPassage } from './retrieve';
import type { ModelBundle } from './model-bundle';

/** A passage the keyword index holds: its text, store id and stored embedding. */
export interface IndexedPassage extends PassageText {
  readonly id: number;
  readonly embedding: Float32Array;
}

/** BM25 over a set of passages (title and text), returning them as retrieved passages. */
export class KeywordPassageIndex {
  private readonly index: Bm25Index;

  /** `source`: the name retrieved passages carry ('yours' for the tab's store). */
  constructor(
    private readonly passages: readonly IndexedPassage[],
    readonly source: string,
    options: Bm25Options = {},
  ) {
    this.index = new Bm25Index(
      passages.map((p, i) => ({ id: String(i), text: `${p.title}\n${p.text}` })),
      options,
    );
  }

  get size(): number {
    return this.passages.length;
  }

  /**
   * The top-n passages for `question` by BM25 (passages sharing no word with it are left out).
   * Each carries the inner product with `queryEmbedding` as its score, like dense hits, so the
   * two kinds can be shown side by side.
   */
  search(question: string, queryEmbedding: Float32Array, n: number): RetrievedPassage[] {
    return this.index
      .search(question, n)
      .filter((hit) => hit.score > 0)
      .map((hit) => {
        const p = this.passages[hit.index];
        return { title: p.title, text: p.text, source: this.source, id: p.id, score: dot(queryEmbedding, p.embedding), embedding: p.embedding };
      });
  }
}

function dot(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) throw new Error(`hybrid retrieval: query embedding has ${a.length} dimensions, a stored passage ${b.length}`);
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

export interface HybridOptions {
  readonly k: number;
  /** How deep each ranking is read before fusing (default max(20, k)). */
  readonly candidates?: number;
  /** Reciprocal-rank-fusion constant (default 60). */
  readonly fusionK?: number;
  /**
   * Weight of the keyword ranking against the dense one's 1 (weighted RRF). Default: the
   * retriever's own `corag.hybrid_keyword_weight` (config.json, src/corag/checkpoint-policy.ts), else 1.
   */
  readonly keywordWeight?: number;
}

/**
 * The top-k passages for one question: the dense source's ranking and the keyword index's fused
 * by (weighted) reciprocal rank. A passage found by both counts once (same title and text), as the first
 * ranking (dense) returned it.
 */
export async function hybridRetrieve(
  bundle: ModelBundle,
  dense: PassageSource,
  keywords: KeywordPassageIndex,
  question: string,
  options: HybridOptions,
): Promise<RetrievedPassage[]> {
  const { k } = options;
  if (!Number.isInteger(k) || k < 1) throw new RangeError(`hybridRetrieve: k must be a positive integer, got ${k}`);
  const candidates = Math.max(options.candidates ?? 20, k);
  const [query] = await embedQueries(bundle, [question]);
  const [denseHits] = await dense.search([query], candidates);
  const keywordHits = keywords.search(question, query, candidates);
  // The same passage may come from the tab's store and from the session store: one entry, as in mergedPassageSource.
  const key = (p: RetrievedPassage) => `${p.title}\u0000${p.text}`;
  const byKey = new Map<string, RetrievedPassage>();
  for (const p of [...denseHits, ...keywordHits]) if (!byKey.has(key(p))) byKey.set(key(p), p);
  const keywordWeight = options.keywordWeight ?? bundle.policy.retriever.hybridKeywordWeight ?? 1;
  return reciprocalRankFusion([denseHits.map(key), keywordHits.map(key)], options.fusionK ?? 60, [1, keywordWeight])
    .slice(0, k)
    .map((f) => byKey.get(f.key)!);
}
