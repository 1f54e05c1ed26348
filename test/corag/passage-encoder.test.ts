import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeModel, encodeModel } from '../../src/federated/codec';
import type { ModelBundle } from '../../src/corag/model-bundle';
import { PassageEncoder } from '../../src/corag/passage-encoder';
import { embedPassages, embedQueries } from '../../src/corag/retrieve';
import { initBackend } from '../../src/model/backend';
import { tinyBundle } from './helpers';

const PASSAGES = [
  { title: 'Warsaw', text: 'Warsaw stands on the Vistula river in east-central Poland.' },
  { title: 'Tesla', text: "Nikola Tesla's nephew Sava Kosanović was a Yugoslav diplomat." },
  { title: '', text: 'A passage without a title.' },
];

describe('PassageEncoder', () => {
  let bundle: ModelBundle;
  let global: Uint8Array;
  beforeAll(async () => {
    await initBackend('cpu');
    bundle = await tinyBundle();
    global = await bundle.exportGlobal();
  });
  afterAll(() => bundle.dispose());

  it("embeds passages exactly as the whole bundle does, from a global version's passage_encoder tensors alone", async () => {
    const encoder = PassageEncoder.fromGlobal(bundle.retriever.config, bundle.retrieverTokenizer, global, 0);
    try {
      const alone = await embedPassages(encoder, PASSAGES);
      const whole = await embedPassages(bundle, PASSAGES);
      expect(alone.map((v) => [...v])).toEqual(whole.map((v) => [...v]));
      // It holds the passage encoder and nothing else: no reader, no query encoder.
      expect(encoder.retriever.params.names().every((n) => n.startsWith('passage.'))).toBe(true);
      expect(encoder.retriever.params.numel()).toBe(bundle.retriever.params.numel(bundle.retriever.parameterNames('passage')));
    } finally {
      encoder.dispose();
    }
  });

  it('frees its tensors on dispose', () => {
    const before = tf.memory().numTensors;
    PassageEncoder.fromGlobal(bundle.retriever.config, bundle.retrieverTokenizer, global, 0).dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('refuses to embed questions: it has no query encoder', async () => {
    const encoder = PassageEncoder.fromGlobal(bundle.retriever.config, bundle.retrieverTokenizer, global, 0);
    try {
      await expect(embedQueries(encoder, ['On what river does Warsaw stand?'])).rejects.toThrow(/only the passage encoder, not the query encoder/);
    } finally {
      encoder.dispose();
    }
  });

  it('names the missing or misshapen tensor of a global version that lacks the passage encoder, and leaks nothing', () => {
    const tensors = decodeModel(global);
    const missing = 'passage_encoder.encoder.layer.0.output.dense.bias';
    const without = encodeModel(new Map([...tensors].filter(([name]) => name !== missing)));
    const before = tf.memory().numTensors;
    expect(() => PassageEncoder.fromGlobal(bundle.retriever.config, bundle.retrieverTokenizer, without, 3)).toThrow(
      `global model v3 lacks tensor "${missing}"`,
    );
    const wrong = new Map(tensors);
    wrong.set(missing, { ...tensors.get(missing)!, shape: [1, tensors.get(missing)!.data.length] });
    expect(() => PassageEncoder.fromGlobal(bundle.retriever.config, bundle.retrieverTokenizer, encodeModel(wrong), 3)).toThrow(
      /has shape \[1,\d+\] but the retriever config implies/,
    );
    expect(tf.memory().numTensors).toBe(before);
  });
});
