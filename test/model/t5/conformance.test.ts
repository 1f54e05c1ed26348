import { readFileSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../../src/model/backend';
import { checkT5Fixture } from '../../../src/model/t5/conformance';

const FIXTURES = ['t5-tiny-gated', 't5-tiny-relu'];

export function readT5Fixture(name: string) {
  const file = (f: string) => new Uint8Array(readFileSync(new URL(`../../../../shared/fixtures/hf-reference/${name}/${f}`, import.meta.url)));
  const json = (f: string) => JSON.parse(new TextDecoder().decode(file(f)));
  return { config: json('config.json'), model: file('model.safetensors'), expected: file('expected.safetensors'), expectedJson: json('expected.json'), grads: file('grads.safetensors') };
}

describe('checkT5Fixture (cpu, bounds: forward 1e-4, gradients 1e-3)', () => {
  beforeAll(async () => {
    await initBackend('cpu');
  });

  for (const name of FIXTURES) {
    it(`${name}: encoder states, logits, losses, FiD outputs, cross-attention, greedy ids and every gradient equal Hugging Face`, async () => {
      const before = tf.memory().numTensors;
      const result = await checkT5Fixture(readT5Fixture(name));
      const outputs = ['encoder_last_hidden_state', 'logits', 'loss', 'fid_encoder_hidden', 'fid_logits', 'fid_loss', 'fid_cross_attention_0', 'fid_cross_attention_1', 'fid_greedy_ids'];
      expect(Object.keys(result.max_rel_err).sort()).toEqual(outputs.sort());
      for (const output of outputs) expect(result.max_rel_err[output], output).toBeLessThan(1e-4);
      expect(result.max_rel_err.fid_greedy_ids).toBe(0);
      expect(result.grad_rel_l2, result.worst_grad).toBeLessThan(1e-3);
      expect(result.ok_forward && result.ok_grads).toBe(true);
      expect(tf.memory().numTensors).toBe(before);
    });
  }
});
