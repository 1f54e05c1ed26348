/**
 * npx tsx scripts/copy-task.ts [d_model=64] [lr=3e-3] [steps=600] [key tokens=3] [prefix]
 *
 * Diagnostic: can the FiD reader learn to copy? A synthetic task with no language in it: the
 * passage is 32 random tokens, the question K (default 3) consecutive passage tokens, the answer the token
 * that follows them (one encoder row per example: `<q> a b c <q> passage </s>`). A reader that
 * can copy out of its passage drives the loss towards 0; chance is ln(197) for the answer token,
 * ≈ 2.65 averaged with the EOS token. Prints the loss every 50 steps (wasm backend, seeded).
 * With `prefix` the target repeats the key tokens before the answer (`a b c next </s>`), so the
 * decoder's own input holds the key: copying then needs only a previous-token head in the encoder
 * and one cross-attention lookup. docs/PRETRAINING.md records what it showed.
 */
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../src/model/backend';
import { parseT5Config } from '../src/model/t5/config';
import { fidLoss } from '../src/model/t5/fid';
import { T5Model } from '../src/model/t5/model';
import { tinyT5Weights } from '../src/model/tiny';
import { ParameterStore } from '../src/model/params';
import { AdamW } from '../src/model/optimizer';
import { Rng } from '../src/pretrain/rng';
await initBackend('wasm');
const V = 200, P = 32;
const cfg = parseT5Config({ model_type: 't5', vocab_size: V, d_model: Number(process.argv[2] ?? 64), d_kv: 16, num_heads: 4, d_ff: 128, num_layers: 2, num_decoder_layers: 2, feed_forward_proj: 'gated-gelu', tie_word_embeddings: true, decoder_start_token_id: 0, pad_token_id: 0, eos_token_id: 1 });
const store = new ParameterStore();
for (const [n, t] of tinyT5Weights(cfg, 3)) store.set(n, tf.tensor(t.data, t.shape, 'float32'));
const model = new T5Model(cfg, store);
const vars = new Map([...store.entries()]);
const opt = new AdamW({ lr: Number(process.argv[3] ?? 3e-3), warmupSteps: 20 });
const rng = new Rng(1);
const B = 32;
const K = Number(process.argv[5] ?? 3);
const PREFIX = process.argv[6] === 'prefix';
const T = PREFIX ? K + 2 : 2;
function batch() {
  const ids: number[] = [], labels: number[] = [];
  for (let b = 0; b < B; b++) {
    const passage = Array.from({ length: P }, () => 3 + rng.int(V - 3));
    const at = rng.int(P - K - 1);
    ids.push(2, ...passage.slice(at, at + K), 2, ...passage, 1);
    labels.push(...(PREFIX ? passage.slice(at, at + K) : []), passage[at + K], 1);
  }
  return { ids: tf.tensor2d(ids, [B, P + K + 3], 'int32'), labels: tf.tensor2d(labels, [B, T], 'int32') };
}
const t0 = Date.now();
for (let s = 1; s <= Number(process.argv[4] ?? 600); s++) {
  const { ids, labels } = batch();
  const mask = tf.onesLike(ids);
  const { value, grads } = tf.variableGrads(() => fidLoss(model, ids, mask, 1, labels), [...vars.values()]);
  const named = new Map<string, tf.Tensor>();
  for (const [n, v] of vars) if (grads[v.name]) named.set(n, grads[v.name]);
  await opt.apply(vars, named);
  const loss = (await value.data())[0];
  tf.dispose([value, ...Object.values(grads), ids, labels, mask]);
  if (s % 50 === 0) console.log(`step ${s} loss ${loss.toFixed(3)} (${((Date.now() - t0) / 1000).toFixed(0)}s)`);
}
