/**
 * CRAB's passage stores: which passages each client holds, for training and for testing.
 *
 * Definitions (docs/CRAB.md has the full recipe):
 * - relevant(q), hard(q): q's categories (categories.ts).
 * - All relevant A: passages relevant to any train, dev or test QA pair of the splits.
 * - Background B: every corpus passage not in A. B is shuffled with the seed and cut into
 *   disjoint slices: B_train (80%), the first 10% of B per client inside B_train (SPLIT's share),
 *   and one 2.5% slice per client after B_train (test stores). With 8 clients 80% + 8 × 2.5% =
 *   100%, so training and test background never share a passage.
 * - For a training set T (all clients' k-shot pairs): R_T = ∪ relevant(q ∈ T);
 *   H_T = ∪ hard(q ∈ T) ∩ B_train (hard negatives that are training background);
 *   I_T = B_train \ H_T (training background that is irrelevant to every q ∈ T).
 *
 * A store is a StoreLayout: client c holds `common ∪ perClient[c]`. Shared stores (REL, IRR, …)
 * put everything in `common`; the collaborative store is the union over clients, and RAG-Local
 * trains on a client's own view.
 */
import type { QaCategories } from './categories';
import { seededRandom, shuffled } from '../util/random';
import { trainingQaIds, type CrabSplits } from './splits';

export interface StoreLayout {
  name: string;
  /** Passage ids every client holds (corpus order). */
  common: string[];
  /** Extra passage ids per client (corpus order, disjoint from `common`). */
  perClient: string[][];
}

export const TRAINING_STORES = ['REL', 'IRR', 'REL-1', 'SPLIT', 'ONLY-REL', 'REL+IRR', 'REL+HARD', 'HARD+IRR'] as const;
export type TrainingStoreName = (typeof TRAINING_STORES)[number];

export const STORE_DESCRIPTIONS: Record<TrainingStoreName | 'TEST', string> = {
  REL: "every client: relevant passages of all clients' training QA + 80% of background",
  IRR: 'every client: 80% of background minus every relevant passage',
  'REL-1': 'one client: IRR + all training relevant passages; the others: IRR',
  SPLIT: 'each client: relevant passages of its own training QA + its own 10% of background',
  'ONLY-REL': "every client: relevant passages of all clients' training QA",
  'REL+IRR': 'every client: training relevant passages + training background irrelevant to every training QA',
  'REL+HARD': 'every client: training relevant passages + their hard negatives (within training background)',
  'HARD+IRR': 'every client: training hard negatives + irrelevant training background (= training background)',
  TEST: 'each client: relevant passages of its test QA + its own 2.5% of background',
};

/** The passages client `client` holds. */
export function clientView(layout: StoreLayout, client: number): string[] {
  return [...new Set([...layout.common, ...layout.perClient[client]])];
}

/** The collaborative store: every passage some client holds. */
export function collaborativeView(layout: StoreLayout): string[] {
  return [...new Set([...layout.common, ...layout.perClient.flat()])];
}

export interface BackgroundOptions {
  seed: number;
  clients: number;
  /** Share of background in every training store (default 0.8). */
  trainFraction?: number;
  /** Share of background each client gets in SPLIT, carved out of the training share (default 0.1). */
  splitFraction?: number;
  /** Share of background in each client's test store, outside the training share (default 0.025). */
  testFraction?: number;
}

export interface BackgroundPartition {
  /** Every background passage, corpus order. */
  all: string[];
  train: string[];
  /** SPLIT's per-client slices (disjoint, inside `train`). */
  split: string[][];
  /** Test stores' per-client slices (disjoint, outside `train`). */
  test: string[][];
}

export const DEFAULT_BACKGROUND = { trainFraction: 0.8, splitFraction: 0.1, testFraction: 0.025 } as const;

/** Background = corpus passages (corpus order) not relevant to any QA pair of the splits. */
export function backgroundPassages(corpusIds: readonly string[], allRelevant: ReadonlySet<string>): string[] {
  return corpusIds.filter((id) => !allRelevant.has(id));
}

export function partitionBackground(background: readonly string[], options: BackgroundOptions): BackgroundPartition {
  const { clients } = options;
  const trainFraction = options.trainFraction ?? DEFAULT_BACKGROUND.trainFraction;
  const splitFraction = options.splitFraction ?? DEFAULT_BACKGROUND.splitFraction;
  const testFraction = options.testFraction ?? DEFAULT_BACKGROUND.testFraction;
  for (const [name, f] of Object.entries({ trainFraction, splitFraction, testFraction })) {
    if (!(f >= 0 && f <= 1)) throw new RangeError(`${name} must be in [0, 1], got ${f}`);
  }
  const count = (fraction: number) => Math.floor(fraction * background.length + 1e-9);
  const nTrain = count(trainFraction);
  const nSplit = count(splitFraction);
  const nTest = count(testFraction);
  if (clients * nSplit > nTrain) {
    throw new RangeError(`SPLIT needs clients × splitFraction <= trainFraction (${clients} × ${splitFraction} > ${trainFraction})`);
  }
  if (nTrain + clients * nTest > background.length) {
    throw new RangeError(`test background needs trainFraction + clients × testFraction <= 1 (${trainFraction} + ${clients} × ${testFraction})`);
  }
  const order = new Map(background.map((id, i) => [id, i]));
  const inCorpusOrder = (ids: string[]) => ids.sort((a, b) => order.get(a)! - order.get(b)!);
  const mixed = shuffled(background, seededRandom(options.seed));
  const slices = (from: number, size: number) => Array.from({ length: clients }, (_, c) => inCorpusOrder(mixed.slice(from + c * size, from + (c + 1) * size)));
  return {
    all: [...background],
    train: inCorpusOrder(mixed.slice(0, nTrain)),
    split: slices(0, nSplit),
    test: slices(nTrain, nTest),
  };
}

export interface StoreInputs {
  /** Every corpus passage id, in corpus order (stores list ids in this order). */
  corpusIds: readonly string[];
  splits: CrabSplits;
  categories: ReadonlyMap<string, QaCategories>;
  background: BackgroundPartition;
}

/** Every passage relevant to some train (all shots), dev or test QA pair of the splits. */
export function allSplitRelevant(splits: CrabSplits, categories: ReadonlyMap<string, QaCategories>): Set<string> {
  const qaIds = splits.clients.flatMap((c) => [...c.train, ...c.dev, ...c.test]);
  return new Set(qaIds.flatMap((id) => categoriesOf(categories, id).relevant));
}

function categoriesOf(categories: ReadonlyMap<string, QaCategories>, qaId: string): QaCategories {
  const found = categories.get(qaId);
  if (!found) throw new Error(`no passage categories for QA pair ${qaId}`);
  return found;
}

class CorpusOrder {
  private readonly position: Map<string, number>;
  constructor(corpusIds: readonly string[]) {
    this.position = new Map(corpusIds.map((id, i) => [id, i]));
  }
  /** Distinct ids of the union, in corpus order. */
  union(...sets: Iterable<string>[]): string[] {
    const ids = new Set<string>();
    for (const s of sets) for (const id of s) ids.add(id);
    return [...ids].sort((a, b) => this.at(a) - this.at(b));
  }
  private at(id: string): number {
    const p = this.position.get(id);
    if (p === undefined) throw new Error(`passage ${id} is not in the corpus`);
    return p;
  }
}

const minus = (ids: Iterable<string>, remove: ReadonlySet<string>) => [...ids].filter((id) => !remove.has(id));

/**
 * The training stores of the `shots`-shot experiment. `relOneHolder` is the client that holds
 * all relevant passages in REL-1 (default 0).
 */
export function buildTrainingStores(inputs: StoreInputs, shots: number, relOneHolder = 0): Record<TrainingStoreName, StoreLayout> {
  const { splits, categories, background } = inputs;
  const clients = splits.clients.length;
  if (!Number.isInteger(relOneHolder) || relOneHolder < 0 || relOneHolder >= clients) {
    throw new RangeError(`relOneHolder must be a client index in [0, ${clients}), got ${relOneHolder}`);
  }
  const order = new CorpusOrder(inputs.corpusIds);
  const clientTrain = splits.clients.map((_, c) => trainingQaIds(splits, c, shots).map((id) => categoriesOf(categories, id)));
  const relevantOf = (cats: QaCategories[]) => order.union(...cats.map((q) => q.relevant));
  const relevant = relevantOf(clientTrain.flat());
  const trainBackground = new Set(background.train);
  const hard = order.union(
    clientTrain
      .flat()
      .flatMap((q) => q.hardNegatives)
      .filter((id) => trainBackground.has(id)),
  );
  const irrelevant = minus(background.train, new Set(hard));
  const irr = minus(background.train, allSplitRelevant(splits, categories));
  const none = () => Array.from({ length: clients }, () => [] as string[]);
  const shared = (name: TrainingStoreName, ...parts: Iterable<string>[]): StoreLayout => ({ name, common: order.union(...parts), perClient: none() });

  const relOne = shared('REL-1', irr);
  relOne.perClient[relOneHolder] = minus(relevant, new Set(irr));
  return {
    REL: shared('REL', relevant, background.train),
    IRR: shared('IRR', irr),
    'REL-1': relOne,
    SPLIT: {
      name: 'SPLIT',
      common: [],
      perClient: clientTrain.map((cats, c) => order.union(relevantOf(cats), background.split[c])),
    },
    'ONLY-REL': shared('ONLY-REL', relevant),
    'REL+IRR': shared('REL+IRR', relevant, irrelevant),
    'REL+HARD': shared('REL+HARD', relevant, hard),
    'HARD+IRR': shared('HARD+IRR', hard, irrelevant),
  };
}

/** Each client's test store: relevant passages of its test QA pairs + its own background slice. */
export function buildTestStores(inputs: StoreInputs): StoreLayout {
  const { splits, categories, background } = inputs;
  const order = new CorpusOrder(inputs.corpusIds);
  return {
    name: 'TEST',
    common: [],
    perClient: splits.clients.map((client, c) => order.union(...client.test.map((id) => categoriesOf(categories, id).relevant), background.test[c])),
  };
}
