/**
 * Attention's softmax(scores + bias) over the key axis as fused WebGPU programs. With tfjs ops it
 * is an add and a softmax forward (2 dispatches) and softmax's gradient mul, sum, mul, sub
 * backward (4), in each of t5-small's 18 attention layers; here it is one dispatch each way:
 *
 * - forward: a workgroup per (batch, head, query) row reads scores + bias (the bias broadcast
 *   over any of its size-1 dims, e.g. a [1, H, T, S] position bias or a [B, 1, 1, S] mask),
 *   subtracts the row max, exponentiates and normalises;
 * - backward: dz = p·(dp − Σ dp·p) per row, which is the gradient of both scores and bias; the
 *   bias's is then summed over its broadcast dims (as tf.add's gradient does, no dispatch when the
 *   bias has the full shape).
 *
 * Registered as tfjs kernels for the webgpu backend only and called through tf.customGrad by
 * `fusedBiasedSoftmax`; other backends keep tf.add + tf.softmax (src/model/t5/attention.ts).
 */
import * as tf from '@tensorflow/tfjs-core';
import { dimsOf } from '../shape';
import { FLAT_WORKGROUP_INDEX_WGSL, flatLayout, workgroupReductionWgsl, type FusedProgram, type WebGpuProgramRunner } from './program';

const ROW_THREADS = 64;

export const BIASED_SOFTMAX_KERNEL = 'CoragBiasedSoftmax';
export const SOFTMAX_GRAD_KERNEL = 'CoragSoftmaxGrad';

/** WGSL: `rowMax(v)` and `rowSum(v)` over the ROW_THREADS threads of a workgroup, returned to every thread. */
const ROW_REDUCTIONS_WGSL = workgroupReductionWgsl('rowMax', 'f32', 'max(a, b)', ROW_THREADS) + workgroupReductionWgsl('rowSum', 'f32', 'a + b', ROW_THREADS);

/** float32's lowest value: the row max starts here (finite, so a fully masked row stays finite). */
const LOWEST_F32 = 'bitcast<f32>(0xff7fffffu)';

/** p = softmax(scores + bias) over the last axis; scores [B, H, T, S], bias 4-D broadcastable to it. */
class BiasedSoftmaxProgram implements FusedProgram {
  outputShape: number[];
  shaderKey = 'corag_biased_softmax';
  dispatchLayout: { x: number[] };
  dispatch: [number, number, number];
  variableNames = ['scores', 'bias'];
  workgroupSize: [number, number, number] = [ROW_THREADS, 1, 1];

  constructor(shape: number[]) {
    this.outputShape = shape;
    this.dispatchLayout = flatLayout(4);
    const [batch, heads, rows] = dimsOf(shape, 4, 'BiasedSoftmaxProgram');
    this.dispatch = [batch * heads * rows, 1, 1];
  }

  getUserCode(): string {
    return `
      ${FLAT_WORKGROUP_INDEX_WGSL}
      ${ROW_REDUCTIONS_WGSL}
      // The bias's stride along each dim, 0 where it broadcasts (size 1).
      fn biasStride(size : i32, stride : i32) -> i32 {
        return select(stride, 0, size == 1);
      }
      fn main(index : i32) {
        let row = flatWorkgroupIndex();
        let heads = uniforms.scoresShape.y;
        let queries = uniforms.scoresShape.z;
        let width = uniforms.scoresShape.w;
        let inRange = row < uniforms.scoresShape.x * heads * queries;
        let q = row % queries;
        let h = (row / queries) % heads;
        let b = row / (queries * heads);
        let biasRow = b * biasStride(uniforms.biasShape.x, uniforms.biasShapeStrides.x)
          + h * biasStride(uniforms.biasShape.y, uniforms.biasShapeStrides.y)
          + q * biasStride(uniforms.biasShape.z, uniforms.biasShapeStrides.z);
        let biasColumn = biasStride(uniforms.biasShape.w, 1);
        var threadMax = ${LOWEST_F32};
        if (inRange) {
          for (var j = i32(localId.x); j < width; j = j + ${ROW_THREADS}) {
            threadMax = max(threadMax, scores[row * width + j] + bias[biasRow + j * biasColumn]);
          }
        }
        let m = rowMax(threadMax);
        var threadSum = 0.0;
        if (inRange) {
          for (var j = i32(localId.x); j < width; j = j + ${ROW_THREADS}) {
            threadSum = threadSum + exp(scores[row * width + j] + bias[biasRow + j * biasColumn] - m);
          }
        }
        let total = rowSum(threadSum);
        if (inRange) {
          for (var j = i32(localId.x); j < width; j = j + ${ROW_THREADS}) {
            setOutputAtIndex(row * width + j, exp(scores[row * width + j] + bias[biasRow + j * biasColumn] - m) / total);
          }
        }
      }`;
  }
}

/** dz = p·(dp − Σ dp·p) per row of p, dp [rows, S]. */
class SoftmaxGradProgram implements FusedProgram {
  outputShape: number[];
  shaderKey = 'corag_softmax_grad';
  dispatchLayout: { x: number[] };
  dispatch: [number, number, number];
  variableNames = ['probs', 'dprobs'];
  workgroupSize: [number, number, number] = [ROW_THREADS, 1, 1];

  constructor(rows: number, width: number) {
    this.outputShape = [rows, width];
    this.dispatchLayout = flatLayout(2);
    this.dispatch = [rows, 1, 1];
  }

  getUserCode(): string {
    return `
      ${FLAT_WORKGROUP_INDEX_WGSL}
      ${ROW_REDUCTIONS_WGSL}
      fn main(index : i32) {
        let row = flatWorkgroupIndex();
        let width = uniforms.probsShape.y;
        let inRange = row < uniforms.probsShape.x;
        var threadSum = 0.0;
        if (inRange) {
          for (var j = i32(localId.x); j < width; j = j + ${ROW_THREADS}) {
            threadSum = threadSum + dprobs[row * width + j] * probs[row * width + j];
          }
        }
        let total = rowSum(threadSum);
        if (inRange) {
          for (var j = i32(localId.x); j < width; j = j + ${ROW_THREADS}) {
            let p = probs[row * width + j];
            setOutputAtIndex(row * width + j, p * (dprobs[row * width + j] - total));
          }
        }
      }`;
  }
}

type KernelArgs = Parameters<tf.KernelFunc>[0];

const kernels: tf.KernelConfig[] = [
  {
    kernelName: BIASED_SOFTMAX_KERNEL,
    backendName: 'webgpu',
    kernelFunc: ({ inputs, backend }: KernelArgs) => {
      const { scores, bias } = inputs as { scores: tf.TensorInfo; bias: tf.TensorInfo };
      return (backend as unknown as WebGpuProgramRunner).runWebGPUProgram(new BiasedSoftmaxProgram(scores.shape), [scores, bias], 'float32');
    },
  },
  {
    kernelName: SOFTMAX_GRAD_KERNEL,
    backendName: 'webgpu',
    kernelFunc: ({ inputs, backend }: KernelArgs) => {
      const { probs, dprobs } = inputs as { probs: tf.TensorInfo; dprobs: tf.TensorInfo };
      const [rows, width] = dimsOf(probs.shape, 2, SOFTMAX_GRAD_KERNEL);
      return (backend as unknown as WebGpuProgramRunner).runWebGPUProgram(new SoftmaxGradProgram(rows, width), [probs, dprobs], 'float32');
    },
  },
];

/** Registers the two kernels with tfjs (once; the registry is global across module copies). */
export function registerBiasedSoftmaxKernels(): void {
  for (const kernel of kernels) {
    if (!tf.getKernel(kernel.kernelName, kernel.backendName)) tf.registerKernel(kernel);
  }
}

/**
 * softmax(scores + bias) over the last axis on the webgpu backend, for scores [B, H, T, S] and a
 * 4-D bias broadcastable to it; one GPU dispatch forward and one backward (plus a sum over the
 * bias's broadcast dims for its gradient). Same maths as tf.softmax(tf.add(scores, bias)).
 */
export function fusedBiasedSoftmax(scores: tf.Tensor4D, bias: tf.Tensor4D): tf.Tensor4D {
  if (scores.rank !== 4 || bias.rank !== 4) throw new Error('fusedBiasedSoftmax: scores and bias must be 4-D');
  if (scores.dtype !== 'float32' || bias.dtype !== 'float32') throw new Error('fusedBiasedSoftmax: scores and bias must be float32');
  bias.shape.forEach((size, i) => {
    if (size !== 1 && size !== scores.shape[i]) throw new Error(`fusedBiasedSoftmax: bias shape ${bias.shape} does not broadcast to ${scores.shape}`);
  });
  registerBiasedSoftmaxKernels();
  const width = scores.shape[3];
  const softmax = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const [s, b] = args as [tf.Tensor4D, tf.Tensor4D];
    const save = args[2] as tf.GradSaveFunc;
    const probs = tf.engine().runKernel(BIASED_SOFTMAX_KERNEL, { scores: s, bias: b }) as tf.Tensor4D;
    save([probs]);
    return {
      value: probs,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [p] = saved;
        if (!p) throw new Error('biasedSoftmax: the gradient was called without the probabilities it saved');
        const dz = tf.engine().runKernel(SOFTMAX_GRAD_KERNEL, {
          probs: tf.reshape(p, [-1, width]),
          dprobs: tf.reshape(dy, [-1, width]),
        }) as tf.Tensor;
        const broadcastDims = b.shape.flatMap((size, i) => (size === 1 && s.shape[i] !== 1 ? [i] : []));
        const dBias = broadcastDims.length > 0 ? tf.sum(tf.reshape(dz, s.shape), broadcastDims, true) : dz;
        return [tf.reshape(dz, s.shape), tf.reshape(dBias, b.shape)];
      },
    };
  });
  return softmax(scores, bias) as tf.Tensor4D;
}
