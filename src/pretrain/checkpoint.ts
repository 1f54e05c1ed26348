/**
 * What a pretraining run saves to continue bit-exactly after an interruption: both models'
 * weights, the contrastive key queue and the passage index (one safetensors file), the AdamW
 * moments, and the loop's position (step, RNG state, data cursors, when the index was built).
 * The files on disk are written by src/platform/node/pretrain-checkpoint-files.ts.
 */
import * as tf from '@tensorflow/tfjs-core';
import { ParameterStore } from '../model/params';
import { parseSafetensors, readTensor, writeSafetensors, type TensorToWrite } from '../model/safetensors';
import type { DataPosition } from './data-order';

export interface PretrainerState {
  readonly step: number;
  readonly rng: number;
  readonly examples: DataPosition;
  readonly passages: DataPosition;
  readonly indexedAtStep: number;
}

export interface PretrainCheckpoint {
  /** Weights (`reader.*`, `retriever.*`), queue and passage index, float32. */
  readonly weights: Uint8Array;
  /** AdamW state (AdamW.saveState). */
  readonly optimizer: Uint8Array;
  /** PretrainerState as JSON. */
  readonly state: string;
}

/** The tensors of a run, by owner: the two models' stores and the loop's queue and index. */
export interface CheckpointTensors {
  readonly reader: ParameterStore;
  readonly retriever: ParameterStore;
  readonly queue: tf.Tensor2D | null;
  readonly index: tf.Tensor2D | null;
}

const READER = 'reader.';
const RETRIEVER = 'retriever.';
const QUEUE = '__queue__';
const INDEX = '__index__';

/** The checkpoint of a run (the tensors are read, not taken over). */
export async function writePretrainCheckpoint(tensors: CheckpointTensors, optimizerState: Uint8Array, state: PretrainerState): Promise<PretrainCheckpoint> {
  const out = new Map<string, TensorToWrite>();
  for (const [prefix, store] of [
    [READER, tensors.reader],
    [RETRIEVER, tensors.retriever],
  ] as const) {
    for (const [name, v] of store.entries()) out.set(prefix + name, { dtype: 'F32', shape: v.shape, data: (await v.data()) as Float32Array });
  }
  const { queue, index } = tensors;
  if (queue) out.set(QUEUE, { dtype: 'F32', shape: queue.shape, data: (await queue.data()) as Float32Array });
  if (index) out.set(INDEX, { dtype: 'F32', shape: index.shape, data: (await index.data()) as Float32Array });
  return { weights: writeSafetensors(out, { format: 'corag-pretrain' }), optimizer: optimizerState, state: JSON.stringify(state) };
}

/** The tensors saved in a checkpoint (owned by the caller) and its loop state. */
export function readPretrainCheckpoint(checkpoint: PretrainCheckpoint): { tensors: CheckpointTensors; state: PretrainerState } {
  const file = parseSafetensors(checkpoint.weights, 'pretrain checkpoint weights');
  const reader = new ParameterStore();
  const retriever = new ParameterStore();
  let queue: tf.Tensor2D | null = null;
  let index: tf.Tensor2D | null = null;
  for (const name of file.tensors.keys()) {
    const { shape, data: values } = readTensor(file, name);
    const t = tf.tensor(Float32Array.from(values as Float32Array), shape, 'float32');
    if (name.startsWith(READER)) reader.set(name.slice(READER.length), t);
    else if (name.startsWith(RETRIEVER)) retriever.set(name.slice(RETRIEVER.length), t);
    else if (name === QUEUE) queue = t as tf.Tensor2D;
    else if (name === INDEX) index = t as tf.Tensor2D;
    else throw new Error(`pretrain checkpoint: unexpected tensor "${name}"`);
  }
  return { tensors: { reader, retriever, queue, index }, state: JSON.parse(checkpoint.state) as PretrainerState };
}
