/**
 * The CRAB data as an experiment reads it: a built CRAB (passages, QA pairs, store layouts), each
 * client's QA pairs of a split, the store its dev questions retrieve from, and how many optimizer
 * steps one round of local training takes.
 */
import { type QAPair as TrainingPair } from '../corag/local-training';
import type { CrabQaRecord } from './build';
import type { RunnerConfig } from './runner-config';
import { clientView, type StoreLayout, type TrainingStoreName } from './stores';
import type { Passage } from './types';

/** A built CRAB as the runner needs it (readCrabCache's value fits). */
export interface CrabRunData {
  readonly passages: readonly Passage[];
  readonly qa: readonly CrabQaRecord[];
  readonly stores: {
    readonly training: Readonly<Record<string, Readonly<Record<TrainingStoreName, StoreLayout>>>>;
    readonly test: StoreLayout;
  };
}

/** A QA pair with its dataset id (SQuAD's question id), which names it in predictions.jsonl. */
export interface CrabPair extends TrainingPair {
  readonly id: string;
}

/** A client's QA pairs of one split, in split order. */
export function clientPairs(qa: readonly CrabQaRecord[], client: number, split: CrabQaRecord['split'], limit: number | null): CrabPair[] {
  return qa
    .filter((r) => r.client === client && r.split === split && (limit === null || r.position < limit))
    .sort((a, b) => a.position - b.position)
    .map((r) => ({ id: r.id, question: r.question, answers: r.answers }));
}

/**
 * The passages a client's dev questions retrieve from: the relevant passages of its dev pairs
 * plus the background of its test store (the test store without its test pairs' relevant
 * passages). The build defines no dev store; this one is built like the test store and, like it,
 * shares no passage with any training store (dev pairs share no relevant passage with training
 * pairs, and the test background lies outside B_train).
 */
export function devStoreView(data: Pick<CrabRunData, 'qa' | 'stores'>, client: number): string[] {
  const testRelevant = new Set(data.qa.filter((r) => r.client === client && r.split === 'test').flatMap((r) => r.relevant));
  const background = clientView(data.stores.test, client).filter((id) => !testRelevant.has(id));
  const devRelevant = data.qa.filter((r) => r.client === client && r.split === 'dev').flatMap((r) => r.relevant);
  return [...new Set([...devRelevant, ...background])];
}

/** Optimizer steps one round of local training takes on `pairs` QA pairs. */
export function stepsPerRound(config: RunnerConfig, pairs: number, pooledClients = 1): number {
  const t = config.training;
  if (t.localSteps !== null) return t.localSteps * pooledClients;
  return Math.ceil(pairs / Math.min(t.batchSize, pairs)) * t.localEpochs;
}
