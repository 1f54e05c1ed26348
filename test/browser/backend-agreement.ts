/**
 * A small differentiable computation run on whichever TF.js backend is active, so a test can
 * run it on two backends (in Node, or inside one browser page) and compare the numbers.
 * Plain TF.js: no DOM, no Node APIs.
 */
import * as tf from '@tensorflow/tfjs-core';
import { maxRelativeError } from '../../src/model/numerics';
export { maxRelativeError };

export interface MatmulGradient {
  /** A·B, row-major. */
  readonly product: Float32Array;
  /** d ½‖A·B‖² / dA = (A·B)·Bᵀ and / dB = Aᵀ·(A·B). */
  readonly gradA: Float32Array;
  readonly gradB: Float32Array;
}

/** Deterministic, well-scaled inputs (no RNG: every backend must see the same bits). */
function input(rows: number, cols: number, phase: number): tf.Tensor2D {
  const values = new Float32Array(rows * cols);
  for (let i = 0; i < values.length; i++) values[i] = Math.sin(0.37 * i + phase) / Math.sqrt(cols);
  return tf.tensor2d(values, [rows, cols]);
}

/**
 * A·B and the gradient of ½‖A·B‖² with respect to A and B on the active backend. The gradient
 * goes through two more matmuls (dY·Bᵀ, Aᵀ·dY), so it checks the transposed matmul kernels too.
 * The loss is deliberately polynomial: tfjs-backend-webgpu's tanh/exp carry ~2e-6 relative
 * error, which 1 - tanh² amplifies past 1e-5 and would hide what this checks (matmul + autodiff).
 */
export async function matmulWithGradient(m = 33, k = 65, n = 17): Promise<MatmulGradient> {
  const [product, gradA, gradB] = tf.tidy(() => {
    const a = input(m, k, 0.1);
    const b = input(k, n, 1.3);
    const f = (x: tf.Tensor, y: tf.Tensor) => tf.mul(0.5, tf.sum(tf.square(tf.matMul(x as tf.Tensor2D, y as tf.Tensor2D))));
    const [da, db] = tf.grads(f)([a, b]);
    return [tf.matMul(a, b), da, db];
  });
  try {
    return {
      product: (await product.data()) as Float32Array,
      gradA: (await gradA.data()) as Float32Array,
      gradB: (await gradB.data()) as Float32Array,
    };
  } finally {
    tf.dispose([product, gradA, gradB]);
  }
}

/** The worst of product and both gradients, `actual` against `reference`. */
export function matmulGradientError(actual: MatmulGradient, reference: MatmulGradient): number {
  return Math.max(
    maxRelativeError(actual.product, reference.product),
    maxRelativeError(actual.gradA, reference.gradA),
    maxRelativeError(actual.gradB, reference.gradB),
  );
}
