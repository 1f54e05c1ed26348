/**
 * CRAB's homogeneous (IID) client splits: QA pairs are shuffled with a seed and dealt round-robin
 * to the clients, first the training pairs (max(shots) per client), then dev, then test.
 *
 * - Training sets are nested: a client's k-shot set is the first k of its training list, so the
 *   16-, 32- and 64-shot experiments differ only in how much data, never in which.
 * - A QA pair whose relevant passages include a passage relevant to any training pair is not used
 *   for dev or test (SQuAD asks several questions of the same paragraph): the training stores
 *   hold the training pairs' relevant passages and the test stores the test pairs', and the two
 *   must not share a passage.
 * - No QA pair is in two splits or at two clients.
 */
import { seededRandom, shuffled } from '../util/random';

export interface SplitOptions {
  seed: number;
  clients?: number;
  /** Training pairs per client for each experiment (default [16, 32, 64]). */
  shots?: number[];
  devPerClient?: number;
  testPerClient?: number;
}

export interface SplitCandidate {
  qaId: string;
  /** Its relevant passages (candidates need at least one to be useful to CRAB). */
  relevant: readonly string[];
}

export interface ClientSplit {
  /** max(shots) QA ids; the first k are the client's k-shot training set. */
  train: string[];
  dev: string[];
  test: string[];
}

export interface CrabSplits {
  seed: number;
  shots: number[];
  clients: ClientSplit[];
}

export const DEFAULT_SPLIT = { clients: 8, shots: [16, 32, 64], devPerClient: 16, testPerClient: 32 } as const;

function positiveInteger(name: string, value: number, allowZero = false): number {
  if (!Number.isInteger(value) || value < (allowZero ? 0 : 1))
    throw new RangeError(`${name} must be a ${allowZero ? 'non-negative' : 'positive'} integer, got ${value}`);
  return value;
}

export function splitQaPairs(candidates: readonly SplitCandidate[], options: SplitOptions): CrabSplits {
  const clients = positiveInteger('clients', options.clients ?? DEFAULT_SPLIT.clients);
  const shots = [...(options.shots ?? DEFAULT_SPLIT.shots)].sort((a, b) => a - b);
  if (shots.length === 0) throw new RangeError('shots must list at least one training-set size');
  shots.forEach((s) => positiveInteger('shots', s));
  const devPerClient = positiveInteger('devPerClient', options.devPerClient ?? DEFAULT_SPLIT.devPerClient, true);
  const testPerClient = positiveInteger('testPerClient', options.testPerClient ?? DEFAULT_SPLIT.testPerClient, true);
  const maxShots = shots[shots.length - 1];

  const ids = new Set<string>();
  for (const c of candidates) {
    if (ids.has(c.qaId)) throw new Error(`splitQaPairs: duplicate QA id ${c.qaId}`);
    ids.add(c.qaId);
  }

  const order = shuffled(candidates, seededRandom(options.seed));
  const need = (what: string, count: number, available: number) => {
    if (available < count) {
      throw new RangeError(
        `CRAB split needs ${count} ${what} QA pairs but only ${available} are available; lower clients, shots or per-client counts, or use more data`,
      );
    }
  };
  const deal = (pairs: readonly SplitCandidate[], perClient: number) =>
    Array.from({ length: clients }, (_, c) => pairs.filter((_, i) => i % clients === c && i < perClient * clients).map((p) => p.qaId));

  need('training', maxShots * clients, order.length);
  const trainPairs = order.slice(0, maxShots * clients);
  const train = deal(trainPairs, maxShots);

  const trainPassages = new Set(trainPairs.flatMap((p) => p.relevant));
  const heldOut = order.slice(maxShots * clients).filter((p) => !p.relevant.some((id) => trainPassages.has(id)));
  need('dev + test', (devPerClient + testPerClient) * clients, heldOut.length);
  const dev = deal(heldOut.slice(0, devPerClient * clients), devPerClient);
  const test = deal(heldOut.slice(devPerClient * clients), testPerClient);

  return { seed: options.seed, shots, clients: train.map((t, c) => ({ train: t, dev: dev[c], test: test[c] })) };
}

/** A client's training QA ids in the `shots`-shot experiment. */
export function trainingQaIds(splits: CrabSplits, client: number, shots: number): string[] {
  if (!splits.shots.includes(shots)) throw new RangeError(`no ${shots}-shot training set (have ${splits.shots.join(', ')})`);
  return splits.clients[client].train.slice(0, shots);
}
