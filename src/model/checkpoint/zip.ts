/**
 * A minimal ZIP reader for `torch.save` archives (the `pytorch_model.bin` format since torch 1.6).
 * torch writes every entry *stored* (uncompressed, 64-byte aligned so storages can be mapped), so
 * this reads stored entries only, straight out of the file's bytes without copying, and refuses
 * compressed or encrypted ones by name rather than pulling in an inflate library for a case torch
 * does not produce. The central directory is the source of truth (torch sets the data-descriptor
 * flag, leaving the local headers' sizes zero); ZIP64 records are read, since archives over 4 GB
 * use them. Every offset and size is checked against the bytes present, and CRC-32 is verified
 * when an entry is read, so a truncated or corrupted download fails with the entry named.
 */

export class ZipError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ZipError';
  }
}

export interface ZipEntry {
  readonly name: string;
  /** 0 = stored; anything else is refused when the entry is read. */
  readonly method: number;
  readonly flags: number;
  readonly crc32: number;
  readonly compressedSize: number;
  readonly size: number;
  readonly localHeaderOffset: number;
}

export interface ZipArchive {
  /** Entries by name, in central-directory order. */
  readonly entries: ReadonlyMap<string, ZipEntry>;
  /** An entry's bytes (a view into the archive), checked against its CRC-32. */
  read(name: string): Uint8Array;
}

const EOCD_SIG = 0x06054b50;
const ZIP64_LOCATOR_SIG = 0x07064b50;
const ZIP64_EOCD_SIG = 0x06064b50;
const CENTRAL_SIG = 0x02014b50;
const LOCAL_SIG = 0x04034b50;
const EOCD_MIN = 22;
const MAX_COMMENT = 0xffff;

/** True when the bytes start like a ZIP file (a local file header). */
export function looksLikeZip(bytes: Uint8Array): boolean {
  return bytes.byteLength >= 4 && bytes[0] === 0x50 && bytes[1] === 0x4b && bytes[2] === 0x03 && bytes[3] === 0x04;
}

let crcTable: Uint32Array | undefined;

export function crc32(bytes: Uint8Array): number {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  const t = crcTable;
  let c = 0xffffffff;
  // i < byteLength, and (c ^ byte) & 0xff always indexes the 256-entry table: no `?? 0` applies.
  for (let i = 0; i < bytes.byteLength; i++) c = (t[(c ^ (bytes[i] ?? 0)) & 0xff] ?? 0) ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

export function readZip(bytes: Uint8Array, source: string): ZipArchive {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const size = bytes.byteLength;
  const fail = (message: string): never => {
    throw new ZipError(`${source}: ${message}`);
  };
  const u64 = (at: number, what: string): number => {
    const v = dv.getBigUint64(at, true);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) fail(`${what} ${v} is out of range (corrupt ZIP)`);
    return Number(v);
  };

  // End of central directory: the last signature within the final 22 + 65535 bytes.
  let eocd = -1;
  for (let at = size - EOCD_MIN; at >= Math.max(0, size - EOCD_MIN - MAX_COMMENT); at--) {
    if (dv.getUint32(at, true) === EOCD_SIG && at + EOCD_MIN + dv.getUint16(at + 20, true) === size) {
      eocd = at;
      break;
    }
  }
  if (eocd < 0) fail('not a ZIP archive, or truncated (no end-of-central-directory record)');
  if (dv.getUint16(eocd + 4, true) !== 0 || dv.getUint16(eocd + 6, true) !== 0) fail('multi-disk ZIP archives are not supported');
  let count = dv.getUint16(eocd + 10, true);
  let cdSize = dv.getUint32(eocd + 12, true);
  let cdOffset = dv.getUint32(eocd + 16, true);
  if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
    const loc = eocd - 20;
    if (loc < 0 || dv.getUint32(loc, true) !== ZIP64_LOCATOR_SIG) fail('ZIP64 archive without a ZIP64 locator (corrupt ZIP)');
    const z64 = u64(loc + 8, 'ZIP64 end-of-central-directory offset');
    if (z64 + 56 > loc || dv.getUint32(z64, true) !== ZIP64_EOCD_SIG) fail('ZIP64 end-of-central-directory record not found (corrupt ZIP)');
    count = u64(z64 + 32, 'entry count');
    cdSize = u64(z64 + 40, 'central directory size');
    cdOffset = u64(z64 + 48, 'central directory offset');
  }
  if (cdOffset + cdSize > size) fail(`central directory (${cdSize} bytes at ${cdOffset}) lies beyond the ${size}-byte file (truncated?)`);
  // Each central header takes at least 46 bytes: a count larger than that allows is corrupt.
  if (count > cdSize / 46) fail(`${count} entries cannot fit a ${cdSize}-byte central directory (corrupt ZIP)`);

  const decoder = new TextDecoder('utf-8', { fatal: true });
  const entries = new Map<string, ZipEntry>();
  let at = cdOffset;
  const cdEnd = cdOffset + cdSize;
  for (let i = 0; i < count; i++) {
    if (at + 46 > cdEnd || dv.getUint32(at, true) !== CENTRAL_SIG) fail(`central directory entry ${i} is malformed (corrupt ZIP)`);
    const flags = dv.getUint16(at + 8, true);
    const method = dv.getUint16(at + 10, true);
    const crc = dv.getUint32(at + 16, true);
    let compressedSize = dv.getUint32(at + 20, true);
    let uncompressed = dv.getUint32(at + 24, true);
    const nameLen = dv.getUint16(at + 28, true);
    const extraLen = dv.getUint16(at + 30, true);
    const commentLen = dv.getUint16(at + 32, true);
    let localHeaderOffset = dv.getUint32(at + 42, true);
    const next = at + 46 + nameLen + extraLen + commentLen;
    if (next > cdEnd) fail(`central directory entry ${i} runs past the directory (corrupt ZIP)`);
    let name: string;
    try {
      name = decoder.decode(bytes.subarray(at + 46, at + 46 + nameLen));
    } catch {
      name = fail(`central directory entry ${i} has a name that is not UTF-8`);
    }
    // ZIP64 extended information: the 64-bit values of fields saturated at 0xffffffff, in order.
    let e = at + 46 + nameLen;
    const extraEnd = e + extraLen;
    while (e + 4 <= extraEnd) {
      const id = dv.getUint16(e, true);
      const len = dv.getUint16(e + 2, true);
      if (e + 4 + len > extraEnd) fail(`entry "${name}" has a malformed extra field`);
      if (id === 0x0001) {
        let f = e + 4;
        const field = (what: string): number => {
          if (f + 8 > e + 4 + len) fail(`entry "${name}" has a short ZIP64 extra field`);
          const v = u64(f, what);
          f += 8;
          return v;
        };
        if (uncompressed === 0xffffffff) uncompressed = field('entry size');
        if (compressedSize === 0xffffffff) compressedSize = field('entry compressed size');
        if (localHeaderOffset === 0xffffffff) localHeaderOffset = field('entry offset');
      }
      e += 4 + len;
    }
    if (entries.has(name)) fail(`entry "${name}" appears twice`);
    entries.set(name, { name, method, flags, crc32: crc, compressedSize, size: uncompressed, localHeaderOffset });
    at = next;
  }

  return {
    entries,
    read(entryName: string): Uint8Array {
      const entry = entries.get(entryName);
      if (!entry) return fail(`entry "${entryName}" is missing`);
      if (entry.flags & 0x1) fail(`entry "${entryName}" is encrypted`);
      if (entry.method !== 0) {
        fail(
          `entry "${entryName}" is compressed (method ${entry.method}); torch.save writes stored (uncompressed) entries, so this archive was rewritten by another tool: re-save it with torch.save or convert it to safetensors`,
        );
      }
      if (entry.compressedSize !== entry.size)
        fail(`stored entry "${entryName}" declares ${entry.compressedSize} stored bytes but size ${entry.size} (corrupt ZIP)`);
      const h = entry.localHeaderOffset;
      if (h + 30 > size || dv.getUint32(h, true) !== LOCAL_SIG) fail(`entry "${entryName}": no local header at byte ${h} (corrupt or truncated ZIP)`);
      const start = h + 30 + dv.getUint16(h + 26, true) + dv.getUint16(h + 28, true);
      if (start + entry.size > size) fail(`entry "${entryName}" (${entry.size} bytes at ${start}) runs past the end of the ${size}-byte file (truncated?)`);
      const data = bytes.subarray(start, start + entry.size);
      if (crc32(data) !== entry.crc32) fail(`entry "${entryName}" fails its CRC-32 check (corrupt download?)`);
      return data;
    },
  };
}
