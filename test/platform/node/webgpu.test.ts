import * as tf from '@tensorflow/tfjs-core';
import { afterAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../../src/model/backend';
import { installNodeWebGpu } from '../../../src/platform/node/webgpu';
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
});
