/**
 * Tiny random T5 and BERT checkpoints in Hugging Face layout, for tests and the offline demo.
 * They use the real tokenizers' vocabularies (T5: 32,128 embedding rows; BERT: 30,522) so the
 * real tokenizers drive them, with small widths and 1-2 layers so they run anywhere.
 *
 * Deterministic: each tensor draws from its own PRNG stream seeded by (seed, tensor name), and the
 * generator uses only integer and exactly-representable float arithmetic, so the same seed gives
 * byte-identical files in every JavaScript engine, independent of the order tensors are made in.
 */
import { bertConfigJsonText, bertParameterShapes, parseBertConfig, type BertConfig } from './bert/config';
import { writeSafetensors, type TensorToWrite } from './safetensors';
import { parseT5Config, t5ConfigJsonText, t5ParameterShapes, type T5Config, type T5FeedForward } from './t5/config';

export interface TinyTensor {
  readonly shape: number[];
  readonly data: Float32Array;
}

export type TinyWeights = Map<string, TinyTensor>;

/** T5 embedding rows of t5-base / flan-t5 (the tokenizer has 32,100 entries; HF pads to 32,128). */
export const T5_VOCAB_ROWS = 32128;
/** bert-base-uncased WordPiece vocabulary, as used by Contriever. */
export const BERT_VOCAB_SIZE = 30522;

/** A small T5 of either layout: 'gated-gelu' (flan-t5, untied LM head) or 'relu' (original T5, tied). */
export function tinyT5Config(feedForward: T5FeedForward = 'gated-gelu'): T5Config {
  return parseT5Config({
    model_type: 't5',
    vocab_size: T5_VOCAB_ROWS,
    d_model: 32,
    d_kv: 8,
    d_ff: 64,
    num_layers: 2,
    num_decoder_layers: 2,
    num_heads: 4,
    relative_attention_num_buckets: 32,
    relative_attention_max_distance: 128,
    feed_forward_proj: feedForward,
    tie_word_embeddings: feedForward === 'relu',
  });
}

/** A small BERT encoder (Contriever shape) over the bert-base-uncased vocabulary. */
export function tinyBertConfig(): BertConfig {
  return parseBertConfig({
    model_type: 'bert',
    vocab_size: BERT_VOCAB_SIZE,
    hidden_size: 32,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    intermediate_size: 64,
    max_position_embeddings: 512,
    type_vocab_size: 2,
  });
}

// ---- deterministic random numbers -------------------------------------------------------------

/** FNV-1a over the UTF-16 code units of a string, continuing from `hash`. */
function fnv1a(text: string, hash = 0x811c9dc5): number {
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash;
}

/** splitmix32: spreads one 32-bit seed into well-mixed words for the generator state. */
function splitmix32(state: { s: number }): number {
  state.s = (state.s + 0x9e3779b9) >>> 0;
  let z = state.s;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
  return (z ^ (z >>> 16)) >>> 0;
}

function checkSeed(seed: number): void {
  if (!Number.isSafeInteger(seed) || seed < 0) throw new Error(`seed must be a non-negative integer, got ${seed}`);
}

/** The seed word of the PRNG stream private to one tensor, so tensors do not depend on generation order. */
function streamSeed(seed: number, tensorName: string): number {
  return fnv1a(tensorName, fnv1a(String(seed)));
}

/**
 * Approximately standard-normal samples: the sum of 12 uniforms minus 6 (Irwin–Hall; mean 0,
 * variance 1, tails cut at ±6). Every uniform is k/2^32, so the sums are exact in float64 and
 * identical in every engine, unlike Box–Muller's Math.log/Math.cos.
 *
 * The uniforms come from sfc32 (Small Fast Counting generator: 128-bit state, 32-bit outputs),
 * seeded through splitmix32 and advanced 12 steps to leave the seeding neighbourhood. The
 * generator is written inline on local variables rather than as a closure called per uniform:
 * the same numbers, about 3× faster, which matters because every test process generates the tiny
 * checkpoints (36 M uniforms) again.
 */
function fillNormal(out: Float32Array, std: number, seedWord: number): void {
  const mix = { s: seedWord };
  let a = splitmix32(mix),
    b = splitmix32(mix),
    c = splitmix32(mix),
    d = splitmix32(mix);
  const skipped = 12;
  const scale = 2 ** -32;
  let sum = 0;
  let terms = 0;
  let i = 0;
  for (let n = 0, total = skipped + out.length * 12; n < total; n++) {
    const t = (((a + b) >>> 0) + d) >>> 0;
    d = (d + 1) >>> 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) >>> 0;
    c = ((c << 21) | (c >>> 11)) >>> 0;
    c = (c + t) >>> 0;
    if (n < skipped) continue;
    sum += t;
    if (++terms === 12) {
      out[i++] = (sum * scale - 6) * std;
      sum = 0;
      terms = 0;
    }
  }
}

function normalTensor(seed: number, name: string, shape: number[], std: number): TinyTensor {
  const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
  fillNormal(data, std, streamSeed(seed, name));
  return { shape, data };
}

function constantTensor(shape: number[], value: number): TinyTensor {
  return { shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(value) };
}

// ---- Hugging Face initialisation ----------------------------------------------------------------

/**
 * Standard deviation HF's T5PreTrainedModel._init_weights gives each parameter, or null for the
 * RMS-norm weights it sets to the factor itself.
 */
function t5InitStd(name: string, config: T5Config, factor: number): number | null {
  const inner = config.num_heads * config.d_kv;
  if (name.endsWith('layer_norm.weight')) return null;
  if (name === 'shared.weight' || name === 'lm_head.weight') return factor * 1.0;
  if (/\.(wi|wi_0|wi_1)\.weight$/.test(name)) return factor * config.d_model ** -0.5;
  if (name.endsWith('.wo.weight')) return factor * config.d_ff ** -0.5;
  if (name.endsWith('.q.weight')) return factor * (config.d_model * config.d_kv) ** -0.5;
  if (name.endsWith('.k.weight') || name.endsWith('.v.weight')) return factor * config.d_model ** -0.5;
  if (name.endsWith('.o.weight')) return factor * inner ** -0.5;
  if (name.endsWith('relative_attention_bias.weight')) return factor * config.d_model ** -0.5;
  throw new Error(`no T5 initialisation rule for parameter "${name}"`);
}

/** Random T5 weights for every parameter of `config`, initialised as transformers does. */
export function tinyT5Weights(config: T5Config, seed: number, options: { initializerFactor?: number } = {}): TinyWeights {
  checkSeed(seed);
  const factor = options.initializerFactor ?? 1.0;
  const weights: TinyWeights = new Map();
  for (const [name, shape] of t5ParameterShapes(config)) {
    const std = t5InitStd(name, config, factor);
    weights.set(name, std === null ? constantTensor(shape, factor) : normalTensor(seed, name, shape, std));
  }
  return weights;
}

/**
 * Random BERT weights as BertPreTrainedModel._init_weights makes them: Linear and Embedding
 * weights normal(0, initializer_range), biases 0, LayerNorm 1/0, the padding token's embedding row 0.
 */
export function tinyBertWeights(config: BertConfig, seed: number, options: { initializerRange?: number } = {}): TinyWeights {
  checkSeed(seed);
  const std = options.initializerRange ?? 0.02;
  const weights: TinyWeights = new Map();
  for (const [name, shape] of bertParameterShapes(config)) {
    if (name.endsWith('LayerNorm.weight')) weights.set(name, constantTensor(shape, 1));
    else if (name.endsWith('.bias')) weights.set(name, constantTensor(shape, 0));
    else weights.set(name, normalTensor(seed, name, shape, std));
  }
  const words = weights.get('embeddings.word_embeddings.weight')!;
  const width = config.hidden_size;
  words.data.fill(0, config.pad_token_id * width, (config.pad_token_id + 1) * width);
  return weights;
}

/** The files of a checkpoint folder, by file name, ready to write or serve. */
export type CheckpointFiles = Map<string, Uint8Array>;

function toSafetensors(weights: TinyWeights, seed: number): Uint8Array {
  const tensors = new Map<string, TensorToWrite>();
  for (const [name, t] of weights) tensors.set(name, { dtype: 'F32', shape: t.shape, data: t.data });
  return writeSafetensors(tensors, { format: 'pt', generator: 'corag-web tiny random model', seed: String(seed) });
}

/** `config.json` and `model.safetensors` of a tiny random model (tokenizer files are added by the caller). */
export function tinyCheckpointFiles(kind: 't5', config: T5Config, seed: number): CheckpointFiles;
export function tinyCheckpointFiles(kind: 'bert', config: BertConfig, seed: number): CheckpointFiles;
export function tinyCheckpointFiles(kind: 't5' | 'bert', config: T5Config | BertConfig, seed: number): CheckpointFiles {
  const [configText, weights] =
    kind === 't5'
      ? [t5ConfigJsonText(config as T5Config), tinyT5Weights(config as T5Config, seed)]
      : [bertConfigJsonText(config as BertConfig), tinyBertWeights(config as BertConfig, seed)];
  return new Map([
    ['config.json', new TextEncoder().encode(configText)],
    ['model.safetensors', toSafetensors(weights, seed)],
  ]);
}
