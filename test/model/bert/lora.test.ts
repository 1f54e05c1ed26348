/**
 * LoRA on the BERT (Contriever query) encoder (src/model/lora.ts, src/model/bert/model.ts
 * `projection`) against the Hugging Face bert-tiny reference fixture: with B = 0 the adapted
 * encoder is the base encoder bit for bit; the adapter gradients match PyTorch's (through the
 * chain rule from the fixture's full-weight gradients), the full-weight backward at the merged
 * weights, and central differences.
 */
import { readFileSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../../src/model/backend';
import { canonicalBertName, parseBertConfig } from '../../../src/model/bert/config';
import { bertEncode, paramsFromStore, type BertParams } from '../../../src/model/bert/model';
import { Contriever, meanPool, QUERY_PREFIX, type TokenBatch } from '../../../src/model/contriever';
import { leanVariableGrads } from '../../../src/model/gradients';
import { bertLoraShapes, bertLoraTargetWeights, loraAdapterNames, loraScale, mergeLoraWeight, type LoraConfig } from '../../../src/model/lora';
import { inBatchContrastiveLoss } from '../../../src/model/losses';
import { relativeL2Error } from '../../../src/model/numerics';
import { parseSafetensors, readTensor } from '../../../src/model/safetensors';
import { seededRandom } from '../../../src/util/random';
import { directionalDerivatives } from '../directional-derivative';
import { expectIdenticalNumbers } from '../../identical-numbers';

const dir = new URL('../../../../shared/fixtures/hf-reference/bert-tiny/', import.meta.url);
const configJson = JSON.parse(readFileSync(new URL('config.json', dir), 'utf8'));
const config = parseBertConfig(configJson);
const modelBytes = new Uint8Array(readFileSync(new URL('model.safetensors', dir)));
const expected = parseSafetensors(readFileSync(new URL('expected.safetensors', dir)));
const expectedJson = JSON.parse(readFileSync(new URL('expected.json', dir), 'utf8'));
const torchGrads = parseSafetensors(readFileSync(new URL('grads.safetensors', dir)));

const LORA: LoraConfig = { rank: 4, alpha: 8, targets: ['q', 'k', 'v', 'o'], seed: 7 };
const S = loraScale(LORA);

function batch(prefix: 'q' | 'p'): TokenBatch {
  const ids = readTensor(expected, `${prefix}_input_ids`);
  const mask = readTensor(expected, `${prefix}_attention_mask`);
  const shape = ids.shape as [number, number];
  return {
    inputIds: tf.tensor2d(Int32Array.from(ids.data as ArrayLike<number>), shape, 'int32'),
    attentionMask: tf.tensor2d(Int32Array.from(mask.data as ArrayLike<number>), shape, 'int32'),
  };
}

/** The fixture as a Contriever, with query-side adapters when `lora` is given. */
function load(lora: LoraConfig | null): Contriever {
  const c = Contriever.fromCheckpoint(configJson, modelBytes);
  if (lora) c.enableQueryLora(lora);
  return c;
}

/** Sets every query lora_B to seeded values (B = 0 would hide A's role). */
function randomiseB(c: Contriever, seed: number, scale = 0.2): void {
  const random = seededRandom(seed);
  for (const [name, v] of c.params.entries()) {
    if (!name.endsWith('.lora_B.weight')) continue;
    v.assign(
      tf.tensor(
        Float32Array.from({ length: v.size }, () => (random() * 2 - 1) * scale),
        v.shape,
      ),
    );
  }
}

const queryAdapters = (c: Contriever) => [...c.params.entries()].filter(([n]) => n.startsWith(`${QUERY_PREFIX}lora.`));
const contrastive = (qParams: BertParams, pParams: BertParams, q: TokenBatch, p: TokenBatch) =>
  tf.tidy(() =>
    inBatchContrastiveLoss(
      meanPool(bertEncode(config, qParams, q), q.attentionMask),
      meanPool(bertEncode(config, pParams, p), p.attentionMask),
      expectedJson.targets,
      expectedJson.temperature,
    ),
  );

describe('LoRA adapters on the BERT query encoder', () => {
  let q: TokenBatch;
  let p: TokenBatch;
  beforeAll(async () => {
    await initBackend('cpu');
    q = batch('q');
    p = batch('p');
  });

  it("adapts each layer's self-attention query/key/value and attention.output.dense, never the feed-forward's output.dense", () => {
    expect([...bertLoraTargetWeights(config, ['o']).keys()]).toEqual([
      'encoder.layer.0.attention.output.dense.weight',
      'encoder.layer.1.attention.output.dense.weight',
    ]);
    const qv = bertLoraShapes(config, { ...LORA, targets: ['v', 'q'] });
    // 2 layers, q and v, A and B each.
    expect(qv.size).toBe(2 * 2 * 2);
    expect(qv.get('lora.encoder.layer.0.attention.self.query.lora_A.weight')).toEqual([4, 32]);
    expect(qv.get('lora.encoder.layer.1.attention.self.value.lora_B.weight')).toEqual([32, 4]);
    expect(bertLoraShapes(config, LORA).size).toBe(2 * 4 * 2);
  });

  it('with B = 0 the adapted query encoder equals the base encoder exactly; the passage encoder gets no adapters', async () => {
    const base = load(null);
    const adapted = load(LORA);
    expect(queryAdapters(adapted)).toHaveLength(2 * 4 * 2);
    expect(adapted.params.names().filter((n) => n.includes('lora'))).toEqual(queryAdapters(adapted).map(([n]) => n));
    const plain = bertEncode(config, base.sideParams('query'), q);
    const withLora = bertEncode(config, adapted.sideParams('query'), q);
    expect(adapted.sideParams('query').loraScale?.('encoder.layer.0.attention.self.query.weight')).toBe(S);
    expectIdenticalNumbers((await withLora.data()) as Float32Array, (await plain.data()) as Float32Array);
    tf.dispose([plain, withLora]);
    base.dispose();
    adapted.dispose();
  });

  it("at B = 0 (tied encoders, as the fixture), the loss is PyTorch's, dL/dB = (alpha/r)·G·Aᵀ with G PyTorch's full-weight gradient, and dL/dA = 0", async () => {
    const c = load(LORA);
    const params = c.sideParams('query');
    const adapters = queryAdapters(c);
    const { value, grads } = leanVariableGrads(
      () => contrastive(params, params, q, p),
      adapters.map(([, v]) => v),
    );
    expect(Math.abs((await value.data())[0] - expectedJson.contrastive_loss) / expectedJson.contrastive_loss).toBeLessThan(1e-4);
    const reference = new Map([...torchGrads.tensors.keys()].map((n) => [canonicalBertName(n), n]));
    let checked = 0;
    for (const weight of bertLoraTargetWeights(config, LORA.targets).keys()) {
      const { a, b } = loraAdapterNames(weight);
      const g = readTensor(torchGrads, reference.get(weight)!);
      const A = c.params.get(QUERY_PREFIX + a);
      const want = tf.tidy(() => tf.mul(tf.matMul(tf.tensor2d(g.data as Float32Array, g.shape as [number, number]), A, false, true), S));
      const got = grads[c.params.get(QUERY_PREFIX + b).name];
      expect(relativeL2Error((await got.data()) as Float32Array, (await want.data()) as Float32Array), b).toBeLessThan(1e-3);
      expect(Math.max(...((await grads[A.name].data()) as Float32Array).map(Math.abs)), a).toBe(0);
      want.dispose();
      checked++;
    }
    expect(checked).toBe(2 * 4);
    tf.dispose([value, ...Object.values(grads)]);
    c.dispose();
  });

  it('with B ≠ 0 the query adapters’ gradients equal the chain rule through the full-weight backward and central differences; only adapters are differentiated', async () => {
    const c = load(LORA);
    randomiseB(c, 5);
    const adapters = queryAdapters(c);
    const qParams = c.sideParams('query');
    const pParams = c.sideParams('passage');
    const lossOf = () => contrastive(qParams, pParams, q, p);
    const { value, grads } = leanVariableGrads(
      lossOf,
      adapters.map(([, v]) => v),
    );
    expect(Object.keys(grads).sort()).toEqual(adapters.map(([, v]) => v.name).sort());

    // The full-weight gradient G' at the merged weights W' = W + s·B·A (the backward the BERT
    // conformance test checks against PyTorch); then dA = s·Bᵀ·G', dB = s·G'·Aᵀ.
    const targets = [...bertLoraTargetWeights(config, LORA.targets).keys()];
    const plain = paramsFromStore(c.params, QUERY_PREFIX);
    const merged = new Map(
      targets.map((n) => {
        const { a, b } = loraAdapterNames(n);
        const w = mergeLoraWeight(plain(n), plain(a), plain(b), S);
        const v = tf.variable(w, true);
        w.dispose();
        return [n, v] as const;
      }),
    );
    const full = leanVariableGrads(() => contrastive((n) => merged.get(n) ?? plain(n), pParams, q, p), [...merged.values()]);
    for (const weight of targets) {
      const { a, b } = loraAdapterNames(weight);
      const g = full.grads[merged.get(weight)!.name];
      const [wantA, wantB] = tf.tidy(() => [tf.mul(tf.matMul(plain(b), g, true, false), S), tf.mul(tf.matMul(g, plain(a), false, true), S)]);
      const A = c.params.get(QUERY_PREFIX + a);
      const B = c.params.get(QUERY_PREFIX + b);
      expect(relativeL2Error((await grads[A.name].data()) as Float32Array, (await wantA.data()) as Float32Array), a).toBeLessThan(1e-4);
      expect(relativeL2Error((await grads[B.name].data()) as Float32Array, (await wantB.data()) as Float32Array), b).toBeLessThan(1e-4);
      tf.dispose([wantA, wantB]);
    }

    // Central differences along one seeded direction over every adapter coordinate.
    const { predicted, measured } = await directionalDerivatives(
      adapters.map(([, v]) => v),
      grads,
      lossOf,
    );
    expect(Math.abs(predicted)).toBeGreaterThan(0.1);
    // float32 loss rounding over 2ε allows ~1e-4 relative to a gradient of this size.
    expect(Math.abs(measured - predicted) / Math.abs(predicted)).toBeLessThan(1e-3);

    tf.dispose([value, ...Object.values(grads), full.value, ...Object.values(full.grads), ...merged.values()]);
    c.dispose();
  });
});
