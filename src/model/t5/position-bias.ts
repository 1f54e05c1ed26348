/**
 * T5's relative position bias: each (query, key) distance falls into a bucket (exact for short
 * distances, logarithmic up to max_distance), each bucket has a learned bias per head. The
 * table lives in block 0 of each stack and its bias is added to every layer's attention scores.
 */
import * as tf from '@tensorflow/tfjs-core';
import { embeddingLookup } from '../ops';
import type { T5Config } from './config';

const f32 = Math.fround;

/**
 * Hugging Face's `T5Attention._relative_position_bucket` for one relative position
 * (key position − query position). The logarithmic branch rounds every step to float32 as
 * PyTorch computes it, so bucket boundaries match exactly.
 */
export function relativePositionBucket(relativePosition: number, bidirectional: boolean, numBuckets: number, maxDistance: number): number {
  let bucket = 0;
  let buckets = numBuckets;
  let distance: number;
  if (bidirectional) {
    buckets = Math.floor(buckets / 2);
    if (relativePosition > 0) bucket += buckets;
    distance = Math.abs(relativePosition);
  } else {
    // Causal: only keys at or before the query are distinguished.
    distance = -Math.min(relativePosition, 0);
  }
  const maxExact = Math.floor(buckets / 2);
  if (distance < maxExact) return bucket + distance;
  const logRatio = f32(f32(Math.log(f32(distance / maxExact))) / f32(Math.log(maxDistance / maxExact)));
  const large = maxExact + Math.trunc(f32(logRatio * (buckets - maxExact)));
  return bucket + Math.min(large, buckets - 1);
}

/** Bucket ids [queryLength, keyLength] for queries at positions queryStart.. and keys at 0... */
export function relativePositionBuckets(queryStart: number, queryLength: number, keyLength: number, bidirectional: boolean, config: T5Config): Int32Array {
  // Only queryLength + keyLength - 1 distinct distances occur; compute each bucket once.
  const minRelative = -(queryStart + queryLength - 1);
  const byRelative = new Int32Array(keyLength - minRelative);
  for (let r = minRelative; r < keyLength - queryStart; r++) {
    byRelative[r - minRelative] = relativePositionBucket(r, bidirectional, config.relative_attention_num_buckets, config.relative_attention_max_distance);
  }
  const ids = new Int32Array(queryLength * keyLength);
  for (let q = 0; q < queryLength; q++) {
    for (let k = 0; k < keyLength; k++) ids[q * keyLength + k] = byRelative[k - (queryStart + q) - minRelative];
  }
  return ids;
}

/**
 * The additive attention bias [1, heads, queryLength, keyLength] from the bias table
 * [num_buckets, heads]; differentiable with respect to the table.
 */
export function positionBias(table: tf.Tensor, queryStart: number, queryLength: number, keyLength: number, bidirectional: boolean, config: T5Config): tf.Tensor4D {
  return tf.tidy(() => {
    const ids = tf.tensor2d(relativePositionBuckets(queryStart, queryLength, keyLength, bidirectional, config), [queryLength, keyLength], 'int32');
    const perPair = embeddingLookup(table as tf.Tensor2D, ids); // [q, k, heads]
    return tf.expandDims(tf.transpose(perPair, [2, 0, 1]), 0) as tf.Tensor4D;
  });
}
