/**
 * The whole CRAB recipe as one pure function (no I/O): categories for every QA pair, the client
 * splits over the pairs that have a relevant passage, the background partition, the training
 * stores for every shot count and the test stores; plus the JSON / JSONL files it is saved as.
 */
import { PassageCategorizer, type QaCategories } from './categories';
import { DEFAULT_SPLIT, splitQaPairs, type CrabSplits } from './splits';
import {
  allSplitRelevant,
  backgroundPassages,
  buildTestStores,
  buildTrainingStores,
  clientView,
  collaborativeView,
  DEFAULT_BACKGROUND,
  partitionBackground,
  TRAINING_STORES,
  type BackgroundPartition,
  type StoreLayout,
  type TrainingStoreName,
} from './stores';
import type { Passage, QAPair } from './types';

export interface CrabConfig {
  seed: number;
  clients: number;
  shots: number[];
  devPerClient: number;
  testPerClient: number;
  relevantDepth: number;
  hardNegativeDepth: number;
  trainBackgroundFraction: number;
  splitBackgroundFraction: number;
  testBackgroundFraction: number;
  /** The client that holds every relevant passage in REL-1. */
  relOneHolder: number;
}

export const DEFAULT_CRAB_CONFIG: CrabConfig = {
  seed: 0,
  clients: DEFAULT_SPLIT.clients,
  shots: [...DEFAULT_SPLIT.shots],
  devPerClient: DEFAULT_SPLIT.devPerClient,
  testPerClient: DEFAULT_SPLIT.testPerClient,
  relevantDepth: 5,
  hardNegativeDepth: 50,
  trainBackgroundFraction: DEFAULT_BACKGROUND.trainFraction,
  splitBackgroundFraction: DEFAULT_BACKGROUND.splitFraction,
  testBackgroundFraction: DEFAULT_BACKGROUND.testFraction,
  relOneHolder: 0,
};

export interface StoreSizes {
  /** Passages each client holds. */
  perClient: number[];
  /** Passages in the union over clients (the collaborative store). */
  collaborative: number;
}

export interface CrabStats {
  passages: number;
  qaPairs: number;
  qaWithRelevant: number;
  qaInSplits: number;
  relevantPassages: number;
  background: number;
  trainBackground: number;
  splitBackgroundPerClient: number;
  testBackgroundPerClient: number;
  trainingStores: Record<string, Record<TrainingStoreName, StoreSizes>>;
  testStores: StoreSizes;
}

export interface CrabDataset {
  config: CrabConfig;
  passages: Passage[];
  /** The QA pairs of the splits. */
  qaPairs: QAPair[];
  /** Passage categories of every input QA pair (split or not). */
  categories: Map<string, QaCategories>;
  splits: CrabSplits;
  background: BackgroundPartition;
  /** Keyed by shot count ("16", "32", "64"). */
  trainingStores: Record<string, Record<TrainingStoreName, StoreLayout>>;
  testStores: StoreLayout;
  stats: CrabStats;
}

function sizes(layout: StoreLayout, clients: number): StoreSizes {
  return {
    perClient: Array.from({ length: clients }, (_, c) => clientView(layout, c).length),
    collaborative: collaborativeView(layout).length,
  };
}

export function buildCrab(passages: readonly Passage[], qaPairs: readonly QAPair[], config: CrabConfig = DEFAULT_CRAB_CONFIG): CrabDataset {
  const categorizer = new PassageCategorizer(passages, { relevantDepth: config.relevantDepth, hardNegativeDepth: config.hardNegativeDepth });
  const categories = new Map<string, QaCategories>();
  for (const qa of qaPairs) {
    if (categories.has(qa.id)) throw new Error(`duplicate QA id ${qa.id}`);
    categories.set(qa.id, categorizer.categorize(qa));
  }
  const candidates = qaPairs.map((qa) => categories.get(qa.id)!).filter((c) => c.relevant.length > 0);
  const splits = splitQaPairs(
    candidates.map((c) => ({ qaId: c.qaId, relevant: c.relevant })),
    { seed: config.seed, clients: config.clients, shots: config.shots, devPerClient: config.devPerClient, testPerClient: config.testPerClient },
  );
  const inSplits = new Set(splits.clients.flatMap((c) => [...c.train, ...c.dev, ...c.test]));
  const splitCategories = new Map([...categories].filter(([id]) => inSplits.has(id)));
  const corpusIds = passages.map((p) => p.id);
  const relevant = allSplitRelevant(splits, splitCategories);
  const background = partitionBackground(backgroundPassages(corpusIds, relevant), {
    // A different stream from the split's shuffle, still fixed by the one seed.
    seed: (config.seed ^ 0x5bd1e995) | 0,
    clients: config.clients,
    trainFraction: config.trainBackgroundFraction,
    splitFraction: config.splitBackgroundFraction,
    testFraction: config.testBackgroundFraction,
  });
  const inputs = { corpusIds, splits, categories: splitCategories, background };
  const trainingStores = Object.fromEntries(splits.shots.map((s) => [String(s), buildTrainingStores(inputs, s, config.relOneHolder)]));
  const testStores = buildTestStores(inputs);

  const stats: CrabStats = {
    passages: passages.length,
    qaPairs: qaPairs.length,
    qaWithRelevant: candidates.length,
    qaInSplits: inSplits.size,
    relevantPassages: relevant.size,
    background: background.all.length,
    trainBackground: background.train.length,
    splitBackgroundPerClient: background.split[0]?.length ?? 0,
    testBackgroundPerClient: background.test[0]?.length ?? 0,
    trainingStores: Object.fromEntries(
      Object.entries(trainingStores).map(([shots, stores]) => [
        shots,
        Object.fromEntries(TRAINING_STORES.map((name) => [name, sizes(stores[name], config.clients)])) as Record<TrainingStoreName, StoreSizes>,
      ]),
    ),
    testStores: sizes(testStores, config.clients),
  };
  return {
    config,
    passages: [...passages],
    qaPairs: qaPairs.filter((qa) => inSplits.has(qa.id)),
    categories,
    splits,
    background,
    trainingStores,
    testStores,
    stats,
  };
}

export interface CrabFile {
  name: string;
  text: string;
}

/** One record of qa.jsonl: the pair, where it is used, and its passage categories. */
export interface CrabQaRecord extends QAPair {
  split: 'train' | 'dev' | 'test';
  client: number;
  /** For training pairs: position in the client's training list (in the k-shot set iff < k). */
  position: number;
  relevant: string[];
  hardNegatives: string[];
}

/**
 * The files a built CRAB is saved as (all deterministic for a given input and config):
 * passages.jsonl, qa.jsonl (CrabQaRecord a line, clients in order, train/dev/test in split
 * order), splits.json, stores.json ({training: {shots: {name: layout}}, test: layout}).
 */
export function crabFiles(dataset: CrabDataset): CrabFile[] {
  const byId = new Map(dataset.qaPairs.map((qa) => [qa.id, qa]));
  const records: CrabQaRecord[] = [];
  dataset.splits.clients.forEach((client, c) => {
    for (const split of ['train', 'dev', 'test'] as const) {
      client[split].forEach((id, position) => {
        const qa = byId.get(id)!;
        const cat = dataset.categories.get(id)!;
        records.push({ ...qa, split, client: c, position, relevant: cat.relevant, hardNegatives: cat.hardNegatives });
      });
    }
  });
  const jsonl = (items: readonly unknown[]) => items.map((x) => JSON.stringify(x)).join('\n') + '\n';
  const layout = ({ common, perClient }: StoreLayout) => ({ common, perClient });
  const stores = {
    training: Object.fromEntries(
      Object.entries(dataset.trainingStores).map(([shots, s]) => [shots, Object.fromEntries(TRAINING_STORES.map((n) => [n, layout(s[n])]))]),
    ),
    test: layout(dataset.testStores),
  };
  return [
    { name: 'passages.jsonl', text: jsonl(dataset.passages.map(({ id, title, text }) => ({ id, title, text }))) },
    { name: 'qa.jsonl', text: jsonl(records) },
    { name: 'splits.json', text: JSON.stringify(dataset.splits) + '\n' },
    { name: 'stores.json', text: JSON.stringify(stores) + '\n' },
  ];
}
