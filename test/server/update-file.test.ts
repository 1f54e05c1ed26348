/**
 * The streamed update reader (server/update-file.ts) against the in-memory gate it replaced on the
 * coordinator's path (decodeUpdate): the same refusals with the same codes and messages, the same
 * L2 norm, the same running-sum arithmetic and the same delta-file bytes — with chunks small enough
 * that every tensor spans several, and a chunk boundary falls inside a tensor.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { decodeUpdate, encodeUpdate, UpdateError, type NamedTensor } from '../../src/federated/codec';
import { deltaNorm } from '../../src/federated/strategies/delta-chunks';
import { addWeighted, emptyRunningSum } from '../../src/federated/strategy';
import { writeDeltaFile } from '../../server/delta-files';
import { addToRunningSum, openUpdateFile, writeDeltaFileFrom } from '../../server/update-file';
import { randomTensors, seeded, tempDir } from './helpers';
import { expectIdenticalNumbers } from '../identical-numbers';

const SHAPES: ReadonlyArray<[string, number[]]> = [
  ['a', [33, 7]],
  ['b', [101]],
  ['c', [2, 3, 5]],
];
const expected = new Map(SHAPES.map(([n, s]) => [n, s] as const));
const meta = { round: 2, baseVersion: 1, numExamples: 7, metrics: { loss: 0.5 } };
const CHUNK = 64; // bytes: 16 F32 or 32 F16 values per read

describe('streamed update reader', () => {
  const dir = tempDir();
  afterAll(() => dir.remove());
  let n = 0;
  const onDisk = (bytes: Uint8Array) => {
    const path = join(dir.path, `u${n++}.safetensors`);
    writeFileSync(path, bytes);
    return path;
  };
  const outcome = async (bytes: Uint8Array) => {
    try {
      const f = await openUpdateFile(onDisk(bytes), expected, CHUNK);
      await f.close();
      return 'accepted';
    } catch (e) {
      return e instanceof UpdateError ? `${e.code}: ${e.message}` : `other: ${(e as Error).message}`;
    }
  };
  const inMemory = (bytes: Uint8Array) => {
    try {
      decodeUpdate(bytes, expected);
      return 'accepted';
    } catch (e) {
      return e instanceof UpdateError ? `${e.code}: ${e.message}` : `other: ${(e as Error).message}`;
    }
  };

  for (const dtype of ['F32', 'F16'] as const) {
    it(`${dtype}: reads the metadata, the norm, the running sum and the delta file exactly as decodeUpdate + addWeighted + writeDeltaFile do`, async () => {
      const deltas = randomTensors(SHAPES, seeded(dtype === 'F32' ? 1 : 2), 0.3);
      const body = encodeUpdate(deltas, meta, dtype);
      const decoded = decodeUpdate(body, expected);
      const file = await openUpdateFile(onDisk(body), expected, CHUNK);
      try {
        expect({ round: file.round, baseVersion: file.baseVersion, numExamples: file.numExamples, metrics: file.metrics, bytes: file.bytes }).toEqual({
          round: 2,
          baseVersion: 1,
          numExamples: 7,
          metrics: { loss: 0.5 },
          bytes: body.byteLength,
        });
        expect(file.norm).toBe(deltaNorm(new Map([...decoded.deltas].map(([k, t]) => [k, t.data]))));
        // Running sum: start from a non-zero sum so the addition order matters.
        const streamed = emptyRunningSum(expected);
        const reference = emptyRunningSum(expected);
        addWeighted(streamed, decoded.deltas, 1.5);
        addWeighted(reference, decoded.deltas, 1.5);
        await addToRunningSum(file, streamed, 3);
        addWeighted(reference, decoded.deltas, 3);
        expect(streamed.weightTotal).toBe(reference.weightTotal);
        for (const [name, t] of reference.sums) expectIdenticalNumbers(streamed.sums.get(name)?.data, t.data, name);
        const fromFile = join(dir.path, `delta-stream-${dtype}.safetensors`);
        const fromMemory = join(dir.path, `delta-memory-${dtype}.safetensors`);
        await writeDeltaFileFrom(file, fromFile);
        writeDeltaFile(fromMemory, decoded.deltas as Map<string, NamedTensor>);
        expect(Buffer.compare(readFileSync(fromFile), readFileSync(fromMemory))).toBe(0);
      } finally {
        await file.close();
      }
    });
  }

  it('refuses what decodeUpdate refuses, with the same code and message, and accepts what it accepts', async () => {
    const deltas = randomTensors(SHAPES, seeded(3), 0.3);
    const good = encodeUpdate(deltas, meta);
    const withValue = (name: string, index: number, value: number) => {
      const copy = new Map(deltas);
      const data = Float32Array.from(deltas.get(name)!.data);
      data[index] = value;
      copy.set(name, { shape: deltas.get(name)!.shape, data });
      return encodeUpdate(copy, meta);
    };
    const header = (h: object, dataBytes: number) => {
      let json = JSON.stringify(h);
      json += ' '.repeat((8 - (json.length % 8)) % 8);
      const out = new Uint8Array(8 + json.length + dataBytes);
      new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
      out.set(new TextEncoder().encode(json), 8);
      return out;
    };
    const md = { 'corag.round': '2', 'corag.base_version': '1', 'corag.num_examples': '7' };
    const cases: Array<[string, Uint8Array]> = [
      ['accepted', good],
      ['NaN in the last tensor, past the first chunk', withValue('c', 29, Number.NaN)],
      ['Infinity at a chunk boundary', withValue('a', 16, Number.POSITIVE_INFINITY)],
      ['empty', new Uint8Array(0)],
      ['5 bytes', new Uint8Array(5)],
      ['truncated header', good.subarray(0, 40)],
      ['truncated data', good.subarray(0, good.byteLength - 4)],
      [
        'header length beyond 100 MB',
        (() => {
          const b = new Uint8Array(16);
          new DataView(b.buffer).setBigUint64(0, 200_000_000n, true);
          return b;
        })(),
      ],
      [
        'header not JSON',
        (() => {
          const b = new Uint8Array(16).fill(0x7b);
          new DataView(b.buffer).setBigUint64(0, 8n, true);
          return b;
        })(),
      ],
      ['missing metadata', header({ a: { dtype: 'F32', shape: [33, 7], data_offsets: [0, 924] } }, 924)],
      [
        'wrong dtype',
        header(
          {
            __metadata__: md,
            a: { dtype: 'I32', shape: [33, 7], data_offsets: [0, 924] },
            b: { dtype: 'F32', shape: [101], data_offsets: [924, 1328] },
            c: { dtype: 'F32', shape: [2, 3, 5], data_offsets: [1328, 1448] },
          },
          1448,
        ),
      ],
      [
        'wrong shape',
        header(
          {
            __metadata__: md,
            a: { dtype: 'F32', shape: [7, 33], data_offsets: [0, 924] },
            b: { dtype: 'F32', shape: [101], data_offsets: [924, 1328] },
            c: { dtype: 'F32', shape: [2, 3, 5], data_offsets: [1328, 1448] },
          },
          1448,
        ),
      ],
      [
        'misaligned',
        header(
          {
            __metadata__: md,
            a: { dtype: 'F32', shape: [33, 7], data_offsets: [0, 924] },
            b: { dtype: 'F32', shape: [101], data_offsets: [925, 1329] },
            c: { dtype: 'F32', shape: [2, 3, 5], data_offsets: [1329, 1449] },
          },
          1449,
        ),
      ],
      [
        'missing tensor',
        header(
          { __metadata__: md, a: { dtype: 'F32', shape: [33, 7], data_offsets: [0, 924] }, b: { dtype: 'F32', shape: [101], data_offsets: [924, 1328] } },
          1328,
        ),
      ],
      ['unknown tensor', header({ __metadata__: md, z: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }, 4)],
      [
        'overlapping tensors',
        header(
          {
            __metadata__: md,
            a: { dtype: 'F32', shape: [33, 7], data_offsets: [0, 924] },
            b: { dtype: 'F32', shape: [101], data_offsets: [900, 1304] },
            c: { dtype: 'F32', shape: [2, 3, 5], data_offsets: [1328, 1448] },
          },
          1448,
        ),
      ],
    ];
    const refusedCodes = new Set<string>();
    for (const [what, bytes] of cases) {
      const streamed = await outcome(bytes);
      expect(streamed, what).toBe(inMemory(bytes));
      if (what === 'accepted') expect(streamed).toBe('accepted');
      else {
        expect(streamed, what).not.toBe('accepted');
        expect(streamed, what).not.toMatch(/^other/);
        refusedCodes.add(streamed.split(':')[0]);
      }
    }
    expect([...refusedCodes].sort()).toEqual([
      'malformed_safetensors',
      'misaligned_tensor',
      'missing_metadata',
      'missing_tensor',
      'non_finite',
      'unknown_tensor',
      'wrong_dtype',
      'wrong_shape',
    ]);
  });
});
