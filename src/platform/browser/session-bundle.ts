/**
 * What a browser tab needs to build a session's model besides its weights: the reader and
 * retriever configs and tokenizers (fetched from the coordinator, which serves public/ as static
 * files). The weights, a global version, come from the IndexedDB cache or a download through
 * CoragClient (src/corag/federated-client.ts globalVersionBytes).
 *
 * A session names its models in `models.reader` / `models.passageEncoder`:
 * - `corag/tiny-t5 ...` / `corag/tiny-contriever ...`: the tiny random models of src/model/tiny
 *   (configs are code; tokenizers from models/tokenizers/{t5,bert-base-uncased}/);
 * - a Hugging Face hub id (`google/flan-t5-base`) or an http(s) URL base: fetched from there;
 * - anything else is a folder under the app (e.g. `models/demo/reader`) holding config.json and,
 *   when it has its own, tokenizer.json.
 * A checkpoint without tokenizer.json uses the app's copy of the t5 / bert-base-uncased tokenizer.
 */
import type { BundleSpec } from '../../corag/model-bundle';
import { parseBertCheckpointConfig, readConfigJson, urlModelSource, type ModelSource } from '../../model/checkpoint';
import { isHubModelId, resolveModelSource } from '../../model/checkpoint/source';
import { parseT5CheckpointConfig } from '../../model/checkpoint/t5';
import { tinyBertConfig, tinyT5Config } from '../../model/tiny';
import { loadTokenizer } from '../../model/tokenizer';
import type { SessionModels } from '../../federated/protocol';

const TINY_READER = /^corag\/tiny-t5\b/;
const TINY_RETRIEVER = /^corag\/tiny-contriever\b/;

/** Where the browser reads a session model's files from. */
export function sessionModelSource(appBase: string, spec: string): ModelSource {
  if (/^https?:\/\//i.test(spec) || isHubModelId(spec)) return resolveModelSource(spec);
  if (/^[a-z]+:/i.test(spec) || spec.includes('..')) throw new Error(`model "${spec}" is not a folder of this app`);
  return urlModelSource(new URL(spec.replace(/\/*$/, '/'), appBase).href);
}

async function tokenizerFrom(primary: ModelSource | null, fallback: ModelSource) {
  if (primary && (await primary.fetchFile('tokenizer.json'))) return loadTokenizer(primary);
  return loadTokenizer(fallback);
}

/** The retriever's config and tokenizer: all the embedding worker needs besides the weights. */
export async function loadRetrieverSpec(appBase: string, models: SessionModels): Promise<Pick<BundleSpec, 'retrieverConfig' | 'retrieverTokenizer'>> {
  const bertTokenizers = urlModelSource(new URL('models/tokenizers/bert-base-uncased/', appBase).href);
  const retrieverSource = TINY_RETRIEVER.test(models.passageEncoder) ? null : sessionModelSource(appBase, models.passageEncoder);
  const [retrieverConfig, retrieverTokenizer] = await Promise.all([
    retrieverSource ? readConfigJson(retrieverSource).then((j) => parseBertCheckpointConfig(j, retrieverSource.describe())) : tinyBertConfig(),
    tokenizerFrom(retrieverSource, bertTokenizers),
  ]);
  if (retrieverConfig.hidden_size !== models.embeddingDim) {
    throw new Error(`session stores ${models.embeddingDim}-dimensional embeddings but ${models.passageEncoder} makes ${retrieverConfig.hidden_size}`);
  }
  return { retrieverConfig, retrieverTokenizer };
}

/** Configs and tokenizers of a session's models; `appBase` is the page's origin + path ("http://host/"). */
export async function loadBundleSpec(appBase: string, models: SessionModels): Promise<BundleSpec> {
  const t5Tokenizers = urlModelSource(new URL('models/tokenizers/t5/', appBase).href);
  const readerSource = TINY_READER.test(models.reader) ? null : sessionModelSource(appBase, models.reader);
  const [readerConfig, readerTokenizer, retriever] = await Promise.all([
    readerSource ? readConfigJson(readerSource).then((j) => parseT5CheckpointConfig(j, readerSource.describe())) : tinyT5Config(),
    tokenizerFrom(readerSource, t5Tokenizers),
    loadRetrieverSpec(appBase, models),
  ]);
  return { readerConfig, readerTokenizer, ...retriever };
}
