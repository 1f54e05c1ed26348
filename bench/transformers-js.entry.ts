/**
 * Page for bench/transformers-js.bench.ts: one Chromium page holds our tfjs passage encoder,
 * transformers.js (ONNX Runtime Web on the lab's PyTorch export) and the product's ONNX path (the
 * graph written from TypeScript, src/model/bert/onnx-graph.ts, on onnxruntime-web's wasm build as
 * the embed worker runs it) with the same BERT weights, embeds the same texts with each, and keeps
 * the embeddings here so only timings and differences cross the page boundary.
 *
 * Both sides do the same work per call: tokenize every text, order the texts by token length,
 * embed batches of `batchSize` padded to their longest row, mean-pool the last hidden state over
 * real tokens (Contriever) and read the rows back into one Float32Array.
 */
import * as tf from '@tensorflow/tfjs-core';
import { AutoModel, AutoTokenizer, env, mean_pooling, Tensor, type PreTrainedModel, type PreTrainedTokenizer } from '@huggingface/transformers';
import { embedTexts, embedTextsWith } from '../src/corag/retrieve';
import { OnnxContrieverEncoder } from '../src/model/bert/onnx-encoder';
import { contrieverOnnxModel } from '../src/model/bert/onnx-graph';
import { configureOrt } from '../src/model/onnx/ort-runtime';
import { loadBertCheckpoint, urlModelSource } from '../src/model/checkpoint';
import { bertParameterShapes } from '../src/model/bert/config';
import { Contriever, PASSAGE_PREFIX } from '../src/model/contriever';
import { initBackend, type BackendName, type BackendReport } from '../src/model/backend';
import { ParameterStore } from '../src/model/params';
import { parseSafetensors, readTensor } from '../src/model/safetensors';
import type { TextTokenizer } from '../src/model/tokenizer';
import { exposeToTests, fetchBytes } from '../test/browser/page-api';

type TjsDevice = 'wasm' | 'webgpu';

interface Ours {
  readonly retriever: Contriever;
  readonly retrieverTokenizer: TextTokenizer;
}

const ours = new Map<string, Ours>();
/** The product's ONNX path per model (wasm only: what the embed worker runs). */
const product = new Map<string, OnnxContrieverEncoder>();
const theirs = new Map<string, { model: PreTrainedModel; tokenizer: PreTrainedTokenizer }>();
/** Embeddings of the last run per label, [texts × hidden] row-major. */
const results = new Map<string, Float32Array>();

// Everything from the bench's own server: no hub, no CDN (transformers.js would fetch ORT's
// .wasm from jsDelivr by default).
env.allowRemoteModels = false;
env.allowLocalModels = true;
env.localModelPath = '/models/';
env.useBrowserCache = false;
if (env.backends.onnx.wasm) {
  env.backends.onnx.wasm.wasmPaths = '/ort/';
  env.backends.onnx.wasm.proxy = false;
}

/** Our tfjs backend; `threads` is what ORT's wasm gets too, so both run on the same cores. */
async function useOurBackend(name: BackendName): Promise<BackendReport> {
  const report = await initBackend([name]);
  if (env.backends.onnx.wasm && report.threads !== undefined) env.backends.onnx.wasm.numThreads = report.threads;
  // The product's ORT (its own copy of onnxruntime-web's wasm build) gets the same threads, once.
  if (name === 'wasm')
    configureOrt({ files: { wasm: '/ort/ort-wasm-simd-threaded.wasm', mjs: '/ort/ort-wasm-simd-threaded.mjs' }, threads: report.threads ?? 1 });
  return report;
}

/** The product's ONNX graph of `model`'s weights (as loaded for ours), and its ORT session; seconds to write and to create. */
async function loadProduct(model: string): Promise<{ writeSeconds: number; sessionSeconds: number; megabytes: number }> {
  const m = ours.get(model);
  if (!m) throw new Error(`load ${model} first`);
  const t0 = performance.now();
  const bytes = contrieverOnnxModel(m.retriever.config, (name) => m.retriever.params.get(PASSAGE_PREFIX + name).dataSync() as Float32Array);
  const t1 = performance.now();
  await product.get(model)?.dispose();
  product.set(model, await OnnxContrieverEncoder.create(m.retriever.config, bytes));
  return { writeSeconds: (t1 - t0) / 1000, sessionSeconds: (performance.now() - t1) / 1000, megabytes: bytes.byteLength / 1e6 };
}

/** The product's path: embedTextsWith over the ONNX session, with our tokenizer (as PassageEncoder.embed). */
async function embedProduct(label: string, model: string, texts: string[], batchSize: number, maxLength: number): Promise<EmbedRun> {
  const m = ours.get(model);
  const onnx = product.get(model);
  if (!m || !onnx) throw new Error(`load ${model} and its product ONNX first`);
  const config = m.retriever.config;
  const t0 = performance.now();
  const rows = await embedTextsWith(
    { tokenizer: m.retrieverTokenizer, hidden: config.hidden_size, maxPositions: config.max_position_embeddings, embedBatch: (s) => onnx.embedTokens(s) },
    texts,
    { batchSize, maxLength },
  );
  const seconds = (performance.now() - t0) / 1000;
  const flat = new Float32Array(texts.length * config.hidden_size);
  rows.forEach((r, i) => flat.set(r, i * config.hidden_size));
  results.set(label, flat);
  return { seconds, passagesPerSecond: texts.length / seconds };
}

/** `withTokenizer` false for a folder without tokenizer files (the fixture BERT: token ids come given). */
async function loadOurs(model: string, withTokenizer = true): Promise<{ hidden: number; layers: number; seconds: number }> {
  const t0 = performance.now();
  const loaded = await loadBertCheckpoint(urlModelSource(new URL(`/models/${model}/`, location.href).href), withTokenizer ? {} : { tokenizer: false });
  // The passage side only, as the tab's embed worker holds it (src/corag/passage-encoder.ts).
  const store = new ParameterStore();
  for (const name of bertParameterShapes(loaded.config).keys()) store.set(PASSAGE_PREFIX + name, loaded.params.get(name), false);
  const retriever = new Contriever(loaded.config, store, ['passage']);
  ours.get(model)?.retriever.dispose();
  ours.set(model, { retriever, retrieverTokenizer: loaded.tokenizer as TextTokenizer });
  return { hidden: loaded.config.hidden_size, layers: loaded.config.num_hidden_layers, seconds: (performance.now() - t0) / 1000 };
}

async function loadTheirs(model: string, device: TjsDevice): Promise<{ seconds: number }> {
  const t0 = performance.now();
  const key = `${model}@${device}`;
  await theirs.get(key)?.model.dispose();
  const [m, tokenizer] = await Promise.all([AutoModel.from_pretrained(model, { device, dtype: 'fp32' }), AutoTokenizer.from_pretrained(model)]);
  theirs.set(key, { model: m, tokenizer });
  return { seconds: (performance.now() - t0) / 1000 };
}

interface EmbedRun {
  readonly seconds: number;
  readonly passagesPerSecond: number;
}

async function embedOurs(label: string, model: string, texts: string[], batchSize: number, maxLength: number): Promise<EmbedRun> {
  const m = ours.get(model);
  if (!m) throw new Error(`load ${model} first`);
  const t0 = performance.now();
  const rows = await embedTexts(m, 'passage', texts, { batchSize, maxLength });
  const seconds = (performance.now() - t0) / 1000;
  const dim = m.retriever.config.hidden_size;
  const flat = new Float32Array(texts.length * dim);
  rows.forEach((r, i) => flat.set(r, i * dim));
  results.set(label, flat);
  return { seconds, passagesPerSecond: texts.length / seconds };
}

/**
 * transformers.js's token ids, cut the way Hugging Face's Python tokenizers and ours cut
 * (`truncation=True`): the last id (BERT's [SEP]) is kept. transformers.js 3.8's own
 * `truncation` drops it (it cuts after adding the special tokens), which changes every
 * truncated passage's embedding; measured by `tokenizerMismatches`.
 */
function theirIds(tokenizer: PreTrainedTokenizer, text: string, maxLength: number): number[] {
  const ids = tokenizer.encode(text);
  return ids.length <= maxLength ? ids : [...ids.slice(0, maxLength - 1), ids[ids.length - 1]];
}

/** A [rows, length] int64 tensor, right-padded with `pad`, and its mask (what the ONNX graph takes). */
function int64Batch(rows: readonly number[][], pad: number): { input_ids: Tensor; attention_mask: Tensor; token_type_ids: Tensor } {
  const length = Math.max(...rows.map((r) => r.length));
  const ids = new BigInt64Array(rows.length * length).fill(BigInt(pad));
  const mask = new BigInt64Array(rows.length * length);
  rows.forEach((r, i) => {
    r.forEach((id, j) => (ids[i * length + j] = BigInt(id)));
    mask.fill(1n, i * length, i * length + r.length);
  });
  const dims = [rows.length, length];
  return {
    input_ids: new Tensor('int64', ids, dims),
    attention_mask: new Tensor('int64', mask, dims),
    token_type_ids: new Tensor('int64', new BigInt64Array(ids.length), dims),
  };
}

async function embedTheirs(label: string, model: string, device: TjsDevice, texts: string[], batchSize: number, maxLength: number): Promise<EmbedRun> {
  const m = theirs.get(`${model}@${device}`);
  if (!m) throw new Error(`load ${model} on ${device} first`);
  const t0 = performance.now();
  // The same batching as embedTexts: by token length, each batch padded to its longest row.
  const ids = texts.map((t) => theirIds(m.tokenizer, t, maxLength));
  const order = ids.map((_, i) => i).sort((a, b) => ids[a].length - ids[b].length || a - b);
  const pad = Number(m.tokenizer.pad_token_id ?? 0);
  let flat: Float32Array | undefined;
  for (let start = 0; start < texts.length; start += batchSize) {
    const rows = order.slice(start, start + batchSize);
    const inputs = int64Batch(
      rows.map((i) => ids[i]),
      pad,
    );
    const { last_hidden_state } = (await m.model(inputs)) as { last_hidden_state: Tensor };
    const pooled = mean_pooling(last_hidden_state, inputs.attention_mask);
    const data = pooled.data as Float32Array;
    const dim = pooled.dims[1];
    flat ??= new Float32Array(texts.length * dim);
    rows.forEach((row, j) => flat!.set(data.subarray(j * dim, (j + 1) * dim), row * dim));
    last_hidden_state.dispose();
  }
  const seconds = (performance.now() - t0) / 1000;
  results.set(label, flat!);
  return { seconds, passagesPerSecond: texts.length / seconds };
}

/**
 * Per row, max |a−b| / max |b| (the fixture README's forward bound, b the reference); the worst
 * row and the mean over rows.
 */
function relativeDifference(a: Float32Array, b: Float32Array, dim: number): { max: number; mean: number } {
  if (a.length !== b.length) throw new Error(`embeddings differ in size: ${a.length} vs ${b.length}`);
  let max = 0;
  let sum = 0;
  const rows = a.length / dim;
  for (let r = 0; r < rows; r++) {
    let diff = 0;
    let scale = 0;
    for (let j = r * dim; j < (r + 1) * dim; j++) {
      diff = Math.max(diff, Math.abs(a[j] - b[j]));
      scale = Math.max(scale, Math.abs(b[j]));
    }
    const rel = diff / Math.max(scale, 1e-30);
    max = Math.max(max, rel);
    sum += rel;
  }
  return { max, mean: sum / rows };
}

function compare(label: string, reference: string, dim: number): { max: number; mean: number } {
  const a = results.get(label);
  const b = results.get(reference);
  if (!a || !b) throw new Error(`no embeddings for ${a ? reference : label}`);
  return relativeDifference(a, b, dim);
}

/** Texts whose token ids differ between our tokenizer and transformers.js's, of those given. */
async function tokenizerMismatches(
  model: string,
  texts: string[],
  maxLength: number,
): Promise<{ texts: number; mismatched: number; example?: string; nativeTruncationMismatched: number }> {
  const a = ours.get(model);
  const b = [...theirs.entries()].find(([k]) => k.startsWith(`${model}@`))?.[1];
  if (!a || !b) throw new Error(`load ${model} with both first`);
  const differs = (x: readonly number[], y: readonly (number | bigint)[]) => x.length !== y.length || x.some((id, i) => BigInt(id) !== BigInt(y[i]));
  let mismatched = 0;
  let nativeTruncationMismatched = 0;
  let example: string | undefined;
  for (const t of texts) {
    const x = a.retrieverTokenizer.encode(t, { maxLength });
    if (differs(x, theirIds(b.tokenizer, t, maxLength))) {
      mismatched++;
      example ??= t.slice(0, 80);
    }
    const native = (b.tokenizer(t, { truncation: true, max_length: maxLength }).input_ids as Tensor).tolist()[0] as bigint[];
    if (differs(x, native)) nativeTruncationMismatched++;
  }
  return { texts: texts.length, mismatched, example, nativeTruncationMismatched };
}

/**
 * The tiny fixture BERT's passages (token ids from the fixture, no tokenizer) through both, each
 * held against the PyTorch reference `p_embedding`.
 */
async function fixtureCheck(device: TjsDevice): Promise<{ ours: number; theirs: number; oursVsTheirs: number }> {
  const expected = parseSafetensors(await fetchBytes('/fixtures/bert-tiny/expected.safetensors'), 'expected.safetensors');
  const ids = readTensor(expected, 'p_input_ids');
  const mask = readTensor(expected, 'p_attention_mask');
  const ref = readTensor(expected, 'p_embedding').data as Float32Array;
  const [batch, length] = ids.shape;
  const idRows = Array.from({ length: batch }, (_, r) => {
    const row: number[] = [];
    for (let j = 0; j < length; j++) if (Number(mask.data[r * length + j]) === 1) row.push(Number(ids.data[r * length + j]));
    return row;
  });
  const dim = ref.length / batch;
  await loadOurs('bert-tiny', false); // on the backend now running
  const embedded = ours.get('bert-tiny')!.retriever.embedTokens('passage', idRows);
  const a = (await embedded.data()) as Float32Array;
  embedded.dispose();
  if (!theirs.has(`bert-tiny@${device}`)) {
    const model = await AutoModel.from_pretrained('bert-tiny', { device, dtype: 'fp32' });
    theirs.set(`bert-tiny@${device}`, { model, tokenizer: undefined as unknown as PreTrainedTokenizer });
  }
  const int64 = (data: ArrayLike<number | bigint>) => new Tensor('int64', BigInt64Array.from(Array.from(data, (v) => BigInt(v))), [batch, length]);
  const attention = int64(mask.data as ArrayLike<number | bigint>);
  const { last_hidden_state } = (await theirs.get(`bert-tiny@${device}`)!.model({
    input_ids: int64(ids.data as ArrayLike<number | bigint>),
    attention_mask: attention,
    token_type_ids: int64(new Array<number>(batch * length).fill(0)),
  })) as { last_hidden_state: Tensor };
  const b = mean_pooling(last_hidden_state, attention).data as Float32Array;
  return { ours: relativeDifference(a, ref, dim).max, theirs: relativeDifference(b, ref, dim).max, oursVsTheirs: relativeDifference(b, a, dim).max };
}

function tensorsAlive(): number {
  return tf.memory().numTensors;
}

exposeToTests({
  useOurBackend,
  loadOurs,
  loadTheirs,
  loadProduct,
  embedOurs,
  embedTheirs,
  embedProduct,
  compare,
  tokenizerMismatches,
  fixtureCheck,
  tensorsAlive,
});
