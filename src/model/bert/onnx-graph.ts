/**
 * The Contriever passage encoder (BERT encoder + mean pooling over real tokens) as an ONNX graph,
 * written from the weights a tab already holds, so ONNX Runtime Web can run it (issue 20: it
 * embeds faster than our tfjs graph at equal embeddings, docs/PERFORMANCE.md "Transformers.js side
 * by side"). The arithmetic is ./model.ts's, op for op, in the order it adds and multiplies:
 *
 *   inputs  input_ids, attention_mask: int64 [batch, sequence] (right-padded, 1 = real token)
 *   output  embeddings: float32 [batch, hidden] (Contriever's mean of the last hidden state over real tokens)
 *
 * Pooling inside the graph keeps the read-back at [batch, hidden] and the equality gate a
 * comparison of two embeddings. Token types are all 0 (Contriever embeds single segments, as
 * padTokenBatch does), so row 0 of the token-type table is a constant and not an input.
 *
 * The node patterns are those of a PyTorch export of Hugging Face's BertModel (Linear = MatMul
 * with the weight stored [in, out] + Add; GELU as Div(√2) → Erf → Add(1) → Mul, Mul(0.5);
 * LayerNormalization after a residual Add), which ONNX Runtime's graph optimizer recognises and
 * fuses (SkipLayerNormalization, BiasGelu, …) as it does for the exports transformers.js runs.
 */
import { OnnxDataType, OnnxGraphBuilder } from '../onnx/onnx-model';
import { bertParameterShapes, type BertConfig } from './config';

/** The float32 values of a canonical BERT parameter (HF name, PyTorch layout: Linear weights [out, in]). */
export type BertWeights = (name: string) => Float32Array;

export const ONNX_INPUT_IDS = 'input_ids';
export const ONNX_ATTENTION_MASK = 'attention_mask';
export const ONNX_EMBEDDINGS = 'embeddings';

/** Same as ./model.ts MASKED_SCORE: exp() of it underflows to 0 in float32. */
const MASKED_SCORE = -1e9;

/** A [rows, cols] row-major matrix transposed into `dst` ([cols, rows]). */
function transposeInto(src: Float32Array, rows: number, cols: number, dst: Float32Array): void {
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    for (let c = 0; c < cols; c++) dst[c * rows + r] = src[base + c];
  }
}

/**
 * The ONNX model bytes (opset 17) of a Contriever encoder with `config` and `weights`. Every
 * parameter's size is checked against the config here; its values are read when encoding, once.
 */
export function contrieverOnnxModel(config: BertConfig, weights: BertWeights, docString?: string): Uint8Array {
  return contrieverGraph(config, weights).encodeModel(producer(docString));
}

/**
 * contrieverOnnxModel's bytes, written in slices of ~`sliceMs` with `pause()` between them: a
 * worker embedding passages with tfjs meanwhile (src/corag/passage-encoder.ts builds the ONNX
 * engine in the background) keeps embedding while a bert-base graph (~440 MB) is written.
 */
export function contrieverOnnxModelInSlices(
  config: BertConfig,
  weights: BertWeights,
  pause: () => Promise<void>,
  sliceMs: number | (() => number),
): Promise<Uint8Array> {
  return contrieverGraph(config, weights).encodeModelInSlices(producer(), pause, sliceMs);
}

const producer = (docString?: string) => ({ name: 'corag-web', version: '1', ...(docString ? { docString } : {}) });

function contrieverGraph(config: BertConfig, weights: BertWeights): OnnxGraphBuilder {
  const shapes = bertParameterShapes(config);
  const param = (name: string): Float32Array => {
    const shape = shapes.get(name);
    if (!shape) throw new Error(`BERT ONNX: "${name}" is not a BERT parameter`);
    const data = weights(name);
    const size = shape.reduce((a, b) => a * b, 1);
    if (data.length !== size) throw new Error(`BERT ONNX: "${name}" has ${data.length} values but the config implies [${shape}]`);
    return data;
  };
  const g = new OnnxGraphBuilder('contriever_passage_encoder');
  const H = config.hidden_size;
  const heads = config.num_attention_heads;
  const dHead = H / heads;
  const eps = { float: config.layer_norm_eps };

  const ids = g.input(ONNX_INPUT_IDS, OnnxDataType.INT64, ['batch', 'sequence']);
  const mask = g.input(ONNX_ATTENTION_MASK, OnnxDataType.INT64, ['batch', 'sequence']);

  // Weights as initializers under their Hugging Face names.
  const weight = (name: string) => g.float32(name, shapes.get(name)!, param(name));
  /** A Linear layer's weight as [in, out], transposed while the model is written. */
  const linearWeight = (name: string) => {
    const [out, inDim] = shapes.get(name)!;
    const data = param(name);
    return g.float32(name, [inDim, out], (dst) => transposeInto(data, out, inDim, dst));
  };
  const linear = (x: string, prefix: string) => g.op('Add', [g.op('MatMul', [x, linearWeight(`${prefix}.weight`)]), weight(`${prefix}.bias`)]);
  const layerNorm = (x: string, prefix: string) =>
    g.op('LayerNormalization', [x, weight(`${prefix}.weight`), weight(`${prefix}.bias`)], { axis: -1, epsilon: eps });

  // Embeddings: word + absolute position (the first `sequence` rows) + token type 0, then LayerNorm.
  const words = g.op('Gather', [weight('embeddings.word_embeddings.weight'), ids]);
  const sequence = g.op('Slice', [g.op('Shape', [ids]), g.int64Constant('one', [1]), g.int64Constant('two', [2])]);
  const positions = g.op('Slice', [weight('embeddings.position_embeddings.weight'), g.int64Constant('zero', [0]), sequence, g.int64Constant('axis0', [0])]);
  const typeTable = param('embeddings.token_type_embeddings.weight');
  const type0 = g.float32('embeddings.token_type_embeddings.row0', [H], typeTable.subarray(0, H));
  let hidden = layerNorm(g.op('Add', [g.op('Add', [words, positions]), type0]), 'embeddings.LayerNorm');

  const oneF = g.floatConstant('one_f', [1]);
  // Additive attention mask [batch, 1, 1, sequence]: 0 for real tokens, MASKED_SCORE for padding.
  const maskF = g.op('Cast', [mask], { to: OnnxDataType.FLOAT });
  const maskBias = g.op('Unsqueeze', [
    g.op('Mul', [g.op('Sub', [oneF, maskF]), g.floatConstant('masked_score', [MASKED_SCORE])]),
    g.int64Constant('axes12', [1, 2]),
  ]);
  const headShape = g.int64Constant('head_shape', [0, 0, heads, dHead]);
  const mergedShape = g.int64Constant('merged_shape', [0, 0, H]);
  const scale = g.floatConstant('sqrt_d_head', [Math.sqrt(dHead)]);
  const sqrt2 = g.floatConstant('sqrt2', [Math.SQRT2]);
  const half = g.floatConstant('half', [0.5]);

  const gelu = (x: string): string => {
    if (config.hidden_act === 'gelu') {
      // Exact GELU: x · 0.5 · (1 + erf(x / √2)).
      const erf = g.op('Erf', [g.op('Div', [x, sqrt2])]);
      return g.op('Mul', [g.op('Mul', [x, g.op('Add', [erf, oneF])]), half]);
    }
    // gelu_new: 0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³))), ./model.ts geluTanh.
    const cube = g.op('Mul', [g.op('Mul', [x, x]), x]);
    const inner = g.op('Mul', [
      g.floatConstant('sqrt_2_over_pi', [Math.sqrt(2 / Math.PI)]),
      g.op('Add', [x, g.op('Mul', [g.floatConstant('gelu_c', [0.044715]), cube])]),
    ]);
    return g.op('Mul', [g.op('Mul', [x, half]), g.op('Add', [oneF, g.op('Tanh', [inner])])]);
  };

  for (let i = 0; i < config.num_hidden_layers; i++) {
    const p = `encoder.layer.${i}.`;
    const split = (x: string, perm: number[]) => g.op('Transpose', [g.op('Reshape', [x, headShape])], { perm });
    const q = split(linear(hidden, `${p}attention.self.query`), [0, 2, 1, 3]);
    const kT = split(linear(hidden, `${p}attention.self.key`), [0, 2, 3, 1]);
    const v = split(linear(hidden, `${p}attention.self.value`), [0, 2, 1, 3]);
    const scores = g.op('Add', [g.op('Div', [g.op('MatMul', [q, kT]), scale]), maskBias]);
    const context = g.op('MatMul', [g.op('Softmax', [scores], { axis: -1 }), v]);
    const merged = g.op('Reshape', [g.op('Transpose', [context], { perm: [0, 2, 1, 3] }), mergedShape]);
    const attended = linear(merged, `${p}attention.output.dense`);
    const afterAttention = layerNorm(g.op('Add', [attended, hidden]), `${p}attention.output.LayerNorm`);
    const out = linear(gelu(linear(afterAttention, `${p}intermediate.dense`)), `${p}output.dense`);
    hidden = layerNorm(g.op('Add', [out, afterAttention]), `${p}output.LayerNorm`);
  }

  // Mean over real tokens (../contriever.ts meanPool): sum(hidden · mask) / max(count, 1).
  const m = g.op('Unsqueeze', [maskF, g.int64Constant('axis_last', [-1])]);
  const axis1 = g.int64Constant('axis1', [1]);
  const summed = g.op('ReduceSum', [g.op('Mul', [hidden, m]), axis1], { keepdims: 0 });
  const counts = g.op('Max', [g.op('ReduceSum', [m, axis1], { keepdims: 0 }), oneF]);
  g.node('Div', [summed, counts], {}, [ONNX_EMBEDDINGS]);
  g.output(ONNX_EMBEDDINGS, OnnxDataType.FLOAT, ['batch', H]);

  return g;
}
