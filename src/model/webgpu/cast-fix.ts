/**
 * A correction to tfjs-backend-webgpu 4.22's Cast kernel, needed wherever the webgpu backend
 * runs (browser, and Node through Dawn).
 *
 * The bug: Cast from int32 or bool to float32 returns a view of the input (same data id), so the
 * "float32" tensor keeps int32 storage and every shader that reads it declares it `array<i32>`.
 * Most shaders convert on read, but TransposeProgram (rank >= 3) passes the raw element to
 * `setOutputAtIndex(i32, f32)`, which is invalid WGSL: the pipeline fails validation and the
 * result is garbage. Attention masks and ids cast to float and then transposed (directly or in
 * a gradient) hit this. Minimal reproduction, with WEBGPU_CPU_FORWARD off:
 *   tf.transpose(tf.cast(tf.tensor3d([...], [2, 2, 2], 'int32'), 'float32'), [0, 2, 1])
 *
 * The fix: after the original Cast makes its view, multiply it by a float32 scalar 1, which reads
 * with conversion and writes a real float32 buffer (exact for every int32 below 2^24 and for bool),
 * then release the view.
 */
import * as tf from '@tensorflow/tfjs-core';

interface WebGpuBackendLike {
  makeTensorInfo(shape: number[], dtype: tf.DataType, values: Float32Array): tf.TensorInfo;
  disposeData(dataId: object): boolean;
}

let installed = false;

/**
 * Replaces the webgpu backend's Cast kernel with the corrected one. Call after the webgpu
 * backend module is imported (its kernels are registered then); safe to call more than once.
 * Returns whether the kernel is now corrected (false when the webgpu backend is not loaded).
 */
export function installWebGpuCastFix(): boolean {
  if (installed) return true;
  const original = tf.getKernel('Cast', 'webgpu');
  const multiply = tf.getKernel('Multiply', 'webgpu');
  if (!original || !multiply) return false;
  tf.unregisterKernel('Cast', 'webgpu');
  tf.registerKernel({
    ...original,
    kernelFunc: (args) => {
      const out = original.kernelFunc(args) as tf.TensorInfo;
      const x = args.inputs.x as tf.TensorInfo;
      const sharesStorage = out.dataId === x.dataId && out.dtype === 'float32' && x.dtype !== 'float32';
      if (!sharesStorage) return out;
      const backend = args.backend as unknown as WebGpuBackendLike;
      const one = backend.makeTensorInfo([], 'float32', new Float32Array([1]));
      const converted = multiply.kernelFunc({ inputs: { a: out, b: one }, backend: args.backend, attrs: {} }) as tf.TensorInfo;
      backend.disposeData(one.dataId);
      backend.disposeData(out.dataId); // the view's reference (identity incremented it)
      return converted;
    },
  });
  installed = true;
  return true;
}
