/** Counts what the webgpu backend dispatches, for the fused-program tests in this folder. */
import * as tf from '@tensorflow/tfjs-core';

/** GPU programs dispatched while `run` executes. */
export function countDispatches(run: () => void): number {
  const backend = tf.backend() as unknown as { runWebGPUProgram: (...args: unknown[]) => unknown };
  const original = backend.runWebGPUProgram;
  let dispatches = 0;
  backend.runWebGPUProgram = function (this: unknown, ...args: unknown[]) {
    dispatches++;
    return original.apply(this, args);
  };
  try {
    run();
  } finally {
    backend.runWebGPUProgram = original;
  }
  return dispatches;
}
