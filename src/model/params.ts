/**
 * Named model parameters, keyed by their Hugging Face names (`encoder.block.0.layer.0.SelfAttention.q.weight`),
 * so checkpoints, weight deltas and gradients all speak the same language. One ParameterStore owns
 * its tf.Variables and disposes them.
 */
import * as tf from '@tensorflow/tfjs-core';
import { parseSafetensors, readTensor, writeSafetensors, type ParsedSafetensors, type TensorToWrite } from './safetensors';

export class ParameterStore {
  private readonly vars = new Map<string, tf.Variable>();

  /** Takes ownership of the given tensors (turned into variables). */
  constructor(tensors?: Iterable<[string, tf.Tensor]>, trainable = true) {
    if (tensors) for (const [name, t] of tensors) this.set(name, t, trainable);
  }

  /** Float tensors of a parsed safetensors file (F16/BF16 widened to float32). */
  static fromSafetensors(file: ParsedSafetensors | ArrayBuffer | Uint8Array, filter?: (name: string) => boolean): ParameterStore {
    const parsed = file instanceof ArrayBuffer || file instanceof Uint8Array ? parseSafetensors(file) : file;
    const store = new ParameterStore();
    for (const name of parsed.tensors.keys()) {
      if (filter && !filter(name)) continue;
      const { shape, data } = readTensor(parsed, name);
      const values = data instanceof Float32Array ? data : Float32Array.from(data as ArrayLike<number>);
      store.set(name, tf.tensor(values, shape, 'float32'));
    }
    return store;
  }

  set(name: string, value: tf.Tensor, trainable = true): void {
    const old = this.vars.get(name);
    if (old) old.dispose();
    // Unique variable names per store: tfjs keeps a global registry of variable names.
    this.vars.set(name, tf.variable(value, trainable, `${name}#${storeCounter++}`, 'float32'));
    value.dispose();
  }

  has(name: string): boolean {
    return this.vars.has(name);
  }

  get(name: string): tf.Variable {
    const v = this.vars.get(name);
    if (!v) throw new Error(`parameter "${name}" is missing`);
    return v;
  }

  names(): string[] {
    return [...this.vars.keys()];
  }

  entries(): IterableIterator<[string, tf.Variable]> {
    return this.vars.entries();
  }

  get size(): number {
    return this.vars.size;
  }

  /** Total number of scalar parameters. */
  numel(names: Iterable<string> = this.vars.keys()): number {
    let n = 0;
    for (const name of names) n += this.get(name).size;
    return n;
  }

  /** Serialises (a subset of) the parameters: the checkpoint, delta and download format. */
  async toSafetensors(options: { names?: Iterable<string>; dtype?: 'F32' | 'F16'; metadata?: Record<string, string> } = {}): Promise<Uint8Array> {
    const out = new Map<string, TensorToWrite>();
    for (const name of options.names ?? this.vars.keys()) {
      const v = this.get(name);
      out.set(name, { dtype: options.dtype ?? 'F32', shape: v.shape, data: (await v.data()) as Float32Array });
    }
    return writeSafetensors(out, options.metadata);
  }

  dispose(): void {
    for (const v of this.vars.values()) v.dispose();
    this.vars.clear();
  }
}

let storeCounter = 0;
