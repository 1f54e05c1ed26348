/**
 * Merged LoRA weights for inference (src/model/lora.ts): W' = W + (alpha/r)·B·A per adapted
 * projection, computed on first use and kept until W, A or B is assigned new values (a new global
 * version, a training step), so answering or retrieving pays no adapter cost per call. The
 * reader (src/corag/model-bundle.ts) and the Contriever query encoder (src/model/contriever.ts)
 * both read their adapted projections through one of these.
 */
import * as tf from '@tensorflow/tfjs-core';
import { loraAdapterNames, mergeLoraWeight } from './lora';
import type { ParameterStore } from './params';

/** A merged weight with the data ids of the W, A and B it was made from. */
interface Merged {
  readonly dataIds: readonly object[];
  readonly merged: tf.Tensor;
}

export class MergedLoraWeights {
  private readonly cache = new Map<string, Merged>();

  /**
   * `prefix`: where the model's names start in `store` ('' for the reader's own store, `query.`
   * for the query side of a Contriever store); adapters sit at `prefix` + loraAdapterNames(name).
   */
  constructor(
    private readonly store: ParameterStore,
    private readonly scale: number,
    private readonly prefix = '',
  ) {}

  /**
   * The weight `name` (the model's own name, without the prefix) with its adapter merged in, or
   * undefined when it has no adapter. The tensor belongs to this cache: valid until the next call
   * for the same name after W, A or B changed, or dispose().
   */
  get(name: string): tf.Tensor | undefined {
    if (!name.endsWith('.weight')) return undefined;
    const { a, b } = loraAdapterNames(name);
    const p = this.prefix;
    if (!this.store.has(p + a)) return undefined;
    const parts = [this.store.get(p + name), this.store.get(p + a), this.store.get(p + b)] as const;
    const dataIds = parts.map((t) => t.dataId as object);
    const cached = this.cache.get(name);
    if (cached && cached.dataIds.every((id, i) => id === dataIds[i])) return cached.merged;
    cached?.merged.dispose();
    // Kept: the getter is read inside the model's tidy scopes, and the cache outlives them.
    const merged = tf.keep(mergeLoraWeight(parts[0], parts[1], parts[2], this.scale));
    this.cache.set(name, { dataIds, merged });
    return merged;
  }

  dispose(): void {
    for (const m of this.cache.values()) m.merged.dispose();
    this.cache.clear();
  }
}
