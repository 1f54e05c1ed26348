/**
 * Exact equality of two number arrays, for tests that check a tensor survived a round trip bit for
 * bit. vitest's `toEqual` walks typed arrays element by element through its generic deep equality:
 * about 7 s per million floats on this machine, and the model tests compare tens of millions. This
 * compares the bytes (so -0 and +0 differ, as they do under `toEqual`'s Object.is) and, only when
 * they differ, finds the first differing element for the message.
 */
import { expect } from 'vitest';

/** A typed array of numbers (Float32Array, Int32Array …) or a plain number array. */
type Numbers = ArrayLike<number>;

export function expectIdenticalNumbers(actual: Numbers | undefined, expected: Numbers, label = 'values'): void {
  expect(actual, `${label}: missing`).toBeDefined();
  const got = actual!;
  expect(got.length, `${label}: length`).toBe(expected.length);
  if (ArrayBuffer.isView(got) && ArrayBuffer.isView(expected) && got.constructor === expected.constructor) {
    const bytes = (v: ArrayBufferView) => Buffer.from(v.buffer, v.byteOffset, v.byteLength);
    if (bytes(got).equals(bytes(expected))) return;
  }
  for (let i = 0; i < expected.length; i++) {
    if (!Object.is(got[i], expected[i])) expect(got[i], `${label}[${i}]`).toBe(expected[i]);
  }
}
