/**
 * Self-supervised examples made from unlabeled passages (text level, before tokenization):
 * - masked-span queries (Atlas MLM pretraining): a window of a passage with word spans replaced
 *   by T5 sentinels; the target lists each sentinel followed by the words it hides;
 * - cloze questions: a sentence of a passage with one entity, number or date replaced by a
 *   question word ("Super Bowl 50 was played at what?"), the entity as the answer — the reader
 *   learns to find the answer in a retrieved passage and copy it out;
 * - question-style cloze: the same, rewritten to look like a question people ask (question word
 *   first, only the clause around the answer, some words dropped: "When the game was played on
 *   at Levi's Stadium?"), so the reader and the retriever learn to match a question that shares
 *   only part of its words with the passage, as real questions do.
 */
import { sentences } from '../text/sentences';
import type { Rng } from './rng';

export interface MaskedSpanExample {
  /** The window with `<extra_id_i>` in place of span i. */
  readonly query: string;
  /** `<extra_id_0> span0 <extra_id_1> span1 ...` */
  readonly target: string;
}

/**
 * Masks ~`density` of the words of a `windowWords`-word window of `text` in spans of ~`meanSpan`
 * words (at least one span, at most `maxSpans`).
 */
export function maskedSpanExample(
  text: string,
  rng: Rng,
  options: { windowWords?: number; density?: number; meanSpan?: number; maxSpans?: number } = {},
): MaskedSpanExample | null {
  const { windowWords = 40, density = 0.15, meanSpan = 3, maxSpans = 4 } = options;
  const all = text.split(/\s+/).filter(Boolean);
  if (all.length < 8) return null;
  const start = all.length > windowWords ? rng.int(all.length - windowWords + 1) : 0;
  const words = all.slice(start, start + windowWords);
  const spans = Math.max(1, Math.min(maxSpans, Math.round((words.length * density) / meanSpan)));
  // Span starts on a grid of equal segments, one span per segment, so spans never touch.
  const segment = Math.floor(words.length / spans);
  const query: string[] = [];
  const target: string[] = [];
  for (let s = 0; s < spans; s++) {
    const segStart = s * segment;
    const segEnd = s === spans - 1 ? words.length : segStart + segment;
    const length = Math.min(Math.max(1, meanSpan - 1 + rng.int(3)), segEnd - segStart - 1);
    const at = segStart + 1 + rng.int(Math.max(1, segEnd - segStart - length));
    query.push(...words.slice(segStart, at), `<extra_id_${s}>`, ...words.slice(at + length, segEnd));
    target.push(`<extra_id_${s}>`, ...words.slice(at, at + length));
  }
  return { query: query.join(' '), target: target.join(' ') };
}

export interface ClozeExample {
  readonly question: string;
  readonly answer: string;
  /** The sentence's words before the answer (what the question keeps of its left side). */
  readonly before: string;
  /** The sentence's words after the answer, without the final full stop. */
  readonly after: string;
}

export { sentences } from '../text/sentences';

const MONTHS = 'January|February|March|April|May|June|July|August|September|October|November|December';
/** Candidate answers: dates, years, numbers, capitalised multi-word or mid-sentence names. */
const CANDIDATE = new RegExp(
  [
    `(?:(?:${MONTHS}) \\d{1,2}, \\d{4})`,
    `(?:\\d{1,2} (?:${MONTHS}) \\d{4})`,
    `(?:(?:${MONTHS}) \\d{4})`,
    `(?:\\b\\d[\\d,.]*(?: (?:million|billion|percent|%))?)`,
    `(?:\\b[A-Z][\\w'’-]*(?: (?:of |the |de |and )?[A-Z][\\w'’-]*)*)`,
  ].join('|'),
  'g',
);

const STOP_CAPITALISED = new Set([
  'The',
  'A',
  'An',
  'In',
  'On',
  'At',
  'It',
  'He',
  'She',
  'They',
  'This',
  'That',
  'These',
  'Those',
  'His',
  'Her',
  'Their',
  'Its',
  'As',
  'After',
  'Before',
  'During',
  'However',
  'When',
  'While',
  'Although',
  'For',
  'By',
  'With',
  'From',
  'Since',
  'There',
  'Some',
  'Many',
  'Most',
  'Other',
  'If',
  'But',
  'And',
  'Of',
  'To',
  'We',
  'I',
]);

function questionWord(answer: string): string {
  if (new RegExp(`^(?:${MONTHS})|^\\d{1,2} (?:${MONTHS})|^(1[0-9]|20)\\d\\d$`).test(answer)) return 'when';
  if (/^\d/.test(answer)) return 'how many';
  return 'what';
}

/** Every cloze question of a passage's sentences (one per candidate answer). */
export function clozeExamples(text: string, options: { minSentenceWords?: number; maxSentenceWords?: number } = {}): ClozeExample[] {
  const { minSentenceWords = 6, maxSentenceWords = 40 } = options;
  const out: ClozeExample[] = [];
  for (const sentence of sentences(text)) {
    const n = sentence.split(/\s+/).length;
    if (n < minSentenceWords || n > maxSentenceWords) continue;
    for (const m of sentence.matchAll(CANDIDATE)) {
      const answer = m[0].replace(/[.,]+$/, '');
      if (answer.length < 2 || STOP_CAPITALISED.has(answer)) continue;
      const at = m.index!;
      // A capitalised word opening the sentence is usually not a name on its own.
      if (at === 0 && !/ /.test(answer) && !/^\d/.test(answer)) continue;
      const before = sentence.slice(0, at).trimEnd();
      const after = sentence
        .slice(at + answer.length)
        .replace(/^[.!?]+$/, '')
        .trimStart();
      const question = `${before} ${questionWord(answer)} ${after}`.trim().replace(/[.!]$/, '').replace(/\s+/g, ' ');
      out.push({ question: question.endsWith('?') ? question : `${question}?`, answer, before, after: after.replace(/[.!]$/, '') });
    }
  }
  return out;
}

/** Question words that suit an answer, the first being the plain cloze's. */
function questionWords(answer: string): string[] {
  if (new RegExp(`^(?:${MONTHS}) \\d{1,2}, \\d{4}$|^\\d{1,2} (?:${MONTHS}) \\d{4}$`).test(answer)) return ['when', 'what day', 'on what date'];
  if (/^(1[0-9]|20)\d\d$/.test(answer)) return ['when', 'what year', 'in what year'];
  if (new RegExp(`^(?:${MONTHS})`).test(answer)) return ['when', 'what month'];
  if (/^\d/.test(answer)) return ['how many', 'what number'];
  return ['what', 'which', 'who'];
}

const words = (s: string) =>
  s
    .split(/\s+/)
    .map((w) => w.replace(/^["“(]+|[,;:"”)]+$/g, ''))
    .filter(Boolean);

/**
 * Rewrites a cloze question the way people phrase questions: a question word suited to the
 * answer first, then at most `windowWords` words each side of the answer (the clause a question
 * is usually about), each dropped with probability `dropProbability`; at least two context words
 * stay. Seeded through `rng`.
 */
export function questionStyleCloze(c: ClozeExample, rng: Rng, options: { windowWords?: number; dropProbability?: number } = {}): ClozeExample {
  const { windowWords = 8, dropProbability = 0.3 } = options;
  const left = words(c.before).slice(-windowWords);
  const right = words(c.after).slice(0, windowWords);
  const context = [...left, ...right];
  let kept = context.filter(() => rng.next() >= dropProbability);
  if (kept.length < Math.min(2, context.length)) {
    // The two words nearest the answer.
    const start = Math.max(0, Math.min(left.length - 1, context.length - 2));
    kept = context.slice(start, start + 2);
  }
  const choices = questionWords(c.answer);
  const qword = choices[rng.int(choices.length)];
  const text = `${qword} ${kept.join(' ')}`.trim();
  return { ...c, question: `${text[0].toUpperCase()}${text.slice(1)}?` };
}

/** Contriever's random cropping: a contiguous span of `ratio` ∈ [minRatio, maxRatio] of the tokens. */
export function randomCrop(ids: readonly number[], rng: Rng, minRatio = 0.1, maxRatio = 0.5, maxLength = Infinity): number[] {
  if (ids.length === 0) return [];
  const ratio = minRatio + (maxRatio - minRatio) * rng.next();
  const length = Math.max(1, Math.min(maxLength, Math.round(ids.length * ratio)));
  const start = rng.int(ids.length - length + 1);
  return ids.slice(start, start + length);
}
