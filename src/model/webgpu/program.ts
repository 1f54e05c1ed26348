/**
 * What the project's own WebGPU programs need from tfjs-backend-webgpu 4.22, written as local
 * types so that importing a fused op does not import the webgpu backend (cpu and wasm builds
 * never load it; the kernels only run once the backend is active).
 *
 * `WebGPUBackend.runWebGPUProgram(program, inputs, dtype, uniforms)` compiles `getUserCode()`
 * after a generated prelude (see tfjs-backend-webgpu/dist/webgpu_program.js, makeShader):
 * - binding 0 is the output, `result: array<f32>`, written with `setOutputAtIndex(i, v)`;
 * - input `name` is bound as `name: array<f32>` (bindings 1..n; WebGPU allows 8 storage buffers
 *   per stage, so at most 7 inputs), with its shape in `uniforms.<name>Shape`;
 * - `uniforms` holds NAN, INFINITY, every shape and stride, then the program's own uniforms in
 *   the order of `ProgramUniform` entries (declared in `program.uniforms`);
 * - `localId`, `workgroupId`, `numWorkgroups` are module-scope copies of the builtins, and the
 *   user code defines `fn main(index : i32)` (called with the global index for flat layouts).
 * The backend may reshape `dispatch` from [n, 1, 1] into 2-D or 3-D when n exceeds the device's
 * per-dimension limit, so programs derive their workgroup's number with `flatWorkgroupIndex`.
 */
import type * as tf from '@tensorflow/tfjs-core';

export interface FusedProgram {
  outputShape: number[];
  /** Base of the pipeline cache key (the backend appends ranks and dtypes). */
  shaderKey: string;
  /** A flat layout over every output dimension: the backend then calls `main(globalIndex)`. */
  dispatchLayout: { x: number[] };
  /** Workgroups to launch. */
  dispatch: [number, number, number];
  variableNames: string[];
  workgroupSize: [number, number, number];
  /** Declarations appended to the Uniforms struct, e.g. `epsilon : f32,`. */
  uniforms?: string;
  getUserCode(): string;
}

export interface ProgramUniform {
  type: 'float32' | 'int32' | 'uint32';
  data: number[];
}

/** The part of tfjs-backend-webgpu's WebGPUBackend the fused kernels call. */
export interface WebGpuProgramRunner {
  runWebGPUProgram(program: FusedProgram, inputs: tf.TensorInfo[], outputDtype: tf.DataType, uniforms?: ProgramUniform[]): tf.TensorInfo;
  disposeData(dataId: tf.TensorInfo['dataId']): boolean;
}

/** A flat dispatch layout over `rank` output dimensions. */
export function flatLayout(rank: number): { x: number[] } {
  return { x: Array.from({ length: rank }, (_, i) => i) };
}

/** WGSL: this workgroup's number in a launch of [n, 1, 1] workgroups, however the backend reshaped it. */
export const FLAT_WORKGROUP_INDEX_WGSL = `
  fn flatWorkgroupIndex() -> i32 {
    return i32(workgroupId.z * numWorkgroups.x * numWorkgroups.y + workgroupId.y * numWorkgroups.x + workgroupId.x);
  }`;

/**
 * WGSL: a function `name(value : type) -> type` that combines `value` over the `size` threads of a
 * 1-D workgroup (`size` a power of two) by a tree reduction with `combine` (an expression in `a`
 * and `b`), and returns the result to every thread. Each function gets its own workgroup array.
 * Call it from uniform control flow only (it has barriers).
 */
export function workgroupReductionWgsl(name: string, type: string, combine: string, size: number): string {
  if (size < 1 || (size & (size - 1)) !== 0) throw new Error(`workgroup size must be a power of two, got ${size}`);
  const partials = `${name}Partials`;
  const combined = combine.replace(/\ba\b/g, `${partials}[localId.x]`).replace(/\bb\b/g, `${partials}[localId.x + stride]`);
  return `
  var<workgroup> ${partials} : array<${type}, ${size}>;
  fn ${name}(value : ${type}) -> ${type} {
    ${partials}[localId.x] = value;
    workgroupBarrier();
    for (var stride = ${size / 2}u; stride > 0u; stride = stride >> 1u) {
      if (localId.x < stride) {
        ${partials}[localId.x] = ${combined};
      }
      workgroupBarrier();
    }
    let total = ${partials}[0];
    // Nobody may overwrite the partials for a next reduction before every thread has read the total.
    workgroupBarrier();
    return total;
  }`;
}

/**
 * WGSL: `workgroupSum2(v)` returns the sum of `v` over the `size` threads of a 1-D workgroup, in
 * every thread; two sums at once so a norm's backward reduces both of its row statistics in one pass.
 */
export function workgroupSumWgsl(size: number): string {
  return workgroupReductionWgsl('workgroupSum2', 'vec2<f32>', 'a + b', size);
}
