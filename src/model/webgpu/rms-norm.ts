/**
 * T5's RMS layer norm as fused WebGPU programs: y = x · r · w with r = 1/√(mean(x²) + ε) over the
 * last axis. Built from tfjs ops the norm costs about 13 GPU dispatches per call with its
 * gradient (square, mean, add, rsqrt, two muls forward; eight backward); at ~0.15 ms per dispatch
 * and 32 norms per t5-small train step that was ~400 dispatches. Here it is four:
 *
 * - forward, one dispatch: a workgroup per row sums x² and writes the scaled row;
 * - dx, one dispatch: a workgroup per row sums x² and g·x (g = dy·w) in one pass, then
 *   dx = r·g − x·r³·mean(g·x)  (the same as r·(g − n·mean(g·n)) with n = x·r);
 * - dw = Σ_rows dy·x·r, two dispatches: r per row, then a column reduction over the rows.
 *
 * Each is a tfjs kernel registered for the webgpu backend only (so tf.profile and kernel counts
 * see them) and called through tf.customGrad by `fusedRmsNorm`; the other backends keep the
 * tfjs-op formula in src/model/t5/layers.ts.
 */
import * as tf from '@tensorflow/tfjs-core';
import { dimsOf, lastDim } from '../shape';
import { FLAT_WORKGROUP_INDEX_WGSL, flatLayout, workgroupSumWgsl, type FusedProgram, type WebGpuProgramRunner } from './program';

/** Threads per row in the row programs (a power of two; a t5-small row is 512 wide, 8 per thread). */
const ROW_THREADS = 64;

export const RMS_NORM_KERNEL = 'CoragRmsNorm';
export const RMS_NORM_GRAD_INPUT_KERNEL = 'CoragRmsNormGradInput';
export const RMS_NORM_GRAD_WEIGHT_KERNEL = 'CoragRmsNormGradWeight';

/** A program that gives every row of a [rows, d] input its own workgroup of ROW_THREADS threads. */
abstract class RowProgram implements FusedProgram {
  outputShape: number[];
  abstract shaderKey: string;
  dispatchLayout: { x: number[] };
  dispatch: [number, number, number];
  abstract variableNames: string[];
  workgroupSize: [number, number, number] = [ROW_THREADS, 1, 1];
  uniforms = 'epsilon : f32,';
  abstract getUserCode(): string;

  constructor(outputShape: number[], rows: number) {
    this.outputShape = outputShape;
    this.dispatchLayout = flatLayout(outputShape.length);
    this.dispatch = [rows, 1, 1];
  }

  /** WGSL shared by the row programs (all read an input named `x`): `inverseRmsOf(sumOfSquares)` and `rowInverseRms(row)`. */
  protected prelude(): string {
    return `
      ${FLAT_WORKGROUP_INDEX_WGSL}
      ${workgroupSumWgsl(ROW_THREADS)}
      fn inverseRmsOf(sumOfSquares : f32, width : i32) -> f32 {
        return inverseSqrt(sumOfSquares / f32(width) + uniforms.epsilon);
      }
      // r = 1/√(mean(x²) + ε) of one row of x, in every thread (call from uniform control flow).
      fn rowInverseRms(row : i32, width : i32, inRange : bool) -> f32 {
        var sumOfSquares = 0.0;
        if (inRange) {
          for (var j = i32(localId.x); j < width; j = j + ${ROW_THREADS}) {
            let v = x[row * width + j];
            sumOfSquares = sumOfSquares + v * v;
          }
        }
        return inverseRmsOf(workgroupSum2(vec2<f32>(sumOfSquares, 0.0)).x, width);
      }`;
  }
}

/** y = x · r · w for x [rows, d], w [d]. */
class RmsNormProgram extends RowProgram {
  shaderKey = 'corag_rms_norm';
  variableNames = ['x', 'weight'];

  constructor(rows: number, width: number) {
    super([rows, width], rows);
  }

  getUserCode(): string {
    return `
      ${this.prelude()}
      fn main(index : i32) {
        let row = flatWorkgroupIndex();
        let width = uniforms.xShape.y;
        let inRange = row < uniforms.xShape.x;
        let r = rowInverseRms(row, width, inRange);
        if (inRange) {
          for (var j = i32(localId.x); j < width; j = j + ${ROW_THREADS}) {
            setOutputAtIndex(row * width + j, x[row * width + j] * r * weight[j]);
          }
        }
      }`;
  }
}

/** dx = r·g − x·r³·mean(g·x) with g = dy·w, for x and dy [rows, d], w [d]. */
class RmsNormGradInputProgram extends RowProgram {
  shaderKey = 'corag_rms_norm_grad_input';
  variableNames = ['x', 'weight', 'dy'];

  constructor(rows: number, width: number) {
    super([rows, width], rows);
  }

  getUserCode(): string {
    return `
      ${this.prelude()}
      fn main(index : i32) {
        let row = flatWorkgroupIndex();
        let width = uniforms.xShape.y;
        let inRange = row < uniforms.xShape.x;
        // (Σ x², Σ g·x) over the row.
        var sums = vec2<f32>(0.0, 0.0);
        if (inRange) {
          for (var j = i32(localId.x); j < width; j = j + ${ROW_THREADS}) {
            let v = x[row * width + j];
            let g = dy[row * width + j] * weight[j];
            sums = sums + vec2<f32>(v * v, g * v);
          }
        }
        let total = workgroupSum2(sums);
        let r = inverseRmsOf(total.x, width);
        let correction = r * r * r * total.y / f32(width);
        if (inRange) {
          for (var j = i32(localId.x); j < width; j = j + ${ROW_THREADS}) {
            let g = dy[row * width + j] * weight[j];
            setOutputAtIndex(row * width + j, r * g - x[row * width + j] * correction);
          }
        }
      }`;
  }
}

/** r = 1/√(mean(x²) + ε) per row of x [rows, d]: output [rows]. */
class InverseRmsProgram extends RowProgram {
  shaderKey = 'corag_inverse_rms';
  variableNames = ['x'];

  constructor(rows: number) {
    super([rows], rows);
  }

  getUserCode(): string {
    return `
      ${this.prelude()}
      fn main(index : i32) {
        let row = flatWorkgroupIndex();
        let width = uniforms.xShape.y;
        let inRange = row < uniforms.xShape.x;
        let r = rowInverseRms(row, width, inRange);
        if (inRange && localId.x == 0u) {
          setOutputAtIndex(row, r);
        }
      }`;
  }
}

/** Columns per workgroup and row lanes per column in the weight-gradient program. */
const WEIGHT_TILE_COLUMNS = 16;
const WEIGHT_ROW_LANES = 16;

/**
 * dw = Σ_rows dy·x·r for x and dy [rows, d], r [rows]: a workgroup per 16 columns, whose 16 row
 * lanes each sum every 16th row, then add up their partial sums in workgroup memory. (One thread
 * per column looping over all rows would leave most of a large GPU idle for t5-small's d = 512.)
 */
class RmsNormGradWeightProgram implements FusedProgram {
  outputShape: number[];
  shaderKey = 'corag_rms_norm_grad_weight';
  dispatchLayout: { x: number[] };
  dispatch: [number, number, number];
  variableNames = ['x', 'dy', 'inverseRms'];
  workgroupSize: [number, number, number] = [WEIGHT_TILE_COLUMNS, WEIGHT_ROW_LANES, 1];

  constructor(width: number) {
    this.outputShape = [width];
    this.dispatchLayout = flatLayout(1);
    this.dispatch = [Math.ceil(width / WEIGHT_TILE_COLUMNS), 1, 1];
  }

  getUserCode(): string {
    return `
      ${FLAT_WORKGROUP_INDEX_WGSL}
      var<workgroup> laneSums : array<array<f32, ${WEIGHT_TILE_COLUMNS}>, ${WEIGHT_ROW_LANES}>;
      fn main(index : i32) {
        let rows = uniforms.xShape.x;
        let width = uniforms.xShape.y;
        let column = flatWorkgroupIndex() * ${WEIGHT_TILE_COLUMNS} + i32(localId.x);
        var sum = 0.0;
        if (column < width) {
          for (var row = i32(localId.y); row < rows; row = row + ${WEIGHT_ROW_LANES}) {
            sum = sum + dy[row * width + column] * x[row * width + column] * inverseRms[row];
          }
        }
        laneSums[localId.y][localId.x] = sum;
        workgroupBarrier();
        for (var stride = ${WEIGHT_ROW_LANES / 2}u; stride > 0u; stride = stride >> 1u) {
          if (localId.y < stride) {
            laneSums[localId.y][localId.x] = laneSums[localId.y][localId.x] + laneSums[localId.y + stride][localId.x];
          }
          workgroupBarrier();
        }
        if (localId.y == 0u && column < width) {
          setOutputAtIndex(column, laneSums[0][localId.x]);
        }
      }`;
  }
}

type KernelArgs = Parameters<tf.KernelFunc>[0];

function epsilonUniform(attrs: KernelArgs['attrs']) {
  return [{ type: 'float32' as const, data: [Number(attrs?.epsilon)] }];
}

/** Inputs are [rows, d] (x, dy) and [d] (weight); the wrapper below reshapes to 2-D. */
const kernels: tf.KernelConfig[] = [
  {
    kernelName: RMS_NORM_KERNEL,
    backendName: 'webgpu',
    kernelFunc: ({ inputs, backend, attrs }: KernelArgs) => {
      const { x, weight } = inputs as { x: tf.TensorInfo; weight: tf.TensorInfo };
      const [rows, width] = dimsOf(x.shape, 2, RMS_NORM_KERNEL);
      const program = new RmsNormProgram(rows, width);
      return (backend as unknown as WebGpuProgramRunner).runWebGPUProgram(program, [x, weight], 'float32', epsilonUniform(attrs));
    },
  },
  {
    kernelName: RMS_NORM_GRAD_INPUT_KERNEL,
    backendName: 'webgpu',
    kernelFunc: ({ inputs, backend, attrs }: KernelArgs) => {
      const { x, weight, dy } = inputs as { x: tf.TensorInfo; weight: tf.TensorInfo; dy: tf.TensorInfo };
      const [rows, width] = dimsOf(x.shape, 2, RMS_NORM_GRAD_INPUT_KERNEL);
      const program = new RmsNormGradInputProgram(rows, width);
      return (backend as unknown as WebGpuProgramRunner).runWebGPUProgram(program, [x, weight, dy], 'float32', epsilonUniform(attrs));
    },
  },
  {
    kernelName: RMS_NORM_GRAD_WEIGHT_KERNEL,
    backendName: 'webgpu',
    kernelFunc: ({ inputs, backend, attrs }: KernelArgs) => {
      const { x, dy } = inputs as { x: tf.TensorInfo; dy: tf.TensorInfo };
      const [rows, width] = dimsOf(x.shape, 2, RMS_NORM_GRAD_WEIGHT_KERNEL);
      const gpu = backend as unknown as WebGpuProgramRunner;
      const inverseRms = gpu.runWebGPUProgram(new InverseRmsProgram(rows), [x], 'float32', epsilonUniform(attrs));
      try {
        return gpu.runWebGPUProgram(new RmsNormGradWeightProgram(width), [x, dy, inverseRms], 'float32');
      } finally {
        gpu.disposeData(inverseRms.dataId);
      }
    },
  },
];

/** Registers the three kernels with tfjs (once; the registry is global across module copies). */
export function registerRmsNormKernels(): void {
  for (const kernel of kernels) {
    if (!tf.getKernel(kernel.kernelName, kernel.backendName)) tf.registerKernel(kernel);
  }
}

/**
 * T5's RMS norm over the last axis of x (any rank) with weight [d], on the webgpu backend: one
 * GPU dispatch forward, three for both gradients. Same maths as the tfjs-op version in layers.ts.
 */
export function fusedRmsNorm(x: tf.Tensor, weight: tf.Tensor, epsilon: number): tf.Tensor {
  registerRmsNormKernels();
  const width = lastDim(x.shape, 'fusedRmsNorm');
  const attrs = { epsilon };
  const norm = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const [input, scale] = args as [tf.Tensor, tf.Tensor];
    const save = args[2] as tf.GradSaveFunc;
    const rows2d = tf.reshape(input, [-1, width]);
    save([rows2d, scale]);
    const y = tf.engine().runKernel(RMS_NORM_KERNEL, { x: rows2d, weight: scale }, attrs) as tf.Tensor;
    return {
      value: tf.reshape(y, input.shape),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [xs, w] = saved;
        if (!xs || !w) throw new Error('fusedRmsNorm: the gradient was called without the tensors it saved');
        const dys = tf.reshape(dy, [-1, width]);
        const dx = tf.engine().runKernel(RMS_NORM_GRAD_INPUT_KERNEL, { x: xs, weight: w, dy: dys }, attrs) as tf.Tensor;
        const dw = tf.engine().runKernel(RMS_NORM_GRAD_WEIGHT_KERNEL, { x: xs, dy: dys }, attrs) as tf.Tensor;
        return [tf.reshape(dx, dy.shape), dw];
      },
    };
  });
  return norm(x, weight);
}
