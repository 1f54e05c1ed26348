/**
 * The coordinator's copy of a session's frozen passage encoder (server/passage-encoder.ts): which
 * ids it can resolve (as a tab resolves them) and the clear errors when it cannot load one.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { ModelBundle } from '../../src/corag/model-bundle';
import { encodeModel, type NamedTensor } from '../../src/federated/codec';
import { embedPassages } from '../../src/corag/retrieve';
import { initBackend } from '../../src/model/backend';
import { tinyBertConfig, tinyBertWeights } from '../../src/model/tiny';
import { maxRowRelativeDifference } from '../../src/corag/passage-encoder-choice';
import { contrieverOnnxModel } from '../../src/model/bert/onnx-graph';
import { DEMO_MODELS } from '../../server/demo';
import { agrees, embeddingAgreement } from '../../server/passage-intake';
import { FrozenPassageEncoder, passageEncoderFiles, PassageEncoderError } from '../../server/passage-encoder';
import { tinyBundle } from '../corag/helpers';

const PASSAGES = [
  { title: 'Vistula', text: 'The Vistula flows through Warsaw.' },
  { title: '', text: 'a' },
];

const flat = (rows: Float32Array[]) => Float32Array.from(rows.flatMap((r) => [...r]));

function tinyGlobal(drop?: string): Uint8Array {
  const tensors = new Map<string, NamedTensor>();
  for (const [n, t] of tinyBertWeights(tinyBertConfig(), 2)) if (n !== drop) tensors.set(`passage_encoder.${n}`, t);
  return encodeModel(tensors);
}

describe("the coordinator's frozen passage encoder", () => {
  // One tab-side bundle for every comparison (building it is most of this file's time).
  let bundle: ModelBundle;
  beforeAll(async () => {
    await initBackend('wasm');
    bundle = await tinyBundle();
  });
  afterAll(() => bundle.dispose());

  it('resolves tiny ids, folders of the web app (also as a path inside public/), hub ids and URLs, and nothing else', () => {
    expect(passageEncoderFiles(DEMO_MODELS.passageEncoder)?.config).toBe('tiny');
    expect(passageEncoderFiles('models/demo/retriever')?.describe).toMatch(/public\/models\/demo\/retriever$/);
    expect(passageEncoderFiles('./public/models/demo/retriever')?.describe).toMatch(/public\/models\/demo\/retriever$/);
    expect(passageEncoderFiles('facebook/contriever')?.describe).toMatch(/huggingface\.co/);
    expect(passageEncoderFiles('https://example.org/contriever/')).toBeDefined();
    expect(passageEncoderFiles('no such encoder!')).toBeUndefined();
    expect(passageEncoderFiles('../../etc/passwd')).toBeUndefined();
    expect(passageEncoderFiles('file:///etc')).toBeUndefined();
  });

  it('embeds exactly as a tab does with the same weights (tfjs)', async () => {
    const encoder = await FrozenPassageEncoder.load(DEMO_MODELS.passageEncoder, tinyGlobal(), tinyBertConfig().hidden_size, { setting: 'tfjs' });
    try {
      expect(encoder.report.engine).toBe('tfjs');
      expect(await encoder.embed(PASSAGES)).toEqual(await embedPassages(bundle, PASSAGES));
    } finally {
      await encoder.dispose();
    }
  });

  it("recomputes on ONNX Runtime's wasm build by default once its gate passed, tfjs until then, within 1e-5 of tfjs", async () => {
    const encoder = await FrozenPassageEncoder.load(DEMO_MODELS.passageEncoder, tinyGlobal(), tinyBertConfig().hidden_size);
    try {
      expect(encoder.report).toMatchObject({ engine: 'tfjs', building: true, setting: 'auto' });
      // Ready at once: tfjs embeds while the ONNX engine is built.
      expect(await encoder.embed(PASSAGES)).toEqual(await embedPassages(bundle, PASSAGES));
      const report = await encoder.settled;
      expect(report).toMatchObject({ engine: 'onnx', detail: expect.stringMatching(/^ONNX Runtime Web 1\.22\.\S+ \(wasm, 1 thread\)$/) });
      expect(report.gateRelativeDiff).toBeLessThan(1e-5);
      const onnx = await encoder.embed(PASSAGES);
      const tfjs = await embedPassages(bundle, PASSAGES);
      expect(maxRowRelativeDifference(flat(onnx), flat(tfjs), tinyBertConfig().hidden_size)).toBeLessThan(1e-5);
      // What the intake compares: well inside its tolerance.
      for (const [i, e] of onnx.entries()) expect(agrees(embeddingAgreement(e, tfjs[i]))).toBe(true);
    } finally {
      await encoder.dispose();
    }
  });

  it('keeps tfjs, with the reason, when the ONNX graph is refused by the gate', async () => {
    const warnings: string[] = [];
    const encoder = await FrozenPassageEncoder.load(DEMO_MODELS.passageEncoder, tinyGlobal(), tinyBertConfig().hidden_size, {
      warn: (m) => warnings.push(m),
      onnxModel: (c, w) => contrieverOnnxModel(c, (n) => (n === 'encoder.layer.1.attention.self.value.weight' ? w(n).map((v) => -v) : w(n))),
    });
    try {
      const report = await encoder.settled;
      expect(report.engine).toBe('tfjs');
      expect(report.fallbackReason).toMatch(/differ from tfjs's by \S+ relative \(allowed 0\.001\)/);
      expect(warnings).toHaveLength(1);
      expect(await encoder.embed(PASSAGES)).toEqual(await embedPassages(bundle, PASSAGES));
    } finally {
      await encoder.dispose();
    }
  });

  it('refuses an unknown CORAG_PASSAGE_ENCODER setting, naming it', async () => {
    vi.stubEnv('CORAG_PASSAGE_ENCODER', 'torch');
    try {
      await expect(FrozenPassageEncoder.load(DEMO_MODELS.passageEncoder, tinyGlobal(), 32)).rejects.toThrow(
        /CORAG_PASSAGE_ENCODER: unknown passage encoder "torch"/,
      );
    } finally {
      vi.unstubAllEnvs();
    }
  });

  it('says why it cannot load: unknown id, another dimension, a missing tensor', async () => {
    await expect(FrozenPassageEncoder.load('no such encoder!', tinyGlobal(), 32)).rejects.toThrow(PassageEncoderError);
    await expect(FrozenPassageEncoder.load(DEMO_MODELS.passageEncoder, tinyGlobal(), 768)).rejects.toThrow(
      /makes 32-dimensional embeddings but the session stores 768/,
    );
    await expect(FrozenPassageEncoder.load(DEMO_MODELS.passageEncoder, tinyGlobal('encoder.layer.0.output.dense.weight'), 32)).rejects.toThrow(
      /has no "passage_encoder.encoder.layer.0.output.dense.weight" tensor/,
    );
  });
});
