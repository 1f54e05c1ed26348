import { readFileSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../src/model/backend';
import { Contriever } from '../../src/model/contriever';
import { perplexityDistillationLoss } from '../../src/model/losses';
import { AdamW } from '../../src/model/optimizer';
import { ParameterStore } from '../../src/model/params';
import { parseT5Config } from '../../src/model/t5/config';
import { fidLoss } from '../../src/model/t5/fid';
import { sequenceCrossEntropy } from '../../src/model/t5/loss';
import { T5Model } from '../../src/model/t5/model';
import { selectTrainable, namedGradients } from '../../src/model/trainable';

const FIXTURES = new URL('../../../shared/fixtures/hf-reference/', import.meta.url);
const read = (path: string) => readFileSync(new URL(path, FIXTURES));

/**
 * The brief's "no memory growth over 1,000 steps": a joint reader + query-encoder step (FiD loss,
 * per-passage CE without gradient, PDist, AdamW with clipping) repeated 1,000 times must leave the
 * number of live tensors and their bytes exactly where they were after the first steps. tfjs
 * accounts every backend's buffers the same way, so this also bounds GPU memory.
 */
describe('memory over 1,000 training steps', () => {
  let reader: ParameterStore;
  let retriever: Contriever;

  beforeAll(async () => {
    await initBackend('wasm');
    reader = ParameterStore.fromSafetensors(new Uint8Array(read('t5-tiny-gated/model.safetensors')));
    retriever = Contriever.fromCheckpoint(JSON.parse(read('bert-tiny/config.json').toString()), new Uint8Array(read('bert-tiny/model.safetensors')));
  });
  afterAll(() => {
    reader.dispose();
    retriever.dispose();
  });

  // 1,000 real steps take ~70 s on one core; the time limit only guards against a hang (speed is
  // the benchmarks' job), with room for a loaded machine.
  it('keeps live tensors and bytes constant (joint FiD + PDist steps with AdamW)', async () => {
    const config = parseT5Config(JSON.parse(read('t5-tiny-gated/config.json').toString()));
    const model = new T5Model(config, reader);
    const k = 3;
    const ids = tf.tensor2d(
      [
        [5, 6, 7, 8, 1],
        [9, 10, 11, 1, 0],
        [12, 13, 14, 15, 1],
      ],
      [k, 5],
      'int32',
    );
    const mask = tf.tensor2d(
      [
        [1, 1, 1, 1, 1],
        [1, 1, 1, 1, 0],
        [1, 1, 1, 1, 1],
      ],
      [k, 5],
      'int32',
    );
    const labels = tf.tensor2d([[20, 21, 1]], [1, 3], 'int32');
    const passageTokens = [
      [101, 7, 8, 102],
      [101, 9, 102],
      [101, 12, 13, 14, 102],
    ];
    const passages = tf.tidy(() => tf.expandDims(retriever.embedPassages(passageTokens), 0) as tf.Tensor3D);
    const trainable = selectTrainable({ reader, retriever: retriever.params }, 'reader+query-encoder');
    const optimizer = new AdamW({ lr: 1e-3, clipNorm: 1, warmupSteps: 10, totalSteps: 1000 });
    const step = async () => {
      // Each passage scored alone by the reader, without gradient (Atlas PDist target).
      const passageCE = tf.tidy(() => {
        const perPassage = [0, 1, 2].map((p) =>
          sequenceCrossEntropy(model.forward(tf.slice(ids, [p, 0], [1, -1]), tf.slice(mask, [p, 0], [1, -1]), labels).logits, labels),
        );
        return tf.reshape(tf.concat(perPassage), [1, k]) as tf.Tensor2D;
      });
      const { loss, grads } = namedGradients(() => {
        const query = retriever.embedQueries([[101, 5, 6, 102]]);
        return tf.add(fidLoss(model, ids, mask, k, labels), perplexityDistillationLoss(query, passages, passageCE)) as tf.Scalar;
      }, trainable);
      await optimizer.apply(trainable, grads);
      await loss.data();
      tf.dispose([loss, passageCE, ...grads.values()]);
    };
    for (let i = 0; i < 5; i++) await step();
    const settled = tf.memory();
    for (let i = 5; i < 1000; i++) await step();
    const after = tf.memory();
    expect(after.numTensors).toBe(settled.numTensors);
    expect(after.numBytes).toBe(settled.numBytes);
    optimizer.dispose();
    tf.dispose([ids, mask, labels, passages]);
  }, 300_000);
});
