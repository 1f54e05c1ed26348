/**
 * Retrieval for CoRAG: texts → Contriever embeddings (tokenizer + one encoder side, in batches,
 * with progress), and top-k passages for query embeddings from a PassageSource — the client's own
 * store (LocalPassageStore: a VectorIndex + passage texts), the coordinator's collaborative store
 * (CoordinatorPassageSource over CoragClient /search), or several merged by score.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { CoragClient } from '../federated/client';
import { MAX_SEARCH_K_WITH_EMBEDDINGS } from '../federated/protocol';
import type { Contriever, ContrieverSide } from '../model/contriever';
import type { TextTokenizer } from '../model/tokenizer';
import { ExactVectorIndex, type VectorIndex } from '../retrieval/vector-index';
import type { ModelBundle } from './model-bundle';

export interface PassageText {
  readonly title: string;
  readonly text: string;
}

export interface RetrievedPassage extends PassageText {
  /** Which source it came from ('local', 'session', ...) and its id there. */
  readonly source: string;
  readonly id: number;
  /** Inner product of the query and passage embeddings. */
  readonly score: number;
  /** The stored passage embedding when the source has it (the local store does). */
  readonly embedding?: Float32Array;
}

export interface PassageSource {
  /** For messages and progress displays. */
  readonly name: string;
  /** The top-k passages of each query embedding, best first. */
  search(queries: readonly Float32Array[], k: number): Promise<RetrievedPassage[][]>;
}

/** What the Contriever retriever reads of a passage (Atlas: title and text joined by a space). */
export function passageRetrieverText(p: PassageText): string {
  return p.title ? `${p.title} ${p.text}` : p.text;
}

/** Which passages a tab searches: its own private ones, the session's shared store, or both. */
export type RetrievalScope = 'yours' | 'shared' | 'both';

export type Progress = (done: number, total: number) => void;

export interface EmbedOptions {
  /** Texts per encoder batch (default 32). */
  readonly batchSize?: number;
  /** Token limit per text, special tokens included (default 512, BERT's position limit). */
  readonly maxLength?: number;
  readonly onProgress?: Progress;
  readonly signal?: AbortSignal;
  /**
   * Batch texts of similar token length together (default true): each batch is padded to its
   * longest text, so batching in input order pads short passages up to long ones. The rows come
   * back in input order either way; false only to measure the difference.
   */
  readonly sortByLength?: boolean;
}

/** What embedding needs of a model: a retriever and its tokenizer (a ModelBundle is one). */
export interface RetrieverWithTokenizer {
  readonly retriever: Contriever;
  readonly retrieverTokenizer: TextTokenizer;
}

/** One batch of token id rows → their embeddings, row-major [rows × hidden] (an encoder's forward pass, no gradient). */
export type BatchEmbedder = (sequences: readonly (readonly number[])[]) => Promise<Float32Array>;

/** What batching texts through an encoder needs to know of it. */
export interface TextEmbedder {
  readonly tokenizer: TextTokenizer;
  /** Embedding size. */
  readonly hidden: number;
  /** Position limit (BERT's max_position_embeddings): texts are cut to it. */
  readonly maxPositions: number;
  readonly embedBatch: BatchEmbedder;
}

/**
 * Embeds texts with any encoder (tfjs or ONNX Runtime): tokenize, order by token length, embed in
 * batches, rows back in input order. Returns one row per text (views into one Float32Array).
 */
export async function embedTextsWith(encoder: TextEmbedder, texts: readonly string[], options: EmbedOptions = {}): Promise<Float32Array[]> {
  const batchSize = options.batchSize ?? 32;
  const maxLength = Math.min(options.maxLength ?? 512, encoder.maxPositions);
  const dim = encoder.hidden;
  const out = new Float32Array(texts.length * dim);
  const ids = texts.map((t) => encoder.tokenizer.encode(t, { maxLength }));
  const order = ids.map((_, i) => i);
  if (options.sortByLength ?? true) order.sort((a, b) => ids[a].length - ids[b].length || a - b);
  for (let start = 0; start < texts.length; start += batchSize) {
    options.signal?.throwIfAborted();
    const rows = order.slice(start, start + batchSize);
    const data = await encoder.embedBatch(rows.map((i) => ids[i]));
    rows.forEach((row, j) => out.set(data.subarray(j * dim, (j + 1) * dim), row * dim));
    options.onProgress?.(Math.min(start + batchSize, texts.length), texts.length);
  }
  return texts.map((_, i) => out.subarray(i * dim, (i + 1) * dim));
}

/** One side of a tfjs Contriever as a batch embedder (reads the rows back, frees the tensor). */
export function tfjsBatchEmbedder(retriever: Contriever, side: ContrieverSide): BatchEmbedder {
  return async (sequences) => {
    const embedded = retriever.embedTokens(side, sequences);
    try {
      return (await embedded.data()) as Float32Array;
    } finally {
      embedded.dispose();
    }
  };
}

/**
 * Embeds texts with one side of the retriever, no gradient. Returns one row per text (views into
 * one Float32Array).
 */
export function embedTexts(
  bundle: RetrieverWithTokenizer,
  side: ContrieverSide,
  texts: readonly string[],
  options: EmbedOptions = {},
): Promise<Float32Array[]> {
  const { config } = bundle.retriever;
  const encoder: TextEmbedder = {
    tokenizer: bundle.retrieverTokenizer,
    hidden: config.hidden_size,
    maxPositions: config.max_position_embeddings,
    embedBatch: tfjsBatchEmbedder(bundle.retriever, side),
  };
  return embedTextsWith(encoder, texts, options);
}

export function embedQueries(bundle: RetrieverWithTokenizer, questions: readonly string[], options: EmbedOptions = {}): Promise<Float32Array[]> {
  return embedTexts(bundle, 'query', questions, options);
}

export function embedPassages(bundle: RetrieverWithTokenizer, passages: readonly PassageText[], options: EmbedOptions = {}): Promise<Float32Array[]> {
  return embedTexts(bundle, 'passage', passages.map(passageRetrieverText), options);
}

/** The client's own passages: an in-memory vector index plus the texts, both keyed by id. */
export class LocalPassageStore implements PassageSource {
  private readonly texts = new Map<number, PassageText>();
  private nextId = 1;

  constructor(
    readonly index: VectorIndex,
    readonly name = 'local',
  ) {}

  static empty(dim: number, name = 'local'): LocalPassageStore {
    return new LocalPassageStore(new ExactVectorIndex(dim), name);
  }

  get size(): number {
    return this.index.size;
  }

  /** Adds passages with their (passage-encoder) embeddings; returns their new ids. */
  add(passages: readonly PassageText[], embeddings: readonly Float32Array[]): number[] {
    if (passages.length !== embeddings.length) throw new Error(`local store: ${passages.length} passages but ${embeddings.length} embeddings`);
    const ids = passages.map(() => this.nextId++);
    this.index.add(ids, embeddings);
    ids.forEach((id, i) => this.texts.set(id, { title: passages[i].title, text: passages[i].text }));
    return ids;
  }

  /** Embeds passages with the bundle's passage encoder and adds them. */
  async addTexts(bundle: ModelBundle, passages: readonly PassageText[], options: EmbedOptions = {}): Promise<number[]> {
    return this.add(passages, await embedPassages(bundle, passages, options));
  }

  remove(ids: readonly number[]): number {
    for (const id of ids) this.texts.delete(id);
    return this.index.remove(ids);
  }

  passage(id: number): PassageText | undefined {
    return this.texts.get(id);
  }

  async search(queries: readonly Float32Array[], k: number): Promise<RetrievedPassage[][]> {
    return queries.map((q) =>
      this.index.search(q, k).map(({ id, score }) => ({ ...this.texts.get(id)!, source: this.name, id, score, embedding: this.index.embedding(id) })),
    );
  }
}

/** The session's collaborative store on the coordinator (exact top-k there). */
export class CoordinatorPassageSource implements PassageSource {
  /**
   * `withEmbeddings` (default true): hits carry the store's passage embeddings, so the retriever
   * loss needs no passage-encoder pass over them (the encoder is frozen: those are the vectors it
   * would compute). k is then capped at MAX_SEARCH_K_WITH_EMBEDDINGS.
   */
  constructor(
    private readonly client: CoragClient,
    private readonly sessionId: string,
    readonly name = 'session',
    private readonly withEmbeddings = true,
  ) {}

  async search(queries: readonly Float32Array[], k: number): Promise<RetrievedPassage[][]> {
    const withEmbeddings = this.withEmbeddings && k <= MAX_SEARCH_K_WITH_EMBEDDINGS;
    return Promise.all(
      queries.map(async (q) => {
        const hits = await this.client.search(this.sessionId, q, k, { withEmbeddings });
        return hits.map((h) => {
          const embedding = receivedEmbedding(h.embedding, q.length);
          return { title: h.passage.title, text: h.passage.text, source: this.name, id: h.id, score: h.score, ...(embedding ? { embedding } : {}) };
        });
      }),
    );
  }
}

/** An embedding from the network, kept only if it is `dim` finite numbers (else it is recomputed). */
function receivedEmbedding(value: unknown, dim: number): Float32Array | undefined {
  if (!Array.isArray(value) || value.length !== dim || !value.every((x) => typeof x === 'number' && Number.isFinite(x))) return undefined;
  return Float32Array.from(value);
}

/**
 * Several sources as one: each is asked for k, the union is ranked by score (the same query
 * embedding and the same frozen passage encoder make scores comparable), passages with the same
 * title and text are kept once, and the best k remain.
 */
export function mergedPassageSource(sources: readonly PassageSource[]): PassageSource {
  if (sources.length === 0) throw new Error('mergedPassageSource: no sources');
  return {
    name: sources.map((s) => s.name).join('+'),
    async search(queries, k) {
      const perSource = await Promise.all(sources.map((s) => s.search(queries, k)));
      return queries.map((_, qi) => {
        const seen = new Set<string>();
        return perSource
          .flatMap((hits) => hits[qi])
          .sort((a, b) => b.score - a.score)
          .filter((p) => {
            const key = `${p.title}\u0000${p.text}`;
            if (seen.has(key)) return false;
            seen.add(key);
            return true;
          })
          .slice(0, k);
      });
    },
  };
}

export interface RetrieveOptions extends EmbedOptions {
  readonly k: number;
}

/** Embeds the questions with the (current) query encoder and retrieves top-k for each. */
export async function retrieve(
  bundle: ModelBundle,
  source: PassageSource,
  questions: readonly string[],
  options: RetrieveOptions,
): Promise<RetrievedPassage[][]> {
  const queries = await embedQueries(bundle, questions, options);
  return source.search(queries, options.k);
}

/**
 * Embeddings [B, k, dim] of each question's retrieved passages for the retriever loss: the
 * stored embedding when the source returned it, else the frozen passage encoder's (no gradient).
 */
export async function retrievedPassageEmbeddings(
  bundle: ModelBundle,
  retrieved: readonly (readonly RetrievedPassage[])[],
  options: EmbedOptions = {},
): Promise<tf.Tensor3D> {
  const k = retrieved[0]?.length ?? 0;
  if (k === 0 || retrieved.some((r) => r.length !== k))
    throw new Error('retrievedPassageEmbeddings: every question needs the same, non-zero number of passages');
  const flat = retrieved.flat();
  const dim = bundle.embeddingDim;
  const usable = (p: RetrievedPassage) => p.embedding !== undefined && p.embedding.length === dim;
  const missing = flat.filter((p) => !usable(p));
  const computed = missing.length ? await embedPassages(bundle, missing, options) : [];
  const data = new Float32Array(flat.length * dim);
  let next = 0;
  flat.forEach((p, i) => data.set(usable(p) ? p.embedding! : computed[next++], i * dim));
  return tf.tensor3d(data, [retrieved.length, k, dim]);
}
