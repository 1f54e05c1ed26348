/**
 * The T5 model configuration, read from (and written to) a Hugging Face `config.json`.
 *
 * Missing fields take Hugging Face's `T5Config` defaults (older hub checkpoints such as t5-small
 * omit e.g. `relative_attention_max_distance` and `feed_forward_proj`); present fields are
 * checked, and every error names the field so a user can fix the file. Only Hugging Face's keys
 * are parsed here; our own settings (the `corag` object) are carried uninterpreted and read by
 * src/corag/checkpoint-policy.ts.
 */
import { coragSection, CORAG_CONFIG_KEY, hfConfigJsonText, type CoragSection } from '../hf-config-json';

/** The two feed-forward layouts we implement: original T5 and T5 v1.1 / flan-t5. */
export type T5FeedForward = 'relu' | 'gated-gelu';

export interface T5Config {
  readonly vocab_size: number;
  readonly d_model: number;
  /** Size of one attention head; `num_heads * d_kv` need not equal `d_model`. */
  readonly d_kv: number;
  readonly d_ff: number;
  /** Encoder blocks. */
  readonly num_layers: number;
  /** Decoder blocks (HF: defaults to num_layers). */
  readonly num_decoder_layers: number;
  readonly num_heads: number;
  readonly relative_attention_num_buckets: number;
  readonly relative_attention_max_distance: number;
  /** 'relu': ReLU FFN (wi, wo). 'gated-gelu': gelu_new(wi_0 x) * wi_1 x, then wo. */
  readonly feed_forward_proj: T5FeedForward;
  /** When true the LM head is shared.weight and the decoder output is scaled by d_model^-0.5. */
  readonly tie_word_embeddings: boolean;
  readonly layer_norm_epsilon: number;
  readonly decoder_start_token_id: number;
  readonly pad_token_id: number;
  readonly eos_token_id: number;
  /** The config.json's `corag` object, uninterpreted (absent when it has none). */
  readonly corag?: CoragSection;
}

/** Hugging Face's T5Config defaults (transformers/models/t5/configuration_t5.py). */
const DEFAULTS = {
  vocab_size: 32128,
  d_model: 512,
  d_kv: 64,
  d_ff: 2048,
  num_layers: 6,
  num_heads: 8,
  relative_attention_num_buckets: 32,
  relative_attention_max_distance: 128,
  feed_forward_proj: 'relu',
  tie_word_embeddings: true,
  layer_norm_epsilon: 1e-6,
  decoder_start_token_id: 0,
  pad_token_id: 0,
  eos_token_id: 1,
} as const;

export class T5ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'T5ConfigError';
  }
}

function positiveInt(obj: Record<string, unknown>, field: string, fallback: number): number {
  const v = obj[field] ?? fallback;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) {
    throw new T5ConfigError(`T5 config field "${field}" must be a positive integer, got ${JSON.stringify(v)}`);
  }
  return v;
}

function tokenId(obj: Record<string, unknown>, field: string, fallback: number, vocabSize: number): number {
  let v = obj[field] ?? fallback;
  // Some configs list several end-of-sequence ids; the first is the one T5 generates.
  if (field === 'eos_token_id' && Array.isArray(v) && v.length > 0) v = v[0];
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0 || v >= vocabSize) {
    throw new T5ConfigError(`T5 config field "${field}" must be a token id in [0, ${vocabSize}), got ${JSON.stringify(v)}`);
  }
  return v;
}

function parseFeedForward(v: unknown): T5FeedForward {
  if (v === 'relu' || v === 'gated-gelu') return v;
  throw new T5ConfigError(`T5 config field "feed_forward_proj" must be "relu" (original T5) or "gated-gelu" (T5 v1.1 / flan-t5), got ${JSON.stringify(v)}`);
}

/** Validates a parsed `config.json` and returns a complete T5Config. */
export function parseT5Config(json: unknown): T5Config {
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    throw new T5ConfigError('T5 config must be a JSON object');
  }
  const obj = json as Record<string, unknown>;
  if (obj.model_type !== 't5') {
    throw new T5ConfigError(`unsupported model type "${String(obj.model_type)}" (field "model_type"): expected "t5"`);
  }
  const vocab_size = positiveInt(obj, 'vocab_size', DEFAULTS.vocab_size);
  const num_layers = positiveInt(obj, 'num_layers', DEFAULTS.num_layers);
  const epsilon = obj.layer_norm_epsilon ?? DEFAULTS.layer_norm_epsilon;
  if (typeof epsilon !== 'number' || !Number.isFinite(epsilon) || epsilon <= 0) {
    throw new T5ConfigError(`T5 config field "layer_norm_epsilon" must be a positive number, got ${JSON.stringify(epsilon)}`);
  }
  const tie = obj.tie_word_embeddings ?? DEFAULTS.tie_word_embeddings;
  if (typeof tie !== 'boolean') {
    throw new T5ConfigError(`T5 config field "tie_word_embeddings" must be true or false, got ${JSON.stringify(tie)}`);
  }
  return {
    vocab_size,
    d_model: positiveInt(obj, 'd_model', DEFAULTS.d_model),
    d_kv: positiveInt(obj, 'd_kv', DEFAULTS.d_kv),
    d_ff: positiveInt(obj, 'd_ff', DEFAULTS.d_ff),
    num_layers,
    num_decoder_layers: positiveInt(obj, 'num_decoder_layers', num_layers),
    num_heads: positiveInt(obj, 'num_heads', DEFAULTS.num_heads),
    relative_attention_num_buckets: positiveInt(obj, 'relative_attention_num_buckets', DEFAULTS.relative_attention_num_buckets),
    relative_attention_max_distance: positiveInt(obj, 'relative_attention_max_distance', DEFAULTS.relative_attention_max_distance),
    feed_forward_proj: parseFeedForward(obj.feed_forward_proj ?? DEFAULTS.feed_forward_proj),
    tie_word_embeddings: tie,
    layer_norm_epsilon: epsilon,
    decoder_start_token_id: tokenId(obj, 'decoder_start_token_id', DEFAULTS.decoder_start_token_id, vocab_size),
    pad_token_id: tokenId(obj, 'pad_token_id', DEFAULTS.pad_token_id, vocab_size),
    eos_token_id: tokenId(obj, 'eos_token_id', DEFAULTS.eos_token_id, vocab_size),
    ...withCorag(coragSection(obj, (m) => new T5ConfigError(`T5 ${m}`))),
  };
}

const withCorag = (corag: CoragSection | undefined): { corag?: CoragSection } => (corag ? { corag } : {});

/** The fields of t5ConfigToJson that transformers' T5Config declares as floats. */
export const T5_FLOAT_FIELDS: ReadonlySet<string> = new Set(['layer_norm_epsilon', 'dropout_rate', 'initializer_factor']);

/**
 * An HF-style config.json object that `transformers` and parseT5Config both read back: Hugging
 * Face's fields at the top level, ours under `corag` (absent when there are none).
 */
export function t5ConfigToJson(config: T5Config): Record<string, unknown> {
  return {
    model_type: 't5',
    architectures: ['T5ForConditionalGeneration'],
    is_encoder_decoder: true,
    vocab_size: config.vocab_size,
    d_model: config.d_model,
    d_kv: config.d_kv,
    d_ff: config.d_ff,
    num_layers: config.num_layers,
    num_decoder_layers: config.num_decoder_layers,
    num_heads: config.num_heads,
    relative_attention_num_buckets: config.relative_attention_num_buckets,
    relative_attention_max_distance: config.relative_attention_max_distance,
    feed_forward_proj: config.feed_forward_proj,
    tie_word_embeddings: config.tie_word_embeddings,
    layer_norm_epsilon: config.layer_norm_epsilon,
    dropout_rate: 0.0,
    initializer_factor: 1.0,
    decoder_start_token_id: config.decoder_start_token_id,
    pad_token_id: config.pad_token_id,
    eos_token_id: config.eos_token_id,
    ...(config.corag && Object.keys(config.corag).length ? { [CORAG_CONFIG_KEY]: config.corag } : {}),
  };
}

/** config.json text for a T5Config, floats written as floats (what the exporters write). */
export function t5ConfigJsonText(config: T5Config): string {
  return hfConfigJsonText(t5ConfigToJson(config), T5_FLOAT_FIELDS);
}

/** Hugging Face parameter names of one attention sublayer ('SelfAttention' or 'EncDecAttention'). */
function attentionShapes(prefix: string, config: T5Config, withRelativeBias: boolean): Array<[string, number[]]> {
  const inner = config.num_heads * config.d_kv;
  const out: Array<[string, number[]]> = [
    [`${prefix}.q.weight`, [inner, config.d_model]],
    [`${prefix}.k.weight`, [inner, config.d_model]],
    [`${prefix}.v.weight`, [inner, config.d_model]],
    [`${prefix}.o.weight`, [config.d_model, inner]],
  ];
  if (withRelativeBias) {
    out.push([`${prefix}.relative_attention_bias.weight`, [config.relative_attention_num_buckets, config.num_heads]]);
  }
  return out;
}

function feedForwardShapes(prefix: string, config: T5Config): Array<[string, number[]]> {
  const wi: Array<[string, number[]]> =
    config.feed_forward_proj === 'gated-gelu'
      ? [
          [`${prefix}.DenseReluDense.wi_0.weight`, [config.d_ff, config.d_model]],
          [`${prefix}.DenseReluDense.wi_1.weight`, [config.d_ff, config.d_model]],
        ]
      : [[`${prefix}.DenseReluDense.wi.weight`, [config.d_ff, config.d_model]]];
  return [...wi, [`${prefix}.DenseReluDense.wo.weight`, [config.d_model, config.d_ff]]];
}

/**
 * Every parameter of T5ForConditionalGeneration with its shape, named as in Hugging Face
 * checkpoints (torch Linear weights are [out, in]). The relative position bias lives only in
 * block 0 of each stack; `lm_head.weight` only exists when the embeddings are untied.
 * The optional `encoder.embed_tokens.weight` / `decoder.embed_tokens.weight` aliases of
 * shared.weight are not listed.
 */
export function t5ParameterShapes(config: T5Config): Map<string, number[]> {
  const shapes = new Map<string, number[]>();
  const add = (entries: Array<[string, number[]]>) => entries.forEach(([n, s]) => shapes.set(n, s));
  const norm = (name: string) => shapes.set(name, [config.d_model]);
  shapes.set('shared.weight', [config.vocab_size, config.d_model]);
  for (let i = 0; i < config.num_layers; i++) {
    const b = `encoder.block.${i}`;
    add(attentionShapes(`${b}.layer.0.SelfAttention`, config, i === 0));
    norm(`${b}.layer.0.layer_norm.weight`);
    add(feedForwardShapes(`${b}.layer.1`, config));
    norm(`${b}.layer.1.layer_norm.weight`);
  }
  norm('encoder.final_layer_norm.weight');
  for (let i = 0; i < config.num_decoder_layers; i++) {
    const b = `decoder.block.${i}`;
    add(attentionShapes(`${b}.layer.0.SelfAttention`, config, i === 0));
    norm(`${b}.layer.0.layer_norm.weight`);
    add(attentionShapes(`${b}.layer.1.EncDecAttention`, config, false));
    norm(`${b}.layer.1.layer_norm.weight`);
    add(feedForwardShapes(`${b}.layer.2`, config));
    norm(`${b}.layer.2.layer_norm.weight`);
  }
  norm('decoder.final_layer_norm.weight');
  if (!config.tie_word_embeddings) shapes.set('lm_head.weight', [config.vocab_size, config.d_model]);
  return shapes;
}
