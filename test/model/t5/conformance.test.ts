import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../../src/model/backend';
import { parseSafetensors, readTensor, writeSafetensors, type TensorToWrite } from '../../../src/model/safetensors';
import { checkT5Fixture } from '../../../src/model/t5/conformance';
import { readT5Fixture, T5_FIXTURES } from './fixtures';

describe('checkT5Fixture (cpu, bounds: forward 1e-4, gradients 1e-3)', () => {
  beforeAll(async () => {
    await initBackend('cpu');
  });

  for (const name of T5_FIXTURES) {
    it(`${name}: encoder states, logits, losses, FiD outputs, cross-attention, greedy ids and every gradient equal Hugging Face`, async () => {
      const before = tf.memory().numTensors;
      const result = await checkT5Fixture(readT5Fixture(name));
      const outputs = [
        'encoder_last_hidden_state',
        'logits',
        'loss',
        'fid_encoder_hidden',
        'fid_logits',
        'fid_loss',
        'fid_cross_attention_0',
        'fid_cross_attention_1',
        'fid_greedy_ids',
      ];
      expect(Object.keys(result.max_rel_err).sort()).toEqual(outputs.sort());
      for (const output of outputs) expect(result.max_rel_err[output], output).toBeLessThan(1e-4);
      expect(result.max_rel_err.fid_greedy_ids).toBe(0);
      expect(result.grad_rel_l2, result.worst_grad).toBeLessThan(1e-3);
      expect(result.ok_forward && result.ok_grads).toBe(true);
      expect(tf.memory().numTensors).toBe(before);
    });
  }
});

describe('checkT5Fixture detects disagreement', () => {
  beforeAll(async () => {
    await initBackend('cpu');
  });

  it('fails the forward check when the model differs from the reference (wrong position buckets)', async () => {
    const files = readT5Fixture('t5-tiny-gated');
    const result = await checkT5Fixture({ ...files, config: { ...files.config, relative_attention_max_distance: 16 } });
    expect(result.ok_forward).toBe(false);
    expect(result.max_rel_err.encoder_last_hidden_state).toBeGreaterThan(1e-4);
  });

  it('fails the gradient check and names the parameter whose reference gradient is wrong', async () => {
    const files = readT5Fixture('t5-tiny-relu');
    const grads = parseSafetensors(files.grads);
    const tampered = new Map<string, TensorToWrite>();
    for (const name of grads.tensors.keys()) {
      const { shape, data } = readTensor(grads, name);
      const values = Float32Array.from(data as Float32Array);
      if (name === 'decoder.block.1.layer.2.DenseReluDense.wo.weight') values[0] += 10 * Math.max(...values.map(Math.abs));
      tampered.set(name, { dtype: 'F32', shape, data: values });
    }
    const result = await checkT5Fixture({ ...files, grads: writeSafetensors(tampered) }, { forward: 1e-4, grads: 1e-3 });
    expect(result.ok_forward).toBe(true);
    expect(result.ok_grads).toBe(false);
    expect(result.worst_grad).toBe('decoder.block.1.layer.2.DenseReluDense.wo.weight');
  });

  it('rejects a checkpoint whose shapes do not match its config, naming the parameter', async () => {
    const files = readT5Fixture('t5-tiny-gated');
    await expect(checkT5Fixture({ ...files, config: { ...files.config, d_ff: 48 } })).rejects.toThrow(
      '"encoder.block.0.layer.1.DenseReluDense.wi_0.weight" has shape [64,32] but the config implies [48,32]',
    );
  });
});
