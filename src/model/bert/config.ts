/**
 * The BERT configuration (Hugging Face `config.json` of `model_type: "bert"`) that the Contriever
 * retriever needs, parsed and validated at the edge, and the parameter names/shapes it implies.
 * Only Hugging Face's keys are parsed; our own settings (the `corag` object) are carried
 * uninterpreted and read by src/corag/checkpoint-policy.ts.
 */
import { coragSection, CORAG_CONFIG_KEY, hfConfigJsonText, type CoragSection } from '../hf-config-json';

export type BertHiddenAct = 'gelu' | 'gelu_new';

export interface BertConfig {
  readonly hidden_size: number;
  readonly num_hidden_layers: number;
  readonly num_attention_heads: number;
  readonly intermediate_size: number;
  readonly max_position_embeddings: number;
  readonly type_vocab_size: number;
  readonly vocab_size: number;
  readonly layer_norm_eps: number;
  /** 'gelu' is the exact erf GELU (BERT, Contriever); 'gelu_new' the tanh approximation. */
  readonly hidden_act: BertHiddenAct;
  readonly pad_token_id: number;
  /** The config.json's `corag` object, uninterpreted (absent when it has none). */
  readonly corag?: CoragSection;
}

/** Defaults of transformers' BertConfig for the fields hub configs sometimes omit. */
const OPTIONAL_DEFAULTS = { type_vocab_size: 2, layer_norm_eps: 1e-12, hidden_act: 'gelu', pad_token_id: 0 } as const;

function positiveInt(obj: Record<string, unknown>, field: string): number {
  const v = obj[field];
  if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) {
    throw new Error(`BERT config: "${field}" must be a positive integer, got ${JSON.stringify(v)}`);
  }
  return v;
}

/** Validates a parsed `config.json`; every error names the offending field. */
export function parseBertConfig(json: unknown): BertConfig {
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    throw new Error('BERT config: expected a JSON object');
  }
  const obj = json as Record<string, unknown>;
  if (obj.model_type !== undefined && obj.model_type !== 'bert') {
    throw new Error(`unsupported model type "${String(obj.model_type)}" (expected "bert")`);
  }
  const withDefaults: Record<string, unknown> = { ...OPTIONAL_DEFAULTS };
  for (const [k, v] of Object.entries(obj)) if (v !== undefined && v !== null) withDefaults[k] = v;

  const hidden_size = positiveInt(withDefaults, 'hidden_size');
  const num_attention_heads = positiveInt(withDefaults, 'num_attention_heads');
  if (hidden_size % num_attention_heads !== 0) {
    throw new Error(`BERT config: "hidden_size" ${hidden_size} is not a multiple of "num_attention_heads" ${num_attention_heads}`);
  }
  const layer_norm_eps = withDefaults.layer_norm_eps;
  if (typeof layer_norm_eps !== 'number' || !(layer_norm_eps > 0) || !Number.isFinite(layer_norm_eps)) {
    throw new Error(`BERT config: "layer_norm_eps" must be a positive number, got ${JSON.stringify(layer_norm_eps)}`);
  }
  const hidden_act = withDefaults.hidden_act;
  if (hidden_act !== 'gelu' && hidden_act !== 'gelu_new') {
    throw new Error(`BERT config: "hidden_act" ${JSON.stringify(hidden_act)} is not supported (expected "gelu" or "gelu_new")`);
  }
  const pad_token_id = withDefaults.pad_token_id;
  if (typeof pad_token_id !== 'number' || !Number.isInteger(pad_token_id) || pad_token_id < 0) {
    throw new Error(`BERT config: "pad_token_id" must be a non-negative integer, got ${JSON.stringify(pad_token_id)}`);
  }
  const corag = coragSection(obj, (m) => new Error(`BERT ${m}`));
  const config: BertConfig = {
    ...(corag ? { corag } : {}),
    hidden_size,
    num_hidden_layers: positiveInt(withDefaults, 'num_hidden_layers'),
    num_attention_heads,
    intermediate_size: positiveInt(withDefaults, 'intermediate_size'),
    max_position_embeddings: positiveInt(withDefaults, 'max_position_embeddings'),
    type_vocab_size: positiveInt(withDefaults, 'type_vocab_size'),
    vocab_size: positiveInt(withDefaults, 'vocab_size'),
    layer_norm_eps,
    hidden_act,
    pad_token_id,
  };
  if (pad_token_id >= config.vocab_size) {
    throw new Error(`BERT config: "pad_token_id" ${pad_token_id} is outside the vocabulary (vocab_size ${config.vocab_size})`);
  }
  return config;
}

/** The fields of bertConfigToJson that transformers' BertConfig declares as floats. */
export const BERT_FLOAT_FIELDS: ReadonlySet<string> = new Set(['layer_norm_eps', 'hidden_dropout_prob', 'attention_probs_dropout_prob', 'initializer_range']);

/**
 * The `config.json` content for a BertConfig: Hugging Face's fields at the top level, ours
 * (the `corag` object, as it was read or set) under `corag`.
 */
export function bertConfigToJson(config: BertConfig): Record<string, unknown> {
  return {
    architectures: ['BertModel'],
    model_type: 'bert',
    hidden_size: config.hidden_size,
    num_hidden_layers: config.num_hidden_layers,
    num_attention_heads: config.num_attention_heads,
    intermediate_size: config.intermediate_size,
    max_position_embeddings: config.max_position_embeddings,
    type_vocab_size: config.type_vocab_size,
    vocab_size: config.vocab_size,
    layer_norm_eps: config.layer_norm_eps,
    hidden_act: config.hidden_act,
    pad_token_id: config.pad_token_id,
    hidden_dropout_prob: 0.1,
    attention_probs_dropout_prob: 0.1,
    initializer_range: 0.02,
    ...(config.corag && Object.keys(config.corag).length ? { [CORAG_CONFIG_KEY]: config.corag } : {}),
  };
}

/** config.json text for a BertConfig, floats written as floats (what the exporters write). */
export function bertConfigJsonText(config: BertConfig): string {
  return hfConfigJsonText(bertConfigToJson(config), BERT_FLOAT_FIELDS);
}

/**
 * Every parameter of a BertModel without pooler, by its Hugging Face name (no `bert.` prefix),
 * with its PyTorch shape (Linear weights are [out, in]).
 */
export function bertParameterShapes(config: BertConfig): Map<string, number[]> {
  const h = config.hidden_size;
  const ff = config.intermediate_size;
  const shapes = new Map<string, number[]>([
    ['embeddings.word_embeddings.weight', [config.vocab_size, h]],
    ['embeddings.position_embeddings.weight', [config.max_position_embeddings, h]],
    ['embeddings.token_type_embeddings.weight', [config.type_vocab_size, h]],
    ['embeddings.LayerNorm.weight', [h]],
    ['embeddings.LayerNorm.bias', [h]],
  ]);
  for (let i = 0; i < config.num_hidden_layers; i++) {
    const p = `encoder.layer.${i}.`;
    for (const proj of ['query', 'key', 'value']) {
      shapes.set(`${p}attention.self.${proj}.weight`, [h, h]);
      shapes.set(`${p}attention.self.${proj}.bias`, [h]);
    }
    shapes.set(`${p}attention.output.dense.weight`, [h, h]);
    shapes.set(`${p}attention.output.dense.bias`, [h]);
    shapes.set(`${p}attention.output.LayerNorm.weight`, [h]);
    shapes.set(`${p}attention.output.LayerNorm.bias`, [h]);
    shapes.set(`${p}intermediate.dense.weight`, [ff, h]);
    shapes.set(`${p}intermediate.dense.bias`, [ff]);
    shapes.set(`${p}output.dense.weight`, [h, ff]);
    shapes.set(`${p}output.dense.bias`, [h]);
    shapes.set(`${p}output.LayerNorm.weight`, [h]);
    shapes.set(`${p}output.LayerNorm.bias`, [h]);
  }
  return shapes;
}

/**
 * Maps a checkpoint tensor name to its canonical name (no `bert.` prefix), or undefined for
 * tensors a Contriever encoder does not use (pooler, MLM/NSP heads). facebook/contriever stores
 * names without the prefix; BertForMaskedLM-style exports add `bert.`.
 */
export function canonicalBertName(name: string): string | undefined {
  const bare = name.startsWith('bert.') ? name.slice('bert.'.length) : name;
  if (bare.startsWith('embeddings.') || bare.startsWith('encoder.')) {
    // Old TF-converted checkpoints call LayerNorm parameters gamma/beta.
    return bare.replace(/LayerNorm\.gamma$/, 'LayerNorm.weight').replace(/LayerNorm\.beta$/, 'LayerNorm.bias');
  }
  return undefined;
}
