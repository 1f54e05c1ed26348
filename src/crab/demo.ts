/**
 * The small demo split the product ships (public/demo/): every passage of a handful of articles
 * and the QA pairs whose relevant passages all lie inside them, so a question asked in the
 * offline demo or in classroom mode can be answered from the shipped passages.
 */
import type { QaCategories } from './categories';
import { seededRandom, shuffled } from '../util/random';
import type { Passage, QAPair } from './types';

export interface DemoOptions {
  /** Titles of the articles to ship, in the order wanted. */
  titles: readonly string[];
  /** At most this many QA pairs (a seeded sample, kept in input order). */
  maxQa: number;
  seed: number;
}

export interface DemoQaRecord extends QAPair {
  relevant: string[];
}

export interface DemoSplit {
  passages: Passage[];
  qaPairs: DemoQaRecord[];
}

export function selectDemo(
  passages: readonly Passage[],
  qaPairs: readonly QAPair[],
  categories: ReadonlyMap<string, QaCategories>,
  options: DemoOptions,
): DemoSplit {
  const titles = new Set(options.titles);
  const missing = options.titles.filter((t) => !passages.some((p) => p.title === t));
  if (missing.length > 0) throw new Error(`demo: no passages titled ${missing.map((t) => JSON.stringify(t)).join(', ')}`);
  const demoPassages = passages.filter((p) => titles.has(p.title));
  const inDemo = new Set(demoPassages.map((p) => p.id));
  const answerable = qaPairs.filter((qa) => {
    const relevant = categories.get(qa.id)?.relevant ?? [];
    return relevant.length > 0 && relevant.every((id) => inDemo.has(id));
  });
  const keep = new Set(shuffled(answerable, seededRandom(options.seed)).slice(0, options.maxQa));
  return {
    passages: demoPassages,
    qaPairs: answerable.filter((qa) => keep.has(qa)).map((qa) => ({ ...qa, relevant: categories.get(qa.id)!.relevant })),
  };
}
