/** The T5 encoder stack: embeddings, N × (self-attention, feed-forward) with pre-norm residuals, final RMS norm. */
import * as tf from '@tensorflow/tfjs-core';
import { checkpointedRows } from '../gradients';
import { loraAdapterNames } from '../lora';
import { embeddingLookup } from '../ops';
import { attend, paddingMaskBias, projectKeyValue } from './attention';
import { t5ParameterShapes, type T5Config } from './config';
import { feedForward, rmsNorm } from './layers';
import { positionBias } from './position-bias';
import type { WeightGetter } from './weights';

/**
 * Encodes `inputIds` [B, L] (int32) with `attentionMask` [B, L] (1 = token, 0 = pad) into the
 * last hidden state [B, L, d_model] (after encoder.final_layer_norm). Rows are independent, so
 * Fusion-in-Decoder passes all B·k passages in one call.
 */
export function encode(w: WeightGetter, config: T5Config, inputIds: tf.Tensor, attentionMask: tf.Tensor): tf.Tensor3D {
  return tf.tidy(() => {
    const length = inputIds.shape[1]!;
    const eps = config.layer_norm_epsilon;
    let x = embeddingLookup(w('shared.weight') as tf.Tensor2D, inputIds);
    // Computed once from block 0's table and shared by every layer, as in T5. The padding mask
    // is folded in once (as HF does): each layer then adds one full-shape bias, whose gradient
    // needs no per-layer reduction over the broadcast axes.
    const bias = tf.add(
      positionBias(w('encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight'), 0, length, length, true, config),
      paddingMaskBias(attentionMask),
    );
    // One tidy per layer: a layer's intermediates (scores, the feed-forward's d_ff activations,
    // projections) are released as soon as the next layer's input exists, instead of all layers'
    // living until the stack returns. Under a gradient tape the tensors a gradient needs survive
    // (the engine keeps what ops save), so this frees only what nothing reads again.
    for (let i = 0; i < config.num_layers; i++) {
      const input = x;
      x = tf.tidy(() => {
        const block = `encoder.block.${i}`;
        const normed = rmsNorm(input, w(`${block}.layer.0.layer_norm.weight`), eps);
        const selfAttention = `${block}.layer.0.SelfAttention`;
        const kv = projectKeyValue(w, selfAttention, normed, config.num_heads);
        const attended = tf.add(input, attend(w, selfAttention, normed, kv, [bias], config.num_heads).output);
        return tf.add(attended, feedForward(w, `${block}.layer.1.DenseReluDense`, rmsNorm(attended, w(`${block}.layer.1.layer_norm.weight`), eps), config));
      });
      input.dispose();
    }
    return rmsNorm(x, w('encoder.final_layer_norm.weight'), eps) as tf.Tensor3D;
  });
}

/** The parameters `encode` reads: shared.weight (the embedding) and every encoder.* tensor. */
export function encoderParameterNames(config: T5Config): string[] {
  return [...t5ParameterShapes(config).keys()].filter((n) => n === 'shared.weight' || n.startsWith('encoder.'));
}

/**
 * `encode` with gradient checkpointing (src/model/gradients.ts, checkpointedRows): the forward
 * keeps none of the encoder's activations, the backward recomputes them `chunkRows` input rows
 * (FiD passages) at a time. Same values and gradients as `encode`. Frozen parameters (tf.Variables
 * with trainable = false) are read as constants and get no gradient.
 */
export function encodeCheckpointed(w: WeightGetter, config: T5Config, inputIds: tf.Tensor, attentionMask: tf.Tensor, chunkRows: number): tf.Tensor3D {
  const base = encoderParameterNames(config);
  // LoRA adapters on encoder projections are encoder parameters too (the frozen W are skipped below).
  const adapters = base.filter((n) => w.loraScale?.(n) !== undefined).flatMap((n) => Object.values(loraAdapterNames(n)));
  const names = [...base, ...adapters].filter((n) => {
    const t = w(n);
    return !(t instanceof tf.Variable) || t.trainable;
  });
  const rows = inputIds.shape[0]!;
  return checkpointedRows(
    names.map((n) => w(n)),
    rows,
    chunkRows,
    (ws, start, count) =>
      tf.tidy(() => {
        const byName = new Map(names.map((n, i) => [n, ws[i]]));
        const getter: WeightGetter = Object.assign((name: string) => byName.get(name) ?? w(name), { loraScale: w.loraScale });
        const whole = start === 0 && count === rows;
        const ids = whole ? inputIds : tf.slice(inputIds, [start, 0], [count, -1]);
        const mask = whole ? attentionMask : tf.slice(attentionMask, [start, 0], [count, -1]);
        return encode(getter, config, ids, mask);
      }),
  ) as tf.Tensor3D;
}
