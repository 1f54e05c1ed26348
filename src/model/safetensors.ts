/**
 * The safetensors format (https://huggingface.co/docs/safetensors): an 8-byte little-endian
 * header length N, N bytes of UTF-8 JSON mapping tensor names to {dtype, shape, data_offsets},
 * then the raw little-endian tensor bytes. Used for checkpoints, weight deltas on the wire and
 * on disk, so every field is checked: a file from the network is hostile until parsed.
 */

export type SafetensorsDtype = 'F32' | 'F16' | 'BF16' | 'I32' | 'I64' | 'U8' | 'I8' | 'BOOL' | 'F64';

const BYTES_PER_ELEMENT: Record<SafetensorsDtype, number> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  U8: 1,
  I8: 1,
  BOOL: 1,
};

/** Largest header we accept (the reference implementation uses 100 MB). */
const MAX_HEADER_BYTES = 100_000_000;

export class SafetensorsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SafetensorsError';
  }
}

export interface TensorInfo {
  readonly name: string;
  readonly dtype: SafetensorsDtype;
  readonly shape: readonly number[];
  /** Byte range inside the data section (after the header). */
  readonly begin: number;
  readonly end: number;
}

export interface ParsedSafetensors {
  readonly tensors: ReadonlyMap<string, TensorInfo>;
  readonly metadata: Readonly<Record<string, string>>;
  /** The whole file; tensor bytes start at dataOffset. */
  readonly bytes: Uint8Array;
  readonly dataOffset: number;
}

export function isSafetensorsDtype(d: unknown): d is SafetensorsDtype {
  return typeof d === 'string' && Object.prototype.hasOwnProperty.call(BYTES_PER_ELEMENT, d);
}

export function bytesPerElement(dtype: SafetensorsDtype): number {
  return BYTES_PER_ELEMENT[dtype];
}

function toUint8(buf: ArrayBuffer | ArrayBufferView): Uint8Array {
  if (buf instanceof Uint8Array) return buf;
  if (ArrayBuffer.isView(buf)) return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  return new Uint8Array(buf);
}

/** Parses and validates the header; tensor data is not copied. */
export function parseSafetensors(input: ArrayBuffer | ArrayBufferView, source = 'safetensors'): ParsedSafetensors {
  const bytes = toUint8(input);
  const n = safetensorsHeaderLength(bytes, bytes.byteLength, source);
  if (8 + n > bytes.byteLength) {
    throw new SafetensorsError(`${source}: truncated file: header needs ${n} bytes but only ${bytes.byteLength - 8} follow`);
  }
  const dataOffset = 8 + n;
  const { tensors, metadata } = parseSafetensorsHeader(bytes.subarray(8, 8 + n), bytes.byteLength - dataOffset, source);
  return { tensors, metadata, bytes, dataOffset };
}

/**
 * The header length N from a file's first 8 bytes (`first8`; `fileBytes` is the whole file's size,
 * for the message), refused beyond the 100 MB limit. Lets a file be parsed without reading it whole.
 */
export function safetensorsHeaderLength(first8: Uint8Array, fileBytes: number, source = 'safetensors'): number {
  if (first8.byteLength < 8 || fileBytes < 8) {
    throw new SafetensorsError(`${source}: truncated file (${fileBytes} bytes, need at least 8 for the header length)`);
  }
  const headerLen = new DataView(first8.buffer, first8.byteOffset, 8).getBigUint64(0, true);
  if (headerLen > BigInt(MAX_HEADER_BYTES)) {
    throw new SafetensorsError(`${source}: header length ${headerLen} exceeds the ${MAX_HEADER_BYTES}-byte limit (not a safetensors file?)`);
  }
  return Number(headerLen);
}

/**
 * Parses and validates a header's JSON bytes against a data section of `dataLength` bytes (every
 * tensor's dtype, shape, length, bounds, no overlaps): what parseSafetensors checks, for a file read
 * in pieces (server/update-file.ts streams uploads from disk).
 */
export function parseSafetensorsHeader(
  headerBytes: Uint8Array,
  dataLength: number,
  source = 'safetensors',
): { tensors: Map<string, TensorInfo>; metadata: Record<string, string> } {
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(headerBytes));
  } catch (e) {
    throw new SafetensorsError(`${source}: header is not valid UTF-8 JSON (${(e as Error).message})`);
  }
  if (header === null || typeof header !== 'object' || Array.isArray(header)) {
    throw new SafetensorsError(`${source}: header must be a JSON object`);
  }
  const tensors = new Map<string, TensorInfo>();
  let metadata: Record<string, string> = {};
  const ranges: Array<[number, number, string]> = [];
  for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
        throw new SafetensorsError(`${source}: __metadata__ must be an object of strings`);
      }
      for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
        if (typeof v !== 'string') throw new SafetensorsError(`${source}: __metadata__.${k} must be a string`);
      }
      metadata = raw as Record<string, string>;
      continue;
    }
    if (raw === null || typeof raw !== 'object') throw new SafetensorsError(`${source}: entry "${name}" is not an object`);
    const { dtype, shape, data_offsets: offsets } = raw as Record<string, unknown>;
    if (!isSafetensorsDtype(dtype)) throw new SafetensorsError(`${source}: tensor "${name}" has unsupported dtype ${JSON.stringify(dtype)}`);
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new SafetensorsError(`${source}: tensor "${name}" has an invalid shape ${JSON.stringify(shape)}`);
    }
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0)) {
      throw new SafetensorsError(`${source}: tensor "${name}" has invalid data_offsets ${JSON.stringify(offsets)}`);
    }
    const [begin, end] = offsets as [number, number];
    const numel = (shape as number[]).reduce((a, b) => a * b, 1);
    const expected = numel * BYTES_PER_ELEMENT[dtype];
    if (end < begin || end - begin !== expected) {
      throw new SafetensorsError(`${source}: tensor "${name}" ${dtype}[${shape.join(',')}] needs ${expected} bytes but data_offsets span ${end - begin}`);
    }
    if (end > dataLength) {
      throw new SafetensorsError(`${source}: truncated file: tensor "${name}" ends at byte ${end} of a ${dataLength}-byte data section`);
    }
    tensors.set(name, { name, dtype, shape: shape as number[], begin, end });
    ranges.push([begin, end, name]);
  }
  ranges.sort((a, b) => a[0] - b[0]);
  ranges.reduce<(typeof ranges)[number] | undefined>((previous, range) => {
    if (previous && range[0] < previous[1]) throw new SafetensorsError(`${source}: tensors "${previous[2]}" and "${range[2]}" overlap`);
    return range;
  }, undefined);
  return { tensors, metadata };
}

/**
 * Decodes `bytes` (whole little-endian F32 or F16 elements) into `out[0..n)` as float32, exactly as
 * readTensor would (F16 widened); returns n. For reading a tensor in chunks.
 */
export function decodeFloatChunk(dtype: 'F32' | 'F16', bytes: Uint8Array, out: Float32Array): number {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (dtype === 'F32') {
    const n = bytes.byteLength >> 2;
    for (let i = 0; i < n; i++) out[i] = dv.getFloat32(4 * i, true);
    return n;
  }
  const n = bytes.byteLength >> 1;
  for (let i = 0; i < n; i++) out[i] = halfToFloat(dv.getUint16(2 * i, true));
  return n;
}

/** Numeric data of one tensor. F16/BF16 are widened to Float32Array; I64 narrows to Int32Array (checked). */
export type TensorData = Float32Array | Int32Array | Uint8Array | Int8Array | Float64Array;

function halfToFloat(h: number): number {
  const s = (h & 0x8000) >> 15;
  const e = (h & 0x7c00) >> 10;
  const f = h & 0x03ff;
  if (e === 0) return (s ? -1 : 1) * 2 ** -14 * (f / 1024);
  if (e === 0x1f) return f ? NaN : s ? -Infinity : Infinity;
  return (s ? -1 : 1) * 2 ** (e - 15) * (1 + f / 1024);
}

/** Reads a float32's bits (a DataView: the same bytes written and read, whatever the platform's byte order). */
const bitsScratch = new DataView(new ArrayBuffer(4));

/** float32 -> IEEE half, round to nearest even; overflow becomes ±Inf. */
export function floatToHalf(value: number): number {
  bitsScratch.setFloat32(0, value);
  const x = bitsScratch.getUint32(0);
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && half & 1)) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && half & 1)) half++;
  return sign | half;
}

function isAligned(offset: number, bytesPer: number): boolean {
  return offset % bytesPer === 0;
}

/**
 * Reads one tensor. F32/I32/U8/I8/F64 are zero-copy views when the offset is aligned,
 * otherwise copied; F16/BF16 are widened to float32; I64 narrowed to int32 with a range check.
 */
export function readTensor(file: ParsedSafetensors, name: string): { dtype: SafetensorsDtype; shape: number[]; data: TensorData } {
  const info = file.tensors.get(name);
  if (!info) throw new SafetensorsError(`tensor "${name}" not found`);
  const start = file.bytes.byteOffset + file.dataOffset + info.begin;
  const byteLen = info.end - info.begin;
  const buf = file.bytes.buffer;
  const raw = file.bytes.subarray(file.dataOffset + info.begin, file.dataOffset + info.end);
  const shape = [...info.shape];
  const numel = byteLen / BYTES_PER_ELEMENT[info.dtype];
  // A misaligned tensor is copied into a fresh buffer of exactly its own bytes. (Not raw.slice():
  // on a Node Buffer, slice is a view, and `.buffer` would then be the whole body.)
  const view = <T extends { length: number }>(Ctor: { new (b: ArrayBufferLike, o: number, l: number): T; new (b: ArrayBufferLike): T }, bpe: number): T => {
    if (isAligned(start, bpe)) return new Ctor(buf, start, numel);
    const copy = new Uint8Array(byteLen);
    copy.set(raw);
    const out = new Ctor(copy.buffer);
    if (out.length !== numel) throw new SafetensorsError(`tensor "${name}": read ${out.length} elements, expected ${numel}`);
    return out;
  };
  switch (info.dtype) {
    case 'F32':
      return { dtype: info.dtype, shape, data: view(Float32Array, 4) };
    case 'F64':
      return { dtype: info.dtype, shape, data: view(Float64Array, 8) };
    case 'I32':
      return { dtype: info.dtype, shape, data: view(Int32Array, 4) };
    case 'U8':
    case 'BOOL':
      return { dtype: info.dtype, shape, data: raw };
    case 'I8':
      return { dtype: info.dtype, shape, data: new Int8Array(buf, start, numel) };
    case 'F16': {
      const dv = new DataView(buf, start, byteLen);
      const out = new Float32Array(numel);
      for (let i = 0; i < numel; i++) out[i] = halfToFloat(dv.getUint16(2 * i, true));
      return { dtype: info.dtype, shape, data: out };
    }
    case 'BF16': {
      const dv = new DataView(buf, start, byteLen);
      const out = new Float32Array(numel);
      const u = new Uint32Array(out.buffer);
      for (let i = 0; i < numel; i++) u[i] = dv.getUint16(2 * i, true) << 16;
      return { dtype: info.dtype, shape, data: out };
    }
    case 'I64': {
      const dv = new DataView(buf, start, byteLen);
      const out = new Int32Array(numel);
      for (let i = 0; i < numel; i++) {
        const v = dv.getBigInt64(8 * i, true);
        if (v > 2147483647n || v < -2147483648n) {
          throw new SafetensorsError(`tensor "${name}": int64 value ${v} at index ${i} does not fit in int32`);
        }
        out[i] = Number(v);
      }
      return { dtype: info.dtype, shape, data: out };
    }
  }
}

export interface TensorToWrite {
  readonly shape: readonly number[];
  readonly data: Float32Array | Int32Array | Uint8Array | BigInt64Array | Uint16Array;
  /** Output dtype; F16/BF16 are converted from Float32Array input, I64 from Int32Array or BigInt64Array. Uint16Array input is taken as already-encoded F16/BF16 bits. */
  readonly dtype: SafetensorsDtype;
}

function encodeTensor(name: string, t: TensorToWrite): Uint8Array {
  const numel = t.shape.reduce((a, b) => a * b, 1);
  if (t.data.length !== numel) {
    throw new SafetensorsError(`tensor "${name}": shape [${t.shape.join(',')}] has ${numel} elements but data has ${t.data.length}`);
  }
  const bpe = BYTES_PER_ELEMENT[t.dtype];
  const out = new Uint8Array(numel * bpe);
  const dv = new DataView(out.buffer);
  const d = t.data;
  // Indexed loops (not forEach: several times slower on big tensors); i < numel = d.length, checked
  // above, so no `?? NaN` / `?? 0` below ever applies.
  switch (t.dtype) {
    case 'F32':
      if (!(d instanceof Float32Array)) throw new SafetensorsError(`tensor "${name}": F32 needs a Float32Array`);
      for (let i = 0; i < numel; i++) dv.setFloat32(4 * i, d[i] ?? NaN, true);
      break;
    case 'F16':
    case 'BF16':
      if (d instanceof Uint16Array) {
        for (let i = 0; i < numel; i++) dv.setUint16(2 * i, d[i] ?? 0, true);
      } else if (d instanceof Float32Array) {
        if (t.dtype === 'F16') {
          for (let i = 0; i < numel; i++) dv.setUint16(2 * i, floatToHalf(d[i] ?? NaN), true);
        } else {
          const u = new Uint32Array(d.buffer, d.byteOffset, d.length);
          for (let i = 0; i < numel; i++) {
            const x = u[i] ?? 0;
            // round to nearest even; keep NaN a NaN
            const r = (x & 0x7fffffff) > 0x7f800000 ? (x >>> 16) | 0x40 : (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
            dv.setUint16(2 * i, r & 0xffff, true);
          }
        }
      } else throw new SafetensorsError(`tensor "${name}": ${t.dtype} needs a Float32Array or Uint16Array`);
      break;
    case 'I32':
      if (!(d instanceof Int32Array)) throw new SafetensorsError(`tensor "${name}": I32 needs an Int32Array`);
      for (let i = 0; i < numel; i++) dv.setInt32(4 * i, d[i] ?? 0, true);
      break;
    case 'I64':
      if (d instanceof BigInt64Array) for (let i = 0; i < numel; i++) dv.setBigInt64(8 * i, d[i] ?? 0n, true);
      else if (d instanceof Int32Array) for (let i = 0; i < numel; i++) dv.setBigInt64(8 * i, BigInt(d[i] ?? 0), true);
      else throw new SafetensorsError(`tensor "${name}": I64 needs an Int32Array or BigInt64Array`);
      break;
    case 'U8':
    case 'BOOL':
    case 'I8':
      if (!(d instanceof Uint8Array)) throw new SafetensorsError(`tensor "${name}": ${t.dtype} needs a Uint8Array`);
      out.set(d);
      break;
    case 'F64':
      throw new SafetensorsError(`tensor "${name}": writing F64 is not supported`);
  }
  return out;
}

/** Serialises named tensors (in the given order) into one safetensors buffer. */
export function writeSafetensors(tensors: ReadonlyMap<string, TensorToWrite> | Record<string, TensorToWrite>, metadata?: Record<string, string>): Uint8Array {
  const entries = tensors instanceof Map ? [...tensors.entries()] : Object.entries(tensors);
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length) header.__metadata__ = metadata;
  const bodies: Uint8Array[] = [];
  let offset = 0;
  for (const [name, t] of entries) {
    if (name === '__metadata__') throw new SafetensorsError('"__metadata__" is reserved and cannot name a tensor');
    const body = encodeTensor(name, t);
    header[name] = { dtype: t.dtype, shape: [...t.shape], data_offsets: [offset, offset + body.byteLength] };
    bodies.push(body);
    offset += body.byteLength;
  }
  let headerBytes = new TextEncoder().encode(JSON.stringify(header));
  // Pad the header with spaces so the data section starts 8-byte aligned (zero-copy views on read).
  const pad = (8 - (headerBytes.byteLength % 8)) % 8;
  if (pad) {
    const padded = new Uint8Array(headerBytes.byteLength + pad).fill(0x20);
    padded.set(headerBytes);
    headerBytes = padded;
  }
  const out = new Uint8Array(8 + headerBytes.byteLength + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerBytes.byteLength), true);
  out.set(headerBytes, 8);
  let p = 8 + headerBytes.byteLength;
  for (const b of bodies) {
    out.set(b, p);
    p += b.byteLength;
  }
  return out;
}
