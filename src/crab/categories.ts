/**
 * CRAB's passage categories for one QA pair, from BM25 with the question and the answer as query:
 * - relevant: ranked in the top `relevantDepth` (5) AND containing a gold answer;
 * - hard negatives: ranked `relevantDepth + 1` … `hardNegativeDepth` (6–50) AND containing no gold
 *   answer (the paper: hard negatives are close to the question but do not answer it);
 * - irrelevant: every other passage (not stored; it is the complement).
 * A top-5 passage without the answer, or a rank 6–50 passage with it, is therefore neither
 * relevant nor a hard negative: it goes with the irrelevant ones (docs/CRAB.md discusses this).
 */
import { Bm25Index, type Bm25Options } from '../retrieval/bm25';
import { normalizeAnswer } from '../text/answer-metrics';
import type { Passage, QAPair } from './types';

export interface CategoryOptions {
  relevantDepth?: number;
  hardNegativeDepth?: number;
  /** BM25 parameters and tokenizer (defaults: k1 0.9, b 0.4, English stop words removed, as Pyserini). */
  bm25?: Bm25Options;
}

export interface QaCategories {
  qaId: string;
  /** Relevant passage ids, best BM25 rank first. */
  relevant: string[];
  /** Hard-negative passage ids, best BM25 rank first. */
  hardNegatives: string[];
}

/** The BM25 query: the question followed by each distinct gold answer. */
export function categoryQuery(qa: QAPair): string {
  return [qa.question, ...new Set(qa.answers)].join(' ');
}

/**
 * Whether a passage contains a gold answer after SQuAD normalisation, as a whole-token match
 * ("1972" does not match inside "19723"). Answers that normalise to nothing never match.
 */
export function containsAnswer(normalizedPassage: string, answers: readonly string[]): boolean {
  const haystack = ` ${normalizedPassage} `;
  return answers.some((a) => {
    const needle = normalizeAnswer(a);
    return needle !== '' && haystack.includes(` ${needle} `);
  });
}

/** Text BM25 indexes for a passage: title and text, as Pyserini indexes DPR's "contents". */
export function searchableText(passage: Passage): string {
  return passage.title ? `${passage.title}\n${passage.text}` : passage.text;
}

export class PassageCategorizer {
  readonly relevantDepth: number;
  readonly hardNegativeDepth: number;
  private readonly index: Bm25Index;
  private readonly normalized: Array<string | undefined>;

  constructor(
    private readonly passages: readonly Passage[],
    options: CategoryOptions = {},
  ) {
    this.relevantDepth = options.relevantDepth ?? 5;
    this.hardNegativeDepth = options.hardNegativeDepth ?? 50;
    if (
      !Number.isInteger(this.relevantDepth) ||
      this.relevantDepth < 1 ||
      !Number.isInteger(this.hardNegativeDepth) ||
      this.hardNegativeDepth < this.relevantDepth
    ) {
      throw new RangeError(`categories need integers 1 <= relevantDepth <= hardNegativeDepth (got ${this.relevantDepth}, ${this.hardNegativeDepth})`);
    }
    this.index = new Bm25Index(
      passages.map((p) => ({ id: p.id, text: searchableText(p) })),
      { stopwords: true, ...options.bm25 },
    );
    this.normalized = new Array(passages.length);
  }

  categorize(qa: QAPair): QaCategories {
    const hits = this.index.search(categoryQuery(qa), this.hardNegativeDepth);
    const relevant: string[] = [];
    const hardNegatives: string[] = [];
    hits.forEach((hit, rank) => {
      const answers = containsAnswer(this.normalizedText(hit.index), qa.answers);
      if (rank >= this.relevantDepth) {
        if (!answers) hardNegatives.push(hit.id);
      } else if (answers) {
        relevant.push(hit.id);
      }
    });
    return { qaId: qa.id, relevant, hardNegatives };
  }

  private normalizedText(index: number): string {
    return (this.normalized[index] ??= normalizeAnswer(this.passages[index].text));
  }
}
