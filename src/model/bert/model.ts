/**
 * The BERT encoder (Hugging Face `BertModel` without pooler) as pure functions of named
 * parameters: embeddings (word + position + token type) and LayerNorm, then post-LN transformer
 * layers with 1/sqrt(d_head)-scaled self-attention and an additive padding mask. Dropout is not
 * applied (Contriever is used and fine-tuned here as a deterministic encoder).
 *
 * Parameters come through a getter keyed by canonical HF names (`encoder.layer.0.output.dense.weight`),
 * so the same code runs on a ParameterStore's variables (tf.variableGrads) or on plain tensors
 * passed to tf.grads, and gradients can be taken w.r.t. any subset.
 */
import * as tf from '@tensorflow/tfjs-core';
import { loraAdapterNames, loraScale, loraUpdate, type LoraConfig } from '../lora';
import { matMulWeightTransposed } from '../matmul';
import { embeddingLookup } from '../ops';
import { dimsOf, lastDim } from '../shape';
import type { ParameterStore } from '../params';
import type { BertConfig } from './config';

/** Returns the parameter tensor with the given canonical HF name (no `bert.` prefix). */
export interface BertParams {
  (name: string): tf.Tensor;
  /**
   * LoRA (src/model/lora.ts): the scale alpha / r of the adapter on the projection weight `name`,
   * undefined when it has none; its A and B are read through the getter by loraAdapterNames.
   */
  readonly loraScale?: (weightName: string) => number | undefined;
}

/**
 * Reads parameters `<prefix><name>` from a store, e.g. prefix `query.` for a Contriever side.
 * With `lora`, every projection whose adapter is in the store (`<prefix>lora.<module>.lora_A.weight`)
 * runs with it, unmerged (the training path: gradients reach A and B).
 */
export function paramsFromStore(store: ParameterStore, prefix = '', lora?: LoraConfig): BertParams {
  const get = (name: string) => store.get(prefix + name);
  if (!lora) return get;
  const scale = loraScale(lora);
  return Object.assign(get, { loraScale: (name: string) => (store.has(prefix + loraAdapterNames(name).a) ? scale : undefined) });
}

export interface BertInputs {
  /** [batch, length] int32 token ids. */
  readonly inputIds: tf.Tensor2D;
  /** [batch, length], 1 for real tokens and 0 for padding. */
  readonly attentionMask: tf.Tensor2D;
  /** [batch, length] int32 segment ids; all zeros when omitted (Contriever uses single segments). */
  readonly tokenTypeIds?: tf.Tensor2D;
}

/**
 * Large negative bias for masked keys. HF uses float32's minimum; any value that makes exp()
 * underflow to 0 gives the same probabilities, and a moderate one cannot overflow to -inf when
 * added to a negative score on backends with less careful arithmetic (WebGPU).
 */
const MASKED_SCORE = -1e9;

/** Exact GELU, x * Φ(x) = 0.5 x (1 + erf(x / √2)): BERT's `gelu` (tfjs-core has no gelu op). */
export function geluExact(x: tf.Tensor): tf.Tensor {
  return tf.tidy(() => tf.mul(tf.mul(x, 0.5), tf.add(1, tf.erf(tf.mul(x, Math.SQRT1_2)))));
}

/** The tanh approximation of GELU (`gelu_new`): 0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³))). */
export function geluTanh(x: tf.Tensor): tf.Tensor {
  return tf.tidy(() => {
    const inner = tf.mul(Math.sqrt(2 / Math.PI), tf.add(x, tf.mul(0.044715, tf.pow(x, 3))));
    return tf.mul(tf.mul(x, 0.5), tf.add(1, tf.tanh(inner)));
  });
}

/** LayerNorm over the last axis with biased variance, as torch.nn.LayerNorm. */
export function layerNorm(x: tf.Tensor, weight: tf.Tensor, bias: tf.Tensor, eps: number): tf.Tensor {
  return tf.tidy(() => {
    const { mean, variance } = tf.moments(x, -1, true);
    const normed = tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, eps)));
    return tf.add(tf.mul(normed, weight), bias);
  });
}

/** torch.nn.Linear: x · Wᵀ + b with W stored [out, in]; x is [..., in]. */
export function linear(x: tf.Tensor, weight: tf.Tensor, bias: tf.Tensor): tf.Tensor {
  return tf.tidy(() => {
    const inDim = lastDim(x.shape, 'linear');
    const flat = tf.reshape(x, [-1, inDim]) as tf.Tensor2D;
    const out = tf.add(matMulWeightTransposed(flat, weight as tf.Tensor2D), bias);
    return tf.reshape(out, [...x.shape.slice(0, -1), dimsOf(weight.shape, 2, 'linear weight')[0]]);
  });
}

/** A projection with bias, plus its LoRA adapter's scale · (x Aᵀ) Bᵀ when the getter has one. */
function projection(p: BertParams, module: string, x: tf.Tensor): tf.Tensor {
  const weightName = `${module}.weight`;
  const y = linear(x, p(weightName), p(`${module}.bias`));
  const scale = p.loraScale?.(weightName);
  if (scale === undefined) return y;
  const { a, b } = loraAdapterNames(weightName);
  return tf.add(y, loraUpdate(x, p(a), p(b), scale));
}

/** [batch, length, hidden] → [batch, heads, length, d_head]. */
function splitHeads(x: tf.Tensor, heads: number): tf.Tensor4D {
  const [b, l, h] = dimsOf(x.shape, 3, 'splitHeads');
  return tf.transpose(tf.reshape(x, [b, l, heads, h / heads]), [0, 2, 1, 3]);
}

function selfAttention(config: BertConfig, p: BertParams, prefix: string, hidden: tf.Tensor, maskBias: tf.Tensor): tf.Tensor {
  const heads = config.num_attention_heads;
  const dHead = config.hidden_size / heads;
  const proj = (name: string) => projection(p, `${prefix}attention.self.${name}`, hidden);
  const q = splitHeads(proj('query'), heads);
  const k = splitHeads(proj('key'), heads);
  const v = splitHeads(proj('value'), heads);
  const scores = tf.add(tf.div(tf.matMul(q, k, false, true), Math.sqrt(dHead)), maskBias);
  const context = tf.matMul(tf.softmax(scores, -1), v);
  const [b, , l] = dimsOf(context.shape, 4, 'selfAttention context');
  return tf.reshape(tf.transpose(context, [0, 2, 1, 3]), [b, l, config.hidden_size]);
}

function encoderLayer(config: BertConfig, p: BertParams, i: number, hidden: tf.Tensor, maskBias: tf.Tensor): tf.Tensor {
  const prefix = `encoder.layer.${i}.`;
  const eps = config.layer_norm_eps;
  const attended = projection(p, `${prefix}attention.output.dense`, selfAttention(config, p, prefix, hidden, maskBias));
  const afterAttention = layerNorm(
    tf.add(attended, hidden),
    p(`${prefix}attention.output.LayerNorm.weight`),
    p(`${prefix}attention.output.LayerNorm.bias`),
    eps,
  );
  const act = config.hidden_act === 'gelu' ? geluExact : geluTanh;
  const intermediate = act(linear(afterAttention, p(`${prefix}intermediate.dense.weight`), p(`${prefix}intermediate.dense.bias`)));
  const out = linear(intermediate, p(`${prefix}output.dense.weight`), p(`${prefix}output.dense.bias`));
  return layerNorm(tf.add(out, afterAttention), p(`${prefix}output.LayerNorm.weight`), p(`${prefix}output.LayerNorm.bias`), eps);
}

/** Embedding sum (word + absolute position + token type) followed by LayerNorm. */
function embed(config: BertConfig, p: BertParams, inputs: BertInputs): tf.Tensor {
  const [batch, length] = inputs.inputIds.shape;
  if (length > config.max_position_embeddings) {
    throw new Error(`BERT input has ${length} tokens but max_position_embeddings is ${config.max_position_embeddings}`);
  }
  const positions = tf.expandDims(tf.range(0, length, 1, 'int32'), 0);
  const tokenTypes = inputs.tokenTypeIds ?? tf.zeros([batch, length], 'int32');
  const words = embeddingLookup(p('embeddings.word_embeddings.weight') as tf.Tensor2D, inputs.inputIds);
  const pos = embeddingLookup(p('embeddings.position_embeddings.weight') as tf.Tensor2D, positions);
  const types = embeddingLookup(p('embeddings.token_type_embeddings.weight') as tf.Tensor2D, tokenTypes);
  return layerNorm(tf.add(tf.add(words, pos), types), p('embeddings.LayerNorm.weight'), p('embeddings.LayerNorm.bias'), config.layer_norm_eps);
}

/** The last hidden state [batch, length, hidden_size] of BertModel (eval mode, no pooler). */
export function bertEncode(config: BertConfig, params: BertParams, inputs: BertInputs): tf.Tensor3D {
  if (inputs.inputIds.dtype !== 'int32') throw new Error(`BERT inputIds must be int32, got ${inputs.inputIds.dtype}`);
  if (!tf.util.arraysEqual(inputs.inputIds.shape, inputs.attentionMask.shape)) {
    throw new Error(`BERT attentionMask shape [${inputs.attentionMask.shape}] differs from inputIds shape [${inputs.inputIds.shape}]`);
  }
  return tf.tidy(() => {
    const [batch, length] = inputs.inputIds.shape;
    // [batch, 1, 1, length]: 0 where a key may be attended, MASKED_SCORE at padding.
    const mask = tf.cast(inputs.attentionMask, 'float32');
    const maskBias = tf.reshape(tf.mul(tf.sub(1, mask), MASKED_SCORE), [batch, 1, 1, length]);
    let hidden = embed(config, params, inputs);
    for (let i = 0; i < config.num_hidden_layers; i++) hidden = encoderLayer(config, params, i, hidden, maskBias);
    return hidden as tf.Tensor3D;
  });
}
