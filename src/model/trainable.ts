/**
 * Which parameters a training step updates, and their named gradients.
 *
 * A model is made of parts that each own a ParameterStore: the reader (T5 names such as
 * `encoder.block.0.layer.0.SelfAttention.q.weight`) and the retriever (a Contriever store whose
 * names are `query.<bert name>` / `passage.<bert name>`). The names are disjoint, so one flat
 * namespace covers the whole model; it is the namespace of gradients, optimizer state and the
 * weight deltas sent to the coordinator. Training only a subset keeps those deltas small: query-
 * side fine-tuning sends one BERT encoder, never the passage side the shared index depends on.
 */
import * as tf from '@tensorflow/tfjs-core';
import { QUERY_PREFIX } from './contriever';
import { leanVariableGrads } from './gradients';
import type { ParameterStore } from './params';

export interface ModelParts {
  /** The T5 / Fusion-in-Decoder reader's parameters. */
  readonly reader?: ParameterStore;
  /** The Contriever retriever's parameters (`query.*` and `passage.*`). */
  readonly retriever?: ParameterStore;
}

/**
 * 'all': every parameter of every part; 'reader': the T5 reader; 'query-encoder': the query side
 * of the retriever only; 'reader+query-encoder': both (Atlas's joint training with a frozen
 * passage encoder); an explicit list of names; or a RegExp tested against every name.
 */
export type TrainableSelection = 'all' | 'reader' | 'query-encoder' | 'reader+query-encoder' | readonly string[] | RegExp;

/** Every parameter of the model by its (model-wide unique) name. */
export function allParameters(parts: ModelParts): Map<string, tf.Variable> {
  const out = new Map<string, tf.Variable>();
  for (const [part, store] of Object.entries(parts) as [string, ParameterStore | undefined][]) {
    if (!store) continue;
    for (const [name, v] of store.entries()) {
      if (out.has(name)) throw new Error(`parameter "${name}" appears in more than one model part (second: ${part})`);
      out.set(name, v);
    }
  }
  return out;
}

function storeParameters(store: ParameterStore | undefined, part: string, keep: (name: string) => boolean = () => true): Map<string, tf.Variable> {
  if (!store) throw new Error(`cannot train the ${part}: the model has no ${part}`);
  return new Map([...store.entries()].filter(([name]) => keep(name)));
}

/** The parameters a selection trains, by name (insertion order follows the stores). */
export function selectTrainable(parts: ModelParts, selection: TrainableSelection): Map<string, tf.Variable> {
  let selected: Map<string, tf.Variable>;
  if (selection === 'all') {
    selected = allParameters(parts);
  } else if (selection === 'reader') {
    selected = storeParameters(parts.reader, 'reader');
  } else if (selection === 'query-encoder') {
    selected = storeParameters(parts.retriever, 'retriever', (n) => n.startsWith(QUERY_PREFIX));
  } else if (selection === 'reader+query-encoder') {
    selected = new Map([...selectTrainable(parts, 'reader'), ...selectTrainable(parts, 'query-encoder')]);
  } else if (selection instanceof RegExp) {
    selected = new Map([...allParameters(parts)].filter(([name]) => selection.test(name)));
    if (selected.size === 0) throw new Error(`no parameter name matches ${selection}`);
  } else {
    const all = allParameters(parts);
    selected = new Map();
    for (const name of selection as readonly string[]) {
      const v = all.get(name);
      if (!v) throw new Error(`cannot train parameter "${name}": the model has no parameter of that name`);
      selected.set(name, v);
    }
  }
  if (selected.size === 0) throw new Error('the trainable selection is empty');
  for (const [name, v] of selected) {
    if (!v.trainable) throw new Error(`parameter "${name}" is frozen (not trainable) but was selected for training`);
  }
  return selected;
}

export interface NamedGradients {
  /** The loss value (owned by the caller). */
  readonly loss: tf.Scalar;
  /**
   * d(loss)/d(parameter) for each selected parameter the loss depends on (owned by the caller);
   * a selected parameter the loss does not reach is absent rather than a tensor of zeros.
   */
  readonly grads: Map<string, tf.Tensor>;
}

export interface GradientOptions {
  /**
   * Free saved activations and intermediate gradients as the backward pass goes
   * (src/model/gradients.ts; default true). false: tfjs-core's tf.variableGrads, which keeps
   * them all until the backward pass ends (same values, several times the peak memory).
   */
  readonly lowMemory?: boolean;
}

/**
 * Gradients of `lossFn` w.r.t. the `trainable` parameters only, keyed by parameter name. Other
 * parameters (frozen embeddings, the passage encoder) are not differentiated: no gradient is
 * computed or held for them.
 */
export function namedGradients(lossFn: () => tf.Scalar, trainable: ReadonlyMap<string, tf.Variable>, options: GradientOptions = {}): NamedGradients {
  const variables = [...trainable.values()];
  if (variables.length === 0) throw new Error('namedGradients: no parameters to differentiate');
  const { value, grads } = options.lowMemory === false ? tf.variableGrads(lossFn, variables) : leanVariableGrads(lossFn, variables);
  const named = new Map<string, tf.Tensor>();
  for (const [name, v] of trainable) {
    const g = grads[v.name];
    if (g) named.set(name, g);
  }
  return { loss: value, grads: named };
}
