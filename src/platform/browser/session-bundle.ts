/**
 * What a browser tab needs to build a session's model: the reader and retriever configs and
 * tokenizers (fetched from the coordinator, which serves public/ as static files) plus a global
 * model version (the weights, from the IndexedDB cache or a download).
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
import type { ModelCache } from '../../corag/federated-client';

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

/** Configs and tokenizers of a session's models; `appBase` is the page's origin + path ("http://host/"). */
export async function loadBundleSpec(appBase: string, models: SessionModels): Promise<BundleSpec> {
  const t5Tokenizers = urlModelSource(new URL('models/tokenizers/t5/', appBase).href);
  const bertTokenizers = urlModelSource(new URL('models/tokenizers/bert-base-uncased/', appBase).href);
  const readerSource = TINY_READER.test(models.reader) ? null : sessionModelSource(appBase, models.reader);
  const retrieverSource = TINY_RETRIEVER.test(models.passageEncoder) ? null : sessionModelSource(appBase, models.passageEncoder);
  const [readerConfig, retrieverConfig, readerTokenizer, retrieverTokenizer] = await Promise.all([
    readerSource ? readConfigJson(readerSource).then((j) => parseT5CheckpointConfig(j, readerSource.describe())) : tinyT5Config(),
    retrieverSource ? readConfigJson(retrieverSource).then((j) => parseBertCheckpointConfig(j, retrieverSource.describe())) : tinyBertConfig(),
    tokenizerFrom(readerSource, t5Tokenizers),
    tokenizerFrom(retrieverSource, bertTokenizers),
  ]);
  if (retrieverConfig.hidden_size !== models.embeddingDim) {
    throw new Error(`session stores ${models.embeddingDim}-dimensional embeddings but ${models.passageEncoder} makes ${retrieverConfig.hidden_size}`);
  }
  return { readerConfig, retrieverConfig, readerTokenizer, retrieverTokenizer };
}

/** Progress of a model download (bytes; total undefined when the server sends no length). */
export type DownloadProgress = (loaded: number, total: number | undefined) => void;

/**
 * Global version `version` as safetensors bytes: from `cache` when it holds it, else downloaded
 * (streamed, with progress) and put in the cache before it is returned.
 */
export async function globalVersionBytes(
  appBase: string,
  credentials: { sessionId: string; token: string },
  version: number,
  cache: ModelCache,
  onProgress?: DownloadProgress,
): Promise<{ bytes: Uint8Array; cached: boolean }> {
  const hit = await cache.get(credentials.sessionId, version);
  if (hit) return { bytes: hit, cached: true };
  const url = new URL(`api/sessions/${encodeURIComponent(credentials.sessionId)}/model/${version}`, appBase);
  const res = await fetch(url, { headers: { authorization: `Bearer ${credentials.token}` } });
  if (!res.ok || !res.body)
    throw new Error(`downloading model version ${version} failed: HTTP ${res.status} ${(await res.text().catch(() => '')).slice(0, 200)}`);
  const header = res.headers.get('content-length');
  const total = header && /^\d+$/.test(header) ? Number(header) : undefined;
  const chunks: Uint8Array[] = [];
  let loaded = 0;
  const reader = res.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    loaded += value.byteLength;
    onProgress?.(loaded, total);
  }
  const bytes = new Uint8Array(loaded);
  let at = 0;
  for (const c of chunks) {
    bytes.set(c, at);
    at += c.byteLength;
  }
  await cache.put(credentials.sessionId, version, bytes);
  return { bytes, cached: false };
}
