/**
 * T5's relative position bias: each (query, key) distance falls into a bucket (exact for short
 * distances, logarithmic up to max_distance), each bucket has a learned bias per head. The
 * table lives in block 0 of each stack and its bias is added to every layer's attention scores.
 */
import * as tf from '@tensorflow/tfjs-core';
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

/**
 * Bucket of every relative position (key − query) that queries at queryStart..queryStart+queryLength−1
 * and keys at 0..keyLength−1 can have, from the most negative: entry j is relative position
 * j − (queryStart + queryLength − 1). There are only queryLength + keyLength − 1 of them.
 */
export function bucketsByDistance(queryStart: number, queryLength: number, keyLength: number, bidirectional: boolean, config: T5Config): Int32Array {
  const minRelative = -(queryStart + queryLength - 1);
  return Int32Array.from({ length: queryLength + keyLength - 1 }, (_, j) =>
    relativePositionBucket(minRelative + j, bidirectional, config.relative_attention_num_buckets, config.relative_attention_max_distance),
  );
}

/**
 * The additive attention bias [1, heads, queryLength, keyLength] from the bias table
 * [num_buckets, heads] for queries at positions queryStart.. and keys at 0..; differentiable with
 * respect to the table.
 *
 * The bias depends only on key − query, so it is looked up once per distance ([heads, W],
 * W = queryLength + keyLength − 1) and spread into the Toeplitz matrix by a skew (broadcast, flatten,
 * shift, reshape), whose gradient is pads and a sum. The lookup is a one-hot matmul rather than
 * a gather: a gather's scatter-add gradient over L² pairs into 32 buckets serialises on GPU
 * atomics (a quarter second per step for L=256 on WebGPU).
 */
export function positionBias(
  table: tf.Tensor,
  queryStart: number,
  queryLength: number,
  keyLength: number,
  bidirectional: boolean,
  config: T5Config,
): tf.Tensor4D {
  return tf.tidy(() => {
    const heads = table.shape[1]!;
    const width = queryLength + keyLength - 1;
    const ids = tf.tensor1d(bucketsByDistance(queryStart, queryLength, keyLength, bidirectional, config), 'int32');
    const oneHot = tf.oneHot(ids, config.relative_attention_num_buckets);
    // [heads, W]: entry j is the bias of key − query = j − (queryLength − 1) (queryStart cancels out).
    const perDistance = tf.transpose(tf.matMul(oneHot, table as tf.Tensor2D));
    if (queryLength === 1) return tf.reshape(perDistance, [1, heads, 1, keyLength]) as tf.Tensor4D;
    // out[h, q, k] = perDistance[h, k − q + queryLength − 1]. Row q of the repeated [heads, Lq, W],
    // flattened, starts at q·W; reading from offset (Lq − 1) with row stride W − 1 shifts row q
    // left by q, which is the Toeplitz structure.
    // Repeated by a broadcasting multiply, whose gradient is one sum: tf.tile (and tf.broadcastTo,
    // which runs the Tile kernel) differentiate with one slice + add per repetition (2·Lq kernels).
    const tiled = tf.mul(tf.expandDims(perDistance, 1), tf.ones([1, queryLength, 1]));
    const skewed = tf.slice(tf.reshape(tiled, [heads, queryLength * width]), [0, queryLength - 1], [heads, queryLength * (width - 1)]);
    const bias = tf.slice(tf.reshape(skewed, [heads, queryLength, width - 1]), [0, 0, 0], [heads, queryLength, keyLength]);
    return tf.expandDims(bias, 0) as tf.Tensor4D;
  });
}
