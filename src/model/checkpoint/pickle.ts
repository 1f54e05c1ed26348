/**
 * A restricted Python pickle reader. `pytorch_model.bin` files are pickles, and a normal
 * unpickler runs whatever the file names (`os.system`, `builtins.eval`, ...): loading a hub
 * checkpoint must never do that. This one is a small stack machine over the opcodes plain data
 * needs (numbers, strings, bytes, tuples, lists, dicts, memo) and hands everything that could
 * run code to its caller: a global (GLOBAL / STACK_GLOBAL) is resolved only when the caller's
 * allowlist names it, and REDUCE / BUILD / persistent ids go through the caller's hooks (see
 * torch-bin.ts for the torch state-dict rules). Every other opcode that builds objects (INST, OBJ,
 * NEWOBJ, extension registry codes, out-of-band buffers) is refused with an error naming it.
 *
 * Nothing is allocated from a length read out of the file before that length has been checked
 * against the bytes actually present.
 */

export class PickleError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PickleError';
  }
}

/** A Python tuple (JS arrays stand for lists). */
export class PyTuple {
  constructor(readonly items: readonly PyValue[]) {}
}

/** A Python dict or OrderedDict with str / int / bool / None keys (all a state dict uses). */
export class PyDict {
  readonly entries = new Map<string | number | bigint | boolean | null, PyValue>();
  /** `collections.OrderedDict` rather than a plain dict. */
  constructor(readonly ordered = false) {}
}

/** A global the allowlist accepted, e.g. `collections.OrderedDict`: a name, never a resolved object. */
export class PyGlobal {
  constructor(
    readonly module: string,
    readonly name: string,
  ) {}
  get qualifiedName(): string {
    return `${this.module}.${this.name}`;
  }
}

/** What the caller's hooks return (a storage, a tensor); the unpickler treats it as opaque. */
export class PyOpaque<T = unknown> {
  constructor(
    readonly kind: string,
    readonly value: T,
  ) {}
}

export type PyValue = null | boolean | number | bigint | string | Uint8Array | PyValue[] | PyTuple | PyDict | PyGlobal | PyOpaque;

export interface UnpickleOptions {
  /** Names the file in every message, e.g. "pytorch_model.bin". */
  readonly source: string;
  /** Fully qualified names (`module.name`) a GLOBAL / STACK_GLOBAL may name. Anything else is refused. */
  readonly allowedGlobals: ReadonlySet<string>;
  /** REDUCE: call an allowed global with its argument tuple. Throw to refuse. */
  reduce(callable: PyGlobal, args: readonly PyValue[]): PyValue;
  /** BINPERSID: the object a persistent id stands for (torch: a storage). Absent: persistent ids are refused. */
  persistentLoad?(pid: PyValue): PyValue;
  /** BUILD (`obj.__setstate__(state)`): return the object to keep. Absent: BUILD is refused. */
  build?(obj: PyValue, state: PyValue): PyValue;
}

/** Upper bound on memo entries and stack depth: far above any state dict, far below memory trouble. */
const MAX_ITEMS = 50_000_000;

const OPCODE_NAMES: Record<number, string> = {
  0x28: 'MARK',
  0x2e: 'STOP',
  0x30: 'POP',
  0x31: 'POP_MARK',
  0x32: 'DUP',
  0x46: 'FLOAT',
  0x49: 'INT',
  0x4a: 'BININT',
  0x4b: 'BININT1',
  0x4c: 'LONG',
  0x4d: 'BININT2',
  0x4e: 'NONE',
  0x50: 'PERSID',
  0x51: 'BINPERSID',
  0x52: 'REDUCE',
  0x53: 'STRING',
  0x54: 'BINSTRING',
  0x55: 'SHORT_BINSTRING',
  0x56: 'UNICODE',
  0x58: 'BINUNICODE',
  0x61: 'APPEND',
  0x62: 'BUILD',
  0x63: 'GLOBAL',
  0x64: 'DICT',
  0x7d: 'EMPTY_DICT',
  0x65: 'APPENDS',
  0x67: 'GET',
  0x68: 'BINGET',
  0x69: 'INST',
  0x6a: 'LONG_BINGET',
  0x6c: 'LIST',
  0x5d: 'EMPTY_LIST',
  0x6f: 'OBJ',
  0x70: 'PUT',
  0x71: 'BINPUT',
  0x72: 'LONG_BINPUT',
  0x73: 'SETITEM',
  0x74: 'TUPLE',
  0x29: 'EMPTY_TUPLE',
  0x75: 'SETITEMS',
  0x47: 'BINFLOAT',
  0x80: 'PROTO',
  0x81: 'NEWOBJ',
  0x82: 'EXT1',
  0x83: 'EXT2',
  0x84: 'EXT4',
  0x85: 'TUPLE1',
  0x86: 'TUPLE2',
  0x87: 'TUPLE3',
  0x88: 'NEWTRUE',
  0x89: 'NEWFALSE',
  0x8a: 'LONG1',
  0x8b: 'LONG4',
  0x42: 'BINBYTES',
  0x43: 'SHORT_BINBYTES',
  0x8c: 'SHORT_BINUNICODE',
  0x8d: 'BINUNICODE8',
  0x8e: 'BINBYTES8',
  0x8f: 'EMPTY_SET',
  0x90: 'ADDITEMS',
  0x91: 'FROZENSET',
  0x92: 'NEWOBJ_EX',
  0x93: 'STACK_GLOBAL',
  0x94: 'MEMOIZE',
  0x95: 'FRAME',
  0x96: 'BYTEARRAY8',
  0x97: 'NEXT_BUFFER',
  0x98: 'READONLY_BUFFER',
};

function opName(op: number): string {
  return OPCODE_NAMES[op] ?? `0x${op.toString(16).padStart(2, '0')}`;
}

const MARK = Symbol('mark');
type StackItem = PyValue | typeof MARK;

export function describePyValue(v: PyValue | typeof MARK): string {
  if (v === MARK) return 'a MARK';
  if (v === null) return 'None';
  if (typeof v === 'boolean') return 'a bool';
  if (typeof v === 'number') return Number.isInteger(v) ? 'an int' : 'a float';
  if (typeof v === 'bigint') return 'an int';
  if (typeof v === 'string') return 'a str';
  if (v instanceof Uint8Array) return 'bytes';
  if (Array.isArray(v)) return 'a list';
  if (v instanceof PyTuple) return 'a tuple';
  if (v instanceof PyDict) return v.ordered ? 'an OrderedDict' : 'a dict';
  if (v instanceof PyGlobal) return `the global "${v.qualifiedName}"`;
  return `a ${v.kind}`;
}

/**
 * Reads one pickle starting at `offset` of `bytes`. Returns the value and the offset just after
 * its STOP opcode (the legacy torch format stores several pickles back to back).
 */
export function unpickle(bytes: Uint8Array, options: UnpickleOptions, offset = 0): { value: PyValue; end: number } {
  const src = options.source;
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = offset;
  let opPos = offset;
  let op = 0;
  const stack: StackItem[] = [];
  const marks: number[] = [];
  const memo = new Map<number, PyValue>();
  const latin1 = new TextDecoder('latin1');
  const utf8 = new TextDecoder('utf-8', { fatal: true });

  const fail = (message: string): never => {
    throw new PickleError(`${src}: ${message} (opcode ${opName(op)} at byte ${opPos})`);
  };
  const need = (n: number | bigint, what: string): number => {
    const left = bytes.byteLength - pos;
    if (typeof n === 'bigint' ? n > BigInt(left) : n > left) {
      fail(`truncated pickle: ${what} needs ${n} bytes but only ${left} remain`);
    }
    return Number(n);
  };
  const take = (n: number | bigint, what: string): Uint8Array => {
    const len = need(n, what);
    const out = bytes.subarray(pos, pos + len);
    pos += len;
    return out;
  };
  const u8 = (what: string) => take(1, what)[0];
  const u16 = (what: string) => {
    need(2, what);
    const v = dv.getUint16(pos, true);
    pos += 2;
    return v;
  };
  const u32 = (what: string) => {
    need(4, what);
    const v = dv.getUint32(pos, true);
    pos += 4;
    return v;
  };
  const i32 = (what: string) => {
    need(4, what);
    const v = dv.getInt32(pos, true);
    pos += 4;
    return v;
  };
  const u64 = (what: string): bigint => {
    need(8, what);
    const v = dv.getBigUint64(pos, true);
    pos += 8;
    return v;
  };
  /** A text-opcode argument: bytes up to the next newline. */
  const line = (what: string): string => {
    const nl = bytes.indexOf(0x0a, pos);
    if (nl < 0) fail(`truncated pickle: ${what} has no terminating newline`);
    const s = latin1.decode(bytes.subarray(pos, nl));
    pos = nl + 1;
    return s;
  };
  const decodeUtf8 = (b: Uint8Array): string => {
    try {
      return utf8.decode(b);
    } catch {
      return fail('string is not valid UTF-8');
    }
  };

  const push = (v: StackItem) => {
    if (stack.length >= MAX_ITEMS) fail(`pickle stack deeper than ${MAX_ITEMS}`);
    stack.push(v);
  };
  const pop = (): PyValue => {
    if (stack.length === 0 || stack[stack.length - 1] === MARK) fail('stack underflow (malformed pickle)');
    return stack.pop() as PyValue;
  };
  const top = (): PyValue => {
    const v = stack[stack.length - 1];
    if (stack.length === 0 || v === MARK) fail('stack underflow (malformed pickle)');
    return v as PyValue;
  };
  const popMark = (): PyValue[] => {
    const m = marks.pop();
    if (m === undefined) fail('no MARK on the stack (malformed pickle)');
    const items = stack.splice(m!);
    if (items[0] !== MARK) fail('MARK bookkeeping out of step (malformed pickle)');
    return items.slice(1) as PyValue[];
  };
  const memoPut = (index: number) => {
    if (memo.size >= MAX_ITEMS && !memo.has(index)) fail(`more than ${MAX_ITEMS} memo entries`);
    memo.set(index, top());
  };
  const memoGet = (index: number) => {
    if (!memo.has(index)) fail(`memo entry ${index} was never stored (malformed pickle)`);
    push(memo.get(index)!);
  };
  const resolveGlobal = (module: string, name: string): PyGlobal => {
    const qualified = `${module}.${name}`;
    if (!options.allowedGlobals.has(qualified)) {
      throw new PickleError(`${src}: refused pickle global "${qualified}" (only the globals a state dict needs are allowed; the file may be malicious)`);
    }
    return new PyGlobal(module, name);
  };
  const dictKey = (k: PyValue): string | number | bigint | boolean | null => {
    if (k === null || typeof k === 'string' || typeof k === 'number' || typeof k === 'bigint' || typeof k === 'boolean') return k;
    return fail(`dict key must be a str, int, bool or None, got ${describePyValue(k)}`);
  };
  const setItems = (dict: PyValue, items: PyValue[]) => {
    if (!(dict instanceof PyDict)) fail(`SETITEM(S) on ${describePyValue(dict)}, expected a dict`);
    if (items.length % 2) fail('SETITEMS with an odd number of items');
    for (let i = 0; i < items.length; i += 2) (dict as PyDict).entries.set(dictKey(items[i]), items[i + 1]);
  };
  const appendItems = (list: PyValue, items: PyValue[]) => {
    if (!Array.isArray(list)) fail(`APPEND(S) on ${describePyValue(list)}, expected a list`);
    for (const item of items) (list as PyValue[]).push(item);
  };
  const parseDecimal = (s: string, what: string): number | bigint => {
    const t = s.endsWith('L') ? s.slice(0, -1) : s;
    if (!/^[-+]?\d+$/.test(t)) fail(`${what} ${JSON.stringify(s)} is not an integer`);
    const big = BigInt(t);
    return big >= BigInt(Number.MIN_SAFE_INTEGER) && big <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(big) : big;
  };
  /** Little-endian two's complement, as LONG1 / LONG4 store it. */
  const decodeLong = (b: Uint8Array): number | bigint => {
    if (b.byteLength === 0) return 0;
    let v = 0n;
    for (let i = b.byteLength - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]);
    if (b[b.byteLength - 1] & 0x80) v -= 1n << BigInt(8 * b.byteLength);
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  };
  const quoted = (s: string): string => {
    // Protocol 0 STRING: a Python repr in quotes. State dicts do not need escapes; refuse them.
    const q = s[0];
    if (s.length < 2 || (q !== "'" && q !== '"') || s[s.length - 1] !== q) fail('STRING argument is not quoted');
    const body = s.slice(1, -1);
    if (body.includes('\\')) fail('escaped STRING arguments are not supported');
    return body;
  };

  for (;;) {
    opPos = pos;
    if (pos >= bytes.byteLength) {
      op = 0;
      throw new PickleError(`${src}: truncated pickle: ended at byte ${pos} without a STOP opcode`);
    }
    op = bytes[pos++];
    switch (op) {
      case 0x80: {
        // PROTO
        const proto = u8('protocol number');
        if (proto > 5) fail(`unsupported pickle protocol ${proto}`);
        break;
      }
      case 0x95: // FRAME: a length hint only; the frame's opcodes follow inline.
        u64('frame length');
        break;
      case 0x2e: {
        // STOP
        if (marks.length) fail('STOP with an open MARK (malformed pickle)');
        if (stack.length !== 1) fail(`STOP with ${stack.length} items on the stack, expected 1 (malformed pickle)`);
        return { value: stack[0] as PyValue, end: pos };
      }
      case 0x28: // MARK
        marks.push(stack.length);
        push(MARK);
        break;
      case 0x30: // POP
        if (stack.length && stack[stack.length - 1] === MARK) popMark();
        else pop();
        break;
      case 0x31: // POP_MARK
        popMark();
        break;
      case 0x32: // DUP
        push(top());
        break;

      case 0x4e:
        push(null);
        break; // NONE
      case 0x88:
        push(true);
        break; // NEWTRUE
      case 0x89:
        push(false);
        break; // NEWFALSE
      case 0x4a:
        push(i32('BININT'));
        break;
      case 0x4b:
        push(u8('BININT1'));
        break;
      case 0x4d:
        push(u16('BININT2'));
        break;
      case 0x49: {
        // INT (protocol 0; "00"/"01" are False/True)
        const s = line('INT');
        if (s === '00') push(false);
        else if (s === '01') push(true);
        else push(parseDecimal(s, 'INT'));
        break;
      }
      case 0x4c:
        push(parseDecimal(line('LONG'), 'LONG'));
        break;
      case 0x8a:
        push(decodeLong(take(u8('LONG1 length'), 'LONG1')));
        break;
      case 0x8b: {
        const n = i32('LONG4 length');
        if (n < 0) fail(`negative LONG4 length ${n}`);
        push(decodeLong(take(n, 'LONG4')));
        break;
      }
      case 0x47: {
        // BINFLOAT (big-endian double)
        need(8, 'BINFLOAT');
        push(dv.getFloat64(pos, false));
        pos += 8;
        break;
      }
      case 0x46: {
        // FLOAT
        const s = line('FLOAT');
        const v = Number(s);
        if (s.trim() === '' || (Number.isNaN(v) && !/^[-+]?nan$/i.test(s.trim()))) fail(`FLOAT ${JSON.stringify(s)} is not a number`);
        push(v);
        break;
      }

      case 0x58:
        push(decodeUtf8(take(u32('BINUNICODE length'), 'BINUNICODE')));
        break;
      case 0x8c:
        push(decodeUtf8(take(u8('SHORT_BINUNICODE length'), 'SHORT_BINUNICODE')));
        break;
      case 0x8d:
        push(decodeUtf8(take(u64('BINUNICODE8 length'), 'BINUNICODE8')));
        break;
      case 0x56: {
        // UNICODE (raw-unicode-escape); state dicts only need plain text
        const s = line('UNICODE');
        if (s.includes('\\')) fail('escaped UNICODE arguments are not supported');
        push(s);
        break;
      }
      // Python 2 str: torch reads these as latin-1 text.
      case 0x55:
        push(latin1.decode(take(u8('SHORT_BINSTRING length'), 'SHORT_BINSTRING')));
        break;
      case 0x54: {
        const n = i32('BINSTRING length');
        if (n < 0) fail(`negative BINSTRING length ${n}`);
        push(latin1.decode(take(n, 'BINSTRING')));
        break;
      }
      case 0x53:
        push(quoted(line('STRING')));
        break;
      case 0x43:
        push(take(u8('SHORT_BINBYTES length'), 'SHORT_BINBYTES'));
        break;
      case 0x42:
        push(take(u32('BINBYTES length'), 'BINBYTES'));
        break;
      case 0x8e:
        push(take(u64('BINBYTES8 length'), 'BINBYTES8'));
        break;

      case 0x29:
        push(new PyTuple([]));
        break; // EMPTY_TUPLE
      case 0x74:
        push(new PyTuple(popMark()));
        break; // TUPLE
      case 0x85:
        push(new PyTuple([pop()]));
        break; // TUPLE1
      case 0x86: {
        const b = pop();
        const a = pop();
        push(new PyTuple([a, b]));
        break;
      } // TUPLE2
      case 0x87: {
        const c = pop();
        const b = pop();
        const a = pop();
        push(new PyTuple([a, b, c]));
        break;
      } // TUPLE3
      case 0x5d:
        push([]);
        break; // EMPTY_LIST
      case 0x6c:
        push(popMark());
        break; // LIST
      case 0x61: {
        const item = pop();
        appendItems(top(), [item]);
        break;
      } // APPEND
      case 0x65: {
        const items = popMark();
        appendItems(top(), items);
        break;
      } // APPENDS
      case 0x7d:
        push(new PyDict());
        break; // EMPTY_DICT
      case 0x64: {
        const d = new PyDict();
        setItems(d, popMark());
        push(d);
        break;
      } // DICT
      case 0x73: {
        const v = pop();
        const k = pop();
        setItems(top(), [k, v]);
        break;
      } // SETITEM
      case 0x75: {
        const items = popMark();
        setItems(top(), items);
        break;
      } // SETITEMS

      case 0x70: {
        // PUT
        const s = line('PUT');
        if (!/^\d+$/.test(s)) fail(`PUT index ${JSON.stringify(s)} is not a number`);
        memoPut(Number(s));
        break;
      }
      case 0x71:
        memoPut(u8('BINPUT index'));
        break;
      case 0x72:
        memoPut(u32('LONG_BINPUT index'));
        break;
      case 0x94:
        memoPut(memo.size);
        break; // MEMOIZE
      case 0x67: {
        // GET
        const s = line('GET');
        if (!/^\d+$/.test(s)) fail(`GET index ${JSON.stringify(s)} is not a number`);
        memoGet(Number(s));
        break;
      }
      case 0x68:
        memoGet(u8('BINGET index'));
        break;
      case 0x6a:
        memoGet(u32('LONG_BINGET index'));
        break;

      case 0x63: {
        // GLOBAL "module\nname\n"
        const module = line('GLOBAL module');
        const name = line('GLOBAL name');
        push(resolveGlobal(module, name));
        break;
      }
      case 0x93: {
        // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') fail('STACK_GLOBAL needs two strings');
        push(resolveGlobal(module as string, name as string));
        break;
      }
      case 0x69: {
        // INST "module\nname\n": instantiates a class; refused, naming the class.
        const module = line('INST module');
        const name = line('INST name');
        const qualified = `${module}.${name}`;
        if (!options.allowedGlobals.has(qualified)) {
          throw new PickleError(`${src}: refused pickle global "${qualified}" (opcode INST at byte ${opPos}; the file may be malicious)`);
        }
        fail(`INST of "${qualified}" is not allowed (a state dict never instantiates classes)`);
        break;
      }
      case 0x52: {
        // REDUCE
        const args = pop();
        const callable = pop();
        if (!(callable instanceof PyGlobal)) fail(`REDUCE needs an allowed global to call, got ${describePyValue(callable)}`);
        if (!(args instanceof PyTuple)) fail(`REDUCE arguments must be a tuple, got ${describePyValue(args)}`);
        push(options.reduce(callable as PyGlobal, (args as PyTuple).items));
        break;
      }
      case 0x62: {
        // BUILD
        const state = pop();
        const obj = pop();
        if (!options.build) fail(`BUILD (setting the state of ${describePyValue(obj)}) is not allowed`);
        push(options.build!(obj, state));
        break;
      }
      case 0x51: {
        // BINPERSID
        const pid = pop();
        if (!options.persistentLoad) fail('persistent ids are not allowed here');
        push(options.persistentLoad!(pid));
        break;
      }
      case 0x50: // PERSID: a text persistent id; torch never writes it.
        fail('text persistent ids (PERSID) are not allowed; torch writes BINPERSID');
        break;

      case 0x6f:
      case 0x81:
      case 0x92: // OBJ, NEWOBJ, NEWOBJ_EX
        fail(`${opName(op)} would instantiate a class, which a state dict never does; refused`);
        break;
      case 0x82:
      case 0x83:
      case 0x84: // EXT1/2/4
        fail(`${opName(op)} names a global through the extension registry; refused`);
        break;
      default:
        fail(OPCODE_NAMES[op] ? `opcode ${opName(op)} is not allowed in a state dict` : 'unknown opcode (not a pickle, or corrupt)');
    }
  }
}
