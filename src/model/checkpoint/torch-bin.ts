/**
 * Reads `pytorch_model.bin` (a `torch.save` of a state dict) without running code from it. Many
 * hub checkpoints (facebook/contriever, older T5 uploads) ship only this format, and a pickle
 * can name any Python callable, so the pickle is read by the restricted unpickler (pickle.ts)
 * with exactly the globals a state dict needs:
 *   - `collections.OrderedDict` (called with no arguments; its `_metadata` BUILD state ignored),
 *   - `torch._utils._rebuild_tensor_v2`, `_rebuild_tensor`, `_rebuild_parameter`,
 *   - the typed storage classes (`torch.FloatStorage`, `HalfStorage`, `BFloat16Storage`, ...),
 *     which only ever appear inside persistent ids.
 * Any other global is refused: `pytorch_model.bin: refused pickle global "os.system"`.
 *
 * Both container formats are read:
 *   - zip (torch >= 1.6): `<archive>/data.pkl`, one stored entry per storage `<archive>/data/<key>`;
 *   - legacy (torch < 1.6): pickles of the magic number, protocol version and sys info, then the
 *     state dict, then the list of storage keys, then each storage as an int64 element count
 *     followed by its raw bytes, in that key order.
 * Tensors are views into storages (offset, shape, strides) and several may share one storage
 * (T5's embed_tokens and shared.weight); each is materialised as a contiguous little-endian array,
 * without a copy when the view already is one. Every offset, size and stride is checked against the
 * bytes present before anything is allocated.
 */
import { readTensor, writeSafetensors, type SafetensorsDtype, type TensorToWrite } from '../safetensors';
import { describePyValue, PickleError, PyDict, PyGlobal, PyOpaque, PyTuple, unpickle, type PyValue } from './pickle';
import { looksLikeZip, readZip, ZipError } from './zip';

export class TorchBinError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TorchBinError';
  }
}

/** One tensor of the state dict: contiguous little-endian bytes in a safetensors dtype. */
export interface TorchBinTensor {
  readonly dtype: SafetensorsDtype;
  readonly shape: readonly number[];
  readonly bytes: Uint8Array;
}

interface StorageType {
  /** How the tensor is handed on; ShortStorage is widened to I32 (safetensors has no I16 here). */
  readonly dtype: SafetensorsDtype;
  readonly elementSize: number;
}

const STORAGE_TYPES: Record<string, StorageType> = {
  FloatStorage: { dtype: 'F32', elementSize: 4 },
  DoubleStorage: { dtype: 'F64', elementSize: 8 },
  HalfStorage: { dtype: 'F16', elementSize: 2 },
  BFloat16Storage: { dtype: 'BF16', elementSize: 2 },
  LongStorage: { dtype: 'I64', elementSize: 8 },
  IntStorage: { dtype: 'I32', elementSize: 4 },
  ShortStorage: { dtype: 'I32', elementSize: 2 },
  CharStorage: { dtype: 'I8', elementSize: 1 },
  ByteStorage: { dtype: 'U8', elementSize: 1 },
  BoolStorage: { dtype: 'BOOL', elementSize: 1 },
};

const REBUILD_V2 = 'torch._utils._rebuild_tensor_v2';
const REBUILD_V1 = 'torch._utils._rebuild_tensor';
const REBUILD_PARAMETER = 'torch._utils._rebuild_parameter';
const ORDERED_DICT = 'collections.OrderedDict';

export const TORCH_ALLOWED_GLOBALS: ReadonlySet<string> = new Set([
  ORDERED_DICT,
  REBUILD_V2,
  REBUILD_V1,
  REBUILD_PARAMETER,
  ...Object.keys(STORAGE_TYPES).map((s) => `torch.${s}`),
]);

/** The legacy format's first pickle: torch.serialization.MAGIC_NUMBER. */
const LEGACY_MAGIC = 0x1950a86a20f9469cfc6cn;
const LEGACY_PROTOCOL_VERSION = 1001;

interface Storage {
  readonly key: string;
  readonly type: StorageType;
  readonly typeName: string;
  /** Element count the pickle declares. */
  readonly numel: number;
  /** Raw bytes (numel * element size); filled in after the pickle in the legacy format. */
  bytes?: Uint8Array;
}

interface TensorView {
  readonly storage: Storage;
  readonly offset: number;
  readonly shape: readonly number[];
  readonly stride: readonly number[];
}

function asInt(v: PyValue, what: string, fail: (m: string) => never): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0)
    fail(`${what} must be a non-negative integer, got ${typeof v === 'number' || typeof v === 'bigint' ? String(v) : describePyValue(v)}`);
  return v as number;
}

function asIntTuple(v: PyValue, what: string, fail: (m: string) => never): number[] {
  if (!(v instanceof PyTuple)) fail(`${what} must be a tuple of integers, got ${describePyValue(v)}`);
  return (v as PyTuple).items.map((x, i) => asInt(x, `${what}[${i}]`, fail));
}

/**
 * Unpickles a state dict with the torch rules. `loadStorage` turns a persistent id's parts into a
 * storage (the zip and legacy formats find the bytes differently).
 */
function unpickleStateDict(
  bytes: Uint8Array,
  source: string,
  offset: number,
  loadStorage: (typeName: string, key: string, numel: number, extra: readonly PyValue[]) => Storage,
): { dict: PyDict; end: number } {
  const fail = (m: string): never => {
    throw new TorchBinError(`${source}: ${m}`);
  };
  const tensor = (v: TensorView) => new PyOpaque<TensorView>('tensor', v);
  const storageOf = (v: PyValue): Storage => {
    if (!(v instanceof PyOpaque) || v.kind !== 'storage') fail(`a tensor's storage must be a persistent storage id, got ${describePyValue(v)}`);
    return (v as PyOpaque<Storage>).value;
  };
  const view = (args: readonly PyValue[]): TensorView => {
    const storage = storageOf(args[0]);
    const offset = asInt(args[1], 'storage offset', fail);
    const shape = asIntTuple(args[2], 'tensor size', fail);
    const stride = asIntTuple(args[3], 'tensor stride', fail);
    if (stride.length !== shape.length) fail(`tensor size has ${shape.length} dimensions but stride has ${stride.length}`);
    return { storage, offset, shape, stride };
  };
  const { value, end } = unpickle(
    bytes,
    {
      source,
      allowedGlobals: TORCH_ALLOWED_GLOBALS,
      reduce(callable, args) {
        switch (callable.qualifiedName) {
          case ORDERED_DICT:
            if (args.length !== 0) fail(`${ORDERED_DICT} called with ${args.length} arguments; only OrderedDict() is allowed`);
            return new PyDict(true);
          case REBUILD_V2:
            // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
            if (args.length !== 6 && args.length !== 7) fail(`${REBUILD_V2} takes 6 or 7 arguments, got ${args.length}`);
            return tensor(view(args));
          case REBUILD_V1:
            if (args.length !== 4) fail(`${REBUILD_V1} takes 4 arguments, got ${args.length}`);
            return tensor(view(args));
          case REBUILD_PARAMETER: {
            // (data, requires_grad, backward_hooks): a Parameter is its data here.
            if (args.length !== 3) fail(`${REBUILD_PARAMETER} takes 3 arguments, got ${args.length}`);
            const data = args[0];
            if (!(data instanceof PyOpaque) || data.kind !== 'tensor') fail(`${REBUILD_PARAMETER} needs a tensor, got ${describePyValue(data)}`);
            return data;
          }
          default:
            return fail(`refused REDUCE of "${callable.qualifiedName}": only OrderedDict() and the tensor rebuild functions may be called`);
        }
      },
      build(obj, state) {
        // OrderedDict state (module.state_dict()'s `_metadata` attribute): version info only, ignored.
        if (obj instanceof PyDict && obj.ordered && state instanceof PyDict) return obj;
        return fail(`refused BUILD on ${describePyValue(obj)} with ${describePyValue(state)}: only an OrderedDict's attribute dict may be set`);
      },
      persistentLoad(pid) {
        if (!(pid instanceof PyTuple) || pid.items[0] !== 'storage') {
          fail(`persistent id ${describePyValue(pid)} is not a ("storage", ...) tuple; only tensor storages may be referenced`);
        }
        const [, type, key, location, numel, ...extra] = (pid as PyTuple).items;
        if (!(type instanceof PyGlobal) || type.module !== 'torch' || !STORAGE_TYPES[type.name]) {
          fail(`storage type must be one of torch.${Object.keys(STORAGE_TYPES).join(', torch.')}, got ${describePyValue(type ?? null)}`);
        }
        if (typeof key !== 'string' || key.length === 0) fail(`storage key must be a non-empty string, got ${describePyValue(key ?? null)}`);
        if (typeof location !== 'string') fail(`storage location must be a string, got ${describePyValue(location ?? null)}`);
        const n = asInt(numel ?? null, `storage "${key as string}" size`, fail);
        return new PyOpaque<Storage>('storage', loadStorage((type as PyGlobal).name, key as string, n, extra));
      },
    },
    offset,
  );
  if (!(value instanceof PyDict)) fail(`expected a state dict (tensor name -> tensor), got ${describePyValue(value)}`);
  return { dict: value as PyDict, end };
}

/** Materialises each tensor view as contiguous bytes, checking it stays inside its storage. */
function materialise(dict: PyDict, source: string): Map<string, TorchBinTensor> {
  const out = new Map<string, TorchBinTensor>();
  for (const [name, value] of dict.entries) {
    const fail = (m: string): never => {
      throw new TorchBinError(`${source}: tensor "${String(name)}": ${m}`);
    };
    if (typeof name !== 'string') throw new TorchBinError(`${source}: state dict key ${String(name)} is not a string`);
    if (!(value instanceof PyOpaque) || value.kind !== 'tensor') {
      throw new TorchBinError(`${source}: state dict entry "${name}" is ${describePyValue(value)}, not a tensor`);
    }
    const { storage, offset, shape, stride } = (value as PyOpaque<TensorView>).value;
    const bytes = storage.bytes;
    if (!bytes) fail(`its storage "${storage.key}" has no data in the file`);
    let numel = 1;
    for (const d of shape) {
      numel *= d;
      if (!Number.isSafeInteger(numel)) fail(`size [${shape.join(', ')}] is too large`);
    }
    if (numel > storage.numel) fail(`size [${shape.join(', ')}] has ${numel} elements but its storage "${storage.key}" holds only ${storage.numel}`);
    const es = storage.type.elementSize;
    let result: Uint8Array;
    if (numel === 0) {
      result = new Uint8Array(0);
    } else {
      let last = offset;
      for (let i = 0; i < shape.length; i++) last += (shape[i] - 1) * stride[i];
      if (!Number.isSafeInteger(last) || last >= storage.numel) {
        fail(
          `view (offset ${offset}, size [${shape.join(', ')}], stride [${stride.join(', ')}]) reaches element ${last} of a ${storage.numel}-element storage "${storage.key}"`,
        );
      }
      let contiguous = true;
      for (let i = shape.length - 1, expect = 1; i >= 0; i--) {
        if (shape[i] !== 1 && stride[i] !== expect) contiguous = false;
        expect *= shape[i];
      }
      if (contiguous) {
        result = bytes!.subarray(offset * es, (offset + numel) * es);
      } else {
        // Gather: whole rows at a time when the last dimension is dense, else element by element.
        result = new Uint8Array(numel * es);
        const dims = shape.length;
        const row = stride[dims - 1] === 1 ? shape[dims - 1] : 1;
        const outer = row > 1 ? dims - 1 : dims;
        const rowBytes = row * es;
        const index = new Array<number>(outer).fill(0);
        let src = offset;
        for (let k = 0; k < numel / row; k++) {
          result.set(bytes!.subarray(src * es, src * es + rowBytes), k * rowBytes);
          for (let d = outer - 1; d >= 0; d--) {
            index[d]++;
            src += stride[d];
            if (index[d] < shape[d]) break;
            src -= stride[d] * shape[d];
            index[d] = 0;
          }
        }
      }
    }
    if (storage.typeName === 'ShortStorage') {
      const dv = new DataView(result.buffer, result.byteOffset, result.byteLength);
      const wide = new Int32Array(numel);
      for (let i = 0; i < numel; i++) wide[i] = dv.getInt16(2 * i, true);
      result = new Uint8Array(wide.buffer);
    }
    out.set(name, { dtype: storage.type.dtype, shape, bytes: result });
  }
  return out;
}

function newStorage(typeName: string, key: string, numel: number): Storage {
  return { key, type: STORAGE_TYPES[typeName], typeName, numel };
}

/** The same key must always name the same storage type and size. */
function sameStorage(existing: Storage, typeName: string, numel: number, source: string): Storage {
  if (existing.typeName !== typeName || existing.numel !== numel) {
    throw new TorchBinError(`${source}: storage "${existing.key}" is declared both as ${existing.typeName}(${existing.numel}) and ${typeName}(${numel})`);
  }
  return existing;
}

function readZipFormat(bytes: Uint8Array, source: string): Map<string, TorchBinTensor> {
  const zip = readZip(bytes, source);
  const pickles = [...zip.entries.keys()].filter((n) => /^[^/]+\/data\.pkl$/.test(n));
  if (pickles.length !== 1) {
    throw new TorchBinError(`${source}: a torch zip archive holds exactly one <archive>/data.pkl, found ${pickles.length}`);
  }
  const prefix = pickles[0].slice(0, -'data.pkl'.length);
  const byteorder = zip.entries.has(prefix + 'byteorder') ? new TextDecoder().decode(zip.read(prefix + 'byteorder')).trim() : 'little';
  if (byteorder !== 'little') throw new TorchBinError(`${source}: storages are stored ${JSON.stringify(byteorder)}-endian; only little-endian is supported`);
  const storages = new Map<string, Storage>();
  const { dict } = unpickleStateDict(zip.read(pickles[0]), source, 0, (typeName, key, numel, extra) => {
    if (extra.length) throw new TorchBinError(`${source}: storage "${key}": a zip-format persistent id has 5 fields, got ${5 + extra.length}`);
    const existing = storages.get(key);
    if (existing) return sameStorage(existing, typeName, numel, source);
    const storage = newStorage(typeName, key, numel);
    const entryName = `${prefix}data/${key}`;
    const entry = zip.entries.get(entryName);
    if (!entry) throw new TorchBinError(`${source}: storage "${key}" has no entry ${entryName} in the archive`);
    const need = numel * storage.type.elementSize;
    if (!Number.isSafeInteger(need) || need > entry.size) {
      throw new TorchBinError(`${source}: storage "${key}" declares ${numel} ${typeName} elements (${need} bytes) but ${entryName} holds ${entry.size} bytes`);
    }
    storage.bytes = zip.read(entryName).subarray(0, need);
    storages.set(key, storage);
    return storage;
  });
  return materialise(dict, source);
}

function readLegacyFormat(bytes: Uint8Array, source: string): Map<string, TorchBinTensor> {
  const noCode = {
    source,
    allowedGlobals: new Set<string>(),
    reduce: (g: PyGlobal): never => {
      throw new TorchBinError(`${source}: refused REDUCE of "${g.qualifiedName}"`);
    },
  };
  let magic: PyValue;
  let pos: number;
  try {
    ({ value: magic, end: pos } = unpickle(bytes, noCode, 0));
  } catch (e) {
    if (e instanceof PickleError && !e.message.includes('refused')) {
      throw new TorchBinError(
        `${source}: not a PyTorch checkpoint (neither a zip archive nor a legacy torch.save file: ${e.message.slice(source.length + 2)})`,
      );
    }
    throw e;
  }
  if (typeof magic !== 'bigint' || magic !== LEGACY_MAGIC) {
    throw new TorchBinError(
      `${source}: not a PyTorch checkpoint (wrong magic number ${typeof magic === 'bigint' || typeof magic === 'number' ? String(magic) : describePyValue(magic)})`,
    );
  }
  const protocol = unpickle(bytes, noCode, pos);
  if (protocol.value !== LEGACY_PROTOCOL_VERSION) {
    throw new TorchBinError(`${source}: unsupported legacy protocol version ${String(protocol.value)} (expected ${LEGACY_PROTOCOL_VERSION})`);
  }
  const sysInfo = unpickle(bytes, noCode, protocol.end);
  const littleEndian = sysInfo.value instanceof PyDict ? sysInfo.value.entries.get('little_endian') : undefined;
  if (littleEndian !== true)
    throw new TorchBinError(`${source}: the checkpoint was saved on a big-endian machine (or its sys info is missing); only little-endian is supported`);

  const storages = new Map<string, Storage>();
  const { dict, end } = unpickleStateDict(bytes, source, sysInfo.end, (typeName, key, numel, extra) => {
    // Legacy persistent id: (..., numel, view_metadata); view_metadata = (view_key, offset, size) or None.
    if (extra.length !== 1) throw new TorchBinError(`${source}: storage "${key}": a legacy persistent id has 6 fields, got ${5 + extra.length}`);
    const root = storages.get(key) ? sameStorage(storages.get(key)!, typeName, numel, source) : newStorage(typeName, key, numel);
    storages.set(key, root);
    if (extra[0] === null) return root;
    throw new TorchBinError(`${source}: storage "${key}" is a storage view (saved by torch < 0.4), which is not supported`);
  });
  const keyList = unpickle(bytes, noCode, end);
  if (!Array.isArray(keyList.value) || !keyList.value.every((k) => typeof k === 'string')) {
    throw new TorchBinError(`${source}: the storage key list after the state dict is ${describePyValue(keyList.value)}, expected a list of strings`);
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = keyList.end;
  for (const key of keyList.value as string[]) {
    const storage = storages.get(key);
    if (!storage) throw new TorchBinError(`${source}: the storage key list names "${key}", which no tensor uses`);
    if (storage.bytes) throw new TorchBinError(`${source}: storage "${key}" appears twice in the storage key list`);
    if (at + 8 > bytes.byteLength) throw new TorchBinError(`${source}: truncated file: storage "${key}" has no size (byte ${at} of ${bytes.byteLength})`);
    const count = dv.getBigInt64(at, true);
    if (count !== BigInt(storage.numel)) {
      throw new TorchBinError(`${source}: storage "${key}" is stored with ${count} elements but the state dict declares ${storage.numel}`);
    }
    at += 8;
    const need = storage.numel * storage.type.elementSize;
    if (!Number.isSafeInteger(need) || at + need > bytes.byteLength) {
      throw new TorchBinError(`${source}: truncated file: storage "${key}" needs ${need} bytes at byte ${at} but the file has ${bytes.byteLength - at} left`);
    }
    storage.bytes = bytes.subarray(at, at + need);
    at += need;
  }
  if (at !== bytes.byteLength) throw new TorchBinError(`${source}: ${bytes.byteLength - at} unexpected bytes after the last storage`);
  return materialise(dict, source);
}

/**
 * All tensors of a `torch.save`d state dict, by name. Throws TorchBinError, PickleError or ZipError,
 * each naming `source` (e.g. the file's location) and what is wrong or refused.
 */
export function readTorchBin(bytes: Uint8Array, source: string): Map<string, TorchBinTensor> {
  if (looksLikeZip(bytes)) return readZipFormat(bytes, source);
  if (bytes.byteLength > 262 && new TextDecoder('latin1').decode(bytes.subarray(257, 262)) === 'ustar') {
    throw new TorchBinError(`${source}: the tar-based checkpoint format of torch < 0.4 is not supported; re-save it with a newer torch`);
  }
  return readLegacyFormat(bytes, source);
}

export function isTorchBinError(e: unknown): e is TorchBinError | PickleError | ZipError {
  return e instanceof TorchBinError || e instanceof PickleError || e instanceof ZipError;
}

/**
 * The state dict re-encoded as safetensors bytes, floats widened to F32 and integers as I32 (what
 * readTensor yields): for code that takes a safetensors file, such as the conformance check.
 */
export function torchBinToSafetensors(bytes: Uint8Array, source: string): Uint8Array {
  const out = new Map<string, TensorToWrite>();
  for (const [name, t] of readTorchBin(bytes, source)) {
    const info = { name, dtype: t.dtype, shape: t.shape, begin: 0, end: t.bytes.byteLength };
    const { shape, data } = readTensor({ tensors: new Map([[name, info]]), metadata: {}, bytes: t.bytes, dataOffset: 0 }, name);
    if (data instanceof Float32Array || data instanceof Float64Array)
      out.set(name, { dtype: 'F32', shape, data: data instanceof Float32Array ? data : Float32Array.from(data) });
    else if (data instanceof Int32Array) out.set(name, { dtype: 'I32', shape, data });
    else out.set(name, { dtype: 'U8', shape, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) });
  }
  return writeSafetensors(out);
}
