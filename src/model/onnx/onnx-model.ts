/**
 * ONNX models written from TypeScript: a graph builder (nodes, float32/int64 initializers, typed
 * inputs and outputs) over the ONNX protobuf schema (https://github.com/onnx/onnx/blob/main/onnx/onnx.proto),
 * encoded with ./protobuf. Only what a BERT encoder needs; the field numbers below are the schema's.
 *
 * Weights are initializers with `raw_data` (float32 little-endian, the layout ONNX Runtime reads
 * without conversion), written from the caller's arrays when the model is encoded.
 */
import { ProtoMessage, type DeferredBytes } from './protobuf';

/** IR version 8 is the one that goes with opset 17 (onnx/docs/Versioning.md). */
export const ONNX_IR_VERSION = 8;
export const ONNX_OPSET = 17;

/** TensorProto.DataType values used here. */
export const OnnxDataType = { FLOAT: 1, INT32: 6, INT64: 7 } as const;
export type OnnxDataType = (typeof OnnxDataType)[keyof typeof OnnxDataType];

/** AttributeProto.AttributeType values used here. */
const ATTR = { FLOAT: 1, INT: 2, INTS: 7 } as const;

const F = {
  model: { irVersion: 1, producerName: 2, producerVersion: 3, docString: 6, graph: 7, opsetImport: 8 },
  opset: { domain: 1, version: 2 },
  graph: { node: 1, name: 2, initializer: 5, input: 11, output: 12 },
  node: { input: 1, output: 2, name: 3, opType: 4, attribute: 5 },
  attribute: { name: 1, f: 2, i: 3, ints: 8, type: 20 },
  tensor: { dims: 1, dataType: 2, name: 8, rawData: 9 },
  valueInfo: { name: 1, type: 2 },
  type: { tensorType: 1 },
  tensorType: { elemType: 1, shape: 2 },
  shape: { dim: 1 },
  dim: { value: 1, param: 2 },
} as const;

export interface OnnxProducer {
  readonly name: string;
  readonly version: string;
  readonly docString?: string;
}

export type OnnxAttribute = number | readonly number[] | { readonly float: number };

/** True when typed arrays store little-endian (every browser and Node platform in practice). */
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function viewBytes(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

function attribute(name: string, value: OnnxAttribute): ProtoMessage {
  const m = new ProtoMessage().string(F.attribute.name, name);
  if (typeof value === 'number') {
    if (!Number.isInteger(value)) throw new Error(`attribute ${name}: ${value} is not an integer (use { float } for floats)`);
    return m.varint(F.attribute.i, value).varint(F.attribute.type, ATTR.INT);
  }
  if ('float' in value) return m.float(F.attribute.f, value.float).varint(F.attribute.type, ATTR.FLOAT);
  for (const v of value) m.varint(F.attribute.ints, v);
  return m.varint(F.attribute.type, ATTR.INTS);
}

/** A tensor type with named (symbolic) or fixed dimensions, for graph inputs and outputs. */
function valueInfo(name: string, elemType: OnnxDataType, dims: readonly (number | string)[]): ProtoMessage {
  const shape = new ProtoMessage();
  for (const d of dims)
    shape.message(F.shape.dim, typeof d === 'number' ? new ProtoMessage().varint(F.dim.value, d) : new ProtoMessage().string(F.dim.param, d));
  const tensorType = new ProtoMessage().varint(F.tensorType.elemType, elemType).message(F.tensorType.shape, shape);
  return new ProtoMessage().string(F.valueInfo.name, name).message(F.valueInfo.type, new ProtoMessage().message(F.type.tensorType, tensorType));
}

/**
 * One graph under construction. Names are the caller's; `fresh` hands out unique names for
 * intermediate values. Nothing is validated against operator schemas here: the runtime does that
 * when it loads the model (and the equality gate checks what it computes).
 */
export class OnnxGraphBuilder {
  private readonly graph = new ProtoMessage();
  private readonly initializers = new Set<string>();
  private counter = 0;

  constructor(name: string) {
    this.graph.string(F.graph.name, name);
  }

  /** A new value name `<hint>_<n>`. */
  fresh(hint: string): string {
    return `${hint}_${this.counter++}`;
  }

  input(name: string, elemType: OnnxDataType, dims: readonly (number | string)[]): string {
    this.graph.message(F.graph.input, valueInfo(name, elemType, dims));
    return name;
  }

  output(name: string, elemType: OnnxDataType, dims: readonly (number | string)[]): string {
    this.graph.message(F.graph.output, valueInfo(name, elemType, dims));
    return name;
  }

  /** Appends a node (default domain) and returns its output names: `outputs` names, or fresh ones. */
  node(opType: string, inputs: readonly string[], attributes: Readonly<Record<string, OnnxAttribute>> = {}, outputs: readonly string[] | number = 1): string[] {
    const outs = typeof outputs === 'number' ? Array.from({ length: outputs }, () => this.fresh(opType.toLowerCase())) : [...outputs];
    const n = new ProtoMessage();
    for (const i of inputs) n.string(F.node.input, i);
    for (const o of outs) n.string(F.node.output, o);
    n.string(F.node.name, this.fresh(`${opType}`)).string(F.node.opType, opType);
    for (const [k, v] of Object.entries(attributes)) n.message(F.node.attribute, attribute(k, v));
    this.graph.message(F.graph.node, n);
    return outs;
  }

  /** `node` for a single output. */
  op(opType: string, inputs: readonly string[], attributes: Readonly<Record<string, OnnxAttribute>> = {}): string {
    return this.node(opType, inputs, attributes)[0];
  }

  private initializer(name: string, dims: readonly number[], dataType: OnnxDataType, raw: DeferredBytes | Uint8Array): string {
    if (this.initializers.has(name)) throw new Error(`ONNX graph: initializer "${name}" defined twice`);
    this.initializers.add(name);
    const t = new ProtoMessage();
    for (const d of dims) t.varint(F.tensor.dims, d);
    t.varint(F.tensor.dataType, dataType).string(F.tensor.name, name);
    if (raw instanceof Uint8Array) t.bytes(F.tensor.rawData, raw);
    else t.deferredBytes(F.tensor.rawData, raw);
    this.graph.message(F.graph.initializer, t);
    return name;
  }

  /**
   * A float32 initializer. `data` is read when the model is encoded (not copied now); `write`,
   * if given, fills the output bytes instead (e.g. transposing on the way) and must write
   * exactly size × 4 bytes.
   */
  float32(name: string, dims: readonly number[], data: Float32Array | ((dst: Float32Array) => void)): string {
    const count = dims.reduce((a, b) => a * b, 1);
    if (typeof data !== 'function' && data.length !== count) throw new Error(`ONNX initializer "${name}": ${data.length} values for shape [${dims}]`);
    if (!LITTLE_ENDIAN) throw new Error('ONNX writer: this platform stores floats big-endian; raw_data must be little-endian');
    return this.initializer(name, dims, OnnxDataType.FLOAT, {
      byteLength: count * 4,
      write(dst) {
        if (typeof data !== 'function') {
          dst.set(viewBytes(data));
          return;
        }
        // dst may be unaligned for a Float32Array view: fill an aligned one, then copy its bytes.
        const values = new Float32Array(count);
        data(values);
        dst.set(viewBytes(values));
      },
    });
  }

  /** A small float32 constant (a scalar when `dims` is []). */
  floatConstant(hint: string, values: readonly number[], dims: readonly number[] = []): string {
    return this.float32(this.fresh(hint), dims, Float32Array.from(values));
  }

  /** A small int64 constant (a 1-D list by default, e.g. shapes and axes). */
  int64Constant(hint: string, values: readonly number[], dims: readonly number[] = [values.length]): string {
    const data = BigInt64Array.from(values.map((v) => BigInt(v)));
    if (!LITTLE_ENDIAN) throw new Error('ONNX writer: this platform stores integers big-endian; raw_data must be little-endian');
    return this.initializer(this.fresh(hint), dims, OnnxDataType.INT64, new Uint8Array(viewBytes(data)));
  }

  /** The encoded ModelProto (opset 17, default domain). */
  encodeModel(producer: OnnxProducer): Uint8Array {
    return this.modelMessage(producer).encode();
  }

  /**
   * The same bytes as encodeModel, written in slices of about `sliceMs` with `pause()` between
   * them (the weights are most of the work), so the thread can do other work meanwhile.
   */
  encodeModelInSlices(producer: OnnxProducer, pause: () => Promise<void>, sliceMs: number | (() => number)): Promise<Uint8Array> {
    return this.modelMessage(producer).encodeInSlices(pause, sliceMs);
  }

  private modelMessage(producer: OnnxProducer): ProtoMessage {
    const model = new ProtoMessage()
      .varint(F.model.irVersion, ONNX_IR_VERSION)
      .string(F.model.producerName, producer.name)
      .string(F.model.producerVersion, producer.version);
    if (producer.docString) model.string(F.model.docString, producer.docString);
    return model
      .message(F.model.graph, this.graph)
      .message(F.model.opsetImport, new ProtoMessage().string(F.opset.domain, '').varint(F.opset.version, ONNX_OPSET));
  }
}
