/**
 * A tensor's dimensions read with its rank checked. tfjs types most shapes as `number[]`, so
 * `const [rows, width] = x.shape` on a tensor of the wrong rank would silently carry `undefined`
 * (NaN sizes, a garbage reshape); these throw an error that names the place instead
 * (noUncheckedIndexedAccess, issue 21).
 */

type Dims<N extends number, A extends number[] = []> = A['length'] extends N ? A : Dims<N, [...A, number]>;

/** The `rank` dimensions of `shape`; throws when it has another rank. */
export function dimsOf<N extends 1 | 2 | 3 | 4 | 5>(shape: readonly number[], rank: N, what: string): Dims<N> {
  if (shape.length !== rank) throw new Error(`${what}: expected a rank-${rank} tensor, got shape [${shape.join(', ')}]`);
  return [...shape] as Dims<N>;
}

/** The last dimension of `shape`; throws for a scalar. */
export function lastDim(shape: readonly number[], what: string): number {
  const last = shape[shape.length - 1];
  if (last === undefined) throw new Error(`${what}: expected a tensor with at least one dimension, got a scalar`);
  return last;
}
