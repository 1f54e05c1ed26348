/**
 * LoRA on the T5 reader (src/model/lora.ts) against the Hugging Face reference fixtures: the
 * adapted forward with B = 0 is the base forward bit for bit, merged weights give the unmerged
 * path's logits, and the adapters' gradients match PyTorch's (through the chain rule from the
 * fixture's full-weight gradients), the full-weight backward, and finite differences.
 */
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../src/model/backend';
import { leanVariableGrads } from '../../src/model/gradients';
import {
  initialLoraTensors,
  loraAdapterNames,
  loraScale,
  mergeLoraWeight,
  t5LoraShapes,
  t5LoraTargetWeights,
  validLoraConfig,
  type LoraConfig,
} from '../../src/model/lora';
import { maxRelativeError } from '../../src/model/numerics';
import { AdamW } from '../../src/model/optimizer';
import { ParameterStore } from '../../src/model/params';
import { parseSafetensors, readTensor } from '../../src/model/safetensors';
import { parseT5Config, t5ParameterShapes, type T5Config } from '../../src/model/t5/config';
import { meanTokenCrossEntropy } from '../../src/model/t5/loss';
import { T5Model } from '../../src/model/t5/model';
import { intInput, readT5Fixture, T5_FIXTURES } from './t5/fixtures';
import { seededRandom } from '../../src/util/random';
import { directionalDerivatives } from './directional-derivative';

const LORA: LoraConfig = { rank: 4, alpha: 8, targets: ['q', 'k', 'v', 'o'], seed: 7 };

interface Loaded {
  readonly config: T5Config;
  readonly store: ParameterStore;
  readonly ids: tf.Tensor2D;
  readonly mask: tf.Tensor2D;
  readonly labels: tf.Tensor2D;
}

function load(name: (typeof T5_FIXTURES)[number], lora: LoraConfig | null): Loaded {
  const files = readT5Fixture(name);
  const config = parseT5Config(files.config);
  const store = ParameterStore.fromSafetensors(files.model);
  if (lora) for (const [n, t] of initialLoraTensors(t5LoraShapes(config, lora), lora)) store.set(n, t);
  const expected = parseSafetensors(files.expected);
  return { config, store, ids: intInput(expected, 'enc_input_ids'), mask: intInput(expected, 'enc_attention_mask'), labels: intInput(expected, 'labels') };
}

function dispose(l: Loaded): void {
  l.store.dispose();
  tf.dispose([l.ids, l.mask, l.labels]);
}

/** Sets every lora_B to seeded values of `scale` magnitude (B = 0 would hide A's role). */
function randomiseB(l: Loaded, seed: number, scale = 0.05): void {
  const random = seededRandom(seed);
  for (const name of l.store.names()) {
    if (!name.endsWith('.lora_B.weight')) continue;
    const v = l.store.get(name);
    v.assign(
      tf.tensor(
        Float32Array.from({ length: v.size }, () => (random() * 2 - 1) * scale),
        v.shape,
      ),
    );
  }
}

/** A store holding the base weights with every adapter merged in (W + s·B·A), no adapters. */
function mergedStore(l: Loaded, lora: LoraConfig): ParameterStore {
  const out = new ParameterStore();
  for (const name of t5ParameterShapes(l.config).keys()) {
    if (!l.store.has(name)) continue;
    const { a, b } = loraAdapterNames(name);
    out.set(name, l.store.has(a) ? mergeLoraWeight(l.store.get(name), l.store.get(a), l.store.get(b), loraScale(lora)) : tf.clone(l.store.get(name)));
  }
  return out;
}

const adapterEntries = (store: ParameterStore) => [...store.entries()].filter(([n]) => n.startsWith('lora.'));

describe('LoRA adapters on the T5 reader', () => {
  beforeAll(async () => {
    await initBackend('cpu');
  });

  it('adds A [r, in] and B [out, r] to every targeted attention projection; A is seeded (same on every client), B is zero', async () => {
    const config = parseT5Config(readT5Fixture('t5-tiny-gated').config);
    const qv = t5LoraShapes(config, { ...LORA, targets: ['v', 'q'] });
    // 2 encoder self-attentions + 2 decoder self + 2 decoder cross, q and v each, A and B each.
    expect(qv.size).toBe((2 + 2 + 2) * 2 * 2);
    expect(qv.get('lora.encoder.block.0.layer.0.SelfAttention.q.lora_A.weight')).toEqual([4, 32]);
    expect(qv.get('lora.decoder.block.1.layer.1.EncDecAttention.v.lora_B.weight')).toEqual([32, 4]);
    expect([...qv.keys()].some((n) => n.includes('.k.') || n.includes('.o.'))).toBe(false);
    expect([...t5LoraTargetWeights(config, ['o']).keys()]).toHaveLength(6);

    const first = initialLoraTensors(qv, LORA);
    const again = initialLoraTensors(new Map([...qv].reverse()), LORA); // order does not matter
    const otherSeed = initialLoraTensors(qv, { ...LORA, seed: 8 });
    const name = 'lora.encoder.block.0.layer.0.SelfAttention.q.lora_A.weight';
    const a = (await first.get(name)!.data()) as Float32Array;
    expect(a).toEqual(await again.get(name)!.data());
    expect(a).not.toEqual(await otherSeed.get(name)!.data());
    const std = Math.sqrt(a.reduce((s, x) => s + x * x, 0) / a.length);
    expect(std).toBeGreaterThan(0.6 / Math.sqrt(32));
    expect(std).toBeLessThan(1.4 / Math.sqrt(32));
    expect(Math.max(...(await first.get('lora.decoder.block.0.layer.0.SelfAttention.v.lora_B.weight')!.data()).map(Math.abs))).toBe(0);
    tf.dispose([...first.values(), ...again.values(), ...otherSeed.values()]);
  });

  it('refuses configs it cannot build', () => {
    expect(() => validLoraConfig({ ...LORA, rank: 0 })).toThrow(/rank/);
    expect(() => validLoraConfig({ ...LORA, alpha: -1 })).toThrow(/alpha/);
    expect(() => validLoraConfig({ ...LORA, targets: ['x' as 'q'] })).toThrow(/target "x"/);
    expect(() => validLoraConfig({ ...LORA, targets: [] })).toThrow(/at least one/);
    expect(validLoraConfig({ ...LORA, targets: ['v', 'q', 'v'] }).targets).toEqual(['q', 'v']);
  });

  for (const fixture of T5_FIXTURES) {
    describe(fixture, () => {
      let base: Loaded;
      let adapted: Loaded;
      beforeAll(() => {
        base = load(fixture, null);
        adapted = load(fixture, LORA);
      });
      afterAll(() => {
        dispose(base);
        dispose(adapted);
      });

      it('with B = 0 the adapted forward equals the base forward exactly', async () => {
        const plain = new T5Model(base.config, base.store).forward(base.ids, base.mask, base.labels);
        const withLora = new T5Model(adapted.config, adapted.store, { lora: LORA }).forward(adapted.ids, adapted.mask, adapted.labels);
        expect(await withLora.logits.data()).toEqual(await plain.logits.data());
        expect(await withLora.encoderHidden.data()).toEqual(await plain.encoderHidden.data());
        tf.dispose([plain, withLora].flatMap((o) => [o.logits, o.loss, o.encoderHidden]));
      });

      it('merged weights W + (alpha/r)·B·A give the unmerged adapter path’s logits', async () => {
        const l = load(fixture, LORA);
        randomiseB(l, 3);
        const merged = mergedStore(l, LORA);
        const unmerged = new T5Model(l.config, l.store, { lora: LORA }).forward(l.ids, l.mask, l.labels);
        const byMerged = new T5Model(l.config, merged).forward(l.ids, l.mask, l.labels);
        const plain = new T5Model(base.config, base.store).forward(base.ids, base.mask, base.labels);
        const got = (await unmerged.logits.data()) as Float32Array;
        expect(maxRelativeError(got, (await byMerged.logits.data()) as Float32Array)).toBeLessThan(1e-5);
        // …and the adapters do change the model (the comparison above is not of two base models).
        expect(maxRelativeError(got, (await plain.logits.data()) as Float32Array)).toBeGreaterThan(1e-3);
        tf.dispose([unmerged, byMerged, plain].flatMap((o) => [o.logits, o.loss, o.encoderHidden]));
        merged.dispose();
        dispose(l);
      });

      it("at B = 0, dL/dB = (alpha/r)·G·Aᵀ with G PyTorch's full-weight gradient (fixture), and dL/dA = 0", async () => {
        const model = new T5Model(adapted.config, adapted.store, { lora: LORA });
        const adapters = adapterEntries(adapted.store);
        const { value, grads } = leanVariableGrads(
          () => model.loss(adapted.ids, adapted.mask, adapted.labels),
          adapters.map(([, v]) => v),
        );
        const torchGrads = parseSafetensors(readT5Fixture(fixture).grads);
        const s = loraScale(LORA);
        let checked = 0;
        for (const weight of t5LoraTargetWeights(adapted.config, LORA.targets).keys()) {
          const { a, b } = loraAdapterNames(weight);
          const g = readTensor(torchGrads, weight);
          const want = tf.tidy(() => tf.mul(tf.matMul(tf.tensor2d(g.data as Float32Array, g.shape as [number, number]), adapted.store.get(a), false, true), s));
          const got = grads[adapted.store.get(b).name];
          expect(maxRelativeError((await got.data()) as Float32Array, (await want.data()) as Float32Array), b).toBeLessThan(1e-4);
          expect(Math.max(...((await grads[adapted.store.get(a).name].data()) as Float32Array).map(Math.abs)), a).toBe(0);
          want.dispose();
          checked++;
        }
        expect(checked).toBe((2 + 2 + 2) * 4);
        tf.dispose([value, ...Object.values(grads)]);
      });

      it('with B ≠ 0 the adapter gradients equal the chain rule through the full-weight backward and finite differences', async () => {
        const l = load(fixture, LORA);
        randomiseB(l, 5);
        const s = loraScale(LORA);
        const adapters = adapterEntries(l.store);
        const model = new T5Model(l.config, l.store, { lora: LORA });
        const lossOf = () => model.loss(l.ids, l.mask, l.labels);
        const { value, grads } = leanVariableGrads(
          lossOf,
          adapters.map(([, v]) => v),
        );

        // The full-weight gradient G' at the merged weights W' (the backward the conformance tests check against PyTorch).
        const merged = mergedStore(l, LORA);
        const targets = [...t5LoraTargetWeights(l.config, LORA.targets).keys()];
        const full = leanVariableGrads(
          () => new T5Model(l.config, merged).loss(l.ids, l.mask, l.labels),
          targets.map((n) => merged.get(n)),
        );
        for (const weight of targets) {
          const { a, b } = loraAdapterNames(weight);
          const g = full.grads[merged.get(weight).name];
          const [wantA, wantB] = tf.tidy(() => [tf.mul(tf.matMul(l.store.get(b), g, true, false), s), tf.mul(tf.matMul(g, l.store.get(a), false, true), s)]);
          expect(maxRelativeError((await grads[l.store.get(a).name].data()) as Float32Array, (await wantA.data()) as Float32Array), a).toBeLessThan(1e-4);
          expect(maxRelativeError((await grads[l.store.get(b).name].data()) as Float32Array, (await wantB.data()) as Float32Array), b).toBeLessThan(1e-4);
          tf.dispose([wantA, wantB]);
        }

        // Central differences along one seeded direction over every adapter coordinate. Only on
        // the gated-GELU model: the relu model's kinks make the difference quotient jump around
        // (measured: 0.79 … 1.11 for 0.875 as ε varies).
        if (fixture === 't5-tiny-gated') {
          const { predicted, measured } = await directionalDerivatives(
            adapters.map(([, v]) => v),
            grads,
            lossOf,
          );
          expect(Math.abs(predicted)).toBeGreaterThan(0.1);
          // Observed 7e-6; float32 loss rounding over 2ε allows ~1e-4.
          expect(Math.abs(measured - predicted) / Math.abs(predicted)).toBeLessThan(1e-3);
        }

        tf.dispose([value, ...Object.values(grads), full.value, ...Object.values(full.grads)]);
        merged.dispose();
        dispose(l);
      });

      it('the frozen base gets no gradient and no optimizer state; checkpointing the encoder gives the same adapter gradients', async () => {
        const l = load(fixture, LORA);
        randomiseB(l, 9);
        for (const [name, v] of l.store.entries()) if (!name.startsWith('lora.')) v.trainable = false;
        const adapters = new Map(adapterEntries(l.store));
        const model = new T5Model(l.config, l.store, { lora: LORA });
        const plain = leanVariableGrads(() => model.loss(l.ids, l.mask, l.labels), [...adapters.values()]);
        const checkpointed = leanVariableGrads(
          () =>
            tf.tidy(() => {
              const hidden = model.encode(l.ids, l.mask, { checkpointRows: 1 });
              const { hidden: dec } = model.decode(model.decoderInputs(l.labels), hidden, l.mask);
              const logits = model.logits(dec);
              return meanTokenCrossEntropy(logits, l.labels);
            }),
          [...adapters.values()],
        );
        // Only adapters are differentiated: one gradient per adapter tensor, none for a weight.
        expect(Object.keys(plain.grads).sort()).toEqual([...adapters.values()].map((v) => v.name).sort());
        const reference = leanVariableGrads(
          () =>
            tf.tidy(() => {
              const hidden = model.encode(l.ids, l.mask);
              const { hidden: dec } = model.decode(model.decoderInputs(l.labels), hidden, l.mask);
              const logits = model.logits(dec);
              return meanTokenCrossEntropy(logits, l.labels);
            }),
          [...adapters.values()],
        );
        for (const v of adapters.values()) {
          expect(checkpointed.grads[v.name], v.name).toBeDefined();
          expect(
            maxRelativeError((await checkpointed.grads[v.name].data()) as Float32Array, (await reference.grads[v.name].data()) as Float32Array),
            v.name,
          ).toBeLessThan(1e-5);
        }

        const optimizer = new AdamW({ lr: 1e-3 });
        const named = new Map([...adapters].map(([n, v]) => [n, plain.grads[v.name]]));
        const before = await l.store.get('encoder.block.0.layer.0.SelfAttention.q.weight').data();
        await optimizer.apply(adapters, named);
        const state = await optimizer.stateTensors();
        const moments = [...state.keys()].filter((k) => k !== '__step__');
        expect(moments.sort()).toEqual([...adapters.keys()].flatMap((n) => [`m.${n}`, `v.${n}`]).sort());
        expect(await l.store.get('encoder.block.0.layer.0.SelfAttention.q.weight').data()).toEqual(before);
        optimizer.dispose();
        tf.dispose([
          plain.value,
          checkpointed.value,
          reference.value,
          ...Object.values(plain.grads),
          ...Object.values(checkpointed.grads),
          ...Object.values(reference.grads),
        ]);
        dispose(l);
      });
    });
  }
});
