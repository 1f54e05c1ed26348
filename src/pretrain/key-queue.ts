/**
 * The queue of earlier steps' contrastive keys (MoCo, as Contriever pretrains): the random-crop
 * contrastive loss scores each crop against the other crops of its batch and these detached
 * embeddings, so a small batch still sees many negatives. Newest keys first; the oldest fall off
 * the end once `size` is reached. A checkpoint saves it, so a resumed run sees the same negatives.
 */
import * as tf from '@tensorflow/tfjs-core';

export class KeyQueue {
  /** [n, dim] detached key embeddings (owned); null while empty. */
  private keys: tf.Tensor2D | null = null;

  constructor(private readonly size: number) {}

  /** The queued keys (null while empty): what a checkpoint saves. */
  get tensor(): tf.Tensor2D | null {
    return this.keys;
  }

  /** Takes over saved keys (owned from then on). */
  restore(keys: tf.Tensor2D | null): void {
    this.keys?.dispose();
    this.keys = keys;
  }

  /** The step's keys followed by the queued ones: the negatives of the contrastive loss. */
  negatives(batchKeys: tf.Tensor2D): tf.Tensor2D {
    return this.keys ? tf.concat([batchKeys, this.keys], 0) : batchKeys;
  }

  /** Puts a step's keys (not taken over) in front; the oldest fall off the end. */
  push(batchKeys: tf.Tensor2D): void {
    const queued = tf.tidy(() => {
      const all = this.keys ? tf.concat([batchKeys, this.keys], 0) : batchKeys;
      return tf.slice(all, [0, 0], [Math.min(all.shape[0], this.size), -1]) as tf.Tensor2D;
    });
    this.keys?.dispose();
    this.keys = this.size > 0 ? queued : (queued.dispose(), null);
  }

  dispose(): void {
    this.keys?.dispose();
    this.keys = null;
  }
}
