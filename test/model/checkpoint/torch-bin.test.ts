import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fileURLToPath } from 'node:url';
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initBackend } from '../../../src/model/backend';
import { parseSafetensors, readTensor } from '../../../src/model/safetensors';
import { type ParameterStore } from '../../../src/model/params';
import { hubModelSource, type ModelSource } from '../../../src/model/checkpoint/source';
import { loadCheckpoint } from '../../../src/model/checkpoint/load';
import { loadT5Checkpoint } from '../../../src/model/checkpoint/t5';
import { loadBertCheckpoint } from '../../../src/model/checkpoint/bert';
import { CheckpointError, readCheckpointWeights } from '../../../src/model/checkpoint/weights';
import { readTorchBin, TORCH_ALLOWED_GLOBALS } from '../../../src/model/checkpoint/torch-bin';
import { folderModelSource } from '../../../src/platform/node/folder-source';
import { startLocalHub, type LocalHub } from './local-hub';
import {
  concat,
  f32Bytes,
  legacyHeaderParts,
  OP,
  PickleBuilder,
  stateDictPickle,
  torchLegacy,
  torchZip,
  torchZipWithPickle,
  writeZip,
  type StorageSpec,
  type TensorSpec,
} from './torch-writer';
import { expectIdenticalNumbers } from '../../identical-numbers';

const FIXTURES = fileURLToPath(new URL('../../../../shared/fixtures/hf-reference/', import.meta.url));
const fixture = (name: string) => join(FIXTURES, name);
const MODELS = ['t5-tiny-gated', 't5-tiny-relu', 'bert-tiny'] as const;
const VARIANTS = { zip: 'pytorch_model.bin', legacy: 'pytorch_model.legacy.bin', bf16: 'pytorch_model.bf16.bin' } as const;

type Tensors = Map<string, { shape: number[]; data: Float32Array }>;

async function readFixtureTensors(name: string): Promise<Tensors> {
  const parsed = parseSafetensors(await readFile(join(fixture(name), 'model.safetensors')));
  const out: Tensors = new Map();
  for (const n of parsed.tensors.keys()) {
    const { shape, data } = readTensor(parsed, n);
    out.set(n, { shape, data: data as Float32Array });
  }
  return out;
}

/** float32 -> bfloat16 -> float32, rounding to nearest even (what torch's .to(torch.bfloat16) does). */
function bf16Round(data: Float32Array): Float32Array {
  const bits = new Uint32Array(Float32Array.from(data).buffer);
  for (let i = 0; i < bits.length; i++) {
    const x = bits[i];
    bits[i] = (((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) << 16) >>> 0;
  }
  return new Float32Array(bits.buffer);
}

function expectParams(params: ParameterStore, expected: Tensors, bf16: boolean): void {
  expect(params.names().sort()).toEqual([...expected.keys()].sort());
  for (const [name, t] of expected) {
    const v = params.get(name);
    expect(v.dtype, name).toBe('float32');
    expect(v.shape, name).toEqual(t.shape);
    expectIdenticalNumbers(v.dataSync() as Float32Array, bf16 ? bf16Round(t.data) : t.data, name);
  }
}

let tmp: string;
let count = 0;

/** A folder with the fixture's config.json and the given files. */
async function folderWith(model: string, files: Record<string, Uint8Array | string>): Promise<string> {
  const folder = join(tmp, `m-${count++}`);
  await mkdir(folder);
  await copyFile(join(fixture(model), 'config.json'), join(folder, 'config.json'));
  for (const [name, bytes] of Object.entries(files)) await writeFile(join(folder, name), bytes);
  return folder;
}

const memory = (files: Record<string, Uint8Array>): ModelSource => ({
  describe: () => 'mem',
  fetchFile: async (n) => files[n] ?? null,
});

/** A 12-float storage 0..11 and views into it: transposed, offset, stepped, 2-D strided, scalar, empty. */
const STORAGES = new Map<string, StorageSpec>([
  ['0', { type: 'FloatStorage', bytes: f32Bytes(Array.from({ length: 12 }, (_, i) => i)) }],
  ['1', { type: 'HalfStorage', bytes: new Uint8Array(new Uint16Array([0x3c00, 0xc000, 0x3800, 0x7bff, 0x0001]).buffer) }],
  ['2', { type: 'BFloat16Storage', bytes: new Uint8Array(new Uint16Array([0x3f80, 0xc040, 0x4049]).buffer) }],
  ['3', { type: 'LongStorage', bytes: new Uint8Array(new BigInt64Array([0n, 1n, 2n]).buffer) }],
]);
const VIEWS = new Map<string, TensorSpec>([
  ['a', { storage: '0', shape: [3, 4] }],
  ['a_t', { storage: '0', shape: [4, 3], stride: [1, 4] }],
  ['tail', { storage: '0', offset: 10, shape: [2] }],
  ['odd', { storage: '0', offset: 1, shape: [3], stride: [2] }],
  ['block', { storage: '0', offset: 1, shape: [2, 2], stride: [4, 2] }],
  ['rows', { storage: '0', offset: 1, shape: [2, 2], stride: [8, 1] }],
  ['cube', { storage: '0', offset: 1, shape: [2, 2, 2], stride: [1, 6, 3] }],
  ['scalar', { storage: '0', offset: 11, shape: [] }],
  ['empty', { storage: '0', shape: [0, 3] }],
  ['half', { storage: '1', shape: [5] }],
  ['bf16', { storage: '2', shape: [3] }],
  ['ids', { storage: '3', shape: [1, 3] }],
]);

beforeAll(async () => {
  await initBackend('cpu');
  tmp = await mkdtemp(join(tmpdir(), 'corag-torchbin-'));
});

afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe('pytorch_model.bin variants of the reference fixtures equal model.safetensors', () => {
  for (const model of MODELS) {
    for (const [variant, file] of Object.entries(VARIANTS)) {
      it(`${model}, ${variant}: typed and generic loaders`, async () => {
        const expected = await readFixtureTensors(model);
        const folder = await folderWith(model, { 'pytorch_model.bin': await readFile(join(fixture(model), file)) });
        const bf16 = variant === 'bf16';
        const typed =
          model === 'bert-tiny'
            ? await loadBertCheckpoint(folderModelSource(folder), { tokenizer: false })
            : await loadT5Checkpoint(folderModelSource(folder), { tokenizer: false });
        expectParams(typed.params, expected, bf16);
        typed.params.dispose();

        // The generic loader keeps every tensor; T5's embed_tokens entries share shared.weight's storage.
        const { params } = await loadCheckpoint(folderModelSource(folder));
        if (model !== 'bert-tiny') {
          const shared = params.get('shared.weight').dataSync();
          expect(params.get('encoder.embed_tokens.weight').dataSync()).toEqual(shared);
          expect(params.get('decoder.embed_tokens.weight').dataSync()).toEqual(shared);
        }
        const names = params.names().filter((n) => !n.endsWith('embed_tokens.weight'));
        expect(names.sort()).toEqual([...expected.keys()].sort());
        params.dispose();
      });
    }
  }

  it('the fixture storages hold what model.safetensors holds, byte for byte (zip and legacy)', async () => {
    const parsed = parseSafetensors(await readFile(join(fixture('bert-tiny'), 'model.safetensors')));
    for (const file of [VARIANTS.zip, VARIANTS.legacy]) {
      const tensors = readTorchBin(new Uint8Array(await readFile(join(fixture('bert-tiny'), file))), file);
      for (const info of parsed.tensors.values()) {
        const t = tensors.get(info.name)!;
        expect(t.dtype).toBe('F32');
        expect(Buffer.from(t.bytes).equals(Buffer.from(parsed.bytes.subarray(parsed.dataOffset + info.begin, parsed.dataOffset + info.end))), info.name).toBe(
          true,
        );
      }
    }
  });

  it('model.safetensors wins when both exist; pytorch_model.bin is not even fetched', async () => {
    const folder = await folderWith('bert-tiny', {
      'model.safetensors': await readFile(join(fixture('bert-tiny'), 'model.safetensors')),
      'pytorch_model.bin': osSystemPickleZip(),
    });
    const weights = await readCheckpointWeights(folderModelSource(folder));
    expect(weights.files).toEqual(['model.safetensors']);
  });
});

describe('tensor views, shared storages and dtypes', () => {
  for (const [format, write] of [
    ['zip', torchZip],
    ['legacy', torchLegacy],
  ] as const) {
    it(`${format}: offsets, strides and shared storages materialise as contiguous tensors`, () => {
      const t = readTorchBin(write(VIEWS, STORAGES), 'views.bin');
      const floats = (name: string) => {
        const b = t.get(name)!.bytes;
        return [...new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength))];
      };
      expect(floats('a')).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
      expect(floats('a_t')).toEqual([0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]);
      expect(t.get('a_t')!.shape).toEqual([4, 3]);
      expect(floats('tail')).toEqual([10, 11]);
      expect(floats('odd')).toEqual([1, 3, 5]);
      expect(floats('block')).toEqual([1, 3, 5, 7]);
      expect(floats('rows')).toEqual([1, 2, 9, 10]);
      expect(floats('cube')).toEqual([1, 4, 7, 10, 2, 5, 8, 11]);
      expect(floats('scalar')).toEqual([11]);
      expect(t.get('scalar')!.shape).toEqual([]);
      expect(t.get('empty')!.bytes.byteLength).toBe(0);
      expect(t.get('half')!.dtype).toBe('F16');
      expect(t.get('bf16')!.dtype).toBe('BF16');
      expect(t.get('ids')!.dtype).toBe('I64');
    });

    it(`${format}: fp16 and bf16 are widened to fp32 by the loader; integer buffers are left out`, async () => {
      const { params } = await loadCheckpoint(memory({ 'config.json': new TextEncoder().encode('{}'), 'pytorch_model.bin': write(VIEWS, STORAGES) }));
      expect([...params.get('half').dataSync()]).toEqual([1, -2, 0.5, 65504, 2 ** -24]);
      expect([...params.get('bf16').dataSync()]).toEqual([1, -3, 3.140625]);
      expect([...params.get('a_t').dataSync()]).toEqual([0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]);
      expect(params.has('ids')).toBe(false);
      params.dispose();
    });
  }

  it('a module.state_dict() OrderedDict with its _metadata attribute (BUILD) loads', () => {
    const inner = stateDictPickle(new Map([['w', { storage: '0', shape: [12] }]]), STORAGES, false);
    // OrderedDict() REDUCE, items, then BUILD {"_metadata": {...}} as pickle writes an OrderedDict with attributes.
    const body = inner.subarray(3, inner.length - 1); // drop PROTO 2, EMPTY_DICT and STOP
    const pickle = new PickleBuilder()
      .op(OP.PROTO, 2)
      .global('collections', 'OrderedDict')
      .op(OP.EMPTY_TUPLE, OP.REDUCE)
      .raw(body)
      .op(OP.EMPTY_DICT)
      .str('_metadata')
      .global('collections', 'OrderedDict')
      .op(OP.EMPTY_TUPLE, OP.REDUCE, 0x73, OP.BUILD, OP.STOP)
      .bytes();
    const t = readTorchBin(torchZipWithPickle(pickle, STORAGES), 'meta.bin');
    expect([...t.keys()]).toEqual(['w']);
  });
});

/** cos\nsystem\n ("ls",) REDUCE: the textbook malicious pickle. */
function osSystemPickle(): Uint8Array {
  return new PickleBuilder().op(OP.PROTO, 2).global('os', 'system').str('ls').op(0x85, OP.REDUCE, OP.STOP).bytes();
}
function osSystemPickleZip(): Uint8Array {
  return torchZipWithPickle(osSystemPickle());
}

describe('hostile pickles are refused, naming what was refused', () => {
  const read = (bytes: Uint8Array) => () => readTorchBin(bytes, 'pytorch_model.bin');

  it('GLOBAL os.system, in the zip data.pkl and in each legacy pickle', () => {
    expect(read(osSystemPickleZip())).toThrow('pytorch_model.bin: refused pickle global "os.system"');
    const [magic, protocol, sysInfo] = legacyHeaderParts();
    expect(read(concat([osSystemPickle()]))).toThrow('pytorch_model.bin: refused pickle global "os.system"');
    expect(read(concat([magic, osSystemPickle()]))).toThrow('pytorch_model.bin: refused pickle global "os.system"');
    expect(read(concat([magic, protocol, osSystemPickle()]))).toThrow('pytorch_model.bin: refused pickle global "os.system"');
    expect(read(concat([magic, protocol, sysInfo, osSystemPickle()]))).toThrow('pytorch_model.bin: refused pickle global "os.system"');
  });

  it('STACK_GLOBAL builtins.eval and other globals outside the allowlist', () => {
    const evil = new PickleBuilder().op(OP.PROTO, 4).str('builtins').str('eval').op(OP.STACK_GLOBAL).str('1+1').op(0x85, OP.REDUCE, OP.STOP).bytes();
    expect(read(torchZipWithPickle(evil))).toThrow('pytorch_model.bin: refused pickle global "builtins.eval"');
    for (const [m, n] of [
      ['torch', 'load'],
      ['torch._utils', '_rebuild_device_tensor_from_numpy'],
      ['__builtin__', 'getattr'],
      ['subprocess', 'Popen'],
      ['collections', 'defaultdict'],
    ]) {
      const p = new PickleBuilder().op(OP.PROTO, 2).global(m, n).op(OP.STOP).bytes();
      expect(read(torchZipWithPickle(p))).toThrow(`refused pickle global "${m}.${n}"`);
    }
    expect(TORCH_ALLOWED_GLOBALS.has('torch.FloatStorage')).toBe(true);
  });

  it('REDUCE of an allowed global that is not a callable, or of something that is not a global', () => {
    const storageCall = new PickleBuilder().op(OP.PROTO, 2).global('torch', 'FloatStorage').op(OP.EMPTY_TUPLE, OP.REDUCE, OP.STOP).bytes();
    expect(read(torchZipWithPickle(storageCall))).toThrow('pytorch_model.bin: refused REDUCE of "torch.FloatStorage"');
    const stringCall = new PickleBuilder().op(OP.PROTO, 2).str('os.system').op(OP.EMPTY_TUPLE, OP.REDUCE, OP.STOP).bytes();
    expect(read(torchZipWithPickle(stringCall))).toThrow('REDUCE needs an allowed global to call, got a str');
    const odictArgs = new PickleBuilder().op(OP.PROTO, 2).global('collections', 'OrderedDict').str('x').op(0x85, OP.REDUCE, OP.STOP).bytes();
    expect(read(torchZipWithPickle(odictArgs))).toThrow('only OrderedDict() is allowed');
  });

  it('INST, OBJ, NEWOBJ and EXT opcodes', () => {
    const inst = new PickleBuilder().op(OP.PROTO, 2, OP.MARK).str('ls').op(OP.INST).raw(new TextEncoder().encode('os\nsystem\n')).op(OP.STOP).bytes();
    expect(read(torchZipWithPickle(inst))).toThrow('pytorch_model.bin: refused pickle global "os.system"');
    const instAllowed = new PickleBuilder().op(OP.PROTO, 2, OP.MARK, OP.INST).raw(new TextEncoder().encode('collections\nOrderedDict\n')).op(OP.STOP).bytes();
    expect(read(torchZipWithPickle(instAllowed))).toThrow('INST of "collections.OrderedDict" is not allowed');
    const obj = new PickleBuilder().op(OP.PROTO, 2, OP.MARK).global('collections', 'OrderedDict').op(OP.OBJ, OP.STOP).bytes();
    expect(read(torchZipWithPickle(obj))).toThrow(/OBJ would instantiate a class.*refused/);
    const newobj = new PickleBuilder().op(OP.PROTO, 2).global('collections', 'OrderedDict').op(OP.EMPTY_TUPLE, OP.NEWOBJ, OP.STOP).bytes();
    expect(read(torchZipWithPickle(newobj))).toThrow('NEWOBJ would instantiate a class');
    const ext = new PickleBuilder().op(OP.PROTO, 2, OP.EXT1, 1, OP.STOP).bytes();
    expect(read(torchZipWithPickle(ext))).toThrow('EXT1 names a global through the extension registry; refused');
  });

  it('BUILD on anything but an OrderedDict (tensor __setstate__ tricks)', () => {
    const onDict = new PickleBuilder().op(OP.PROTO, 2, OP.EMPTY_DICT, OP.EMPTY_DICT, OP.BUILD, OP.STOP).bytes();
    expect(read(torchZipWithPickle(onDict))).toThrow('refused BUILD on a dict');
    const sd = stateDictPickle(new Map([['w', { storage: '0', shape: [12] }]]), STORAGES, false);
    // ... REDUCE (the tensor) then BUILD with a dict state, just before SETITEMS.
    const tensorBuild = concat([sd.subarray(0, sd.length - 2), Uint8Array.from([OP.EMPTY_DICT, OP.BUILD]), sd.subarray(sd.length - 2)]);
    expect(read(torchZipWithPickle(tensorBuild, STORAGES))).toThrow('refused BUILD on a tensor');
  });

  it('persistent ids that are not tensor storages', () => {
    const moduleId = new PickleBuilder().op(OP.PROTO, 2, OP.MARK).str('module').str('os').op(OP.TUPLE, OP.BINPERSID, OP.STOP).bytes();
    expect(read(torchZipWithPickle(moduleId))).toThrow('only tensor storages may be referenced');
    const badType = new PickleBuilder()
      .op(OP.PROTO, 2, OP.MARK)
      .str('storage')
      .global('collections', 'OrderedDict')
      .str('0')
      .str('cpu')
      .int(1)
      .op(OP.TUPLE, OP.BINPERSID, OP.STOP)
      .bytes();
    expect(read(torchZipWithPickle(badType))).toThrow(/storage type must be one of torch\.FloatStorage.*got the global "collections\.OrderedDict"/);
  });

  it('the loader refuses a hostile checkpoint with the file named', async () => {
    const folder = await folderWith('t5-tiny-relu', { 'pytorch_model.bin': osSystemPickleZip() });
    const err = await loadT5Checkpoint(folderModelSource(folder), { tokenizer: false }).catch((e: Error) => e);
    expect(err).toBeInstanceOf(CheckpointError);
    expect((err as Error).message).toMatch(new RegExp(`^${folder}/pytorch_model\\.bin: refused pickle global "os\\.system"`));
  });
});

describe('malformed files are refused with clear errors', () => {
  const read = (bytes: Uint8Array) => () => readTorchBin(bytes, 'bad.bin');
  let zipBytes: Uint8Array;
  let legacyBytes: Uint8Array;
  beforeAll(async () => {
    zipBytes = new Uint8Array(await readFile(join(fixture('t5-tiny-relu'), VARIANTS.zip)));
    legacyBytes = new Uint8Array(await readFile(join(fixture('t5-tiny-relu'), VARIANTS.legacy)));
  });

  it('truncated zip and legacy files', () => {
    expect(read(zipBytes.subarray(0, zipBytes.length - 30))).toThrow('bad.bin: not a ZIP archive, or truncated (no end-of-central-directory record)');
    expect(read(zipBytes.subarray(0, 100))).toThrow('not a ZIP archive, or truncated');
    expect(read(legacyBytes.subarray(0, 3000))).toThrow(/^bad\.bin: truncated pickle/);
    expect(read(legacyBytes.subarray(0, legacyBytes.length - 100))).toThrow(
      /^bad\.bin: truncated file: storage "\d+" needs \d+ bytes at byte \d+ but the file has \d+ left/,
    );
    expect(read(concat([legacyBytes, new Uint8Array(3)]))).toThrow('3 unexpected bytes after the last storage');
    expect(read(new Uint8Array(0))).toThrow('bad.bin: not a PyTorch checkpoint');
  });

  it('a corrupted zip entry fails its CRC; a compressed entry is refused', () => {
    const corrupt = Uint8Array.from(zipBytes);
    corrupt[10000] ^= 0xff;
    expect(read(corrupt)).toThrow(/entry "pytorch_model\/data\/\d+" fails its CRC-32 check/);
    const pickle = stateDictPickle(new Map([['w', { storage: '0', shape: [12] }]]), STORAGES, false);
    const deflated = writeZip([
      { name: 'archive/data.pkl', bytes: pickle },
      { name: 'archive/data/0', bytes: STORAGES.get('0')!.bytes, deflate: true },
    ]);
    expect(read(deflated)).toThrow('entry "archive/data/0" is compressed (method 8); torch.save writes stored (uncompressed) entries');
  });

  it('bad opcodes and wrong magic numbers', () => {
    const badOp = new PickleBuilder().op(OP.PROTO, 2, 0xff, OP.STOP).bytes();
    expect(read(torchZipWithPickle(badOp))).toThrow('bad.bin: unknown opcode (not a pickle, or corrupt) (opcode 0xff at byte 2)');
    expect(read(torchZipWithPickle(new PickleBuilder().op(OP.PROTO, 2, OP.STOP).bytes()))).toThrow('STOP with 0 items on the stack');
    expect(read(torchZipWithPickle(new PickleBuilder().op(OP.PROTO, 2, OP.EMPTY_DICT).bytes()))).toThrow('ended at byte 3 without a STOP opcode');
    expect(read(torchZipWithPickle(new PickleBuilder().op(OP.PROTO, 2, OP.SETITEMS, OP.STOP).bytes()))).toThrow('no MARK on the stack');
    expect(read(torchZipWithPickle(new PickleBuilder().op(OP.PROTO, 2, 0x68, 7, OP.STOP).bytes()))).toThrow('memo entry 7 was never stored');
    expect(read(torchZipWithPickle(new PickleBuilder().op(OP.PROTO, 9).bytes()))).toThrow('unsupported pickle protocol 9');
    expect(read(torchLegacy(VIEWS, STORAGES, { magic: 12345n }))).toThrow('bad.bin: not a PyTorch checkpoint (wrong magic number 12345)');
    expect(read(torchLegacy(VIEWS, STORAGES, { littleEndian: false }))).toThrow('saved on a big-endian machine');
    expect(read(new TextEncoder().encode('<html>not found</html>'))).toThrow(
      /^bad\.bin: not a PyTorch checkpoint \(neither a zip archive nor a legacy torch\.save file/,
    );
  });

  it('huge declared lengths are checked against the bytes present before anything is allocated', () => {
    const u32 = (v: number) => Array.from(new Uint8Array(new Uint32Array([v]).buffer));
    const hugeString = new PickleBuilder().op(OP.PROTO, 2, 0x58).raw(u32(0xfffffff0)).op(OP.STOP).bytes();
    expect(read(torchZipWithPickle(hugeString))).toThrow(/truncated pickle: BINUNICODE needs 4294967280 bytes but only 1 remain/);
    const hugeBytes8 = new PickleBuilder()
      .op(OP.PROTO, 4, 0x8e)
      .raw(new Uint8Array(new BigUint64Array([1n << 62n]).buffer))
      .op(OP.STOP)
      .bytes();
    expect(read(torchZipWithPickle(hugeBytes8))).toThrow(`BINBYTES8 needs ${1n << 62n} bytes`);
    const hugeLong = new PickleBuilder().op(OP.PROTO, 2, 0x8b).raw(u32(0x7fffffff)).op(OP.STOP).bytes();
    expect(read(torchZipWithPickle(hugeLong))).toThrow('LONG4 needs 2147483647 bytes');
    const claims = new Map([['0', { type: 'FloatStorage', bytes: STORAGES.get('0')!.bytes, numel: 0x7fffffff }]]);
    const w = new Map([['w', { storage: '0', shape: [12] }]]);
    expect(read(torchZip(w, claims))).toThrow(
      'bad.bin: storage "0" declares 2147483647 FloatStorage elements (8589934588 bytes) but archive/data/0 holds 48 bytes',
    );
    expect(read(torchLegacy(w, claims))).toThrow('bad.bin: truncated file: storage "0" needs 8589934588 bytes at byte');
    // A central directory that claims more entries than it can hold.
    const plain = writeZip([{ name: 'a/data.pkl', bytes: osSystemPickle() }]);
    new DataView(plain.buffer).setUint16(plain.length - 22 + 10, 60000, true);
    expect(read(plain)).toThrow('60000 entries cannot fit a');
  });

  it('views outside their storage, and tensors larger than their storage', () => {
    const oob = new Map([['w', { storage: '0', offset: 10, shape: [4] }]]);
    const used = new Map([['0', STORAGES.get('0')!]]);
    for (const write of [torchZip, torchLegacy]) {
      expect(read(write(oob, used))).toThrow('bad.bin: tensor "w": view (offset 10, size [4], stride [1]) reaches element 13 of a 12-element storage "0"');
    }
    const strided = new Map([['w', { storage: '0', shape: [3, 3], stride: [5, 1] }]]);
    expect(read(torchZip(strided, STORAGES))).toThrow('reaches element 12 of a 12-element storage');
    const broadcast = new Map([['w', { storage: '0', shape: [1000, 1000], stride: [0, 0] }]]);
    expect(read(torchZip(broadcast, STORAGES))).toThrow('tensor "w": size [1000, 1000] has 1000000 elements but its storage "0" holds only 12');
  });

  it('storages and entries that do not line up', () => {
    const pickle = stateDictPickle(new Map([['w', { storage: '0', shape: [12] }]]), STORAGES, false);
    expect(read(torchZipWithPickle(pickle))).toThrow('bad.bin: storage "0" has no entry archive/data/0 in the archive');
    const legacy = torchLegacy(new Map([['w', { storage: '0', shape: [12] }]]), new Map([['0', STORAGES.get('0')!]]));
    const wrongCount = Uint8Array.from(legacy);
    new DataView(wrongCount.buffer).setBigInt64(legacy.length - 48 - 8, 11n, true);
    expect(read(wrongCount)).toThrow('bad.bin: storage "0" is stored with 11 elements but the state dict declares 12');
    const unused = torchLegacy(
      new Map([['w', { storage: '0', shape: [12] }]]),
      new Map([
        ['0', STORAGES.get('0')!],
        ['9', STORAGES.get('0')!],
      ]),
    );
    expect(read(unused)).toThrow('bad.bin: the storage key list names "9", which no tensor uses');
    const noDict = new PickleBuilder().op(OP.PROTO, 2, OP.EMPTY_LIST, OP.STOP).bytes();
    expect(read(torchZipWithPickle(noDict))).toThrow('bad.bin: expected a state dict (tensor name -> tensor), got a list');
    const notTensor = new PickleBuilder().op(OP.PROTO, 2, OP.EMPTY_DICT).str('step').int(5).op(0x73, OP.STOP).bytes();
    expect(read(torchZipWithPickle(notTensor))).toThrow('bad.bin: state dict entry "step" is an int, not a tensor');
    const twoTypes = new Map<string, TensorSpec>([['a', { storage: '0', shape: [12] }]]);
    const pk = stateDictPickle(twoTypes, STORAGES, false);
    const clash = concat([
      pk.subarray(0, pk.length - 2),
      stateDictPickle(new Map([['b', { storage: '0', shape: [6] }]]), new Map([['0', { type: 'HalfStorage', bytes: new Uint8Array(24) }]]), false).subarray(
        4,
        -2,
      ),
      pk.subarray(pk.length - 2),
    ]);
    expect(read(torchZipWithPickle(clash, STORAGES))).toThrow('storage "0" is declared both as FloatStorage(12) and HalfStorage(12)');
  });

  it('through the loader, a corrupt pytorch_model.bin is named', async () => {
    const folder = await folderWith('t5-tiny-relu', { 'pytorch_model.bin': zipBytes.subarray(0, 5000) });
    await expect(loadT5Checkpoint(folderModelSource(folder), { tokenizer: false })).rejects.toThrow(
      `${folder}/pytorch_model.bin: not a ZIP archive, or truncated`,
    );
  });
});

/** Writes the fixture's tensors as torch shards (one storage per tensor) plus pytorch_model.bin.index.json. */
async function writeTorchShards(model: string, perShard: number): Promise<{ folder: string; shards: string[] }> {
  const tensors = await readFixtureTensors(model);
  const folder = await folderWith(model, {});
  const names = [...tensors.keys()];
  const total = Math.ceil(names.length / perShard);
  const weightMap: Record<string, string> = {};
  const shards: string[] = [];
  for (let s = 0; s < total; s++) {
    const shard = `pytorch_model-${String(s + 1).padStart(5, '0')}-of-${String(total).padStart(5, '0')}.bin`;
    const views = new Map<string, TensorSpec>();
    const storages = new Map<string, StorageSpec>();
    names.slice(s * perShard, (s + 1) * perShard).forEach((n, i) => {
      const t = tensors.get(n)!;
      storages.set(String(i), { type: 'FloatStorage', bytes: new Uint8Array(t.data.buffer.slice(t.data.byteOffset, t.data.byteOffset + t.data.byteLength)) });
      views.set(n, { storage: String(i), shape: t.shape });
      weightMap[n] = shard;
    });
    // Alternate the two container formats across shards.
    await writeFile(join(folder, shard), s % 2 ? torchLegacy(views, storages) : torchZip(views, storages));
    shards.push(shard);
  }
  await writeFile(join(folder, 'pytorch_model.bin.index.json'), JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap }));
  return { folder, shards };
}

describe('sharded pytorch_model.bin.index.json', () => {
  it('loads every shard (zip and legacy mixed) and checks the index against them', async () => {
    const { folder, shards } = await writeTorchShards('t5-tiny-gated', 10);
    expect(shards.length).toBeGreaterThanOrEqual(3);
    const model = await loadT5Checkpoint(folderModelSource(folder), { tokenizer: false });
    expectParams(model.params, await readFixtureTensors('t5-tiny-gated'), false);
    model.params.dispose();

    const index = JSON.parse(await readFile(join(folder, 'pytorch_model.bin.index.json'), 'utf8'));
    const [name] = Object.entries(index.weight_map as Record<string, string>).find(([, s]) => s === shards[0])!;
    index.weight_map[name] = shards[1];
    await writeFile(join(folder, 'pytorch_model.bin.index.json'), JSON.stringify(index));
    await expect(loadT5Checkpoint(folderModelSource(folder), { tokenizer: false })).rejects.toThrow(
      `${folder}/${shards[0]} holds tensor "${name}", which pytorch_model.bin.index.json places in ${shards[1]}`,
    );
  });

  it('a missing torch shard is named', async () => {
    const { folder, shards } = await writeTorchShards('bert-tiny', 12);
    await rm(join(folder, shards[1]));
    await expect(loadBertCheckpoint(folderModelSource(folder), { tokenizer: false })).rejects.toThrow(
      `missing shard: ${folder}/pytorch_model.bin.index.json lists ${shards[1]}, which ${folder} does not have`,
    );
  });
});

describe('hub loading falls back to pytorch_model.bin', () => {
  let hub: LocalHub;
  let sharded: { folder: string; shards: string[] };

  beforeAll(async () => {
    const zipOnly = await folderWith('t5-tiny-relu', { 'pytorch_model.bin': await readFile(join(fixture('t5-tiny-relu'), VARIANTS.zip)) });
    const legacyOnly = await folderWith('bert-tiny', { 'pytorch_model.bin': await readFile(join(fixture('bert-tiny'), VARIANTS.legacy)) });
    sharded = await writeTorchShards('t5-tiny-gated', 10);
    hub = await startLocalHub({ repos: { 'ref/t5-bin': zipOnly, 'ref/bert-bin': legacyOnly, 'ref/t5-bin-sharded': sharded.folder } });
  });

  afterAll(() => hub.close());

  it('loads zip and legacy pytorch_model.bin by hub id, after safetensors 404s', async () => {
    const t5 = await loadT5Checkpoint(hubModelSource('ref/t5-bin', { endpoint: hub.url }), { tokenizer: false });
    expectParams(t5.params, await readFixtureTensors('t5-tiny-relu'), false);
    t5.params.dispose();
    const requested = hub.requests.filter((p) => p.startsWith('/ref/t5-bin/'));
    expect(requested).toEqual([
      '/ref/t5-bin/resolve/main/config.json',
      '/ref/t5-bin/resolve/main/model.safetensors',
      '/ref/t5-bin/resolve/main/model.safetensors.index.json',
      '/ref/t5-bin/resolve/main/pytorch_model.bin',
    ]);
    const bert = await loadBertCheckpoint(hubModelSource('ref/bert-bin', { endpoint: hub.url }), { tokenizer: false });
    expectParams(bert.params, await readFixtureTensors('bert-tiny'), false);
    bert.params.dispose();
  });

  it('loads a sharded pytorch_model.bin checkpoint, fetching each shard once', async () => {
    const before = hub.requests.length;
    const model = await loadT5Checkpoint(hubModelSource('ref/t5-bin-sharded', { endpoint: hub.url }), { tokenizer: false });
    expectParams(model.params, await readFixtureTensors('t5-tiny-gated'), false);
    model.params.dispose();
    const requested = hub.requests.slice(before);
    expect(requested).toContain('/ref/t5-bin-sharded/resolve/main/pytorch_model.bin.index.json');
    for (const shard of sharded.shards) expect(requested.filter((p) => p.endsWith('/' + shard))).toHaveLength(1);
  });
});
