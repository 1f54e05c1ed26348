/**
 * Hostile updates for the attack suite (test/server/attacks.test.ts) and the robustness table
 * (scripts/robustness-table.ts): what a participant with a valid token can send instead of its
 * honest delta. Attackers are omniscient where the attack needs it (ALIE, model replacement): they
 * know the honest deltas of the round and the global model, the strongest setting.
 */
import type { NamedTensor } from '../../src/federated/codec';

export type Deltas = Map<string, NamedTensor>;

export interface AttackContext {
  /** The attacker's own honestly trained delta. */
  readonly own: Deltas;
  /** Every honest participant's delta this round. */
  readonly honest: readonly Deltas[];
  /** The round's base model (trained tensors). */
  readonly base: ReadonlyMap<string, NamedTensor>;
  /** Participants in the round (honest and hostile). */
  readonly participants: number;
  /** What an honest participant reports as num_examples. */
  readonly honestExamples: number;
}

export interface HostileUpdate {
  readonly deltas: Deltas;
  readonly numExamples: number;
}

export interface Attack {
  readonly name: string;
  readonly description: string;
  /** True when the coordinator must refuse it outright (the codec's gate), so it never counts. */
  readonly refused: boolean;
  craft(ctx: AttackContext): HostileUpdate;
}

const FLT_MAX = 3.4028234663852886e38;
/** ALIE's z: how many honest standard deviations the hostile coordinates move (Baruch et al. 2019 derive ~0–1 for small n; 1.5 is stronger). */
export const ALIE_Z = 1.5;
/** Largest num_examples the wire format can carry (15 decimal digits). */
export const MAX_WIRE_EXAMPLES = 999_999_999_999_999;

function map(deltas: ReadonlyMap<string, NamedTensor>, f: (v: number, name: string, i: number) => number): Deltas {
  return new Map([...deltas].map(([name, t]) => [name, { shape: t.shape, data: Float32Array.from(t.data, (v, i) => f(v, name, i)) }]));
}

export const ATTACKS: readonly Attack[] = [
  {
    name: 'none',
    description: 'every participant honest (the cost of robustness without an attack)',
    refused: false,
    craft: (c) => ({ deltas: c.own, numExamples: c.honestExamples }),
  },
  {
    name: 'sign-flip',
    description: '−Δ (own honest delta negated)',
    refused: false,
    craft: (c) => ({ deltas: map(c.own, (v) => -v), numExamples: c.honestExamples }),
  },
  { name: 'scale-1e3', description: '1000·Δ', refused: false, craft: (c) => ({ deltas: map(c.own, (v) => 1e3 * v), numExamples: c.honestExamples }) },
  {
    name: 'nan',
    description: 'Δ with one NaN',
    refused: true,
    craft: (c) => ({ deltas: map(c.own, (v, name, i) => (i === 0 && name === [...c.own.keys()][0] ? NaN : v)), numExamples: c.honestExamples }),
  },
  {
    name: 'inf',
    description: 'Δ with one +Inf',
    refused: true,
    craft: (c) => ({ deltas: map(c.own, (v, name, i) => (i === 0 && name === [...c.own.keys()][0] ? Infinity : v)), numExamples: c.honestExamples }),
  },
  {
    name: 'flt-max',
    description: '±FLT_MAX in every coordinate (sign of Δ)',
    refused: false,
    craft: (c) => ({ deltas: map(c.own, (v) => (v < 0 ? -FLT_MAX : FLT_MAX)), numExamples: c.honestExamples }),
  },
  {
    name: 'sample-inflation',
    description: '−Δ claiming 10^15 − 1 examples',
    refused: false,
    craft: (c) => ({ deltas: map(c.own, (v) => -v), numExamples: MAX_WIRE_EXAMPLES }),
  },
  {
    // Bagdasaryan et al. 2020: boost (X − G) by the number of participants so FedAvg lands on X.
    name: 'model-replacement',
    description: 'n·(X − G) for a target model X = 0 (the whole model wiped)',
    refused: false,
    craft: (c) => ({ deltas: map(c.own, (_v, name, i) => c.participants * (0 - c.base.get(name)!.data[i])), numExamples: c.honestExamples }),
  },
  {
    name: 'alie',
    description: `μ − ${ALIE_Z}·σ of the honest deltas per coordinate ("a little is enough")`,
    refused: false,
    craft: (c) => ({
      deltas: map(c.own, (_v, name, i) => {
        const xs = c.honest.map((d) => d.get(name)!.data[i]);
        const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
        const sd = Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / xs.length);
        return mean - ALIE_Z * sd;
      }),
      numExamples: c.honestExamples,
    }),
  },
];
