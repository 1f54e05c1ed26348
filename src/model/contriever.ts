/**
 * Contriever retriever: a BERT encoder whose text embedding is the mean of the last hidden state
 * over non-pad tokens, with UNTIED query and passage encoders. Both live in one ParameterStore
 * under the prefixes `query.` and `passage.` (each followed by the canonical HF BERT name), so
 * weight deltas and gradients name each side unambiguously and the passage side can stay frozen
 * while the query side is fine-tuned (Atlas's query-side fine-tuning: passage embeddings in the
 * index stay valid). The query side may instead carry LoRA adapters over a frozen base
 * (enableQueryLora): trained through the unmerged path (`embed`), merged for retrieval (`embedTokens`).
 */
import * as tf from '@tensorflow/tfjs-core';
import { bertParameterShapes, canonicalBertName, parseBertConfig, type BertConfig } from './bert/config';
import { bertEncode, paramsFromStore, type BertParams } from './bert/model';
import { bertLoraShapes, initialLoraTensors, loraScale, validLoraConfig, type LoraConfig } from './lora';
import { MergedLoraWeights } from './lora-merge';
import { ParameterStore } from './params';
import { parseSafetensors, readTensor, type ParsedSafetensors } from './safetensors';

export type ContrieverSide = 'query' | 'passage';

export const QUERY_PREFIX = 'query.';
export const PASSAGE_PREFIX = 'passage.';

export function sidePrefix(side: ContrieverSide): string {
  return side === 'query' ? QUERY_PREFIX : PASSAGE_PREFIX;
}

/** Mean of `hidden` [batch, length, dim] over positions where `mask` [batch, length] is 1. */
export function meanPool(hidden: tf.Tensor3D, mask: tf.Tensor2D): tf.Tensor2D {
  return tf.tidy(() => {
    const m = tf.expandDims(tf.cast(mask, 'float32'), -1);
    // A row with no real token would divide by zero; clamp the count (its sum is 0 anyway).
    const counts = tf.maximum(tf.sum(m, 1), 1);
    return tf.div(tf.sum(tf.mul(hidden, m), 1), counts) as tf.Tensor2D;
  });
}

/** Inner-product scores [queries, passages] = q · pᵀ. */
export function innerProductScores(queries: tf.Tensor2D, passages: tf.Tensor2D): tf.Tensor2D {
  return tf.matMul(queries, passages, false, true);
}

export interface TokenBatch {
  readonly inputIds: tf.Tensor2D;
  readonly attentionMask: tf.Tensor2D;
}

/** Right-pads token id arrays to the longest one: int32 ids and a 0/1 mask (caller disposes both). */
export function padTokenBatch(sequences: readonly (readonly number[])[], padId: number): TokenBatch {
  if (sequences.length === 0) throw new Error('cannot embed an empty batch');
  const length = Math.max(...sequences.map((s) => s.length));
  if (length === 0) throw new Error('cannot embed a batch of empty token sequences');
  const ids = new Int32Array(sequences.length * length).fill(padId);
  const mask = new Int32Array(sequences.length * length);
  sequences.forEach((seq, row) => {
    ids.set(seq, row * length);
    mask.fill(1, row * length, row * length + seq.length);
  });
  return {
    inputIds: tf.tensor2d(ids, [sequences.length, length], 'int32'),
    attentionMask: tf.tensor2d(mask, [sequences.length, length], 'int32'),
  };
}

/** Contriever embeddings [batch, hidden] of a padded batch with the given encoder parameters. */
export function contrieverEmbed(config: BertConfig, params: BertParams, batch: TokenBatch): tf.Tensor2D {
  return tf.tidy(() => meanPool(bertEncode(config, params, batch), batch.attentionMask));
}

/** Where the query encoder's LoRA adapters start in a Contriever store (`query.lora.<module>.lora_A.weight`). */
export const QUERY_LORA_PREFIX = `${QUERY_PREFIX}lora.`;

export class Contriever {
  private queryLoraConfig: LoraConfig | null = null;
  private mergedQuery: MergedLoraWeights | null = null;

  /** Owns `params` (names `query.*` and `passage.*`) and disposes it. */
  /**
   * `sides`: the encoders `params` holds (default both). A passage-only Contriever serves whoever
   * only embeds passages (the tab's embedding worker) without holding the query encoder too.
   */
  constructor(
    readonly config: BertConfig,
    readonly params: ParameterStore,
    readonly sides: readonly ContrieverSide[] = ['query', 'passage'],
  ) {
    const expected = bertParameterShapes(config);
    for (const side of sides) {
      for (const [name, shape] of expected) {
        const full = sidePrefix(side) + name;
        if (!params.has(full)) throw new Error(`Contriever: parameter "${full}" is missing`);
        const actual = params.get(full).shape;
        if (!tf.util.arraysEqual(actual, shape)) {
          throw new Error(`Contriever: parameter "${full}" has shape [${actual}] but the config implies [${shape}]`);
        }
      }
    }
  }

  /**
   * Builds both encoders from one HF BERT checkpoint (facebook/contriever layout, with or without
   * the `bert.` prefix; pooler and heads ignored). The two sides start equal and are untied.
   * A separate passage checkpoint may be given (e.g. after query-side fine-tuning).
   */
  static fromCheckpoint(
    configJson: unknown,
    weights: ParsedSafetensors | Uint8Array | ArrayBuffer,
    passageWeights?: ParsedSafetensors | Uint8Array | ArrayBuffer,
  ): Contriever {
    const config = parseBertConfig(configJson);
    const store = new ParameterStore();
    try {
      loadSide(store, config, QUERY_PREFIX, weights);
      loadSide(store, config, PASSAGE_PREFIX, passageWeights ?? weights);
      return new Contriever(config, store);
    } catch (e) {
      store.dispose();
      throw e;
    }
  }

  /**
   * Builds both encoders from loaded BERT parameters under canonical names (what
   * loadBertCheckpoint returns). The tensors are copied: the caller still owns `query` (and
   * `passage`, which defaults to the same weights).
   */
  static fromParameters(config: BertConfig, query: ParameterStore, passage: ParameterStore = query): Contriever {
    const store = new ParameterStore();
    try {
      for (const [prefix, source] of [
        [QUERY_PREFIX, query],
        [PASSAGE_PREFIX, passage],
      ] as const) {
        for (const name of bertParameterShapes(config).keys()) {
          if (!source.has(name)) throw new Error(`Contriever: BERT parameter "${name}" is missing`);
          store.set(prefix + name, tf.clone(source.get(name)));
        }
      }
      return new Contriever(config, store);
    } catch (e) {
      store.dispose();
      throw e;
    }
  }

  /** Names of one side's parameters in `params` (what query-side fine-tuning trains). */
  parameterNames(side: ContrieverSide): string[] {
    const prefix = sidePrefix(side);
    return this.params.names().filter((n) => n.startsWith(prefix));
  }

  /** The LoRA config the query encoder's adapters were built with; undefined without adapters. */
  get queryLora(): LoraConfig | undefined {
    return this.queryLoraConfig ?? undefined;
  }

  /**
   * Adds LoRA adapters (src/model/lora.ts) to the query encoder's self-attention projections
   * (`lora.targets` mapped to query, key, value and attention.output.dense; A seeded, B = 0, so
   * the embeddings do not change) and freezes every other query-side weight, so only the adapters
   * can be trained. The passage encoder is left alone: the store's embeddings were made with it.
   * Calling it again with the same config does nothing; a different one is refused.
   */
  enableQueryLora(config: LoraConfig): void {
    if (!this.sides.includes('query')) throw new Error('Contriever: LoRA adapts the query encoder, which this passage-only model does not hold');
    const lora = validLoraConfig(config);
    if (this.queryLoraConfig) {
      if (JSON.stringify(this.queryLoraConfig) === JSON.stringify(lora)) return;
      throw new Error(`the query encoder already has LoRA adapters ${JSON.stringify(this.queryLoraConfig)}; cannot switch to ${JSON.stringify(lora)}`);
    }
    const shapes = new Map([...bertLoraShapes(this.config, lora)].map(([name, shape]) => [QUERY_PREFIX + name, shape]));
    for (const [name, t] of initialLoraTensors(shapes, lora)) this.params.set(name, t, true);
    for (const [name, v] of this.params.entries()) if (name.startsWith(QUERY_PREFIX) && !name.startsWith(QUERY_LORA_PREFIX)) v.trainable = false;
    this.queryLoraConfig = lora;
    this.mergedQuery = new MergedLoraWeights(this.params, loraScale(lora), QUERY_PREFIX);
  }

  /** One side's parameters as training reads them: with query LoRA, adapters unmerged (differentiable). */
  sideParams(side: ContrieverSide): BertParams {
    if (!this.sides.includes(side)) throw new Error(`Contriever: this model holds only the ${this.sides.join(' and ')} encoder, not the ${side} encoder`);
    return paramsFromStore(this.params, sidePrefix(side), side === 'query' ? this.queryLora : undefined);
  }

  /** One side's parameters for embedding without gradients: with query LoRA, every adapted weight merged. */
  private inferenceParams(side: ContrieverSide): BertParams {
    const merged = side === 'query' ? this.mergedQuery : null;
    if (!merged) return this.sideParams(side);
    const plain = paramsFromStore(this.params, QUERY_PREFIX);
    return (name) => merged.get(name) ?? plain(name);
  }

  /** Embeddings [batch, hidden] of a padded batch by one side's encoder (differentiable: adapters unmerged). */
  embed(side: ContrieverSide, batch: TokenBatch): tf.Tensor2D {
    return contrieverEmbed(this.config, this.sideParams(side), batch);
  }

  /**
   * Embeddings of token id arrays (padded here with the config's pad id), for retrieval: no
   * gradient is taken, so a LoRA query encoder reads its merged weights (W + (alpha/r)·B·A).
   */
  embedTokens(side: ContrieverSide, sequences: readonly (readonly number[])[]): tf.Tensor2D {
    const batch = padTokenBatch(sequences, this.config.pad_token_id);
    try {
      return contrieverEmbed(this.config, this.inferenceParams(side), batch);
    } finally {
      batch.inputIds.dispose();
      batch.attentionMask.dispose();
    }
  }

  embedQueries(sequences: readonly (readonly number[])[]): tf.Tensor2D {
    return this.embedTokens('query', sequences);
  }

  embedPassages(sequences: readonly (readonly number[])[]): tf.Tensor2D {
    return this.embedTokens('passage', sequences);
  }

  dispose(): void {
    this.mergedQuery?.dispose();
    this.params.dispose();
  }
}

function loadSide(store: ParameterStore, config: BertConfig, prefix: string, weights: ParsedSafetensors | Uint8Array | ArrayBuffer): void {
  const file = weights instanceof Uint8Array || weights instanceof ArrayBuffer ? parseSafetensors(weights, 'Contriever checkpoint') : weights;
  const expected = bertParameterShapes(config);
  const found = new Set<string>();
  for (const tensorName of file.tensors.keys()) {
    const name = canonicalBertName(tensorName);
    if (name === undefined) continue;
    const shape = expected.get(name);
    if (!shape) continue; // e.g. embeddings.position_ids buffers in old checkpoints
    const { shape: actual, data } = readTensor(file, tensorName);
    if (!tf.util.arraysEqual(actual, shape)) {
      throw new Error(`Contriever checkpoint: "${tensorName}" has shape [${actual}] but the config implies [${shape}]`);
    }
    const values = data instanceof Float32Array ? data : Float32Array.from(data as ArrayLike<number>);
    store.set(prefix + name, tf.tensor(values, shape, 'float32'));
    found.add(name);
  }
  const missing = [...expected.keys()].filter((n) => !found.has(n));
  if (missing.length) throw new Error(`Contriever checkpoint: missing ${missing.length} BERT tensor(s), first "${missing[0]}"`);
}
