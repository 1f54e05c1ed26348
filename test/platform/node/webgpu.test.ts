import * as tf from '@tensorflow/tfjs-core';
import { afterAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../../src/model/backend';
import { installNodeWebGpu } from '../../../src/platform/node/webgpu';
import { sumTensors } from '../../../src/model/ops';
import { globalNorm } from '../../../src/model/optimizer';
import { matmulGradientError, matmulWithGradient } from '../../browser/backend-agreement';

// Needs a Vulkan driver Dawn accepts: the NVIDIA one on a GPU machine, or the SwiftShader driver
// that Debian's chromium package ships (which the CI installs for the browser tests).
describe('Node WebGPU (Dawn)', () => {
  afterAll(async () => {
    await initBackend('cpu');
    tf.removeBackend('webgpu');
  });

  it('runs the TF.js webgpu backend and names its adapter', async () => {
    await installNodeWebGpu();
    const report = await initBackend('webgpu');
    expect(report.name).toBe('webgpu');
    expect(tf.getBackend()).toBe('webgpu');
    expect(report.detail.length).toBeGreaterThan(0);
    expect(report.detail).not.toBe('WebGPU adapter'); // the adapter described itself
  });

  it('computes a matmul and its gradient equal to the cpu backend within 1e-5', async () => {
    await initBackend('cpu');
    const reference = await matmulWithGradient();
    await installNodeWebGpu();
    await initBackend('webgpu');
    const before = tf.memory().numTensors;
    const onGpu = await matmulWithGradient();
    expect(tf.memory().numTensors).toBe(before);
    expect(matmulGradientError(onGpu, reference)).toBeLessThan(1e-5);
    // Not trivially equal because both are zero.
    expect(Math.max(...reference.gradA.map(Math.abs))).toBeGreaterThan(0.1);
  });

  it('transposes an int32 tensor cast to float32 (tfjs-backend-webgpu Cast view bug, corrected on install)', async () => {
    await installNodeWebGpu();
    await initBackend('webgpu');
    const cpuForward = tf.env().getBool('WEBGPU_CPU_FORWARD');
    tf.env().set('WEBGPU_CPU_FORWARD', false); // keep the tiny tensor on the GPU, where the bug lives
    try {
      const ids = tf.tensor3d([1, 2, 3, 4, 5, 6, 7, 8], [2, 2, 2], 'int32');
      const before = tf.memory().numTensors;
      const transposed = tf.tidy(() => tf.transpose(tf.cast(ids, 'float32'), [0, 2, 1]));
      expect(Array.from(await transposed.data())).toEqual([1, 3, 2, 4, 5, 7, 6, 8]);
      transposed.dispose();
      expect(tf.memory().numTensors).toBe(before);
      expect(Array.from(await ids.data())).toEqual([1, 2, 3, 4, 5, 6, 7, 8]); // the input is untouched
      ids.dispose();
    } finally {
      tf.env().set('WEBGPU_CPU_FORWARD', cpuForward);
    }
  });

  it('sums more tensors than one WebGPU program may bind (sumTensors; a plain 30-input addN returns garbage)', async () => {
    await installNodeWebGpu();
    await initBackend('webgpu');
    const tensors = Array.from({ length: 30 }, (_, i) => tf.fill([3], i + 1));
    const sum = sumTensors(tensors);
    expect([...(await sum.data())]).toEqual([465, 465, 465]);
    expect(await globalNorm(tensors)).toBeCloseTo(Math.sqrt(3 * tensors.reduce((s, _, i) => s + (i + 1) ** 2, 0)), 3);
    tf.dispose([sum, ...tensors]);
  });
});
