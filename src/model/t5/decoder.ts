/**
 * The T5 decoder stack: N × (causal self-attention, cross-attention over the encoder output,
 * feed-forward), final RMS norm, and the LM head. Two entry points share the same block code:
 * `decode` (teacher forcing over a whole target) and `decodeStep` (one token, with a KV cache).
 */
import * as tf from '@tensorflow/tfjs-core';
import { embeddingLookup } from '../ops';
import { appendKeyValue, attend, causalMaskBias, paddingMaskBias, projectKeyValue, type KeyValue } from './attention';
import type { T5Config } from './config';
import { feedForward, linear, rmsNorm } from './layers';
import { positionBias } from './position-bias';
import type { WeightGetter } from './weights';

const RELATIVE_BIAS = 'decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight';

const selfAttentionName = (i: number) => `decoder.block.${i}.layer.0.SelfAttention`;
const crossAttentionName = (i: number) => `decoder.block.${i}.layer.1.EncDecAttention`;

interface BlockOutput {
  readonly hidden: tf.Tensor;
  /** This block's self-attention keys/values including the current positions (for the cache). */
  readonly selfKV: KeyValue;
  /** Cross-attention probabilities [B, heads, T, S]. */
  readonly crossProbs: tf.Tensor4D;
}

/**
 * One decoder block. `selfKV` turns the normalised input into the keys/values to attend over
 * (the fresh projection when teacher forcing, cache + fresh projection when stepping).
 */
function decoderBlock(
  w: WeightGetter,
  config: T5Config,
  i: number,
  x: tf.Tensor,
  selfKV: (normed: tf.Tensor) => KeyValue,
  selfBiases: readonly tf.Tensor[],
  crossKV: KeyValue,
  crossBiases: readonly tf.Tensor[],
): BlockOutput {
  const eps = config.layer_norm_epsilon;
  const block = `decoder.block.${i}`;
  const normed = rmsNorm(x, w(`${block}.layer.0.layer_norm.weight`), eps);
  const kv = selfKV(normed);
  let hidden = tf.add(x, attend(w, selfAttentionName(i), normed, kv, selfBiases, config.num_heads).output);
  const cross = attend(w, crossAttentionName(i), rmsNorm(hidden, w(`${block}.layer.1.layer_norm.weight`), eps), crossKV, crossBiases, config.num_heads);
  hidden = tf.add(hidden, cross.output);
  hidden = tf.add(hidden, feedForward(w, `${block}.layer.2.DenseReluDense`, rmsNorm(hidden, w(`${block}.layer.2.layer_norm.weight`), eps), config));
  return { hidden, selfKV: kv, crossProbs: cross.probs };
}

export type DecoderOutput = {
  /** Last hidden state [B, T, d_model] after decoder.final_layer_norm. */
  readonly hidden: tf.Tensor3D;
  /** Per layer, cross-attention probabilities [B, heads, T, S]; only when requested. */
  readonly crossAttentions?: tf.Tensor4D[];
};

/**
 * Teacher-forced decoding of `decoderInputIds` [B, T] over `encoderHidden` [B, S, d] with
 * `encoderMask` [B, S]. The caller owns the returned tensors.
 */
export function decode(
  w: WeightGetter,
  config: T5Config,
  decoderInputIds: tf.Tensor,
  encoderHidden: tf.Tensor,
  encoderMask: tf.Tensor,
  options: { crossAttentions?: boolean } = {},
): DecoderOutput {
  return tf.tidy(() => {
    const length = decoderInputIds.shape[1]!;
    let x: tf.Tensor = embeddingLookup(w('shared.weight') as tf.Tensor2D, decoderInputIds);
    // Position bias and causal mask added once, not per layer.
    const selfBiases = [tf.add(positionBias(w(RELATIVE_BIAS), 0, length, length, false, config), causalMaskBias(length))];
    const crossBiases = [paddingMaskBias(encoderMask)];
    const crossAttentions: tf.Tensor4D[] = [];
    // One tidy per layer, as in the encoder: a layer's intermediates (its cross-attention keys and
    // values over all k·L encoder positions, the attention maps) go as soon as the next layer's
    // input exists; what a gradient needs is kept by the tape.
    for (let i = 0; i < config.num_decoder_layers; i++) {
      const input = x;
      const out = tf.tidy(() => {
        const crossKV = projectKeyValue(w, crossAttentionName(i), encoderHidden, config.num_heads);
        const block = decoderBlock(
          w,
          config,
          i,
          input,
          (normed) => projectKeyValue(w, selfAttentionName(i), normed, config.num_heads),
          selfBiases,
          crossKV,
          crossBiases,
        );
        return options.crossAttentions ? { hidden: block.hidden, crossProbs: block.crossProbs } : { hidden: block.hidden };
      });
      input.dispose();
      x = out.hidden;
      if (out.crossProbs) crossAttentions.push(out.crossProbs);
    }
    const hidden = rmsNorm(x, w('decoder.final_layer_norm.weight'), config.layer_norm_epsilon) as tf.Tensor3D;
    return options.crossAttentions ? { hidden, crossAttentions } : { hidden };
  });
}

/**
 * LM head: logits [.., vocab] from decoder hidden states. Tied embeddings (original T5) reuse
 * shared.weight and first rescale by d_model^-0.5; untied ones (v1.1 / flan) use lm_head.weight as is.
 */
export function lmHead(w: WeightGetter, config: T5Config, hidden: tf.Tensor): tf.Tensor {
  return tf.tidy(() => (config.tie_word_embeddings ? linear(tf.mul(hidden, config.d_model ** -0.5), w('shared.weight')) : linear(hidden, w('lm_head.weight'))));
}

/** Exempts cache tensors from any enclosing tf.tidy: the cache alone disposes them. */
function keepAll<T extends KeyValue | null>(kvs: T[]): T[] {
  for (const kv of kvs)
    if (kv) {
      tf.keep(kv.keys);
      tf.keep(kv.values);
    }
  return kvs;
}

/**
 * State of incremental decoding for a batch of B sequences: per layer the cross-attention
 * keys/values (computed once from the encoder output) and the self-attention keys/values of
 * every position decoded so far. Owns its tensors.
 */
export class DecoderCache {
  private selfKV: Array<KeyValue | null>;
  /** Number of positions already decoded. */
  length = 0;

  constructor(
    readonly crossKV: readonly KeyValue[],
    readonly encoderBias: tf.Tensor4D,
    numLayers: number,
  ) {
    keepAll([...crossKV]);
    tf.keep(encoderBias);
    this.selfKV = new Array<KeyValue | null>(numLayers).fill(null);
  }

  get batchSize(): number {
    return this.encoderBias.shape[0];
  }

  /** Self-attention keys/values of layer i so far (null before the first step). */
  past(i: number): KeyValue | null {
    const kv = this.selfKV[i];
    if (kv === undefined) throw new RangeError(`DecoderCache: no decoder layer ${i} (it has ${this.selfKV.length})`);
    return kv;
  }

  /** Cross-attention keys/values of layer i (projected from the encoder output once). */
  cross(i: number): KeyValue {
    const kv = this.crossKV[i];
    if (!kv) throw new RangeError(`DecoderCache: no cross-attention keys for decoder layer ${i} (it has ${this.crossKV.length})`);
    return kv;
  }

  /** Replaces every layer's self-attention state with the given one (taking ownership) after a step. */
  advance(next: readonly KeyValue[], steps: number): void {
    this.selfKV.forEach((kv) => kv && tf.dispose([kv.keys, kv.values]));
    this.selfKV = keepAll([...next]);
    this.length += steps;
  }

  /**
   * Reorders the batch of decoded prefixes (beam search keeps the best beams): row r of the new
   * state is row `rows[r]` of the old. The encoder side must already match the new batch order.
   */
  reorderSelf(rows: Int32Array): void {
    const index = tf.tensor1d(rows, 'int32');
    const next = this.selfKV.map((kv) => kv && { keys: tf.gather(kv.keys, index) as tf.Tensor4D, values: tf.gather(kv.values, index) as tf.Tensor4D });
    index.dispose();
    this.selfKV.forEach((kv) => kv && tf.dispose([kv.keys, kv.values]));
    this.selfKV = keepAll(next);
  }

  dispose(): void {
    this.selfKV.forEach((kv) => kv && tf.dispose([kv.keys, kv.values]));
    this.crossKV.forEach((kv) => tf.dispose([kv.keys, kv.values]));
    this.encoderBias.dispose();
  }
}

/** Prepares incremental decoding over `encoderHidden` [B, S, d] / `encoderMask` [B, S]. */
export function createDecoderCache(w: WeightGetter, config: T5Config, encoderHidden: tf.Tensor, encoderMask: tf.Tensor): DecoderCache {
  const { crossKV, bias } = tf.tidy(() => ({
    crossKV: Array.from({ length: config.num_decoder_layers }, (_, i) => projectKeyValue(w, crossAttentionName(i), encoderHidden, config.num_heads)),
    bias: paddingMaskBias(encoderMask),
  }));
  return new DecoderCache(crossKV, bias, config.num_decoder_layers);
}

/**
 * Decodes the next token of each sequence: `tokens` [B, 1] (int32) at position `cache.length`.
 * Returns the final hidden state [B, 1, d_model] and, on request, the last layer's
 * cross-attention probabilities [B, heads, 1, S] (for copy decoding); the caller owns both. Advances
 * the cache. Only the new position is computed: past keys/values come from the cache, so one step
 * costs O(length).
 */
export function decodeStep(
  w: WeightGetter,
  config: T5Config,
  tokens: tf.Tensor,
  cache: DecoderCache,
  options: { lastCrossAttention?: boolean } = {},
): { hidden: tf.Tensor3D; lastCrossAttention?: tf.Tensor4D } {
  const position = cache.length;
  const { hidden, selfKV, lastCrossAttention } = tf.tidy(() => {
    let x: tf.Tensor = embeddingLookup(w('shared.weight') as tf.Tensor2D, tokens);
    // The new query sits at `position` and sees every key 0..position: no causal mask needed.
    const selfBiases = [positionBias(w(RELATIVE_BIAS), position, 1, position + 1, false, config)];
    const crossBiases = [cache.encoderBias];
    const kvs: KeyValue[] = [];
    let crossProbs: tf.Tensor4D | undefined;
    for (let i = 0; i < config.num_decoder_layers; i++) {
      const past = cache.past(i);
      const out = decoderBlock(
        w,
        config,
        i,
        x,
        (normed) => appendKeyValue(past, projectKeyValue(w, selfAttentionName(i), normed, config.num_heads)),
        selfBiases,
        cache.cross(i),
        crossBiases,
      );
      x = out.hidden;
      kvs.push(out.selfKV);
      crossProbs = out.crossProbs;
    }
    return {
      hidden: rmsNorm(x, w('decoder.final_layer_norm.weight'), config.layer_norm_epsilon) as tf.Tensor3D,
      selfKV: kvs,
      ...(options.lastCrossAttention ? { lastCrossAttention: crossProbs! } : {}),
    };
  });
  cache.advance(selfKV, 1);
  return lastCrossAttention ? { hidden, lastCrossAttention } : { hidden };
}
