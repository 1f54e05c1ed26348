/**
 * Typed synthetic questions: cloze questions turned into questions shaped like the ones people
 * ask, with a question word that fits the answer's type. The heuristic variant of "Unsupervised
 * Question Answering by Cloze Translation" (Lewis et al., 2019), from rules alone (no tagger):
 *
 * 1. answers: dates, years, decades, months, sums of money, percentages, counts (digits or
 *    spelled out, with the noun they count), names typed person / place / organisation / thing
 *    from the words around them, and plain noun phrases after a determiner (lower-case answers:
 *    "chromoplasts", "heavy engineering"), which real questions ask for as often as names;
 * 2. the question word suits the type: who for people, where for places, when / in what year for
 *    dates, how many + the counted noun for counts, how much for money, what percentage, what or
 *    which otherwise — so "who" tells the reader to look for a person, as it does in real questions;
 * 3. the question keeps the clause around the answer (cut at brackets and semicolons), drops
 *    function words more often than content words, moves the question word to the front, puts an
 *    auxiliary after it for non-subject answers ("When did ABC submit…", do-support being what
 *    real questions have and passages do not), absorbs the answer's preposition ("in 1947" →
 *    "In what year …"), and is sometimes lower-cased.
 *
 * The answers and their types come from src/text/answer-types.ts.
 *
 * The plain variant (examples.ts clozeExamples + questionStyleCloze) stays as it was, so data
 * prepared with older configs comes out the same.
 */
import { FUNCTION_WORDS, PersonLexicon, STOP_CAPITALISED, typedAnswers, type AnswerType, type TypedAnswer } from '../text/answer-types';
import { sentences } from '../text/sentences';
import type { ClozeExample } from './examples';
import type { Rng } from './rng';

export interface TypedCloze extends ClozeExample {
  readonly type: AnswerType;
}

/** Question phrases for a type, with their chances; the chosen one opens the question. */
function questionPhrases(a: TypedAnswer): [string, number][] {
  switch (a.type) {
    case 'date':
      return [
        ['when', 0.6],
        ['what day', 0.2],
        ['on what date', 0.2],
      ];
    case 'month':
      return [
        ['when', 0.6],
        ['what month', 0.2],
        ['in what month', 0.2],
      ];
    case 'year':
      return [
        ['when', 0.5],
        ['what year', 0.25],
        ['in what year', 0.25],
      ];
    case 'decade':
      return [
        ['when', 0.5],
        ['what decade', 0.25],
        ['in what decade', 0.25],
      ];
    case 'money':
      return [
        ['how much', 0.6],
        ['how much money', 0.4],
      ];
    case 'percent':
      return [
        ['what percentage', 0.5],
        ['what percent', 0.2],
        ['how much', 0.3],
      ];
    case 'count':
      return a.countedNoun
        ? [[`how many ${a.countedNoun}`, 1]]
        : [
            ['how many', 0.7],
            ['what number', 0.3],
          ];
    case 'person':
      return [
        ['who', 0.85],
        ['which person', 0.15],
      ];
    case 'place':
      return [
        ['where', 0.65],
        ['what', 0.2],
        ['which', 0.15],
      ];
    case 'organization':
      return [
        ['what', 0.35],
        ['which', 0.2],
        ['who', 0.2],
        ['what organization', 0.25],
      ];
    case 'thing':
      return [
        ['what', 0.7],
        ['which', 0.3],
      ];
    case 'phrase':
      return [['what', 1]];
  }
}

function pick<T>(choices: [T, number][], rng: Rng): T {
  let r = rng.next();
  for (const [value, p] of choices) {
    if (r < p) return value;
    r -= p;
  }
  return choices[choices.length - 1][0];
}

const cleanWord = (w: string) => w.replace(/^["“‘([]+|[,;:"”’)\].!?]+$/g, '');

/** Words of a side of the answer, cut at the nearest bracket or semicolon (the clause), at most `max`. */
function clause(text: string, side: 'left' | 'right', max: number): string[] {
  const raw = text.split(/\s+/).filter(Boolean);
  if (side === 'left') {
    let from = 0;
    for (let i = raw.length - 1; i >= 0; i--)
      if (/[;()]/.test(raw[i]) && raw.length - i - 1 >= 2) {
        from = i + 1;
        break;
      }
    return raw.slice(from).slice(-max).map(cleanWord).filter(Boolean);
  }
  let to = raw.length;
  for (let i = 0; i < raw.length; i++)
    if (/[;()]/.test(raw[i]) && i >= 2) {
      to = i;
      break;
    }
  return raw.slice(0, to).slice(0, max).map(cleanWord).filter(Boolean);
}

export interface TypedQuestionOptions {
  /** Most words kept on each side of the answer (default 10). */
  readonly windowWords?: number;
  /** Chance to drop a function word (default 0.35) and a content word (default 0.08). */
  readonly dropFunction?: number;
  readonly dropContent?: number;
  /** Chance of an all lower-case question, as some people type them (default 0.08). */
  readonly lowerCase?: number;
}

/** A question about `answer` of `sentence` (seeded through `rng`); null when too little context is left. */
export function typedQuestion(sentence: string, answer: TypedAnswer, rng: Rng, options: TypedQuestionOptions = {}): TypedCloze | null {
  const { windowWords = 10, dropFunction = 0.35, dropContent = 0.08, lowerCase = 0.08 } = options;
  const beforeText = sentence.slice(0, answer.start).trimEnd();
  let afterText = sentence
    .slice(answer.start + answer.text.length)
    .replace(/[.!?]+$/, '')
    .trimStart();
  let left = clause(beforeText, 'left', windowWords);
  // A noun phrase's determiner goes with it: "… the what of citizens" is no question.
  if (answer.type === 'phrase' && /^(?:the|a|an)$/i.test(left[left.length - 1] ?? '')) left = left.slice(0, -1);
  let phrase = pick(questionPhrases(answer), rng);
  if (answer.type === 'count' && answer.countedNoun) afterText = afterText.replace(/^\S+\s*/, '');
  // The answer's preposition moves into the question phrase: "in 1947" → "In what year".
  const preposition = left.length > 0 ? left[left.length - 1].toLowerCase() : '';
  const timeOrPlace = ['date', 'month', 'year', 'decade', 'place'].includes(answer.type);
  if (timeOrPlace && ['in', 'on', 'at', 'during', 'since', 'by'].includes(preposition)) {
    left = left.slice(0, -1);
    // "in 1947" → "When …" / "In what year …" / "What year …".
    if (/^what /.test(phrase) && rng.next() < 0.5) phrase = `${preposition} ${phrase}`;
  } else if (['in', 'on', 'during', 'since', 'by', 'from', 'to', 'with', 'for', 'of'].includes(preposition) && rng.next() < 0.3) {
    // "… married to what …" often becomes "To whom / To what …": keep the preposition in front.
    phrase = `${preposition} ${phrase === 'who' ? 'whom' : phrase}`;
    left = left.slice(0, -1);
  }
  const right = clause(afterText, 'right', windowWords);
  const keep = (words: string[]) => words.filter((w) => rng.next() >= (FUNCTION_WORDS.has(w.toLowerCase()) ? dropFunction : dropContent));
  // The sentence's capitalised first word is not a name once it moves behind the question word: "Where did he begin …".
  if (left.length > 0 && beforeText.startsWith(left[0]) && (STOP_CAPITALISED.has(left[0]) || FUNCTION_WORDS.has(left[0].toLowerCase())))
    left = [left[0].toLowerCase(), ...left.slice(1)];
  const keptLeft = keep(left);
  const keptRight = keep(right);
  if (keptLeft.length + keptRight.length < 3) return null;
  // A subject answer (nothing, or only a stray word, before it in its clause) keeps the order:
  // "Who found that …". Others get an auxiliary after the question word half the time.
  const subject = left.length === 0 || (left.length === 1 && FUNCTION_WORDS.has(left[0].toLowerCase()));
  const words = [phrase];
  if (!subject && !/^(?:was|were|is|are|has|had|have|can|could|will|would)$/i.test(keptRight[0] ?? '') && rng.next() < 0.5) {
    words.push(
      pick(
        [
          ['did', 0.55],
          ['was', 0.2],
          ['is', 0.1],
          ['does', 0.1],
          ['were', 0.05],
        ],
        rng,
      ),
    );
  }
  words.push(...keptLeft, ...keptRight);
  let text = words.join(' ').replace(/\s+/g, ' ').trim();
  text = rng.next() < lowerCase ? text.toLowerCase() : `${text[0].toUpperCase()}${text.slice(1)}`;
  return { question: `${text}?`, answer: answer.text, before: beforeText, after: afterText, type: answer.type };
}

/** Every typed answer of a passage's sentences, with its sentence (6–60 words). */
export function typedAnswerSites(
  text: string,
  options: { minSentenceWords?: number; maxSentenceWords?: number; people?: PersonLexicon } = {},
): { sentence: string; answer: TypedAnswer }[] {
  const { minSentenceWords = 6, maxSentenceWords = 60, people } = options;
  const out: { sentence: string; answer: TypedAnswer }[] = [];
  for (const sentence of sentences(text)) {
    const n = sentence.split(/\s+/).length;
    if (n < minSentenceWords || n > maxSentenceWords) continue;
    for (const answer of typedAnswers(sentence, people)) out.push({ sentence, answer });
  }
  return out;
}

/**
 * Up to `count` typed cloze questions of a passage, chosen at random among its answers, with at
 * most a third of them noun phrases (they are the most numerous candidates). A share
 * `rewriteShare` is rewritten question-style (typedQuestion); the rest keep their sentence, with
 * the question phrase in the answer's place ("Tesla went to what city in 1881?").
 */
export function typedClozeExamples(
  text: string,
  rng: Rng,
  count: number,
  rewriteShare: number,
  options: TypedQuestionOptions & { people?: PersonLexicon } = {},
): TypedCloze[] {
  const sites = typedAnswerSites(text, { people: options.people });
  const order = rng.permutation(sites.length);
  const out: TypedCloze[] = [];
  let phrases = 0;
  for (const i of order) {
    if (out.length >= count) break;
    const { sentence, answer } = sites[i];
    if (answer.type === 'phrase') {
      if (phrases >= Math.ceil(count / 3)) continue;
      phrases++;
    }
    if (rng.next() < rewriteShare) {
      const q = typedQuestion(sentence, answer, rng, options);
      if (q) out.push(q);
      continue;
    }
    let before = sentence.slice(0, answer.start).trimEnd();
    if (answer.type === 'phrase') before = before.replace(/\b(?:the|a|an)$/i, '').trimEnd();
    let after = sentence
      .slice(answer.start + answer.text.length)
      .replace(/[.!?]+$/, '')
      .trimStart();
    if (answer.type === 'count' && answer.countedNoun) after = after.replace(/^\S+\s*/, '');
    const phrase = pick(questionPhrases(answer), rng);
    const question = `${before} ${phrase} ${after}`.replace(/\s+/g, ' ').trim();
    out.push({ question: `${question.replace(/[,;:]$/, '')}?`, answer: answer.text, before, after, type: answer.type });
  }
  return out;
}
