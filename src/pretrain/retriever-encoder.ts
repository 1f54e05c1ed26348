/**
 * The retriever as pretraining calls it: token ids wrapped as `[CLS] ids [SEP]`, packed into
 * fixed-shape BERT batches (the same shapes every step, so a GPU compiles each program once) and
 * embedded Contriever-style (mean pooling) with the encoder's current weights. Queries, passages
 * and random crops all go through this one encoder (Contriever pretrains a shared one).
 */
import * as tf from '@tensorflow/tfjs-core';
import type { BertConfig } from '../model/bert/config';
import { paramsFromStore } from '../model/bert/model';
import { contrieverEmbed } from '../model/contriever';
import type { ParameterStore } from '../model/params';
import type { SpecialIds } from './data';

export interface RetrieverBatch {
  readonly inputIds: tf.Tensor2D;
  readonly attentionMask: tf.Tensor2D;
}

export class RetrieverEncoder {
  constructor(
    readonly config: BertConfig,
    /** The trained weights (not owned: the trainer updates and disposes them). */
    readonly params: ParameterStore,
    private readonly special: SpecialIds,
  ) {}

  /** `[CLS] ids [SEP]`, the ids cut so the row fits `maxLength`. */
  row(ids: readonly number[], maxLength: number): number[] {
    const { retrieverCls, retrieverSep } = this.special;
    return [retrieverCls, ...ids.slice(0, maxLength - 2), retrieverSep];
  }

  /** Fixed-shape [rows, length] BERT batch (same shapes every step: one compiled GPU program each). */
  batch(rows: readonly number[][], length: number): RetrieverBatch {
    const ids = new Int32Array(rows.length * length).fill(this.special.retrieverPad);
    const mask = new Int32Array(rows.length * length);
    rows.forEach((r, i) => {
      ids.set(r.slice(0, length), i * length);
      mask.fill(1, i * length, i * length + Math.min(length, r.length));
    });
    return { inputIds: tf.tensor2d(ids, [rows.length, length], 'int32'), attentionMask: tf.tensor2d(mask, [rows.length, length], 'int32') };
  }

  /** Embeddings of a batch, recorded on the tape when called inside a gradient function. */
  embedBatch(batch: RetrieverBatch): tf.Tensor2D {
    return contrieverEmbed(this.config, paramsFromStore(this.params), batch);
  }

  /** [rows, dim] embeddings of `rows` (already `row()`-wrapped), the batch tensors freed. */
  embed(rows: readonly number[][], length: number): tf.Tensor2D {
    const batch = this.batch(rows, length);
    try {
      return this.embedBatch(batch);
    } finally {
      tf.dispose([batch.inputIds, batch.attentionMask]);
    }
  }
}
