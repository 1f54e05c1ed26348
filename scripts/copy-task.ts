/**
 * npx tsx scripts/copy-task.ts [d_model=64] [lr=3e-3] [steps=600] [key tokens=3] [prefix]
 *                              [--passage 32] [--next 1] [--self] [--vocab 200] [--batch 32]
 *                              [--enc-layers 2] [--dec-layers 2] [--heads 4] [--init-factor 1] [--log-every 50]
 *                              [--d-kv 16] [--d-ff 128] [--queries 1] [--prev-bias 0] [--mimetic 0] [--mimetic-cross 0]
 *                              [--backend wasm|webgpu]
 *
 * Diagnostic: can the FiD reader learn to copy? A synthetic task with no language in it: the
 * passage is `--passage` random tokens, the question K (default 3) consecutive passage tokens,
 * the answer the `--next` token(s) that follow them (one encoder row per example:
 * `<q> a b c <q> passage </s>`). A reader that can copy out of its passage drives the loss
 * towards 0; chance is ln(vocab - 3) for each answer token, averaged with the (easy) EOS token:
 * ≈ 2.65 for one answer token of 197. Prints the loss every `--log-every` steps (wasm, seeded).
 * - `prefix`: the target repeats the key tokens before the answer (`a b c next </s>`), so the
 *   decoder's own input holds the key: copying then needs only a previous-token head in the
 *   encoder and one cross-attention lookup.
 * - `--self`: the answer is the key's first token itself (copy from a fixed place, no lookup).
 * - `--restrict`: the softmax is restricted to the passage's tokens (and EOS) — the loss that
 *   extractive decoding implies (src/corag/extractive.ts, teacherForcedMask).
 * - `--untied`: a separate output layer (T5 v1.1 / flan style, init std 1, no d_model^-0.5
 *   rescale) instead of the tied input embedding.
 * - `--final-norm X`: the decoder's final RMS-norm weight starts at X instead of 1 (X times the
 *   initial logit scale; with tied embeddings the largest logit is about √d_model · X).
 * - `--queries Q`: Q keys per example, answered in order (a denser signal, as in multi-query
 *   associative recall).
 * - `--prev-bias X`: encoder head 0 starts as a previous-token head (relative bias +X).
 * - `--mimetic X` / `--mimetic-cross X`: mimetic initialisation of the encoder self-attention /
 *   decoder cross-attention queries and keys (W_q = W_k = X·orthonormal).
 * - `--copy-attention W`: adds W × copy-attention supervision (src/model/t5/copy-attention.ts):
 *   head 0 of the last decoder layer is told where in the passage each answer (and prefix) token
 *   is. The printed loss is still the token loss alone, comparable with the other runs.
 * docs/lab/PRETRAINING.md records what these showed.
 */
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../src/model/backend';
import { installNodeWebGpu } from '../src/platform/node/webgpu';
import { parseT5Config } from '../src/model/t5/config';
import { addPreviousTokenBias, ENCODER_RELATIVE_BIAS } from '../src/model/t5/previous-token-bias';
import { fidForward, fidLoss } from '../src/model/t5/fid';
import { allowedPositions, copyAttentionLoss } from '../src/model/t5/copy-attention';
import { meanTokenCrossEntropy } from '../src/model/t5/loss';
import { T5Model } from '../src/model/t5/model';
import { tinyT5Weights } from '../src/model/tiny';
import { ParameterStore } from '../src/model/params';
import { AdamW } from '../src/model/optimizer';
import { Rng } from '../src/pretrain/rng';
import { PassageSpanConstraint, teacherForcedMask, type WordPieces } from '../src/corag/extractive';

const { values: flags, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    passage: { type: 'string', default: '32' },
    next: { type: 'string', default: '1' },
    self: { type: 'boolean', default: false },
    vocab: { type: 'string', default: '200' },
    batch: { type: 'string', default: '32' },
    'enc-layers': { type: 'string', default: '2' },
    'dec-layers': { type: 'string', default: '2' },
    heads: { type: 'string', default: '4' },
    'init-factor': { type: 'string', default: '1' },
    'log-every': { type: 'string', default: '50' },
    restrict: { type: 'boolean', default: false },
    untied: { type: 'boolean', default: false },
    'final-norm': { type: 'string', default: '1' },
    'd-kv': { type: 'string', default: '16' },
    'd-ff': { type: 'string', default: '128' },
    'prev-bias': { type: 'string', default: '0' },
    queries: { type: 'string', default: '1' },
    mimetic: { type: 'string', default: '0' },
    backend: { type: 'string', default: 'wasm' },
    'mimetic-cross': { type: 'string', default: '0' },
    'copy-attention': { type: 'string', default: '0' },
  },
});
const [dModel = '64', lr = '3e-3', steps = '600', keyTokens = '3', mode] = positionals;
const Q = Number(flags.queries),
  V = Number(flags.vocab),
  P = Number(flags.passage),
  B = Number(flags.batch),
  K = Number(keyTokens),
  N = Number(flags.next);
const PREFIX = mode === 'prefix';
if (![V, P, B, K, N, Q].every((n) => Number.isInteger(n) && n > 0) || P < Q * (K + N))
  throw new Error('vocab, passage, batch, key tokens and --next must be positive integers, passage ≥ key + next');

// --backend webgpu: Dawn in Node (SwiftShader here, the NVIDIA GPU on the device: pack this script
// with ../shared/gpu/pack.sh as bench/pretrain.gpu.ts is, and pass the flags to .gpu/run.sh).
if (flags.backend === 'webgpu') await installNodeWebGpu();
else if (flags.backend !== 'wasm') throw new Error(`--backend is wasm or webgpu, got ${flags.backend}`);
await initBackend(flags.backend);
const cfg = parseT5Config({
  model_type: 't5',
  vocab_size: V,
  d_model: Number(dModel),
  d_kv: Number(flags['d-kv']),
  num_heads: Number(flags.heads),
  d_ff: Number(flags['d-ff']),
  num_layers: Number(flags['enc-layers']),
  num_decoder_layers: Number(flags['dec-layers']),
  feed_forward_proj: 'gated-gelu',
  tie_word_embeddings: !flags.untied,
  decoder_start_token_id: 0,
  pad_token_id: 0,
  eos_token_id: 1,
});
/**
 * rows×cols with each block of `cols` rows orthonormal (Gram–Schmidt on Gaussian rows), so every
 * head's d_kv rows are orthonormal when d_kv ≤ d_model.
 */
function orthonormalRows(rows: number, cols: number, r: Rng): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let i = 0; i < rows; i++) {
    const v = Array.from({ length: cols }, () => Math.sqrt(-2 * Math.log(1 - r.next())) * Math.cos(2 * Math.PI * r.next()));
    for (let j = Math.floor(i / cols) * cols; j < i; j++) {
      let dot = 0;
      for (let c = 0; c < cols; c++) dot += v[c] * out[j * cols + c];
      for (let c = 0; c < cols; c++) v[c] -= dot * out[j * cols + c];
    }
    const norm = Math.hypot(...v);
    for (let c = 0; c < cols; c++) out[i * cols + c] = v[c] / norm;
  }
  return out;
}
const mimeticRng = new Rng(11);
const mimeticShared = new Map<string, Float32Array>();
const store = new ParameterStore();
for (const [n, t] of tinyT5Weights(cfg, 3, { initializerFactor: Number(flags['init-factor']) })) {
  // --final-norm scales the decoder's last RMS-norm weight, i.e. the logits' initial scale.
  const data = n === 'decoder.final_layer_norm.weight' ? t.data.map((v) => v * Number(flags['final-norm'])) : t.data;
  // --prev-bias: encoder head 0 starts as a previous-token head.
  if (n === ENCODER_RELATIVE_BIAS) addPreviousTokenBias(data, cfg, 1, Number(flags['prev-bias']));
  // --mimetic X (encoder self-attention) / --mimetic-cross X (decoder cross-attention): mimetic
  // initialisation (Trockman & Kolter 2023): per head W_q = W_k = X·Qᵢ with Qᵢ orthonormal
  // columns, so W_q W_kᵀ ≈ X² × a projection, summed over heads ≈ X²·I: a position attends to
  // positions holding the same token from the first step. (Weights are [out, in] = [h·d_kv, d].)
  const mimetic = /^encoder\.block\.\d+\.layer\.0\.SelfAttention\.[qk]\.weight$/.test(n)
    ? Number(flags.mimetic)
    : /^decoder\.block\.\d+\.layer\.1\.EncDecAttention\.[qk]\.weight$/.test(n)
      ? Number(flags['mimetic-cross'])
      : 0;
  if (mimetic) {
    const layer = n.replace(/\.[qk]\.weight$/, '');
    let shared = mimeticShared.get(layer);
    if (!shared) mimeticShared.set(layer, (shared = orthonormalRows(cfg.num_heads * cfg.d_kv, cfg.d_model, mimeticRng)));
    data.set(shared.map((v) => v * mimetic));
  }
  store.set(n, tf.tensor(data, t.shape, 'float32'));
}
const model = new T5Model(cfg, store);
const vars = new Map([...store.entries()]);
const opt = new AdamW({ lr: Number(lr), warmupSteps: 20 });
const rng = new Rng(1);
const targetLength = Q * ((PREFIX ? K : 0) + (flags.self ? 1 : N)) + 1;
const anyToken: WordPieces = { startsWord: () => true, continuesWord: () => false, hasWordCharacters: () => true };
const COPY_WEIGHT = Number(flags['copy-attention']);
const rowLength = Q * (K + 1) + P + 2;
function batch() {
  const ids: number[] = [],
    labels: number[] = [],
    passages: number[][][] = [];
  // Per example and target position, the encoder position of the passage token it copies.
  const sources: number[][][] = [];
  for (let b = 0; b < B; b++) {
    const passage = Array.from({ length: P }, () => 3 + rng.int(V - 3));
    passages.push([passage]);
    // --queries Q: Q keys at non-overlapping places, answered in order (a denser signal, as in
    // multi-query associative recall). Q = 1 draws exactly as before.
    const starts: number[] = [];
    while (starts.length < Q) {
      const at = rng.int(P - K - N + 1);
      if (starts.every((s) => Math.abs(s - at) >= K + N)) starts.push(at);
    }
    for (const at of starts) ids.push(2, ...passage.slice(at, at + K));
    ids.push(2, ...passage, 1);
    const passageStart = Q * (K + 1) + 1;
    const perTarget: number[][] = [];
    for (const at of starts) {
      const answer = flags.self ? [passage[at]] : passage.slice(at + K, at + K + N);
      labels.push(...(PREFIX ? passage.slice(at, at + K) : []), ...answer);
      if (PREFIX) for (let j = 0; j < K; j++) perTarget.push([passageStart + at + j]);
      for (let j = 0; j < answer.length; j++) perTarget.push([passageStart + (flags.self ? at : at + K + j)]);
    }
    perTarget.push([]); // EOS: not copied
    sources.push(perTarget);
    labels.push(1);
  }
  const restrict = flags.restrict ? teacherForcedMask(new PassageSpanConstraint(passages, { eosId: 1, words: anyToken }), labels, B, targetLength, V) : null;
  return {
    ids: tf.tensor2d(ids, [B, rowLength], 'int32'),
    labels: tf.tensor2d(labels, [B, targetLength], 'int32'),
    logitMask: restrict ? tf.tensor3d(restrict, [B, targetLength, V]) : undefined,
    allowed: COPY_WEIGHT > 0 ? tf.tensor3d(allowedPositions(sources, targetLength, rowLength), [B, targetLength, rowLength]) : undefined,
  };
}
const t0 = Date.now();
for (let s = 1; s <= Number(steps); s++) {
  const { ids, labels, logitMask, allowed } = batch();
  const mask = tf.onesLike(ids);
  let tokenLoss: tf.Scalar | null = null;
  let copyLoss: tf.Scalar | null = null;
  const { value, grads } = tf.variableGrads(() => {
    if (!allowed) return fidLoss(model, ids, mask, 1, labels, logitMask);
    const out = fidForward(model, ids, mask, 1, labels, { crossAttentions: true });
    tokenLoss = tf.keep(logitMask ? meanTokenCrossEntropy(tf.add(out.logits, logitMask), labels) : out.loss);
    copyLoss = tf.keep(copyAttentionLoss(out.crossAttentions!.at(-1)!, allowed, 0));
    return tf.add(tokenLoss, tf.mul(copyLoss, COPY_WEIGHT)) as tf.Scalar;
  }, [...vars.values()]);
  const named = new Map<string, tf.Tensor>();
  for (const [n, v] of vars) if (grads[v.name]) named.set(n, grads[v.name]);
  await opt.apply(vars, named);
  const loss = (await (tokenLoss ?? value).data())[0];
  const copy = copyLoss ? ` copy-attention ${(await (copyLoss as tf.Scalar).data())[0].toFixed(3)}` : '';
  tf.dispose([
    value,
    ...Object.values(grads),
    ids,
    labels,
    mask,
    ...(logitMask ? [logitMask] : []),
    ...(allowed ? [allowed] : []),
    ...(tokenLoss ? [tokenLoss] : []),
    ...(copyLoss ? [copyLoss] : []),
  ]);
  if (s % Number(flags['log-every']) === 0) console.log(`step ${s} loss ${loss.toFixed(3)}${copy} (${((Date.now() - t0) / 1000).toFixed(0)}s)`);
}
