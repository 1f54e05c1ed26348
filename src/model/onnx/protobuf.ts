/**
 * Protocol Buffers wire format, write side only, as much as an ONNX model needs: varints (int32,
 * int64, enums), 32-bit floats, and length-delimited fields (strings, bytes, nested messages).
 * See https://protobuf.dev/programming-guides/encoding/.
 *
 * Why not a library: the ONNX model is a few hundred small messages plus one large `raw_data`
 * blob per weight; an object-model encoder (protobufjs) would first copy every weight into its
 * own buffers. Here a message keeps its large payloads as deferred writers, computes its size
 * first and writes everything once into a single output buffer, so a bert-base graph (≈ 440 MB
 * of weights) costs one copy of the weights, no more.
 */

const WIRE_VARINT = 0;
const WIRE_LENGTH_DELIMITED = 2;
const WIRE_FIXED32 = 5;
/** Caller-owned payloads above this size end a step of writeSteps (smaller ones are not worth a check). */
const SLICE_BYTES = 1 << 16;

/** A payload written straight into the output: `byteLength` bytes by `write(dst)` (dst has exactly that length). */
export interface DeferredBytes {
  readonly byteLength: number;
  write(dst: Uint8Array): void;
}

type Part =
  | { readonly kind: 'bytes'; readonly data: Uint8Array }
  | { readonly kind: 'deferred'; readonly data: DeferredBytes }
  | { readonly kind: 'message'; readonly message: ProtoMessage };

/** Bytes of a varint; `value` is a non-negative integer below 2^64 or a negative int64 (two's complement, 10 bytes). */
function varintBytes(value: number | bigint): number[] {
  let v = BigInt(value);
  if (v < 0n) v = BigInt.asUintN(64, v);
  if (v >= 1n << 64n) throw new RangeError(`varint out of range: ${value}`);
  const out: number[] = [];
  do {
    let byte = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) byte |= 0x80;
    out.push(byte);
  } while (v > 0n);
  return out;
}

function varintLength(value: number): number {
  let n = 1;
  while (value >= 0x80) {
    value = Math.floor(value / 128);
    n++;
  }
  return n;
}

function writeVarint(dst: Uint8Array, offset: number, value: number): number {
  while (value >= 0x80) {
    dst[offset++] = (value % 128) | 0x80;
    value = Math.floor(value / 128);
  }
  dst[offset++] = value;
  return offset;
}

const utf8 = new TextEncoder();

/**
 * One message being built. Fields are written in call order (protobuf allows any order; ONNX
 * readers take repeated fields in the order they appear).
 */
export class ProtoMessage {
  private readonly parts: Part[] = [];
  /** Small fields accumulate here until the next nested message or large payload. */
  private pending: number[] = [];
  private size: number | undefined;

  private flush(): void {
    if (this.pending.length) this.parts.push({ kind: 'bytes', data: Uint8Array.from(this.pending) });
    this.pending = [];
  }

  private tag(field: number, wireType: number): void {
    this.size = undefined;
    this.pending.push(...varintBytes((field << 3) | wireType));
  }

  /** An int32/int64/enum/bool field (negative int64 as ten bytes, as protobuf writes them). */
  varint(field: number, value: number | bigint): this {
    if (typeof value === 'number' && !Number.isSafeInteger(value)) throw new RangeError(`field ${field}: ${value} is not an integer`);
    this.tag(field, WIRE_VARINT);
    this.pending.push(...varintBytes(value));
    return this;
  }

  /** A `float` field (fixed32, little-endian). */
  float(field: number, value: number): this {
    this.tag(field, WIRE_FIXED32);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, value, true);
    this.pending.push(...b);
    return this;
  }

  string(field: number, value: string): this {
    return this.bytes(field, utf8.encode(value));
  }

  /** A `bytes` field; small ones are copied now, large ones kept by reference until `encode`. */
  bytes(field: number, data: Uint8Array): this {
    this.tag(field, WIRE_LENGTH_DELIMITED);
    this.pending.push(...varintBytes(data.byteLength));
    if (data.byteLength <= 64) this.pending.push(...data);
    else {
      this.flush();
      this.parts.push({ kind: 'bytes', data });
    }
    return this;
  }

  /** A `bytes` field whose content is written only when the message is encoded. */
  deferredBytes(field: number, data: DeferredBytes): this {
    this.tag(field, WIRE_LENGTH_DELIMITED);
    this.pending.push(...varintBytes(data.byteLength));
    this.flush();
    this.parts.push({ kind: 'deferred', data });
    return this;
  }

  /** A nested message field (its length is taken when this message is encoded). */
  message(field: number, message: ProtoMessage): this {
    this.tag(field, WIRE_LENGTH_DELIMITED);
    this.flush();
    this.parts.push({ kind: 'message', message });
    return this;
  }

  /** Encoded size in bytes (nested messages' length prefixes included). */
  byteLength(): number {
    if (this.size !== undefined && this.pending.length === 0) return this.size;
    this.flush();
    let n = 0;
    for (const p of this.parts) {
      if (p.kind === 'message') {
        const inner = p.message.byteLength();
        n += varintLength(inner) + inner;
      } else n += p.data.byteLength;
    }
    this.size = n;
    return n;
  }

  /** Writes the encoded message at `offset`; returns the offset after it. */
  writeTo(dst: Uint8Array, offset: number): number {
    const steps = this.writeSteps(dst, offset);
    for (;;) {
      const step = steps.next();
      if (step.done) return step.value;
    }
  }

  /**
   * The same write as `writeTo`, paused after every large payload (each yields the bytes it
   * wrote), so a caller can hand the thread back between weights (encodeInSlices).
   */
  *writeSteps(dst: Uint8Array, offset: number): Generator<number, number, void> {
    this.flush();
    for (const p of this.parts) {
      if (p.kind === 'bytes') {
        dst.set(p.data, offset);
        offset += p.data.byteLength;
        if (p.data.byteLength > SLICE_BYTES) yield p.data.byteLength;
      } else if (p.kind === 'deferred') {
        p.data.write(dst.subarray(offset, offset + p.data.byteLength));
        offset += p.data.byteLength;
        yield p.data.byteLength;
      } else {
        offset = writeVarint(dst, offset, p.message.byteLength());
        offset = yield* p.message.writeSteps(dst, offset);
      }
    }
    return offset;
  }

  encode(): Uint8Array {
    const out = new Uint8Array(this.byteLength());
    const end = this.writeTo(out, 0);
    if (end !== out.byteLength) throw new Error(`protobuf writer: wrote ${end} bytes of ${out.byteLength}`);
    return out;
  }

  /**
   * `encode`, handing the thread back (`pause()`) whenever a slice of writing has taken
   * `sliceMs` (read again for every slice): a worker that embeds passages meanwhile keeps
   * embedding while a large model (a bert-base graph is ~440 MB) is written. The bytes are the
   * same as `encode`'s.
   */
  async encodeInSlices(pause: () => Promise<void>, sliceMs: number | (() => number)): Promise<Uint8Array> {
    const budget = typeof sliceMs === 'number' ? () => sliceMs : sliceMs;
    const out = new Uint8Array(this.byteLength());
    const steps = this.writeSteps(out, 0);
    let sliceStart = performance.now();
    for (;;) {
      const step = steps.next();
      if (step.done) {
        if (step.value !== out.byteLength) throw new Error(`protobuf writer: wrote ${step.value} bytes of ${out.byteLength}`);
        return out;
      }
      if (performance.now() - sliceStart >= budget()) {
        await pause();
        sliceStart = performance.now();
      }
    }
  }
}
