/**
 * Central differences along one seeded direction d over every coordinate of `variables`:
 * (L(θ+εd) − L(θ−εd)) / 2ε ≈ ∇L·d. Returns both sides (the variables end as they started), for
 * tests that hold a backward pass against the loss itself.
 */
import * as tf from '@tensorflow/tfjs-core';
import { seededRandom } from '../../src/util/random';

export async function directionalDerivatives(
  variables: readonly tf.Variable[],
  grads: Readonly<Record<string, tf.Tensor>>,
  lossOf: () => tf.Scalar,
  eps = 1e-3,
): Promise<{ predicted: number; measured: number }> {
  const directions = variables.map((v, i) => {
    const random = seededRandom(11 + i);
    return tf.tensor(
      Float32Array.from({ length: v.size }, () => random() * 2 - 1),
      v.shape,
    );
  });
  const originals = variables.map((v) => tf.clone(v));
  try {
    let predicted = 0;
    for (const [i, v] of variables.entries()) {
      const g = (await grads[v.name]!.data()) as Float32Array;
      const d = (await directions[i]!.data()) as Float32Array;
      for (let j = 0; j < g.length; j++) predicted += g[j]! * d[j]!;
    }
    const lossAt = async (step: number) => {
      variables.forEach((v, i) => v.assign(tf.tidy(() => tf.add(originals[i]!, tf.mul(directions[i]!, step)))));
      const loss = lossOf();
      const out = (await loss.data())[0]!;
      loss.dispose();
      return out;
    };
    const measured = ((await lossAt(eps)) - (await lossAt(-eps))) / (2 * eps);
    variables.forEach((v, i) => v.assign(originals[i]!));
    return { predicted, measured };
  } finally {
    tf.dispose([...directions, ...originals]);
  }
}
