/**
 * Loads a BERT encoder checkpoint (the Contriever retriever) with its tokenizer, checked tensor by
 * tensor against the parameter table its config implies. Names are canonicalised (no `bert.`
 * prefix); the pooler and pre-training heads are skipped.
 */
import { bertParameterShapes, canonicalBertName, parseBertConfig, type BertConfig } from '../bert/config';
import { loadTypedCheckpoint, type LoadedModel, type LoadModelOptions, type ParameterNaming } from './load';
import { type ModelSource } from './source';
import { CheckpointError, CONFIG_FILE } from './weights';

/** Tensors of BertModel / BertForMaskedLM checkpoints a Contriever encoder does not use. */
const UNUSED_PREFIXES = ['pooler.', 'bert.pooler.', 'cls.'];

const bertNaming: ParameterNaming = {
  model: 'BERT',
  canonical(name) {
    if (UNUSED_PREFIXES.some((p) => name.startsWith(p))) return null;
    // Old checkpoints keep a position_ids buffer next to the weights.
    if (name.endsWith('embeddings.position_ids')) return null;
    return canonicalBertName(name) ?? name;
  },
};

export function parseBertCheckpointConfig(json: Record<string, unknown>, sourceName: string): BertConfig {
  if (json.model_type === undefined) {
    throw new CheckpointError(`${sourceName}/${CONFIG_FILE}: no "model_type" field (expected "bert")`);
  }
  try {
    return parseBertConfig(json);
  } catch (e) {
    throw new CheckpointError(`${sourceName}/${CONFIG_FILE}: ${(e as Error).message}`);
  }
}

export function loadBertCheckpoint(source: ModelSource, options: LoadModelOptions = {}): Promise<LoadedModel<BertConfig>> {
  return loadTypedCheckpoint(source, options, (json, sourceName) => {
    const config = parseBertCheckpointConfig(json, sourceName);
    return { config, expected: bertParameterShapes(config), naming: bertNaming, vocabSize: config.vocab_size };
  });
}
