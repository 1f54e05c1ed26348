/**
 * The weights a fresh pretraining run starts from: seeded random ones (as transformers
 * initialises T5 and BERT), or an earlier run's exported checkpoint for continued pretraining,
 * checked against the config's shapes. Either way the reader's encoder gets the config's
 * previous-token prior (src/model/t5/previous-token-bias.ts) before the first step.
 */
import * as tf from '@tensorflow/tfjs-core';
import { bertParameterShapes, type BertConfig } from '../model/bert/config';
import { ParameterStore } from '../model/params';
import { t5ParameterShapes, type T5Config } from '../model/t5/config';
import { addPreviousTokenBias, ENCODER_RELATIVE_BIAS } from '../model/t5/previous-token-bias';
import { tinyBertWeights, tinyT5Weights, type TinyWeights } from '../model/tiny';
import type { PretrainConfig } from './config';

export interface ModelStores {
  readonly reader: ParameterStore;
  readonly retriever: ParameterStore;
}

function storeOf(weights: TinyWeights): ParameterStore {
  const store = new ParameterStore();
  for (const [name, t] of weights) store.set(name, tf.tensor(t.data, t.shape, 'float32'));
  return store;
}

/** The reader's store with the config's previous-token prior added (a no-op with 0 heads). */
function withPreviousTokenBias(reader: ParameterStore, t5: T5Config, config: PretrainConfig): ParameterStore {
  if (config.previousTokenHeads === 0) return reader;
  const current = reader.get(ENCODER_RELATIVE_BIAS);
  const values = Float32Array.from(current.dataSync());
  addPreviousTokenBias(values, t5, config.previousTokenHeads, config.previousTokenBias);
  reader.set(ENCODER_RELATIVE_BIAS, tf.tensor(values, current.shape, 'float32'));
  return reader;
}

/**
 * Seeded fresh stores for the two configs, or `initial` (taken over) once every parameter the
 * configs need is there with its shape; the reader with its previous-token prior.
 */
export function initialStores(config: PretrainConfig, t5: T5Config, bert: BertConfig, initial?: ModelStores): ModelStores {
  if (initial) {
    for (const [store, shapes, what] of [
      [initial.reader, t5ParameterShapes(t5), 'reader'],
      [initial.retriever, bertParameterShapes(bert), 'retriever'],
    ] as const) {
      for (const [name, shape] of shapes) {
        if (!store.has(name) || !tf.util.arraysEqual(store.get(name).shape, shape))
          throw new Error(`initial ${what} weights do not fit the config: "${name}" should be [${shape}]`);
      }
    }
    return { reader: withPreviousTokenBias(initial.reader, t5, config), retriever: initial.retriever };
  }
  return {
    reader: withPreviousTokenBias(storeOf(tinyT5Weights(t5, config.seed)), t5, config),
    retriever: storeOf(tinyBertWeights(bert, config.seed + 1)),
  };
}
