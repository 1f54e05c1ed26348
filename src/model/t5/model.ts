/**
 * T5ForConditionalGeneration: the encoder, the decoder and the LM head over one set of named
 * parameters. The model holds no tensors of its own: parameters are read through the weight
 * source on every call, so gradients can be taken with tf.variableGrads (ParameterStore) or
 * tf.grads (a getter over the differentiated tensors).
 */
import * as tf from '@tensorflow/tfjs-core';
import type { LoraConfig } from '../lora';
import type { T5Config } from './config';
import { createDecoderCache, decode, decodeStep, lmHead, type DecoderCache, type DecoderOutput } from './decoder';
import { encode, encodeCheckpointed } from './encoder';
import { meanTokenCrossEntropy, shiftRight } from './loss';
import { weightGetter, type T5WeightSource, type WeightGetter } from './weights';

export type T5ForwardOutput = {
  /** [B, L, d_model] */
  readonly encoderHidden: tf.Tensor3D;
  /** [B, T, vocab] */
  readonly logits: tf.Tensor3D;
  /** Mean token cross-entropy over labels != -100. */
  readonly loss: tf.Scalar;
};

export class T5Model {
  private readonly w: WeightGetter;

  /**
   * With `lora`, every attention projection whose adapter tensors are in the (ParameterStore)
   * weights runs with its adapter (src/model/lora.ts); projections without adapters run as before.
   */
  constructor(
    readonly config: T5Config,
    weights: T5WeightSource,
    options: { readonly lora?: LoraConfig } = {},
  ) {
    this.w = weightGetter(weights, options.lora);
  }

  /**
   * Encoder last hidden state [B, L, d] of int32 ids [B, L] and mask [B, L]. With
   * `checkpointRows`, under a gradient computation the encoder's activations are not kept but
   * recomputed in the backward pass that many rows at a time (same values; src/model/gradients.ts).
   */
  encode(inputIds: tf.Tensor, attentionMask: tf.Tensor, options: { checkpointRows?: number } = {}): tf.Tensor3D {
    if (options.checkpointRows !== undefined) return encodeCheckpointed(this.w, this.config, inputIds, attentionMask, options.checkpointRows);
    return encode(this.w, this.config, inputIds, attentionMask);
  }

  /** Teacher-forced decoder hidden states (and cross-attention probabilities on request). */
  decode(decoderInputIds: tf.Tensor, encoderHidden: tf.Tensor, encoderMask: tf.Tensor, options: { crossAttentions?: boolean } = {}): DecoderOutput {
    return decode(this.w, this.config, decoderInputIds, encoderHidden, encoderMask, options);
  }

  /** Vocabulary logits of decoder hidden states [.., d] -> [.., vocab]. */
  logits(decoderHidden: tf.Tensor): tf.Tensor {
    return lmHead(this.w, this.config, decoderHidden);
  }

  /** Decoder inputs for teacher forcing from labels (shift right, start token, -100 -> pad). */
  decoderInputs(labels: tf.Tensor): tf.Tensor2D {
    return shiftRight(labels, this.config.decoder_start_token_id, this.config.pad_token_id);
  }

  /** Encoder states, teacher-forced logits and loss for a padded batch. */
  forward(inputIds: tf.Tensor, attentionMask: tf.Tensor, labels: tf.Tensor): T5ForwardOutput {
    return tf.tidy(() => {
      const encoderHidden = this.encode(inputIds, attentionMask);
      const { hidden } = this.decode(this.decoderInputs(labels), encoderHidden, attentionMask);
      const logits = this.logits(hidden) as tf.Tensor3D;
      return { encoderHidden, logits, loss: meanTokenCrossEntropy(logits, labels) };
    });
  }

  /** Just the loss (for tf.variableGrads / tf.grads). */
  loss(inputIds: tf.Tensor, attentionMask: tf.Tensor, labels: tf.Tensor): tf.Scalar {
    return tf.tidy(() => {
      const encoderHidden = this.encode(inputIds, attentionMask);
      const { hidden } = this.decode(this.decoderInputs(labels), encoderHidden, attentionMask);
      return meanTokenCrossEntropy(this.logits(hidden), labels);
    });
  }

  /** Starts incremental decoding over an encoder output (the cache owns what it computes). */
  createDecoderCache(encoderHidden: tf.Tensor, encoderMask: tf.Tensor): DecoderCache {
    return createDecoderCache(this.w, this.config, encoderHidden, encoderMask);
  }

  /** Logits [B, vocab] of the next token after feeding `tokens` [B, 1]; advances the cache. */
  stepLogits(tokens: tf.Tensor, cache: DecoderCache): tf.Tensor2D {
    // Not one tidy around everything: the cache keeps the new keys/values.
    const { hidden } = decodeStep(this.w, this.config, tokens, cache);
    const logits = tf.tidy(() => tf.squeeze(this.logits(hidden), [1]) as tf.Tensor2D);
    hidden.dispose();
    return logits;
  }

  /**
   * As stepLogits, plus the last decoder layer's cross-attention of the new position
   * [B, heads, S] (copy decoding reads the answer token off it: src/model/t5/copy-decoding.ts).
   */
  stepLogitsAndAttention(tokens: tf.Tensor, cache: DecoderCache): { logits: tf.Tensor2D; attention: tf.Tensor3D } {
    const { hidden, lastCrossAttention } = decodeStep(this.w, this.config, tokens, cache, { lastCrossAttention: true });
    const out = tf.tidy(() => ({
      logits: tf.squeeze(this.logits(hidden), [1]) as tf.Tensor2D,
      attention: tf.squeeze(lastCrossAttention!, [2]) as tf.Tensor3D,
    }));
    tf.dispose([hidden, lastCrossAttention!]);
    return out;
  }
}
