/**
 * Retriever training losses.
 *
 * - Perplexity Distillation (PDist) and attention distillation (ADist) follow Atlas
 *   (facebookresearch/atlas, src/atlas.py): a "gold" score per retrieved passage from the reader,
 *   computed without gradient, is turned into a target distribution softmax(gold / temperature_gold);
 *   the retriever's scores q·p / sqrt(dim), divided by temperature_score, are log-softmaxed; the loss
 *   is torch.nn.KLDivLoss()(log_probs, target) with its default reduction 'mean', i.e. the KL terms
 *   summed and divided by the number of (query, passage) ELEMENTS, not by the number of queries.
 * - The in-batch contrastive loss of the bert-tiny fixture (Contriever-style): cross-entropy of
 *   q·pᵀ / 0.05 against the index of each query's positive passage.
 *
 * Every function returns a scalar tensor and is differentiable w.r.t. the retriever embeddings;
 * reader-derived inputs are treated as constants (passed through stopGradient).
 */
import * as tf from '@tensorflow/tfjs-core';

/**
 * Identity whose gradient is zero (tfjs-core has no stopGradient): the distillation target must
 * not train whatever produced it, even when it was computed inside the same gradient tape.
 */
export function stopGradient<T extends tf.Tensor>(x: T): T {
  const blocked = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => ({
    value: tf.clone(args[0] as tf.Tensor),
    gradFunc: (dy: tf.Tensor) => tf.zerosLike(dy),
  }));
  return blocked(x) as T;
}

/** Atlas's defaults: opt.temperature_gold = opt.temperature_score = 0.01. */
export const ATLAS_TEMPERATURE = 0.01;

export interface DistillationOptions {
  /** Divides the reader's gold scores before the softmax (Atlas temperature_gold). */
  readonly temperatureGold?: number;
  /** Divides the retriever's scaled scores before the log-softmax (Atlas temperature_score). */
  readonly temperatureScore?: number;
}

/**
 * Retriever scores for each query's own retrieved passages, as in Atlas's forward():
 * einsum("id,ijd->ij", query_emb, passage_emb) / sqrt(dim).
 * @param queries [batch, dim]
 * @param passages [batch, k, dim] (passage j of query i)
 * @returns [batch, k]
 */
export function retrieverScores(queries: tf.Tensor2D, passages: tf.Tensor3D): tf.Tensor2D {
  return tf.tidy(() => {
    const dim = queries.shape[1];
    if (passages.shape[0] !== queries.shape[0] || passages.shape[2] !== dim) {
      throw new Error(`retrieverScores: passages [${passages.shape}] do not match queries [${queries.shape}]`);
    }
    const dots = tf.squeeze(tf.matMul(passages, tf.expandDims(queries, 2)), [2]);
    return tf.div(dots, Math.sqrt(dim)) as tf.Tensor2D;
  });
}

/**
 * Atlas's kldivloss(score, gold_score): KLDivLoss(mean)(log_softmax(score / tScore), softmax(gold / tGold)).
 * The target's log is taken as a log-softmax, so targets that underflow to 0 contribute exactly 0
 * (torch uses xlogy for the same reason).
 * @param retrieverScore [batch, k], already divided by sqrt(dim)
 * @param goldScore [batch, k], higher = better passage; no gradient flows into it
 */
export function distillationKL(retrieverScore: tf.Tensor2D, goldScore: tf.Tensor2D, options: DistillationOptions = {}): tf.Scalar {
  const tGold = options.temperatureGold ?? ATLAS_TEMPERATURE;
  const tScore = options.temperatureScore ?? ATLAS_TEMPERATURE;
  if (!tf.util.arraysEqual(retrieverScore.shape, goldScore.shape)) {
    throw new Error(`distillationKL: retriever scores [${retrieverScore.shape}] and gold scores [${goldScore.shape}] differ in shape`);
  }
  return tf.tidy(() => {
    const logTarget = tf.logSoftmax(tf.div(stopGradient(goldScore), tGold), -1);
    const logProbs = tf.logSoftmax(tf.div(retrieverScore, tScore), -1);
    const pointwise = tf.mul(tf.exp(logTarget), tf.sub(logTarget, logProbs));
    return tf.mean(pointwise) as tf.Scalar;
  });
}

/**
 * Perplexity Distillation. `passageLoss[i][j]` is the reader's mean token cross-entropy of query
 * i's answer given passage j ALONE (Atlas's perplexity_score, no gradient); the gold score is its
 * negation, so target = softmax(-CE / 0.01).
 * @param queries [batch, dim] query embeddings (trainable side)
 * @param passages [batch, k, dim] embeddings of each query's retrieved passages
 * @param passageLoss [batch, k] per-passage reader CE (tensor or nested numbers)
 */
export function perplexityDistillationLoss(
  queries: tf.Tensor2D,
  passages: tf.Tensor3D,
  passageLoss: tf.Tensor2D | number[][],
  options: DistillationOptions = {},
): tf.Scalar {
  return tf.tidy(() => {
    const ce = Array.isArray(passageLoss) ? tf.tensor2d(passageLoss) : passageLoss;
    return distillationKL(retrieverScores(queries, passages), tf.neg(ce), options);
  });
}

/**
 * Attention distillation: the gold score of each passage is the reader's aggregated
 * cross-attention on it (t5/fid.ts passageAttentionScores: higher = more relevant); same KL as
 * PDist. Atlas's "std"/"eval" gold-score modes work this way.
 * @param attentionScores [batch, k]
 */
export function attentionDistillationLoss(
  queries: tf.Tensor2D,
  passages: tf.Tensor3D,
  attentionScores: tf.Tensor2D | number[][],
  options: DistillationOptions = {},
): tf.Scalar {
  return tf.tidy(() => {
    const gold = Array.isArray(attentionScores) ? tf.tensor2d(attentionScores) : attentionScores;
    return distillationKL(retrieverScores(queries, passages), gold, options);
  });
}

/**
 * In-batch contrastive loss: mean cross-entropy of (q · pᵀ / temperature) against the index of
 * each query's positive passage among all passages in the batch.
 * @param queries [batch, dim], passages [n, dim], positives: batch indices into [0, n)
 */
export function inBatchContrastiveLoss(queries: tf.Tensor2D, passages: tf.Tensor2D, positives: readonly number[], temperature = 0.05): tf.Scalar {
  if (positives.length !== queries.shape[0]) {
    throw new Error(`inBatchContrastiveLoss: ${positives.length} positives for ${queries.shape[0]} queries`);
  }
  const n = passages.shape[0];
  for (const t of positives) if (!Number.isInteger(t) || t < 0 || t >= n) throw new Error(`inBatchContrastiveLoss: positive index ${t} outside [0, ${n})`);
  return tf.tidy(() => {
    const scores = tf.div(tf.matMul(queries, passages, false, true), temperature);
    const targets = tf.oneHot(tf.tensor1d(positives as number[], 'int32'), n);
    return tf.neg(tf.mean(tf.sum(tf.mul(targets, tf.logSoftmax(scores, -1)), -1))) as tf.Scalar;
  });
}
