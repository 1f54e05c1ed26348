/**
 * The tiny pretraining set-up the pretrain tests share: a small model config, 12 Wikipedia
 * passages with both tokenizers trimmed to them, and the examples prepared from them (seed 7).
 * Small enough for the CPU backend, big enough for a few steps to move the losses.
 */
import { readFileSync } from 'node:fs';
import { TextTokenizer } from '../../src/model/tokenizer';
import { parsePretrainConfig } from '../../src/pretrain/config';
import { parseDprPassages } from '../../src/pretrain/corpus';
import { preparePretrainData, type PretrainData } from '../../src/pretrain/data';
import { trimUnigramTokenizer, trimWordPieceTokenizer } from '../../src/pretrain/vocab-trim';

const read = (rel: string) => JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')) as Record<string, unknown>;

export const config = parsePretrainConfig({
  seed: 7,
  reader: { d_model: 32, d_kv: 8, num_heads: 4, d_ff: 64, num_layers: 1, num_decoder_layers: 1 },
  retriever: { hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 4, intermediate_size: 64 },
  steps: 40,
  lr: 0.01,
  warmupSteps: 0,
  readerBatch: 4,
  passagesPerQuestion: 2,
  readerMaxLength: 64,
  targetMaxLength: 12,
  queryMaxLength: 24,
  contrastiveBatch: 8,
  cropMaxLength: 24,
  queueSize: 16,
  reindexEvery: 5,
  indexMaxLength: 48,
});

/** A tiny corpus: 12 Wikipedia passages, with both tokenizers trimmed to them. */
export function tinyCorpus() {
  const passages = parseDprPassages(readFileSync(new URL('../../../shared/data/wikipedia/psgs_w100.sample1000.tsv', import.meta.url), 'utf8')).slice(0, 12);
  const texts = passages.flatMap((p) => [p.title, p.text, `title: ${p.title} context: ${p.text}`, 'question: answer: what when how many']);
  const t5 = trimUnigramTokenizer(
    read('../../public/models/tokenizers/t5/tokenizer.json'),
    read('../../public/models/tokenizers/t5/tokenizer_config.json'),
    texts,
  );
  const bert = trimWordPieceTokenizer(
    read('../../public/models/tokenizers/bert-base-uncased/tokenizer.json'),
    read('../../public/models/tokenizers/bert-base-uncased/tokenizer_config.json'),
    texts,
  );
  return {
    passages,
    reader: TextTokenizer.fromJson(t5.tokenizerJson, t5.tokenizerConfig),
    retriever: TextTokenizer.fromJson(bert.tokenizerJson, bert.tokenizerConfig),
  };
}

/** The tiny corpus prepared for training: one masked span and two cloze questions a passage. */
export function tinyPretrainData(): PretrainData {
  const { passages, reader, retriever } = tinyCorpus();
  return preparePretrainData(passages, reader, retriever, { seed: 7, mlmPerPassage: 1, clozePerPassage: 2 });
}
