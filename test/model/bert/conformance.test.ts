import { readFileSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../../src/model/backend';
import { checkBertFixture } from '../../../src/model/bert/conformance';

const dir = new URL('../../../../shared/fixtures/hf-reference/bert-tiny/', import.meta.url);
const bytes = (f: string) => new Uint8Array(readFileSync(new URL(f, dir)));
const json = (f: string) => JSON.parse(readFileSync(new URL(f, dir), 'utf8'));

function fixtureFiles() {
  return {
    config: json('config.json'),
    model: bytes('model.safetensors'),
    expected: bytes('expected.safetensors'),
    expectedJson: json('expected.json'),
    grads: bytes('grads.safetensors'),
  };
}

describe('checkBertFixture on bert-tiny (cpu backend, bounds 1e-4 forward / 1e-3 gradients)', () => {
  beforeAll(async () => {
    await initBackend('cpu');
  });

  it('matches hidden states, embeddings, scores, loss and every parameter gradient of transformers', async () => {
    const result = await checkBertFixture(fixtureFiles());
    expect(Object.keys(result.max_rel_err).sort()).toEqual([
      'contrastive_loss',
      'p_embedding',
      'p_last_hidden_state',
      'q_embedding',
      'q_last_hidden_state',
      'scores',
    ]);
    for (const [name, err] of Object.entries(result.max_rel_err)) expect(err, name).toBeLessThan(1e-4);
    expect(result.grad_rel_l2, result.worst_grad).toBeLessThan(1e-3);
    expect(result.ok_forward && result.ok_grads).toBe(true);
  });

  it('meets the same bounds on the wasm backend', async () => {
    await initBackend('wasm');
    try {
      const result = await checkBertFixture(fixtureFiles());
      expect(result.ok_forward, JSON.stringify(result.max_rel_err)).toBe(true);
      expect(result.grad_rel_l2, result.worst_grad).toBeLessThan(1e-3);
    } finally {
      await initBackend('cpu');
    }
  });

  it('reports a failure when the weights differ from the reference', async () => {
    const files = fixtureFiles();
    const model = files.model.slice();
    // Perturb the last float of the file (encoder.layer.1 output LayerNorm weight in sorted order).
    new DataView(model.buffer).setFloat32(model.byteLength - 4, 5, true);
    const result = await checkBertFixture({ ...files, model });
    expect(result.ok_forward).toBe(false);
  });

  it('leaves no tensors behind', async () => {
    await checkBertFixture(fixtureFiles());
    const before = tf.memory().numTensors;
    await checkBertFixture(fixtureFiles());
    expect(tf.memory().numTensors).toBe(before);
  });
});
