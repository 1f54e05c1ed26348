/**
 * The shapes of the two models pretraining builds from scratch, as Hugging Face configs: a T5
 * reader with a tied vocabulary and a BERT retriever, sized by the pretraining config and the
 * trimmed vocabularies (what a fresh run initialises and a resumed one checks its weights against).
 */
import { parseBertConfig, type BertConfig } from '../model/bert/config';
import { parseT5Config, type T5Config } from '../model/t5/config';
import type { PretrainConfig } from './config';

export function readerT5Config(config: PretrainConfig, vocabSize: number, special: { pad: number; eos: number }): T5Config {
  return parseT5Config({
    model_type: 't5',
    vocab_size: vocabSize,
    ...config.reader,
    relative_attention_num_buckets: 32,
    relative_attention_max_distance: 128,
    feed_forward_proj: 'gated-gelu',
    // Tied input/output embedding: the vocabulary matrix is most of a small model's size.
    tie_word_embeddings: true,
    decoder_start_token_id: special.pad,
    pad_token_id: special.pad,
    eos_token_id: special.eos,
  });
}

export function retrieverBertConfig(config: PretrainConfig, vocabSize: number, padId: number): BertConfig {
  return parseBertConfig({
    model_type: 'bert',
    vocab_size: vocabSize,
    ...config.retriever,
    max_position_embeddings: Math.max(512, config.indexMaxLength),
    type_vocab_size: 2,
    hidden_act: 'gelu',
    pad_token_id: padId,
  });
}
