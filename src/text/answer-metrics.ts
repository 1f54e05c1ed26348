/**
 * Exact match and token F1 exactly as SQuAD's official evaluate-v1.1.py computes them:
 * normalise (lower case, drop ASCII punctuation, drop the articles a/an/the, collapse
 * whitespace), then compare; each score is the maximum over the gold answers.
 */

// Python's string.punctuation.
const PUNCTUATION = new Set('!"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~');
// Python's re `\b(a|an|the)\b` on str: word characters are Unicode letters, digits and "_".
const ARTICLES = /(?<![\p{L}\p{N}_])(?:a|an|the)(?![\p{L}\p{N}_])/gu;

/** evaluate-v1.1.py's normalize_answer: white_space_fix(remove_articles(remove_punc(lower(s)))). */
export function normalizeAnswer(text: string): string {
  const lower = text.toLowerCase();
  let withoutPunctuation = '';
  for (const ch of lower) if (!PUNCTUATION.has(ch)) withoutPunctuation += ch;
  const withoutArticles = withoutPunctuation.replace(ARTICLES, ' ');
  return normalizedTokens(withoutArticles).join(' ');
}

function normalizedTokens(normalized: string): string[] {
  return normalized.split(/\s+/u).filter((t) => t.length > 0);
}

/** 1 when the normalised prediction equals some normalised gold answer, else 0. */
export function exactMatch(prediction: string, answers: readonly string[]): number {
  const p = normalizeAnswer(prediction);
  return answers.some((a) => normalizeAnswer(a) === p) ? 1 : 0;
}

/** Token-level F1 between a prediction and one gold answer (bag of normalised tokens). */
export function tokenF1(prediction: string, answer: string): number {
  const predicted = normalizedTokens(normalizeAnswer(prediction));
  const gold = normalizedTokens(normalizeAnswer(answer));
  const goldCounts = new Map<string, number>();
  for (const t of gold) goldCounts.set(t, (goldCounts.get(t) ?? 0) + 1);
  let same = 0;
  for (const t of predicted) {
    const left = goldCounts.get(t) ?? 0;
    if (left > 0) {
      same++;
      goldCounts.set(t, left - 1);
    }
  }
  if (same === 0) return 0;
  const precision = same / predicted.length;
  const recall = same / gold.length;
  return (2 * precision * recall) / (precision + recall);
}

/** Maximum token F1 over the gold answers (0 when there are none). */
export function f1Score(prediction: string, answers: readonly string[]): number {
  return answers.reduce((best, a) => Math.max(best, tokenF1(prediction, a)), 0);
}

export interface AnswerScores {
  /** Mean exact match in [0, 1]. */
  exactMatch: number;
  /** Mean F1 in [0, 1]. */
  f1: number;
  count: number;
}

/** Mean EM and F1 over (prediction, gold answers) pairs; evaluate-v1.1.py reports these ×100. */
export function scoreAnswers(items: ReadonlyArray<{ prediction: string; answers: readonly string[] }>): AnswerScores {
  let em = 0;
  let f1 = 0;
  for (const { prediction, answers } of items) {
    em += exactMatch(prediction, answers);
    f1 += f1Score(prediction, answers);
  }
  const n = items.length;
  return { exactMatch: n ? em / n : 0, f1: n ? f1 / n : 0, count: n };
}
