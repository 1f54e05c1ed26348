/**
 * Reverse-mode gradients that free memory as the backward pass goes, and gradient
 * checkpointing on top of them.
 *
 * tfjs-core's `tf.grads` / `tf.variableGrads` (engine.gradients + tape.backpropagateGradients,
 * tfjs-core 4.22) keep two things alive until the whole backward pass ends:
 *   - every tensor any op saved for its gradient (inputs/outputs by the kernel's gradient config,
 *     or what a customGrad passed to `save`), also for ops whose gradient is not needed;
 *   - the gradient of EVERY intermediate tensor (the accumulated map is only dropped with the
 *     'backward' tidy), although each is dead once the op that produced the tensor has been
 *     back-propagated.
 * So the backward pass's peak is the forward's saved activations plus gradients of the size of
 * all activations. PyTorch frees both as it goes. `leanGradients` records the same tape through
 * the engine and walks it the same way (same gradient functions, same accumulation order, so the
 * same numbers), but disposes each node's saved tensors as soon as its gradient has been taken,
 * the gradients of its outputs once they have been consumed, and the saved tensors of nodes off
 * the x → y path before the walk starts.
 *
 * It uses the engine's tape API (`startTape`/`endTape`, `state.activeTape`), which tfjs-core
 * marks private; the shapes are checked at run time, and test/model/gradients.test.ts compares
 * every result with tf.grads.
 */
import * as tf from '@tensorflow/tfjs-core';

/** A node of tfjs-core's tape (tape.ts's TapeNode). */
interface TapeNode {
  readonly id: number;
  readonly kernelName: string;
  readonly inputs: Record<string, tf.Tensor>;
  readonly outputs: tf.Tensor[];
  readonly saved?: tf.Tensor[];
  readonly gradient?: (dys: Array<tf.Tensor | null>) => Record<string, () => tf.Tensor>;
}

interface EngineTapeApi {
  readonly state: { activeTape: TapeNode[] | null; gradientDepth: number; kernelDepth: number };
  startTape(): void;
  endTape(): void;
}

function tapeApi(): EngineTapeApi {
  const engine = tf.engine() as unknown as EngineTapeApi;
  if (typeof engine.startTape !== 'function' || typeof engine.endTape !== 'function' || typeof engine.state?.gradientDepth !== 'number') {
    throw new Error('leanGradients: this tfjs-core engine has no tape API (startTape/endTape/state.gradientDepth)');
  }
  return engine;
}

/** The nodes on a path from some x to y, inputs pruned to those that depend on an x (tape.ts's getFilteredNodesXToY). */
function pathNodes(tape: readonly TapeNode[], xs: readonly tf.Tensor[], y: tf.Tensor): TapeNode[] {
  const fromX = new Set<number>(xs.map((x) => x.id));
  const nodesFromX = new Set<number>();
  for (const node of tape) {
    if (Object.values(node.inputs).some((input) => fromX.has(input.id))) {
      node.outputs.forEach((o) => fromX.add(o.id));
      nodesFromX.add(node.id);
    }
  }
  const toY = new Set<number>([y.id]);
  const nodesToY = new Set<number>();
  for (const node of [...tape].reverse()) {
    if (node.outputs.some((o) => toY.has(o.id))) {
      for (const input of Object.values(node.inputs)) toY.add(input.id);
      nodesToY.add(node.id);
    }
  }
  const out: TapeNode[] = [];
  for (const node of tape) {
    if (!nodesFromX.has(node.id) || !nodesToY.has(node.id)) continue;
    const inputs: Record<string, tf.Tensor> = {};
    for (const [name, input] of Object.entries(node.inputs)) if (fromX.has(input.id)) inputs[name] = input;
    out.push({ ...node, inputs });
  }
  return out;
}

function disposeSaved(nodes: readonly TapeNode[], except?: ReadonlySet<tf.Tensor>): void {
  for (const node of nodes) for (const t of node.saved ?? []) if (!except?.has(t)) t.dispose();
}

export interface GradientResult {
  /** f's value (the caller owns it). */
  readonly value: tf.Tensor;
  /** d(sum(dy · f))/dx per x, null where f does not depend on x (the caller owns them). */
  readonly grads: Array<tf.Tensor | null>;
}

/**
 * Gradients of `f` with respect to `xs` (tensors or variables), as tf.grads / engine.gradients
 * compute them, freeing saved activations and intermediate gradients as soon as they are dead.
 * `dy` (default: ones) weights f's value, as engine.gradients' dy; it is not disposed.
 *
 * May run inside another gradient computation's backward pass (a checkpointed segment's
 * gradient does): the engine's tape is set aside and restored. Not inside the forward of a
 * recorded function (higher-order gradients are not supported).
 */
export function leanGradients(f: () => tf.Tensor, xs: readonly tf.Tensor[], dy?: tf.Tensor): GradientResult {
  if (xs.length === 0) throw new Error('leanGradients: no tensors to differentiate');
  const engine = tapeApi();
  if (engine.state.gradientDepth > 0)
    throw new Error('leanGradients: called while another gradient tape is recording (higher-order gradients are not supported)');
  const outerTape = engine.state.activeTape;
  let tape: TapeNode[] = [];
  let y: tf.Tensor;
  try {
    engine.startTape();
    try {
      y = tf.tidy('forward', f);
    } finally {
      engine.endTape();
      tape = engine.state.activeTape ?? [];
    }
  } catch (e) {
    disposeSaved(tape);
    throw e;
  } finally {
    engine.state.activeTape = outerTape;
  }
  if (!(y instanceof tf.Tensor)) {
    disposeSaved(tape);
    throw new Error('leanGradients: f must return a tensor');
  }
  if (dy && !tf.util.arraysEqual(dy.shape, y.shape)) {
    disposeSaved(tape);
    y.dispose();
    throw new Error(`leanGradients: dy has shape [${dy.shape}] but f's value is [${y.shape}]`);
  }
  const path = pathNodes(tape, xs, y);
  // Saved tensors of nodes off the path are never read.
  const onPath = new Set(path.map((n) => n.id));
  disposeSaved(tape.filter((n) => !onPath.has(n.id)));
  const xIds = new Set(xs.map((x) => x.id));
  try {
    const grads = tf.tidy('backward', () => {
      const accumulated = new Map<number, tf.Tensor>();
      accumulated.set(y.id, dy ?? tf.onesLike(y));
      for (const node of [...path].reverse()) {
        if (!node.gradient) throw new Error(`Cannot compute gradient: gradient function not found for ${node.kernelName}.`);
        const dys = node.outputs.map((o) => accumulated.get(o.id) ?? null);
        const inputGradients = node.gradient(dys);
        // Partial sums replaced by a new sum: disposed at the end of the node unless still held.
        const replaced: tf.Tensor[] = [];
        for (const [name, x] of Object.entries(node.inputs)) {
          const gradient = inputGradients[name];
          if (!gradient) throw new Error(`Cannot backprop through input ${name}. Available gradients found: ${Object.keys(inputGradients)}.`);
          const dx = tf.tidy(() => gradient());
          if (dx.dtype !== 'float32')
            throw new Error(`Error in gradient for op ${node.kernelName}. The gradient of input ${name} must have 'float32' dtype, but has '${dx.dtype}'`);
          if (!tf.util.arraysEqual(dx.shape, x.shape))
            throw new Error(
              `Error in gradient for op ${node.kernelName}. The gradient of input '${name}' has shape '${dx.shape}', which does not match the shape of the input '${x.shape}'`,
            );
          const current = accumulated.get(x.id);
          if (current === undefined) {
            accumulated.set(x.id, dx);
          } else {
            accumulated.set(x.id, tf.add(current, dx));
            replaced.push(current, dx);
          }
        }
        // Every consumer of this node's outputs came later on the tape and has been processed:
        // their gradients are complete and, once passed back, dead. A gradient function may
        // hand back its dy (or a saved tensor) as an input's gradient: those are still live.
        const live = new Set<tf.Tensor>(Object.values(node.inputs).map((x) => accumulated.get(x.id)!));
        for (const o of node.outputs) {
          const g = accumulated.get(o.id);
          if (g === undefined || xIds.has(o.id) || live.has(g)) continue;
          accumulated.delete(o.id);
          if (g !== dy) g.dispose();
        }
        for (const t of replaced) if (!live.has(t) && t !== dy) t.dispose();
        disposeSaved([node], live);
      }
      return xs.map((x) => accumulated.get(x.id) ?? null) as unknown as tf.TensorContainer;
    }) as unknown as Array<tf.Tensor | null>;
    return { value: y, grads };
  } finally {
    disposeSaved(tape);
  }
}

/**
 * tf.variableGrads with leanGradients: the gradients of the scalar `f` with respect to the
 * trainable ones of `variables`, keyed by variable name (a variable f does not reach is absent).
 * Frozen (non-trainable) variables are not differentiated, so their gradients are never computed.
 */
export function leanVariableGrads(f: () => tf.Scalar, variables: readonly tf.Variable[]): { value: tf.Scalar; grads: tf.NamedTensorMap } {
  const trainable = variables.filter((v) => v.trainable);
  if (trainable.length === 0) throw new Error(`leanVariableGrads: none of the ${variables.length} variables is trainable`);
  const { value, grads } = leanGradients(f, trainable);
  const fail = (message: string) => {
    value.dispose();
    tf.dispose(grads.filter((g): g is tf.Tensor => g !== null));
    return new Error(message);
  };
  if (value.rank !== 0) throw fail(`leanVariableGrads: f must return a scalar, got rank ${value.rank}`);
  if (grads.every((g) => g === null)) throw fail('leanVariableGrads: the loss does not depend on any of the variables');
  const named: tf.NamedTensorMap = {};
  trainable.forEach((v, i) => {
    const g = grads[i];
    if (g) named[v.name] = g;
  });
  return { value: value as tf.Scalar, grads: named };
}

/**
 * Gradient checkpointing over row chunks: returns `forward(weights, 0, rows)` (rows along axis 0)
 * without keeping any of its activations for the backward pass. Its gradient recomputes the
 * forward `chunkRows` rows at a time (`forward(ws, start, count)` must give rows start..start+count−1
 * of the full result, i.e. rows are independent, as the passages of a FiD encoder batch are),
 * back-propagates each chunk's slice of dy through the recomputation with leanGradients, and sums
 * the weights' gradients over the chunks. The backward pass then holds one chunk's activations
 * instead of all rows', for one more forward pass of compute.
 *
 * Only `weights` get gradients (they are the op's inputs, so the enclosing gradient computation
 * reaches them); everything else `forward` reads is treated as a constant.
 */
export function checkpointedRows(
  weights: readonly tf.Tensor[],
  rows: number,
  chunkRows: number,
  forward: (ws: readonly tf.Tensor[], start: number, count: number) => tf.Tensor,
): tf.Tensor {
  if (!Number.isInteger(chunkRows) || chunkRows <= 0) throw new Error(`checkpointedRows: chunkRows must be a positive integer, got ${chunkRows}`);
  if (weights.length === 0) return forward(weights, 0, rows);
  const op = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const ws = args.slice(0, weights.length) as tf.Tensor[];
    // customGrad runs this with the tape off: no activation is saved.
    const value = forward(ws, 0, rows);
    if (value.shape[0] !== rows) throw new Error(`checkpointedRows: forward gave ${value.shape[0]} rows, expected ${rows}`);
    return {
      value,
      gradFunc: (dy: tf.Tensor | tf.Tensor[]) => {
        const dyAll = dy as tf.Tensor;
        const totals: Array<tf.Tensor | null> = ws.map(() => null);
        for (let start = 0; start < rows; start += chunkRows) {
          const count = Math.min(chunkRows, rows - start);
          const dyChunk = count === rows ? dyAll : tf.slice(dyAll, start, count);
          const { value: chunkValue, grads } = leanGradients(() => forward(ws, start, count), ws, dyChunk);
          chunkValue.dispose();
          if (dyChunk !== dyAll) dyChunk.dispose();
          grads.forEach((g, i) => {
            if (!g) return;
            const total = totals[i];
            if (!total) {
              totals[i] = g;
            } else {
              totals[i] = tf.add(total, g);
              tf.dispose([total, g]);
            }
          });
        }
        return ws.map((w, i) => totals[i] ?? tf.zerosLike(w));
      },
    };
  });
  return op(...weights);
}
