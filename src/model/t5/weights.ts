/**
 * Where the T5 code gets its parameters: a ParameterStore (tf.Variables, for tf.variableGrads)
 * or any `(name) => tf.Tensor` getter (for tf.grads over a chosen subset, or weights living
 * elsewhere). Names are Hugging Face's. The model never owns or disposes what it reads here.
 */
import type * as tf from '@tensorflow/tfjs-core';
import { loraAdapterNames, loraScale, type LoraConfig } from '../lora';
import { ParameterStore } from '../params';

export type T5WeightSource = ParameterStore | ((name: string) => tf.Tensor);

/** Reads one parameter by its Hugging Face name. */
export interface WeightGetter {
  (name: string): tf.Tensor;
  /**
   * LoRA (src/model/lora.ts): the scale alpha / r of the adapter on the projection weight `name`,
   * undefined when it has none. The adapter's A and B are read through the getter itself (by
   * loraAdapterNames), so a getter that substitutes tensors (checkpointing) substitutes them too.
   */
  readonly loraScale?: (weightName: string) => number | undefined;
}

/**
 * Hub checkpoints may store the embedding as `encoder.embed_tokens.weight` /
 * `decoder.embed_tokens.weight` copies of shared.weight; the model only reads shared.weight, and
 * falls back to the encoder copy when a store lacks it.
 */
export function weightGetter(source: T5WeightSource, lora?: LoraConfig): WeightGetter {
  if (source instanceof ParameterStore) {
    const get = (name: string) => {
      if (name === 'shared.weight' && !source.has(name) && source.has('encoder.embed_tokens.weight')) {
        return source.get('encoder.embed_tokens.weight');
      }
      return source.get(name);
    };
    if (!lora) return get;
    const scale = loraScale(lora);
    return Object.assign(get, { loraScale: (name: string) => (source.has(loraAdapterNames(name).a) ? scale : undefined) });
  }
  if (lora) throw new Error('LoRA adapters are read from a ParameterStore, not from a getter function');
  return source;
}
