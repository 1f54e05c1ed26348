/**
 * The frozen passage encoder alone: what a tab's embedding worker needs of a session's global
 * model. Building the whole ModelBundle there would hold the reader and the query encoder too
 * (for flan-t5-base + Contriever, ~1 GB of weights the worker never reads); this takes only the
 * `passage_encoder.*` tensors of a global version. The passage encoder is frozen in every
 * session, so any version gives the same embeddings.
 */
import * as tf from '@tensorflow/tfjs-core';
import { decodeModel } from '../federated/codec';
import { PASSAGE_ENCODER_WIRE_PREFIX } from '../federated/protocol';
import { bertParameterShapes, type BertConfig } from '../model/bert/config';
import { Contriever, PASSAGE_PREFIX } from '../model/contriever';
import { ParameterStore } from '../model/params';
import type { TextTokenizer } from '../model/tokenizer';
import type { RetrieverWithTokenizer } from './retrieve';

export class PassageEncoder implements RetrieverWithTokenizer {
  private constructor(
    readonly retriever: Contriever,
    readonly retrieverTokenizer: TextTokenizer,
  ) {}

  /** The passage encoder of global version `version` (its serialized bytes); other tensors are not materialised. */
  static fromGlobal(config: BertConfig, tokenizer: TextTokenizer, bytes: Uint8Array, version: number): PassageEncoder {
    const global = decodeModel(bytes, `global model v${version}`);
    const params = new ParameterStore();
    try {
      for (const [name, shape] of bertParameterShapes(config)) {
        const t = global.get(PASSAGE_ENCODER_WIRE_PREFIX + name);
        if (!t) throw new Error(`global model v${version} lacks tensor "${PASSAGE_ENCODER_WIRE_PREFIX + name}"`);
        if (!tf.util.arraysEqual([...t.shape], [...shape]))
          throw new Error(
            `global model v${version}: "${PASSAGE_ENCODER_WIRE_PREFIX + name}" has shape [${t.shape}] but the retriever config implies [${shape}]`,
          );
        params.set(PASSAGE_PREFIX + name, tf.tensor(t.data, [...t.shape], 'float32'), false);
      }
      return new PassageEncoder(new Contriever(config, params, ['passage']), tokenizer);
    } catch (e) {
      params.dispose();
      throw e;
    }
  }

  dispose(): void {
    this.retriever.params.dispose();
  }
}
