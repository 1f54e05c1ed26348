/**
 * The coordinator's copy of a session's frozen passage encoder (server/passage-encoder.ts): which
 * ids it can resolve (as a tab resolves them) and the clear errors when it cannot load one.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { encodeModel, type NamedTensor } from '../../src/federated/codec';
import { embedPassages } from '../../src/corag/retrieve';
import { initBackend } from '../../src/model/backend';
import { tinyBertConfig, tinyBertWeights } from '../../src/model/tiny';
import { DEMO_MODELS } from '../../server/demo';
import { FrozenPassageEncoder, passageEncoderFiles, PassageEncoderError } from '../../server/passage-encoder';
import { tinyBundle } from '../corag/helpers';

function tinyGlobal(drop?: string): Uint8Array {
  const tensors = new Map<string, NamedTensor>();
  for (const [n, t] of tinyBertWeights(tinyBertConfig(), 2)) if (n !== drop) tensors.set(`passage_encoder.${n}`, t);
  return encodeModel(tensors);
}

describe("the coordinator's frozen passage encoder", () => {
  beforeAll(async () => {
    await initBackend('wasm');
  });

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

  it('embeds exactly as a tab does with the same weights', async () => {
    const encoder = await FrozenPassageEncoder.load(DEMO_MODELS.passageEncoder, tinyGlobal(), tinyBertConfig().hidden_size);
    const bundle = await tinyBundle();
    try {
      const passages = [
        { title: 'Vistula', text: 'The Vistula flows through Warsaw.' },
        { title: '', text: 'a' },
      ];
      expect(await encoder.embed(passages)).toEqual(await embedPassages(bundle, passages));
    } finally {
      encoder.dispose();
      bundle.dispose();
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
