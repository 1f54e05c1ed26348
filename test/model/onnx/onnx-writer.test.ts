/**
 * The ONNX writer (src/model/onnx/*) and the Contriever graph (src/model/bert/onnx-graph.ts):
 * the bytes decoded back with an independent wire-format reader (structure, field numbers,
 * weights), and run on onnxruntime-web's wasm provider in Node against the PyTorch reference
 * (../shared/fixtures/hf-reference/bert-tiny) and our tfjs encoder.
 */
import { readFileSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import * as ort from 'onnxruntime-web/wasm';
import { beforeAll, describe, expect, it } from 'vitest';
import { maxRowRelativeDifference } from '../../../src/corag/passage-encoder-choice';
import { initBackend } from '../../../src/model/backend';
import { bertParameterShapes, canonicalBertName, parseBertConfig, type BertConfig } from '../../../src/model/bert/config';
import { OnnxContrieverEncoder } from '../../../src/model/bert/onnx-encoder';
import { contrieverOnnxModel, contrieverOnnxModelInSlices } from '../../../src/model/bert/onnx-graph';
import { Contriever, PASSAGE_PREFIX } from '../../../src/model/contriever';
import { OnnxGraphBuilder } from '../../../src/model/onnx/onnx-model';
import { configureOrt } from '../../../src/model/onnx/ort-runtime';
import { ProtoMessage } from '../../../src/model/onnx/protobuf';
import { ParameterStore } from '../../../src/model/params';
import { parseSafetensors, readTensor } from '../../../src/model/safetensors';
import { fixturePassageRows } from './fixture-rows';

const FIXTURE = new URL('../../../../shared/fixtures/hf-reference/bert-tiny/', import.meta.url);

/** A protobuf field as read back: varints as bigint, fixed32 as bytes, length-delimited as bytes. */
type Field = { readonly field: number; readonly wire: number; readonly value: bigint | Uint8Array };

/** An independent wire-format reader (https://protobuf.dev/programming-guides/encoding/), for checking only. */
function decode(bytes: Uint8Array): Field[] {
  const out: Field[] = [];
  let i = 0;
  const varint = (): bigint => {
    let v = 0n;
    let shift = 0n;
    for (;;) {
      const b = bytes[i++];
      if (b === undefined) throw new Error('truncated varint');
      v |= BigInt(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
      shift += 7n;
    }
  };
  while (i < bytes.length) {
    const tag = Number(varint());
    const field = tag >> 3;
    const wire = tag & 7;
    if (wire === 0) out.push({ field, wire, value: varint() });
    else if (wire === 2) {
      const n = Number(varint());
      if (i + n > bytes.length) throw new Error('length past the end');
      out.push({ field, wire, value: bytes.subarray(i, i + n) });
      i += n;
    } else if (wire === 5) {
      out.push({ field, wire, value: bytes.subarray(i, i + 4) });
      i += 4;
    } else throw new Error(`unexpected wire type ${wire}`);
  }
  return out;
}

const all = (fields: Field[], n: number) => fields.filter((f) => f.field === n);
const one = (fields: Field[], n: number) => {
  const found = all(fields, n);
  if (found.length !== 1) throw new Error(`field ${n}: ${found.length} occurrences`);
  return found[0].value;
};
const text = (v: bigint | Uint8Array) => new TextDecoder().decode(v as Uint8Array);
const msg = (v: bigint | Uint8Array) => decode(v as Uint8Array);

function fixtureWeights(): { config: BertConfig; weights: Map<string, Float32Array> } {
  const config = parseBertConfig(JSON.parse(readFileSync(new URL('config.json', FIXTURE), 'utf8')));
  const file = parseSafetensors(readFileSync(new URL('model.safetensors', FIXTURE)), 'bert-tiny');
  const weights = new Map<string, Float32Array>();
  for (const name of file.tensors.keys()) {
    const canonical = canonicalBertName(name);
    if (canonical && bertParameterShapes(config).has(canonical)) weights.set(canonical, readTensor(file, name).data as Float32Array);
  }
  return { config, weights };
}

/** Passage-side tfjs Contriever with the same weights. */
function tfjsEncoder(config: BertConfig, weights: Map<string, Float32Array>): Contriever {
  const store = new ParameterStore();
  for (const [name, shape] of bertParameterShapes(config)) store.set(PASSAGE_PREFIX + name, tf.tensor(weights.get(name)!, shape), false);
  return new Contriever(config, store, ['passage']);
}

/** Token rows of several lengths within the vocabulary (the first is the longest). */
function tokenRows(vocab: number): number[][] {
  return [37, 5, 1, 20].map((n, r) => Array.from({ length: n }, (_, j) => (r === 2 ? 101 % vocab : (j * 7 + r * 13 + 3) % vocab)));
}

describe('protobuf writer', () => {
  it('writes varints, negative int64, floats, strings and nested messages as the wire format says', () => {
    const inner = new ProtoMessage().varint(1, 300);
    const bytes = new ProtoMessage().varint(1, 150).varint(2, -1).float(3, 0.5).string(4, 'hé').message(5, inner).encode();
    // 150 → 96 01 (the encoding guide's example); -1 → ten bytes ending in 01; 0.5f LE = 00 00 00 3f.
    expect([...bytes]).toEqual([
      0x08, 0x96, 0x01, 0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x1d, 0, 0, 0, 0x3f, 0x22, 3, 0x68, 0xc3, 0xa9, 0x2a, 3, 0x08, 0xac,
      0x02,
    ]);
    const fields = decode(bytes);
    expect(BigInt.asIntN(64, one(fields, 2) as bigint)).toBe(-1n);
    expect(one(msg(one(fields, 5)), 1)).toBe(300n);
  });

  it('writes large and deferred payloads in place, with multi-byte length prefixes', () => {
    const big = Uint8Array.from({ length: 300 }, (_, i) => i % 251);
    const m = new ProtoMessage().bytes(1, big).deferredBytes(2, { byteLength: 200, write: (dst) => dst.fill(7) });
    const fields = decode(m.encode());
    expect([...(one(fields, 1) as Uint8Array)]).toEqual([...big]);
    expect((one(fields, 2) as Uint8Array).every((b) => b === 7)).toBe(true);
    // tag + 2-byte length + payload, twice.
    expect(m.byteLength()).toBe(1 + 2 + 300 + 1 + 2 + 200);
  });
});

describe('ONNX writer', () => {
  it('refuses a non-integer int attribute and a mis-sized initializer', () => {
    const g = new OnnxGraphBuilder('g');
    expect(() => g.node('Softmax', ['x'], { axis: 0.5 })).toThrow(/not an integer/);
    expect(() => g.float32('w', [2, 3], new Float32Array(5))).toThrow(/5 values for shape \[2,3\]/);
  });
});

describe('the Contriever ONNX graph', () => {
  const { config, weights } = fixtureWeights();
  let model: Uint8Array;
  beforeAll(async () => {
    await initBackend('cpu');
    configureOrt({ threads: 1 });
    model = contrieverOnnxModel(config, (name) => weights.get(name)!);
  });

  it('decodes to an opset-17 ModelProto with the inputs, output and every BERT weight as raw float32 initializers', () => {
    const m = decode(model);
    expect(one(m, 1)).toBe(8n); // ir_version
    const opset = msg(one(m, 8));
    expect(text(one(opset, 1))).toBe('');
    expect(one(opset, 2)).toBe(17n);
    const graph = msg(one(m, 7));
    const valueName = (f: Field) => text(one(msg(f.value), 1));
    expect(all(graph, 11).map(valueName)).toEqual(['input_ids', 'attention_mask']);
    expect(all(graph, 12).map(valueName)).toEqual(['embeddings']);
    // input_ids: int64 (7) [batch, sequence].
    const idsType = msg(one(msg(one(msg(all(graph, 11)[0].value), 2)), 1));
    expect(one(idsType, 1)).toBe(7n);
    expect(all(msg(one(idsType, 2)), 1).map((d) => text(one(msg(d.value), 2)))).toEqual(['batch', 'sequence']);

    const initializers = new Map(
      all(graph, 5).map((f) => {
        const t = msg(f.value);
        return [text(one(t, 8)), { dims: all(t, 1).map((d) => Number(d.value)), type: one(t, 2), raw: one(t, 9) as Uint8Array }];
      }),
    );
    // Token types are all 0: row 0 of the table is the only one the graph holds.
    const typeRow = initializers.get('embeddings.token_type_embeddings.row0')!;
    expect(typeRow.dims).toEqual([config.hidden_size]);
    expect([...new Float32Array(typeRow.raw.slice().buffer)]).toEqual([
      ...weights.get('embeddings.token_type_embeddings.weight')!.subarray(0, config.hidden_size),
    ]);
    for (const [name, shape] of bertParameterShapes(config)) {
      if (name === 'embeddings.token_type_embeddings.weight') continue;
      const init = initializers.get(name);
      expect(init, name).toBeDefined();
      expect(init!.type).toBe(1n);
      const raw = new Float32Array(init!.raw.slice().buffer);
      const w = weights.get(name)!;
      if (shape.length === 2 && !name.startsWith('embeddings.')) {
        // Linear weights are stored [in, out]: the transpose of PyTorch's [out, in].
        expect(init!.dims).toEqual([shape[1], shape[0]]);
        expect(raw[1 * shape[0] + 2]).toBe(w[2 * shape[1] + 1]);
      } else expect(init!.dims).toEqual(shape);
      expect(raw.reduce((a, b) => a + b, 0)).toBeCloseTo(
        w.reduce((a, b) => a + b, 0),
        3,
      );
    }
    const ops = all(graph, 1).map((f) => text(one(msg(f.value), 4)));
    expect(ops.filter((o) => o === 'LayerNormalization')).toHaveLength(1 + 2 * config.num_hidden_layers);
    expect(ops.filter((o) => o === 'Erf')).toHaveLength(config.num_hidden_layers);
    expect(ops.at(-1)).toBe('Div');
  });

  it('writes the same bytes in slices, handing the thread back between weights when a slice has run its time', async () => {
    let pauses = 0;
    const pause = () => {
      pauses++;
      return new Promise<void>((resolve) => setTimeout(resolve, 0));
    };
    const w = (name: string) => weights.get(name)!;
    // A 0 ms slice: a pause after every weight.
    expect(await contrieverOnnxModelInSlices(config, w, pause, 0)).toEqual(model);
    expect(pauses).toBeGreaterThanOrEqual(bertParameterShapes(config).size);
    // A slice longer than the whole write: no pause.
    pauses = 0;
    expect(await contrieverOnnxModelInSlices(config, w, pause, () => 60_000)).toEqual(model);
    expect(pauses).toBe(0);
  });

  it("embeds the fixture's passages as PyTorch does (≤ 1e-5 relative) on ONNX Runtime Web", async () => {
    const expected = parseSafetensors(readFileSync(new URL('expected.safetensors', FIXTURE)), 'expected');
    const { rows, reference } = fixturePassageRows(expected);
    const encoder = await OnnxContrieverEncoder.create(config, model);
    try {
      expect(maxRowRelativeDifference(await encoder.embedTokens(rows), reference, config.hidden_size)).toBeLessThan(1e-5);
    } finally {
      await encoder.dispose();
    }
  });

  for (const hiddenAct of ['gelu', 'gelu_new'] as const) {
    it(`embeds padded batches as the tfjs encoder does (≤ 1e-5 relative), hidden_act ${hiddenAct}`, async () => {
      const c: BertConfig = { ...config, hidden_act: hiddenAct, layer_norm_eps: 1e-7 };
      const tfjs = tfjsEncoder(c, weights);
      const encoder = await OnnxContrieverEncoder.create(
        c,
        contrieverOnnxModel(c, (name) => weights.get(name)!),
      );
      try {
        const rows = tokenRows(c.vocab_size);
        const expected = tfjs.embedTokens('passage', rows);
        const ours = await encoder.embedTokens(rows);
        expect(maxRowRelativeDifference(ours, expected.dataSync() as Float32Array, c.hidden_size)).toBeLessThan(1e-5);
        expected.dispose();
        // A row alone gives the same embedding as inside a padded batch (the mask holds).
        const alone = await encoder.embedTokens([rows[1]]);
        expect(maxRowRelativeDifference(alone, ours.slice(c.hidden_size, 2 * c.hidden_size), c.hidden_size)).toBeLessThan(1e-5);
      } finally {
        tfjs.dispose();
        await encoder.dispose();
      }
    });
  }

  it('refuses weights that do not fit the config, naming the tensor', () => {
    expect(() => contrieverOnnxModel(config, (name) => (name === 'encoder.layer.1.output.dense.bias' ? new Float32Array(3) : weights.get(name)!))).toThrow(
      /"encoder\.layer\.1\.output\.dense\.bias" has 3 values but the config implies \[32\]/,
    );
  });

  it('is what ONNX Runtime loads: inputs and outputs by name', async () => {
    const session = await ort.InferenceSession.create(model);
    try {
      expect(session.inputNames).toEqual(['input_ids', 'attention_mask']);
      expect(session.outputNames).toEqual(['embeddings']);
    } finally {
      await session.release();
    }
  });
});
