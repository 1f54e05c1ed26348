/**
 * Error measures used to compare our tensors with reference ones (Hugging Face fixtures, the cpu
 * backend, an independently computed FedAvg). Both treat a length mismatch or a NaN as an
 * infinite error, so a broken result can never pass a bound.
 */

/** max|a-b| / max|b| (the fixture README's forward measure); the plain max|a-b| when b is all zeros. */
export function maxRelativeError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  if (actual.length !== expected.length) return Infinity;
  let diff = 0;
  let ref = 0;
  for (let i = 0; i < expected.length; i++) {
    // A missing element (never, after the length check) counts as NaN: an infinite error.
    const e = expected[i] ?? NaN;
    const d = Math.abs((actual[i] ?? NaN) - e);
    if (Number.isNaN(d)) return Infinity;
    diff = Math.max(diff, d);
    ref = Math.max(ref, Math.abs(e));
  }
  return ref > 0 ? diff / ref : diff;
}

/**
 * ||a-b|| / max(||b||, floor) (the fixture README's gradient measure). `floor` lets a caller put an
 * analytically-zero reference (float32 noise only) on the scale of a larger whole.
 */
export function relativeL2Error(actual: ArrayLike<number>, expected: ArrayLike<number>, floor = 0): number {
  if (actual.length !== expected.length) return Infinity;
  let diff = 0;
  let ref = 0;
  for (let i = 0; i < expected.length; i++) {
    // A missing element (never, after the length check) counts as NaN: an infinite error.
    const e = expected[i] ?? NaN;
    diff += ((actual[i] ?? NaN) - e) ** 2;
    ref += e ** 2;
  }
  if (Number.isNaN(diff)) return Infinity;
  const denominator = Math.max(Math.sqrt(ref), floor);
  return denominator > 0 ? Math.sqrt(diff) / denominator : Math.sqrt(diff);
}
