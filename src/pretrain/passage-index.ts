/**
 * The passage index pretraining retrieves from: every passage embedded by the current retriever.
 * The encoder keeps changing while it trains, so the trainer rebuilds the index every
 * `reindexEvery` steps; between rebuilds the reader reads its k passages, and Perplexity
 * Distillation its passage embeddings, from this (stale, detached) copy, as Atlas does.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { PretrainConfig } from './config';
import type { PreparedExample, PreparedPassage } from './data';
import type { RetrieverEncoder } from './retriever-encoder';

export class PassageIndex {
  /** [passages, dim] passage embeddings (owned); null until the first build. */
  private embeddings: tf.Tensor2D | null = null;
  /** The step whose encoder built the index; -1 before the first build. */
  private builtAt = -1;

  constructor(
    private readonly encoder: RetrieverEncoder,
    private readonly passages: readonly PreparedPassage[],
    private readonly config: PretrainConfig,
  ) {}

  /** The index's embeddings (null before the first build): what a checkpoint saves. */
  get tensor(): tf.Tensor2D | null {
    return this.embeddings;
  }

  get indexedAtStep(): number {
    return this.builtAt;
  }

  /** Takes over a saved index (owned from then on), as built at step `indexedAtStep`. */
  restore(embeddings: tf.Tensor2D | null, indexedAtStep: number): void {
    this.embeddings?.dispose();
    this.embeddings = embeddings;
    this.builtAt = indexedAtStep;
  }

  /** Re-embeds every passage with the current encoder (no gradient), as of training step `step`. */
  rebuild(step: number, batchSize = 128): void {
    const { passages } = this;
    const parts: tf.Tensor2D[] = [];
    for (let i = 0; i < passages.length; i += batchSize) {
      const rows = passages.slice(i, i + batchSize).map((p) => this.encoder.row(p.retrieverIds, this.config.indexMaxLength));
      while (rows.length < batchSize) rows.push(rows[0]); // fixed shape; extra rows dropped below
      const e = this.encoder.embed(rows, this.config.indexMaxLength);
      parts.push(tf.tidy(() => tf.slice(e, [0, 0], [Math.min(batchSize, passages.length - i), -1])));
      e.dispose();
    }
    this.embeddings?.dispose();
    this.embeddings = tf.tidy(() => tf.concat(parts, 0)) as tf.Tensor2D;
    tf.dispose(parts);
    this.builtAt = step;
  }

  private built(): tf.Tensor2D {
    if (!this.embeddings) throw new Error('pretrain passage index: used before it was built');
    return this.embeddings;
  }

  /**
   * Top-k passages per example from the current index: for masked spans the source passage is
   * excluded (unless `mlmWithSource`); for cloze questions it is put in (replacing the k-th) when
   * retrieval missed it.
   */
  async retrieve(examples: readonly PreparedExample[]): Promise<number[][]> {
    const k = this.config.passagesPerQuestion;
    const index = this.built();
    const queries = this.encoder.embed(
      examples.map((e) => this.encoder.row(e.retrieverQuery, this.config.queryMaxLength)),
      this.config.queryMaxLength,
    );
    const top = tf.tidy(() => tf.topk(tf.matMul(queries, index, false, true), Math.min(k + 1, this.passages.length)).indices);
    const ids = (await top.data()) as Int32Array;
    const width = top.shape[1]!;
    tf.dispose([queries, top]);
    return examples.map((ex, i) => {
      const ranked = Array.from(ids.subarray(i * width, (i + 1) * width));
      const others = ranked.filter((p) => p !== ex.passage);
      if (ex.kind === 'mlm' && !this.config.mlmWithSource) return others.slice(0, k);
      return ranked.slice(0, k).includes(ex.passage) ? ranked.slice(0, k) : [...others.slice(0, k - 1), ex.passage];
    });
  }

  /** [B, k, dim] index embeddings of each example's retrieved passages (detached: the index has no gradient). */
  embeddingsOf(retrieved: readonly number[][]): tf.Tensor3D {
    const index = this.built();
    return tf.tidy(() =>
      tf.reshape(tf.gather(index, tf.tensor1d(retrieved.flat(), 'int32')), [retrieved.length, this.config.passagesPerQuestion, -1]),
    ) as tf.Tensor3D;
  }

  dispose(): void {
    this.embeddings?.dispose();
    this.embeddings = null;
  }
}
