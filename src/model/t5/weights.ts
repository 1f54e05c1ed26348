/**
 * Where the T5 code gets its parameters: a ParameterStore (tf.Variables, for tf.variableGrads)
 * or any `(name) => tf.Tensor` getter (for tf.grads over a chosen subset, or weights living
 * elsewhere). Names are Hugging Face's. The model never owns or disposes what it reads here.
 */
import type * as tf from '@tensorflow/tfjs-core';
import { ParameterStore } from '../params';

export type T5WeightSource = ParameterStore | ((name: string) => tf.Tensor);

/** Reads one parameter by its Hugging Face name. */
export type WeightGetter = (name: string) => tf.Tensor;

/**
 * Hub checkpoints may store the embedding as `encoder.embed_tokens.weight` /
 * `decoder.embed_tokens.weight` copies of shared.weight; the model only reads shared.weight, and
 * falls back to the encoder copy when a store lacks it.
 */
export function weightGetter(source: T5WeightSource): WeightGetter {
  if (source instanceof ParameterStore) {
    return (name) => {
      if (name === 'shared.weight' && !source.has(name) && source.has('encoder.embed_tokens.weight')) {
        return source.get('encoder.embed_tokens.weight');
      }
      return source.get(name);
    };
  }
  return source;
}
