/**
 * Copy-attention supervision: an auxiliary training loss that tells one cross-attention head of
 * the reader *where* in its passages the next target token is, so the reader learns to locate
 * answers directly instead of discovering the lookup from the token loss alone.
 *
 * Why: a small T5 trained from scratch learns to copy an answer out of a passage only after
 * millions of lookups seen (docs/lab/PRETRAINING.md, the copy task): the token loss gives no gradient
 * towards the right passage position until attention already lands near it by chance. Supervising
 * an attention distribution with known alignments is the standard remedy (supervised / guided
 * attention in NMT, the copy alignments of pointer-generator training). The architecture does not
 * change — it is still a plain T5 that Hugging Face loads — only training gets one more signal.
 */
import * as tf from '@tensorflow/tfjs-core';

/** Avoids log(0) where a head puts (numerically) nothing on the right positions. */
const EPSILON = 1e-9;

/**
 * Mean over supervised target positions (and over the `heads` heads from `head` on) of −log(the
 * attention mass a head puts on the allowed source positions). `probs` [B, heads, T, S] are one decoder layer's cross-attention
 * probabilities; `allowed` [B, T, S] is 1 at the encoder positions that hold target token t (any
 * of them counts), 0 elsewhere; target positions with no allowed position are not supervised.
 * Returns 0 when nothing in the batch is supervised.
 */
export function copyAttentionLoss(probs: tf.Tensor4D, allowed: tf.Tensor3D, head: number, heads = 1): tf.Scalar {
  const [batch, numHeads, targets, sources] = probs.shape;
  if (!Number.isInteger(head) || !Number.isInteger(heads) || head < 0 || heads < 1 || head + heads > numHeads) {
    throw new Error(`copyAttentionLoss: heads ${head} … ${head + heads - 1} are not among the ${numHeads} heads`);
  }
  if (!tf.util.arraysEqual(allowed.shape, [batch, targets, sources])) {
    throw new Error(`copyAttentionLoss: allowed positions are [${allowed.shape}], expected [${[batch, targets, sources]}]`);
  }
  return tf.tidy(() => {
    const headProbs = tf.slice(probs, [0, head, 0, 0], [batch, heads, targets, sources]); // [B, h, T, S]
    const mass = tf.sum(tf.mul(headProbs, tf.expandDims(allowed, 1)), -1); // [B, h, T]
    const supervised = tf.cast(tf.greater(tf.sum(allowed, -1), 0), 'float32'); // [B, T]
    const nll = tf.mul(tf.neg(tf.log(tf.add(mass, EPSILON))), tf.expandDims(supervised, 1));
    return tf.div(tf.sum(nll), tf.mul(tf.maximum(tf.sum(supervised), 1), heads)) as tf.Scalar;
  });
}

/**
 * The allowed-positions array for `copyAttentionLoss` from per-target lists of encoder positions:
 * `positions[b][t]` lists the positions (into the fused [k·L] encoder sequence) that hold target
 * token t of example b; an empty or missing list leaves t unsupervised.
 */
export function allowedPositions(positions: readonly (readonly (readonly number[])[])[], targets: number, sources: number): Float32Array {
  const out = new Float32Array(positions.length * targets * sources);
  positions.forEach((perTarget, b) => {
    perTarget.slice(0, targets).forEach((list, t) => {
      for (const s of list) {
        if (!Number.isInteger(s) || s < 0 || s >= sources) throw new Error(`allowedPositions: position ${s} is outside the ${sources} encoder positions`);
        out[(b * targets + t) * sources + s] = 1;
      }
    });
  });
  return out;
}
