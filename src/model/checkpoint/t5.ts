/**
 * Loads a T5 checkpoint (original T5 or T5 v1.1 / flan-t5 layout) with its tokenizer, checked
 * tensor by tensor against the parameter table its config implies.
 */
import { parseT5Config, t5ParameterShapes, type T5Config } from '../t5/config';
import { loadTypedCheckpoint, type LoadedModel, type LoadModelOptions, type ParameterNaming } from './load';
import { type ModelSource } from './source';
import { CheckpointError, CONFIG_FILE } from './weights';

/**
 * Hub checkpoints often also store the shared embedding under the encoder's and decoder's names,
 * and tied ones sometimes keep a copy as `lm_head.weight`; all are the same tensor as shared.weight.
 */
function t5Naming(config: T5Config): ParameterNaming {
  return {
    model: 'T5',
    canonical(name) {
      if (name === 'encoder.embed_tokens.weight' || name === 'decoder.embed_tokens.weight') return null;
      if (name === 'lm_head.weight' && config.tie_word_embeddings) return null;
      return name;
    },
  };
}

export function parseT5CheckpointConfig(json: Record<string, unknown>, sourceName: string): T5Config {
  try {
    return parseT5Config(json);
  } catch (e) {
    throw new CheckpointError(`${sourceName}/${CONFIG_FILE}: ${(e as Error).message}`);
  }
}

export function loadT5Checkpoint(source: ModelSource, options: LoadModelOptions = {}): Promise<LoadedModel<T5Config>> {
  return loadTypedCheckpoint(source, options, (json, sourceName) => {
    const config = parseT5CheckpointConfig(json, sourceName);
    return { config, expected: t5ParameterShapes(config), naming: t5Naming(config), vocabSize: config.vocab_size };
  });
}
