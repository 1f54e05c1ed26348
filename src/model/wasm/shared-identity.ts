/**
 * tfjs-backend-wasm 4.22's Identity kernel copies its input into a new buffer. The engine runs
 * Identity for every tensor an op saves for its gradient (engine.clone in
 * saveTensorsForBackwardMode) and for tf.clone, so on wasm every saved activation of a training
 * step existed twice: the forward's tensor and the saved copy (docs/PERFORMANCE.md "Training-step
 * peak memory"). The cpu and webgpu backends share the buffer and count references instead.
 *
 * The replacement does what wasm's own Reshape kernel already does: it increments the buffer's
 * reference count and returns the same data id. That is safe because no wasm kernel writes into
 * an input's buffer (every kernel allocates its output with makeOutput; Variable.assign swaps
 * data ids), so two tensors on one buffer can never see each other change.
 */
import * as tf from '@tensorflow/tfjs-core';

interface WasmBackendLike {
  incRef(dataId: object): void;
}

let installed = false;

/**
 * Replaces the wasm backend's Identity kernel with one that shares the input's buffer. Call after
 * the wasm backend module is imported (its kernels are registered then); safe to call more than
 * once. Returns whether the kernel is now the sharing one (false when wasm is not loaded).
 */
export function installWasmSharedIdentity(): boolean {
  if (installed) return true;
  const original = tf.getKernel('Identity', 'wasm');
  if (!original) return false;
  tf.unregisterKernel('Identity', 'wasm');
  tf.registerKernel({
    ...original,
    kernelFunc: (args) => {
      const x = args.inputs.x as tf.TensorInfo;
      // Strings live outside the heap; the original handles them.
      if (x.dtype === 'string') return original.kernelFunc(args);
      (args.backend as unknown as WasmBackendLike).incRef(x.dataId);
      return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
    },
  });
  installed = true;
  return true;
}
