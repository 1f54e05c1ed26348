import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { floatToHalf, parseSafetensors, readTensor, SafetensorsError, writeSafetensors } from '../../src/model/safetensors';

const FIXTURES = new URL('../../../shared/fixtures/hf-reference/', import.meta.url);

describe('safetensors', () => {
  it('parses a Hugging Face checkpoint and reads F32 tensors as zero-copy views', () => {
    const bytes = readFileSync(new URL('t5-tiny-gated/model.safetensors', FIXTURES));
    const file = parseSafetensors(bytes);
    const t = readTensor(file, 'shared.weight');
    expect(t.shape).toEqual([384, 32]);
    expect(t.data).toBeInstanceOf(Float32Array);
    if ((bytes.byteOffset + file.dataOffset + file.tensors.get('shared.weight')!.begin) % 4 === 0) {
      expect(t.data.buffer).toBe(bytes.buffer);
    }
  });

  it('round-trips F32, F16, BF16, I32 and I64 with metadata', () => {
    const f = new Float32Array([0, 1, -2.5, 65504, 1e-3, 3.14159]);
    const out = writeSafetensors(
      {
        a: { dtype: 'F32', shape: [2, 3], data: f },
        h: { dtype: 'F16', shape: [6], data: f },
        b: { dtype: 'BF16', shape: [6], data: f },
        i: { dtype: 'I32', shape: [3], data: new Int32Array([1, -2, 3]) },
        l: { dtype: 'I64', shape: [2], data: new Int32Array([-100, 7]) },
      },
      { format: 'pt' },
    );
    const p = parseSafetensors(out);
    expect(p.metadata).toEqual({ format: 'pt' });
    expect([...readTensor(p, 'a').data]).toEqual([...f]);
    const h = readTensor(p, 'h').data;
    // half has an 11-bit significand: relative error at most 2^-11 (normal range)
    f.forEach((v, k) => expect(Math.abs(h[k] - v)).toBeLessThanOrEqual(Math.abs(v) * 2 ** -11));
    const b = readTensor(p, 'b').data;
    f.forEach((v, k) => expect(Math.abs(b[k] - v)).toBeLessThanOrEqual(Math.abs(v) / 128 + 1e-6));
    expect([...readTensor(p, 'i').data]).toEqual([1, -2, 3]);
    expect([...readTensor(p, 'l').data]).toEqual([-100, 7]);
  });

  it('reads a misaligned F32 tensor as a copy of exactly its own bytes, also from a Node Buffer view', () => {
    const values = new Float32Array([1.5, -2, 3.25]);
    const file = writeSafetensors({ x: { dtype: 'F32', shape: [3], data: values } });
    // The same bytes inside a larger pooled buffer, at an odd offset, with junk around them: the
    // situation of an HTTP body that Node hands over as a Buffer slice.
    const pool = Buffer.alloc(file.byteLength + 64, 0x7f);
    pool.set(file, 3);
    const body = pool.subarray(3, 3 + file.byteLength);
    const t = readTensor(parseSafetensors(body), 'x');
    expect(t.data).toBeInstanceOf(Float32Array);
    expect(t.data.length).toBe(3);
    expect(Array.from(t.data)).toEqual([1.5, -2, 3.25]);
  });

  it('rounds float32 to half to nearest even, with overflow to infinity', () => {
    expect(floatToHalf(1)).toBe(0x3c00);
    expect(floatToHalf(-2)).toBe(0xc000);
    expect(floatToHalf(65504)).toBe(0x7bff);
    expect(floatToHalf(1e6)).toBe(0x7c00);
    expect(floatToHalf(Number.NaN) & 0x7c00).toBe(0x7c00);
  });

  it('rejects truncated, malformed and inconsistent files with a message naming the problem', () => {
    const good = writeSafetensors({ w: { dtype: 'F32', shape: [4], data: new Float32Array(4) } });
    expect(() => parseSafetensors(good.subarray(0, 5))).toThrow(/truncated/);
    expect(() => parseSafetensors(good.subarray(0, good.length - 4))).toThrow(/truncated.*"w"/);
    const bad = good.slice();
    bad.set(new TextEncoder().encode('{'), 8 + 1);
    expect(() => parseSafetensors(bad)).toThrow(SafetensorsError);
    const header = (h: object): Uint8Array => {
      const j = new TextEncoder().encode(JSON.stringify(h));
      const b = new Uint8Array(8 + j.length + 16);
      new DataView(b.buffer).setBigUint64(0, BigInt(j.length), true);
      b.set(j, 8);
      return b;
    };
    expect(() => parseSafetensors(header({ w: { dtype: 'Q4', shape: [4], data_offsets: [0, 16] } }))).toThrow(/dtype/);
    expect(() => parseSafetensors(header({ w: { dtype: 'F32', shape: [3], data_offsets: [0, 16] } }))).toThrow(/needs 12 bytes/);
    expect(() => parseSafetensors(header({ w: { dtype: 'F32', shape: [-1], data_offsets: [0, 16] } }))).toThrow(/shape/);
    expect(() =>
      parseSafetensors(header({ a: { dtype: 'F32', shape: [4], data_offsets: [0, 16] }, b: { dtype: 'F32', shape: [2], data_offsets: [8, 16] } })),
    ).toThrow(/overlap/);
    const huge = new Uint8Array(16);
    new DataView(huge.buffer).setBigUint64(0, 2n ** 40n, true);
    expect(() => parseSafetensors(huge)).toThrow(/limit/);
  });
});
