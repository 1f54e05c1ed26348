/**
 * Answer reranking: choosing among a reader's candidate answers — the N best extractive spans of
 * beam search — with what the question says about its answer, besides the reader's own score:
 * - the answer type the question asks for ("who" a person or organisation, "when" / "in what
 *   year" a date, "how many" / "how much" a number, "where" a place) against the type of the
 *   candidate where it stands in the passage (src/text/answer-types.ts);
 * - proximity: the share of the question's content words found within a few words of the
 *   candidate in a passage (the sliding-window signal of classic reading comprehension: the
 *   answer stands next to what the question is about);
 * - question overlap: the share of the candidate's own content words that the question already
 *   has (an answer rarely repeats the question).
 * Score = reader·(length-normalised log-probability) + type·[type fits] + proximity·(share) −
 * questionOverlap·(share). The answer is always one of the reader's candidates.
 *
 * Why: a small reader often has the right span among its 16 best while its first choice is a
 * phrase of the question or a span of the wrong kind (docs/lab/PRETRAINING.md, session 8: with the
 * demo reader and the gold passage the right answer is among the 16 best for 41 % of CRAB-mini
 * dev questions, first for 9 %). The weights are fitted on CRAB-mini *train* questions
 * (scripts/fit-answer-rerank.ts) and travel in the reader's config.json (`corag.answer_rerank`, src/corag/checkpoint-policy.ts), so a
 * hub checkpoint, which has none, decodes as before.
 */
import { typedAnswers, FUNCTION_WORDS, type AnswerType } from '../text/answer-types';
import { sentences } from '../text/sentences';
import type { AnswerRerankWeights } from './checkpoint-policy';

export type { AnswerRerankConfig, AnswerRerankWeights } from './checkpoint-policy';

export interface AnswerFeatures {
  /** 1 when the candidate's type is one the question asks for, else 0 (also when it asks for none). */
  readonly typeMatch: number;
  readonly proximity: number;
  readonly questionOverlap: number;
}

/** Words either side of a candidate that count as near it. */
const NEAR = 10;

const TEMPORAL: ReadonlySet<AnswerType> = new Set(['date', 'month', 'year', 'decade']);
const NUMERIC: ReadonlySet<AnswerType> = new Set(['count', 'money', 'percent']);
const PERSON: ReadonlySet<AnswerType> = new Set(['person', 'organization']);
const PLACE: ReadonlySet<AnswerType> = new Set(['place']);

/** The answer types a question asks for by its question words; null when they say nothing ("what …"). */
export function expectedAnswerTypes(question: string): ReadonlySet<AnswerType> | null {
  const q = question.toLowerCase();
  if (/\b(?:when|what (?:year|decade|century|month|day|date)|which (?:year|decade|century|month|day))\b/.test(q)) return TEMPORAL;
  if (/\bhow (?:many|much)\b|\bwhat (?:percentage|percent|number|amount)\b/.test(q)) return NUMERIC;
  if (/\b(?:who|whom|whose)\b/.test(q)) return PERSON;
  if (/\bwhere\b/.test(q)) return PLACE;
  return null;
}

/** A word reduced for matching: lower case, letters and digits only, a plural or verb ending cut. */
export function matchForm(word: string): string {
  return word
    .toLowerCase()
    .replace(/[^\p{L}\p{N}]/gu, '')
    .replace(/(?:ing|ed|es|s)$/u, '');
}

/** Question words that are not function words of a passage. */
const QUESTION_WORDS = new Set(['what', 'how', 'why', 'whom', 'whose']);

/** The content words of a text in match form (function words, question words and one-letter words left out). */
export function contentWords(text: string): string[] {
  return text
    .split(/\s+/)
    .filter((w) => {
      const plain = w.toLowerCase().replace(/[^\p{L}]/gu, '');
      return !FUNCTION_WORDS.has(plain) && !QUESTION_WORDS.has(plain);
    })
    .map(matchForm)
    .filter((w) => w.length > 1);
}

/**
 * What the features of every candidate of one question share, computed once per question: the
 * question's content words and expected types, the passages' sentences (their typed answers
 * found on first use) and their words in match form.
 */
class QuestionContext {
  readonly asked: ReadonlySet<string>;
  readonly expected: ReadonlySet<AnswerType> | null;
  private readonly sentences: readonly string[];
  private readonly typed = new Map<string, ReturnType<typeof typedAnswers>>();
  readonly passageWords: readonly string[][];

  constructor(question: string | null, passages: readonly string[]) {
    this.asked = new Set(question === null ? [] : contentWords(question));
    this.expected = question === null ? null : expectedAnswerTypes(question);
    this.sentences = passages.flatMap((p) => sentences(p));
    this.passageWords = passages.map((p) => p.split(/\s+/).map(matchForm));
  }

  /** The type of a candidate where it stands in the passages: that of a typed answer it mostly covers. */
  spanType(candidate: string): AnswerType | 'other' {
    for (const sentence of this.sentences) {
      if (!sentence.includes(candidate)) continue;
      let answers = this.typed.get(sentence);
      if (!answers) this.typed.set(sentence, (answers = typedAnswers(sentence)));
      for (const a of answers) {
        const overlaps =
          (a.text.includes(candidate) && candidate.length * 2 >= a.text.length) || (candidate.includes(a.text) && a.text.length * 2 >= candidate.length);
        if (overlaps) return a.type;
      }
    }
    return /\d/.test(candidate) ? 'count' : 'other';
  }

  features(candidate: string): AnswerFeatures {
    const own = contentWords(candidate);
    const questionOverlap = own.length === 0 ? 0 : own.filter((w) => this.asked.has(w)).length / own.length;
    const typeMatch = this.expected !== null && this.expected.has(this.spanType(candidate) as AnswerType) ? 1 : 0;
    // Proximity: over every place the candidate's words stand in a passage, the best share of the
    // question's content words among the NEAR words on either side.
    const target = candidate.split(/\s+/).map(matchForm).filter(Boolean);
    let proximity = 0;
    if (target.length > 0 && this.asked.size > 0) {
      for (const words of this.passageWords) {
        for (let i = 0; i + target.length <= words.length; i++) {
          if (!target.every((w, j) => words[i + j] === w)) continue;
          const around = new Set([...words.slice(Math.max(0, i - NEAR), i), ...words.slice(i + target.length, i + target.length + NEAR)]);
          let near = 0;
          for (const w of this.asked) if (around.has(w)) near++;
          proximity = Math.max(proximity, near / this.asked.size);
        }
      }
    }
    return { typeMatch, proximity, questionOverlap };
  }
}

/** The type of a candidate where it stands in the passages: that of a typed answer it mostly covers. */
export function spanType(candidate: string, passages: readonly string[]): AnswerType | 'other' {
  return new QuestionContext(null, passages).spanType(candidate);
}

/** The reranking features of one candidate answer. */
export function answerFeatures(candidate: string, question: string, passages: readonly string[]): AnswerFeatures {
  return new QuestionContext(question, passages).features(candidate);
}

/** The reranking features of many candidates to one question, with the shared work done once. */
export function candidateFeatures(candidates: readonly string[], question: string, passages: readonly string[]): AnswerFeatures[] {
  const context = new QuestionContext(question, passages);
  return candidates.map((c) => context.features(c));
}

export function rerankScore(readerScore: number, f: AnswerFeatures, w: AnswerRerankWeights): number {
  return w.reader * readerScore + w.type * f.typeMatch + w.proximity * f.proximity - w.questionOverlap * f.questionOverlap;
}

export interface RankedAnswer<T> {
  readonly candidate: T;
  readonly features: AnswerFeatures;
  readonly total: number;
}

/** The candidates (each with its text and reader score) best first; ties keep the reader's order. */
export function rerankAnswers<T extends { readonly text: string; readonly score: number }>(
  candidates: readonly T[],
  question: string,
  passages: readonly string[],
  weights: AnswerRerankWeights,
): RankedAnswer<T>[] {
  const features = candidateFeatures(
    candidates.map((c) => c.text),
    question,
    passages,
  );
  return candidates
    .map((candidate, i) => ({ candidate, features: features[i], total: rerankScore(candidate.score, features[i], weights) }))
    .sort((a, b) => b.total - a.total);
}
