/**
 * The pretrained models as Hugging Face checkpoint folders (config.json, model.safetensors in
 * fp16, the trimmed tokenizer files), readable by src/model/checkpoint's loaders.
 */
import { bertConfigJsonText } from '../model/bert/config';
import { t5ConfigJsonText } from '../model/t5/config';
import type { CheckpointFiles } from '../model/tiny';
import { readerPolicyToJson, retrieverPolicyToJson } from '../corag/checkpoint-policy';
import type { Pretrainer } from './trainer';

export interface TokenizerFiles {
  readonly tokenizerJson: unknown;
  readonly tokenizerConfig: unknown;
  readonly specialTokensMap: unknown;
}

function json(value: unknown): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(value, null, 2) + '\n');
}

function tokenizerFiles(t: TokenizerFiles): [string, Uint8Array][] {
  return [
    ['tokenizer.json', new TextEncoder().encode(JSON.stringify(t.tokenizerJson))],
    ['tokenizer_config.json', json(t.tokenizerConfig)],
    ['special_tokens_map.json', json(t.specialTokensMap)],
  ];
}

/** Reader and retriever folders (file name -> bytes) of the trainer's current weights. */
export async function exportCheckpoints(
  trainer: Pretrainer,
  tokenizers: { reader: TokenizerFiles; retriever: TokenizerFiles },
  metadata: Record<string, string>,
): Promise<{ reader: CheckpointFiles; retriever: CheckpointFiles }> {
  // The recipe's policy (0: not set) written under "corag" (src/corag/checkpoint-policy.ts).
  const { copyDecodingWeight, hybridKeywordWeight } = trainer.config;
  const rc = { ...trainer.readerConfig, corag: readerPolicyToJson(copyDecodingWeight > 0 ? { copyDecodingWeight } : {}) };
  const bc = { ...trainer.retrieverConfig, corag: retrieverPolicyToJson(hybridKeywordWeight > 0 ? { hybridKeywordWeight } : {}) };
  const reader: CheckpointFiles = new Map([
    // Hugging Face's field types (floats as floats), our settings under "corag": transformers loads it.
    ['config.json', new TextEncoder().encode(t5ConfigJsonText(rc))],
    ['generation_config.json', json({ decoder_start_token_id: rc.decoder_start_token_id, eos_token_id: rc.eos_token_id, pad_token_id: rc.pad_token_id })],
    ['model.safetensors', await trainer.readerParams.toSafetensors({ dtype: 'F16', metadata: { format: 'pt', ...metadata } })],
    ...tokenizerFiles(tokenizers.reader),
  ]);
  const retriever: CheckpointFiles = new Map([
    ['config.json', new TextEncoder().encode(bertConfigJsonText(bc))],
    ['model.safetensors', await trainer.retrieverParams.toSafetensors({ dtype: 'F16', metadata: { format: 'pt', ...metadata } })],
    ...tokenizerFiles(tokenizers.retriever),
  ]);
  return { reader, retriever };
}
