/**
 * The whole CoRAG model one client trains: a T5 Fusion-in-Decoder reader and a Contriever
 * retriever (untied query and passage encoders), with their tokenizers.
 *
 * Three namespaces meet here:
 * - the reader's ParameterStore speaks plain Hugging Face T5 names (`encoder.block.0...`);
 * - the retriever's store speaks `query.<bert name>` / `passage.<bert name>` (src/model/contriever);
 *   together these are the "local" names trainable.ts, gradients and the optimizer use;
 * - the coordinator's GLOBAL wire namespace prefixes each part: `reader.<t5 name>`,
 *   `query_encoder.<bert name>`, `passage_encoder.<bert name>` (server/demo.ts).
 * wireName/localName translate one-to-one between the last two.
 *
 * A bundle remembers the global version it was last set to (its "base"), so after local training
 * it can produce the delta local − base for the trained tensors, which is what a client uploads.
 */
import * as tf from '@tensorflow/tfjs-core';
import {
  isTrainedTensor,
  PASSAGE_ENCODER_WIRE_PREFIX,
  QUERY_ENCODER_LORA_WIRE_PREFIX,
  QUERY_ENCODER_WIRE_PREFIX,
  READER_LORA_WIRE_PREFIX,
  READER_WIRE_PREFIX,
} from '../federated/protocol';
import { parseCheckpointPolicy, type CheckpointPolicy } from './checkpoint-policy';
import { decodeModel, encodeModel, encodeUpdate, type NamedTensor, type UpdateMeta, type WireDtype } from '../federated/codec';
import { bertParameterShapes, type BertConfig } from '../model/bert/config';
import { loadBertCheckpoint, loadT5Checkpoint, type ModelSource } from '../model/checkpoint';
import { Contriever, PASSAGE_PREFIX, QUERY_LORA_PREFIX, QUERY_PREFIX } from '../model/contriever';
import { initialLoraTensors, isLoraName, LORA_PREFIX, loraScale, t5LoraShapes, validLoraConfig, type LoraConfig } from '../model/lora';
import { MergedLoraWeights } from '../model/lora-merge';
import { ParameterStore } from '../model/params';
import { t5ParameterShapes, type T5Config } from '../model/t5/config';
import { T5Model } from '../model/t5/model';
import type { TextTokenizer } from '../model/tokenizer';
import type { ModelParts, TrainableSelection } from '../model/trainable';
import { weightGetter } from '../model/t5/weights';

export { PASSAGE_ENCODER_WIRE_PREFIX, QUERY_ENCODER_LORA_WIRE_PREFIX, QUERY_ENCODER_WIRE_PREFIX, READER_LORA_WIRE_PREFIX, READER_WIRE_PREFIX };

const escaped = (prefix: string) => prefix.replaceAll('.', '\\.');

/** Whether a wire name is a LoRA adapter tensor (the reader's or the query encoder's). */
export function isAdapterWireName(wire: string): boolean {
  return wire.startsWith(READER_LORA_WIRE_PREFIX) || wire.startsWith(QUERY_ENCODER_LORA_WIRE_PREFIX);
}

/** Local (store) name → global wire name. */
export function wireName(local: string): string {
  if (local.startsWith(QUERY_PREFIX)) return QUERY_ENCODER_WIRE_PREFIX + local.slice(QUERY_PREFIX.length);
  if (local.startsWith(PASSAGE_PREFIX)) return PASSAGE_ENCODER_WIRE_PREFIX + local.slice(PASSAGE_PREFIX.length);
  return READER_WIRE_PREFIX + local;
}

/**
 * What local training must update for a session whose deltas carry the tensors under `prefixes`
 * (SessionConfig.trainedPrefixes): training a part the session does not aggregate would only move
 * this tab's copy away from the global model, and leaving out one it aggregates would send zeros.
 * The passage encoder is never trained (the store's embeddings depend on it), so '' (everything)
 * means the reader and the query encoder. Prefixes inside the reader's LoRA adapters
 * (`reader.lora.`) select the adapters alone (the frozen weights get no gradient).
 */
export function trainableForWirePrefixes(prefixes: readonly string[]): TrainableSelection {
  // A LoRA session aggregates adapters only (the reader's, and the query encoder's when it has
  // them): train those it aggregates and nothing else.
  if (prefixes.length > 0 && prefixes.every(isAdapterWireName)) {
    const locals = [
      prefixes.some((p) => p.startsWith(READER_LORA_WIRE_PREFIX)) ? LORA_PREFIX : null,
      prefixes.some((p) => p.startsWith(QUERY_ENCODER_LORA_WIRE_PREFIX)) ? QUERY_LORA_PREFIX : null,
    ].filter((p) => p !== null);
    return new RegExp(`^(${locals.map(escaped).join('|')})`);
  }
  const covers = (wirePrefix: string) => prefixes.some((p) => wirePrefix.startsWith(p) || p.startsWith(wirePrefix));
  const reader = covers(READER_WIRE_PREFIX);
  const query = covers(QUERY_ENCODER_WIRE_PREFIX);
  if (reader && query) return 'reader+query-encoder';
  if (reader) return 'reader';
  if (query) return 'query-encoder';
  throw new Error(
    `trained prefixes ${JSON.stringify(prefixes)} name neither the reader ("${READER_WIRE_PREFIX}") nor the query encoder ("${QUERY_ENCODER_WIRE_PREFIX}")`,
  );
}

/** Global wire name → local (store) name; throws on a name outside the three parts. */
export function localName(wire: string): string {
  if (wire.startsWith(READER_WIRE_PREFIX)) return wire.slice(READER_WIRE_PREFIX.length);
  if (wire.startsWith(QUERY_ENCODER_WIRE_PREFIX)) return QUERY_PREFIX + wire.slice(QUERY_ENCODER_WIRE_PREFIX.length);
  if (wire.startsWith(PASSAGE_ENCODER_WIRE_PREFIX)) return PASSAGE_PREFIX + wire.slice(PASSAGE_ENCODER_WIRE_PREFIX.length);
  throw new Error(
    `global tensor "${wire}" belongs to no model part (expected a "${READER_WIRE_PREFIX}", "${QUERY_ENCODER_WIRE_PREFIX}" or "${PASSAGE_ENCODER_WIRE_PREFIX}" prefix)`,
  );
}

/** Where a bundle's configs, tokenizers and initial weights come from. */
export interface BundleSources {
  /** T5 checkpoint folder/URL/hub source (config.json, model.safetensors, tokenizer.json). */
  readonly reader: ModelSource;
  /** Contriever (BERT) checkpoint source; query and passage encoders both start from it. */
  readonly retriever: ModelSource;
  /** Tokenizer sources when the checkpoints do not carry their own. */
  readonly readerTokenizer?: ModelSource;
  readonly retrieverTokenizer?: ModelSource;
}

/** What a bundle is besides its weights. */
export interface BundleSpec {
  readonly readerConfig: T5Config;
  readonly retrieverConfig: BertConfig;
  readonly readerTokenizer: TextTokenizer;
  readonly retrieverTokenizer: TextTokenizer;
  /** The session's LoRA adapters (its global versions carry `reader.lora.*` tensors, and `query_encoder.lora.*` with `queryTargets`). */
  readonly lora?: LoraConfig;
}

export class ModelBundle {
  private readerModel: T5Model;
  private inferenceModel: T5Model | null = null;
  private loraConfig: LoraConfig | null = null;
  private merged: MergedLoraWeights | null = null;
  private baseVersion: number | null = null;
  /** The global weights of `baseVersion`, by wire name (views into the downloaded bytes). */
  private base: Map<string, NamedTensor> | null = null;

  /** The app policy the checkpoints carry (their config.json's `corag` objects), validated. */
  readonly policy: CheckpointPolicy;

  /** Takes ownership of `readerParams` and `retriever`. */
  constructor(
    readonly readerConfig: T5Config,
    readonly readerParams: ParameterStore,
    readonly retriever: Contriever,
    readonly readerTokenizer: TextTokenizer,
    readonly retrieverTokenizer: TextTokenizer,
  ) {
    this.policy = parseCheckpointPolicy(readerConfig.corag, retriever.config.corag);
    this.readerModel = new T5Model(readerConfig, readerParams);
  }

  /**
   * The reader as training sees it: with LoRA, each adapted projection runs x Wᵀ + s·(x Aᵀ) Bᵀ
   * (gradients reach A and B only). Inference should use `inferenceReader`.
   */
  get reader(): T5Model {
    return this.readerModel;
  }

  /**
   * The reader for answering: without LoRA the same model as `reader`; with LoRA one that reads
   * every adapted projection merged, W' = W + (alpha/r)·B·A (src/model/lora.ts). Merged weights
   * are computed on first use and kept until W, A or B is assigned new values (a new global
   * version, a training step), so generation pays no adapter cost per token
   * (src/model/lora-merge.ts; the query encoder merges its own for retrieval).
   */
  get inferenceReader(): T5Model {
    return this.inferenceModel ?? this.readerModel;
  }

  /** The LoRA config the reader's adapters were built with; undefined without adapters. */
  get lora(): LoraConfig | undefined {
    return this.loraConfig ?? undefined;
  }

  /**
   * Adds LoRA adapters to the reader's attention projections (A seeded, B = 0: the model's
   * outputs do not change) and freezes every other reader weight, so only the adapters can be
   * trained; with `queryTargets`, the query encoder gets adapters on those projections the same
   * way, with the same rank, alpha and seed (Contriever.enableQueryLora). Calling it again with the same config does nothing; a different
   * config is refused (the adapters' shapes and scale would change under trained values).
   */
  enableLora(config: LoraConfig): void {
    const lora = validLoraConfig(config);
    if (this.loraConfig) {
      if (JSON.stringify(this.loraConfig) === JSON.stringify(lora)) return;
      throw new Error(`this reader already has LoRA adapters ${JSON.stringify(this.loraConfig)}; cannot switch to ${JSON.stringify(lora)}`);
    }
    // The query side first: it refuses a passage-only retriever before the reader changes.
    if (lora.queryTargets) this.retriever.enableQueryLora({ rank: lora.rank, alpha: lora.alpha, targets: lora.queryTargets, seed: lora.seed });
    for (const [name, t] of initialLoraTensors(t5LoraShapes(this.readerConfig, lora), lora)) this.readerParams.set(name, t, true);
    for (const [name, v] of this.readerParams.entries()) if (!isLoraName(name)) v.trainable = false;
    this.loraConfig = lora;
    this.readerModel = new T5Model(this.readerConfig, this.readerParams, { lora });
    const merged = new MergedLoraWeights(this.readerParams, loraScale(lora));
    const read = weightGetter(this.readerParams); // everything not adapted, as the plain reader reads it
    this.merged = merged;
    this.inferenceModel = new T5Model(this.readerConfig, (name: string) => merged.get(name) ?? read(name));
  }

  /** Loads the reader and the retriever checkpoints; the two encoders start equal and untied. */
  static async fromCheckpoints(sources: BundleSources): Promise<ModelBundle> {
    const reader = await loadT5Checkpoint(sources.reader, { tokenizer: sources.readerTokenizer ?? sources.reader });
    try {
      const bert = await loadBertCheckpoint(sources.retriever, { tokenizer: sources.retrieverTokenizer ?? sources.retriever });
      let retriever: Contriever;
      try {
        parseCheckpointPolicy(reader.config.corag, bert.config.corag); // refuse a bad policy before the retriever is built
        retriever = Contriever.fromParameters(bert.config, bert.params);
      } finally {
        bert.params.dispose();
      }
      return new ModelBundle(reader.config, reader.params, retriever, reader.tokenizer!, bert.tokenizer!);
    } catch (e) {
      reader.params.dispose();
      throw e;
    }
  }

  /**
   * Builds the model straight from a global version (what a browser tab joining a session
   * downloads): configs and tokenizers from the session's model ids, every weight from `bytes`.
   */
  static fromGlobal(spec: BundleSpec, bytes: Uint8Array, version: number): ModelBundle {
    const global = decodeModel(bytes, `global model v${version}`);
    const adapted = [...global.keys()].some(isAdapterWireName);
    if (adapted && !spec.lora) throw new Error(`global model v${version} carries LoRA adapters but no LoRA config was given to build its reader with`);
    const readerStore = new ParameterStore();
    const retrieverStore = new ParameterStore();
    try {
      for (const [name, shape] of t5ParameterShapes(spec.readerConfig)) {
        const t = global.get(READER_WIRE_PREFIX + name);
        if (!t) throw new Error(`global model v${version} lacks tensor "${READER_WIRE_PREFIX + name}"`);
        if (!tf.util.arraysEqual([...t.shape], [...shape]))
          throw new Error(`global model v${version}: "${READER_WIRE_PREFIX + name}" has shape [${t.shape}] but the reader config implies [${shape}]`);
        readerStore.set(name, tf.tensor(t.data, [...t.shape], 'float32'));
      }
      for (const [prefix, side] of [
        [QUERY_ENCODER_WIRE_PREFIX, QUERY_PREFIX],
        [PASSAGE_ENCODER_WIRE_PREFIX, PASSAGE_PREFIX],
      ]) {
        for (const name of bertParameterShapes(spec.retrieverConfig).keys()) {
          const t = global.get(prefix + name);
          if (t) retrieverStore.set(side + name, tf.tensor(t.data, [...t.shape], 'float32'));
        }
      }
      // Contriever checks both sides against the BERT config (missing tensors, shapes).
      const retriever = new Contriever(spec.retrieverConfig, retrieverStore);
      const bundle = new ModelBundle(spec.readerConfig, readerStore, retriever, spec.readerTokenizer, spec.retrieverTokenizer);
      if (spec.lora) bundle.enableLora(spec.lora); // adapters created here, their values set from the global model next
      bundle.applyGlobal(bytes, version); // also rejects tensors outside the model, and sets the base
      return bundle;
    } catch (e) {
      readerStore.dispose();
      retrieverStore.dispose();
      throw e;
    }
  }

  get retrieverConfig(): BertConfig {
    return this.retriever.config;
  }

  /** Embedding dimension of the retriever (what the passage store holds). */
  get embeddingDim(): number {
    return this.retriever.config.hidden_size;
  }

  /** The parts as trainable.ts sees them. */
  get parts(): ModelParts {
    return { reader: this.readerParams, retriever: this.retriever.params };
  }

  /** The global version the weights were last set to (null: never set from a global model). */
  get version(): number | null {
    return this.baseVersion;
  }

  /** Every parameter by wire name. */
  private *wireEntries(): Generator<[string, tf.Variable]> {
    for (const [name, v] of this.readerParams.entries()) yield [wireName(name), v];
    for (const [name, v] of this.retriever.params.entries()) yield [wireName(name), v];
  }

  /** Wire names of the whole model, reader first. */
  wireNames(): string[] {
    return [...this.wireEntries()].map(([n]) => n);
  }

  /** Wire names that start with one of `prefixes` ('' matches all), as a session's trainedPrefixes. */
  wireNamesMatching(prefixes: readonly string[]): string[] {
    const names = this.wireNames().filter((n) => isTrainedTensor(prefixes, n));
    if (names.length === 0) throw new Error(`no model tensor matches the trained prefixes ${JSON.stringify(prefixes)}`);
    return names;
  }

  private variable(wire: string): tf.Variable {
    const local = localName(wire);
    return local.startsWith(QUERY_PREFIX) || local.startsWith(PASSAGE_PREFIX) ? this.retriever.params.get(local) : this.readerParams.get(local);
  }

  /** The whole model as one F32 safetensors body in the wire namespace (an initial global model). */
  async exportGlobal(metadata?: Record<string, string>): Promise<Uint8Array> {
    const tensors = new Map<string, NamedTensor>();
    for (const [name, v] of this.wireEntries()) tensors.set(name, { shape: v.shape, data: (await v.data()) as Float32Array });
    return encodeModel(tensors, metadata);
  }

  /**
   * Sets every parameter to global version `version` (safetensors bytes in the wire namespace,
   * e.g. a download from the coordinator) and makes it the base of the next delta. The global
   * model must hold exactly this model's tensors with the same shapes.
   */
  applyGlobal(bytes: Uint8Array, version: number): void {
    const global = decodeModel(bytes, `global model v${version}`);
    const names = new Set(this.wireNames());
    for (const [name, t] of global) {
      if (!names.has(name)) {
        if (isAdapterWireName(name)) {
          throw new Error(
            `global model v${version} has LoRA adapter "${name}" that this model does not: enable LoRA with the session's config first (ModelBundle.enableLora${name.startsWith(QUERY_ENCODER_LORA_WIRE_PREFIX) ? ' with queryTargets' : ''})`,
          );
        }
        throw new Error(`global model v${version} has tensor "${name}" that this model does not (different model configs?)`);
      }
      const v = this.variable(name);
      if (!tf.util.arraysEqual(v.shape, [...t.shape])) {
        throw new Error(`global model v${version}: "${name}" has shape [${t.shape}] but this model's is [${v.shape}]`);
      }
    }
    for (const name of names) if (!global.has(name)) throw new Error(`global model v${version} lacks tensor "${name}"`);
    for (const [name, t] of global) {
      const v = this.variable(name);
      tf.tidy(() => v.assign(tf.tensor(t.data, [...t.shape], 'float32')));
    }
    this.base = global;
    this.baseVersion = version;
  }

  /** local − base for the given wire names (the trained tensors), as plain float32 data. */
  async delta(names: readonly string[]): Promise<Map<string, NamedTensor>> {
    if (!this.base) throw new Error('no global version applied: a delta needs the version it started from (applyGlobal)');
    const out = new Map<string, NamedTensor>();
    for (const name of names) {
      const base = this.base.get(name)!;
      const local = (await this.variable(name).data()) as Float32Array;
      const data = new Float32Array(local.length);
      for (let i = 0; i < data.length; i++) data[i] = local[i] - base.data[i];
      out.set(name, { shape: base.shape, data });
    }
    return out;
  }

  /** The delta of `names` encoded as ONE update body for the coordinator (baseVersion = this.version). */
  async encodeDelta(names: readonly string[], meta: Omit<UpdateMeta, 'baseVersion'>, dtype: WireDtype = 'F32'): Promise<Uint8Array> {
    const deltas = await this.delta(names);
    return encodeUpdate(deltas, { ...meta, baseVersion: this.baseVersion! }, dtype);
  }

  /** Local (store) names of the given wire names: a TrainableSelection list for trainable.ts. */
  localNames(wireNames: readonly string[]): string[] {
    return wireNames.map(localName);
  }

  dispose(): void {
    this.merged?.dispose();
    this.readerParams.dispose();
    this.retriever.dispose();
    this.base = null;
  }
}
