/**
 * A previous-token prior for the T5 encoder: heads 0 … n−1 of the encoder's relative position
 * bias start out favouring the key 1 … n positions before the query, so from the first step the
 * encoder holds, at every position, what precedes it. With copy-attention supervision
 * (copy-attention.ts) this is the piece that makes locating an answer learnable in hundreds
 * instead of tens of thousands of steps (docs/lab/PRETRAINING.md, "Session 5"): the decoder's
 * supervised head only has to match "what precedes the gap in the question" against "what
 * precedes this passage position". The result is still a plain T5 (only initial values change).
 */
import type { T5Config } from './config';

/** The encoder's shared relative position bias ([buckets, heads]; every encoder layer uses it). */
export const ENCODER_RELATIVE_BIAS = 'encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight';

/**
 * Adds `bias` to head h's bucket for "key h+1 positions before the query", h = 0 … heads−1, in
 * the encoder's relative bias values `weights` ([buckets, heads], row-major; changed in place).
 * In T5's bidirectional bucketing a key d ≤ num_buckets/4 positions before the query falls in
 * bucket d exactly.
 */
export function addPreviousTokenBias(weights: Float32Array, config: T5Config, heads: number, bias: number): void {
  const exact = config.relative_attention_num_buckets / 4;
  if (!Number.isInteger(heads) || heads < 0 || heads > config.num_heads || heads >= exact) {
    throw new Error(`previous-token heads: ${heads} must be an integer from 0 to ${Math.min(config.num_heads, exact - 1)}`);
  }
  if (weights.length !== config.relative_attention_num_buckets * config.num_heads) {
    throw new Error(
      `previous-token heads: the relative bias has ${weights.length} values, expected ${config.relative_attention_num_buckets} × ${config.num_heads}`,
    );
  }
  for (let h = 0; h < heads; h++) {
    // Bucket h + 1 of head h: inside the table, as checked above (h < heads < buckets / 4).
    const at = (h + 1) * config.num_heads + h;
    const current = weights[at];
    if (current === undefined) throw new RangeError(`previous-token heads: bucket ${h + 1} of head ${h} is outside the relative bias`);
    weights[at] = current + bias;
  }
}
