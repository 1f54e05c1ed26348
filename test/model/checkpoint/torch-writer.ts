/**
 * Writes `torch.save`-style files for tests, byte by byte as torch does (Python with torch is not
 * available here): pickle protocol 2 state dicts with `_rebuild_tensor_v2` and persistent storage
 * ids, stored ZIP archives (torch >= 1.6) and the legacy format. Independent of the reader under
 * test (its own opcodes, node:zlib's CRC-32), so tests can build shared storages, offsets,
 * strides, shards and deliberately broken or hostile files.
 */
import { crc32, deflateRawSync } from 'node:zlib';

export const OP = {
  PROTO: 0x80,
  STOP: 0x2e,
  MARK: 0x28,
  EMPTY_DICT: 0x7d,
  SETITEMS: 0x75,
  TUPLE: 0x74,
  EMPTY_TUPLE: 0x29,
  REDUCE: 0x52,
  BINPERSID: 0x51,
  NEWFALSE: 0x89,
  NONE: 0x4e,
  BUILD: 0x62,
  EMPTY_LIST: 0x5d,
  APPENDS: 0x65,
  TUPLE2: 0x86,
  INST: 0x69,
  OBJ: 0x6f,
  NEWOBJ: 0x81,
  EXT1: 0x82,
  STACK_GLOBAL: 0x93,
} as const;

/** Builds pickle bytes opcode by opcode. */
export class PickleBuilder {
  private readonly parts: number[] = [];
  op(...codes: number[]): this {
    this.parts.push(...codes);
    return this;
  }
  raw(bytes: Uint8Array | number[]): this {
    this.parts.push(...bytes);
    return this;
  }
  /** BININT (signed 32-bit). */
  int(v: number): this {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setInt32(0, v, true);
    return this.op(0x4a).raw(b);
  }
  /** BINUNICODE. */
  str(s: string): this {
    const utf8 = new TextEncoder().encode(s);
    const len = new Uint8Array(4);
    new DataView(len.buffer).setUint32(0, utf8.byteLength, true);
    return this.op(0x58).raw(len).raw(utf8);
  }
  /** GLOBAL "module\nname\n". */
  global(module: string, name: string): this {
    return this.op(0x63).raw(new TextEncoder().encode(`${module}\n${name}\n`));
  }
  intTuple(values: readonly number[]): this {
    this.op(OP.MARK);
    for (const v of values) this.int(v);
    return this.op(OP.TUPLE);
  }
  bytes(): Uint8Array {
    return Uint8Array.from(this.parts);
  }
}

export interface TensorSpec {
  readonly storage: string;
  readonly offset?: number;
  readonly shape: readonly number[];
  /** Default: contiguous (row-major). */
  readonly stride?: readonly number[];
}

export interface StorageSpec {
  /** e.g. "FloatStorage", "HalfStorage", "BFloat16Storage". */
  readonly type: string;
  /** Little-endian element bytes. */
  readonly bytes: Uint8Array;
  /** Declared element count; default bytes / element size. */
  readonly numel?: number;
}

const ELEMENT_SIZE: Record<string, number> = {
  FloatStorage: 4,
  DoubleStorage: 8,
  HalfStorage: 2,
  BFloat16Storage: 2,
  LongStorage: 8,
  IntStorage: 4,
  ShortStorage: 2,
  CharStorage: 1,
  ByteStorage: 1,
  BoolStorage: 1,
};

export function storageNumel(s: StorageSpec): number {
  return s.numel ?? s.bytes.byteLength / ELEMENT_SIZE[s.type];
}

function contiguousStride(shape: readonly number[]): number[] {
  const stride = new Array<number>(shape.length);
  for (let i = shape.length - 1, acc = 1; i >= 0; i--) {
    stride[i] = acc;
    acc *= shape[i];
  }
  return stride;
}

/** The state dict pickle: {name: _rebuild_tensor_v2(persistent storage, offset, size, stride, False, OrderedDict())}. */
export function stateDictPickle(tensors: ReadonlyMap<string, TensorSpec>, storages: ReadonlyMap<string, StorageSpec>, legacy: boolean): Uint8Array {
  const p = new PickleBuilder().op(OP.PROTO, 2, OP.EMPTY_DICT, OP.MARK);
  for (const [name, t] of tensors) {
    const s = storages.get(t.storage)!;
    p.str(name).global('torch._utils', '_rebuild_tensor_v2').op(OP.MARK);
    p.op(OP.MARK).str('storage').global('torch', s.type).str(t.storage).str('cpu').int(storageNumel(s));
    if (legacy) p.op(OP.NONE);
    p.op(OP.TUPLE, OP.BINPERSID);
    p.int(t.offset ?? 0)
      .intTuple(t.shape)
      .intTuple(t.stride ?? contiguousStride(t.shape));
    p.op(OP.NEWFALSE).global('collections', 'OrderedDict').op(OP.EMPTY_TUPLE, OP.REDUCE, OP.TUPLE, OP.REDUCE);
  }
  return p.op(OP.SETITEMS, OP.STOP).bytes();
}

export interface ZipEntryToWrite {
  readonly name: string;
  readonly bytes: Uint8Array;
  /** Write it deflated (method 8), as torch never does. */
  readonly deflate?: boolean;
}

/** A ZIP archive of stored (or deflated) entries with a central directory, as Python's zipfile writes. */
export function writeZip(entries: readonly ZipEntryToWrite[]): Uint8Array {
  const chunks: Uint8Array[] = [];
  const central: Uint8Array[] = [];
  let offset = 0;
  for (const e of entries) {
    const name = new TextEncoder().encode(e.name);
    const data = e.deflate ? new Uint8Array(deflateRawSync(e.bytes)) : e.bytes;
    const crc = crc32(e.bytes);
    const local = new Uint8Array(30 + name.byteLength);
    const lv = new DataView(local.buffer);
    lv.setUint32(0, 0x04034b50, true);
    lv.setUint16(4, 20, true);
    lv.setUint16(8, e.deflate ? 8 : 0, true);
    lv.setUint32(14, crc, true);
    lv.setUint32(18, data.byteLength, true);
    lv.setUint32(22, e.bytes.byteLength, true);
    lv.setUint16(26, name.byteLength, true);
    local.set(name, 30);
    const cd = new Uint8Array(46 + name.byteLength);
    const cv = new DataView(cd.buffer);
    cv.setUint32(0, 0x02014b50, true);
    cv.setUint16(4, 20, true);
    cv.setUint16(6, 20, true);
    cv.setUint16(10, e.deflate ? 8 : 0, true);
    cv.setUint32(16, crc, true);
    cv.setUint32(20, data.byteLength, true);
    cv.setUint32(24, e.bytes.byteLength, true);
    cv.setUint16(28, name.byteLength, true);
    cv.setUint32(42, offset, true);
    cd.set(name, 46);
    chunks.push(local, data);
    central.push(cd);
    offset += local.byteLength + data.byteLength;
  }
  const cdSize = central.reduce((a, c) => a + c.byteLength, 0);
  const eocd = new Uint8Array(22);
  const ev = new DataView(eocd.buffer);
  ev.setUint32(0, 0x06054b50, true);
  ev.setUint16(8, entries.length, true);
  ev.setUint16(10, entries.length, true);
  ev.setUint32(12, cdSize, true);
  ev.setUint32(16, offset, true);
  return concat([...chunks, ...central, eocd]);
}

export function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((a, p) => a + p.byteLength, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}

/** torch >= 1.6 zip format around a given data.pkl (for hand-made hostile pickles too). */
export function torchZipWithPickle(pickle: Uint8Array, storages: ReadonlyMap<string, StorageSpec> = new Map(), archive = 'archive'): Uint8Array {
  return writeZip([
    { name: `${archive}/data.pkl`, bytes: pickle },
    { name: `${archive}/byteorder`, bytes: new TextEncoder().encode('little') },
    ...[...storages].map(([key, s]) => ({ name: `${archive}/data/${key}`, bytes: s.bytes })),
    { name: `${archive}/version`, bytes: new TextEncoder().encode('3\n') },
  ]);
}

export function torchZip(tensors: ReadonlyMap<string, TensorSpec>, storages: ReadonlyMap<string, StorageSpec>): Uint8Array {
  return torchZipWithPickle(stateDictPickle(tensors, storages, false), storages);
}

/** torch.serialization.MAGIC_NUMBER as a LONG1 pickle, or another number to test the check. */
export function magicPickle(magic = 0x1950a86a20f9469cfc6cn): Uint8Array {
  const b: number[] = [];
  for (let v = magic; v > 0n; v >>= 8n) b.push(Number(v & 0xffn));
  if (b.length && b[b.length - 1] & 0x80) b.push(0);
  return new PickleBuilder().op(OP.PROTO, 2, 0x8a, b.length).raw(b).op(OP.STOP).bytes();
}

export function legacyHeader(magic?: bigint, littleEndian = true): Uint8Array {
  return concat(legacyHeaderParts(magic, littleEndian));
}

/** The three pickles before the state dict: magic number, protocol version (1001), sys info. */
export function legacyHeaderParts(magic?: bigint, littleEndian = true): [Uint8Array, Uint8Array, Uint8Array] {
  const protocol = new PickleBuilder().op(OP.PROTO, 2).int(1001).op(OP.STOP).bytes();
  const sysInfo = new PickleBuilder()
    .op(OP.PROTO, 2, OP.EMPTY_DICT, OP.MARK)
    .str('protocol_version')
    .int(1001)
    .str('little_endian')
    .op(littleEndian ? 0x88 : 0x89)
    .op(OP.SETITEMS, OP.STOP)
    .bytes();
  return [magicPickle(magic), protocol, sysInfo];
}

/** The pre-1.6 format: header pickles, the state dict, the key list, then each storage as int64 count + bytes. */
export function torchLegacy(
  tensors: ReadonlyMap<string, TensorSpec>,
  storages: ReadonlyMap<string, StorageSpec>,
  options: { magic?: bigint; littleEndian?: boolean } = {},
): Uint8Array {
  const keys = [...storages.keys()];
  const keyList = new PickleBuilder().op(OP.PROTO, 2, OP.EMPTY_LIST, OP.MARK);
  for (const k of keys) keyList.str(k);
  keyList.op(OP.APPENDS, OP.STOP);
  const parts = [legacyHeader(options.magic, options.littleEndian), stateDictPickle(tensors, storages, true), keyList.bytes()];
  for (const k of keys) {
    const s = storages.get(k)!;
    const count = new Uint8Array(8);
    new DataView(count.buffer).setBigInt64(0, BigInt(storageNumel(s)), true);
    parts.push(count, s.bytes);
  }
  return concat(parts);
}

export function f32Bytes(values: ArrayLike<number>): Uint8Array {
  return new Uint8Array(Float32Array.from(values).buffer);
}
