/**
 * What kind of thing a span of text names — a date, a sum of money, a count, a person, a place,
 * an organisation, a noun phrase — found by rules alone (no tagger, no model): the answer
 * candidates of a sentence with their types. Typed synthetic questions (src/pretrain/
 * typed-questions.ts) ask about them with a question word that fits; answer reranking
 * (src/corag/answer-rerank.ts) prefers a reader's candidate whose type fits the question's.
 *
 * Candidates a question could not single out are skipped: items of a list, possessives, bare
 * nationality adjectives ("English throne"), sentence-initial single words.
 */
import { sentences } from './sentences';

export type AnswerType = 'date' | 'month' | 'year' | 'decade' | 'money' | 'percent' | 'count' | 'person' | 'place' | 'organization' | 'thing' | 'phrase';

export interface TypedAnswer {
  /** The answer as it stands in the sentence. */
  readonly text: string;
  /** Character offset in the sentence. */
  readonly start: number;
  readonly type: AnswerType;
  /** For counts: the noun counted, right after the number ("four levels" → "levels"), moved into "how many". */
  readonly countedNoun?: string;
}

const MONTHS = 'January|February|March|April|May|June|July|August|September|October|November|December';
const SPELLED =
  'two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|hundred|thousand|dozens|hundreds|thousands|millions';
/** A capitalised word (Unicode: "Máel", "Ōtomo"), with internal apostrophes, dots and hyphens. */
const CAP = "\\p{Lu}[\\p{L}\\p{M}\\p{N}'’.\\-]*";
/** Joining words inside a multi-word name ("University of Chicago", "Robert the Bruce"). */
const JOIN = '(?:of |the |de |da |di |von |van |du |la |le |del |bin |ibn |al-|mac )';
const SCALE = '(?: (?:million|billion|trillion))?';

/** Alternatives in priority order; the first that matches at a position wins. */
const ANSWER = new RegExp(
  [
    `(?<date>(?:${MONTHS}) \\d{1,2}, \\d{4}|\\d{1,2} (?:${MONTHS}) \\d{4})`,
    `(?<month>(?:${MONTHS}) \\d{4})`,
    `(?<money>[$£€¥]\\s?\\d[\\d,.]*${SCALE}|\\d[\\d,.]*${SCALE} (?:dollars|pounds|euros|yen))`,
    `(?<percent>\\d[\\d,.]*(?:%| percent| per cent))`,
    `(?<decade>\\b\\d{3,4}s\\b)`,
    `(?<year>\\b(?:1\\d|20)\\d\\d\\b(?![\\d,.]\\d))`,
    `(?<count>\\b(?:\\d[\\d,.]*${SCALE}|(?:${SPELLED}))\\b(?= [a-z]))`,
    `(?<number>\\b\\d[\\d,.]*\\d${SCALE}\\b|\\b\\d\\b)`,
    `(?<name>${CAP}(?: ${JOIN}?${CAP})*)`,
  ].join('|'),
  'gu',
);

/** Lower-case noun phrases after a determiner, ending before punctuation or a function word. */
const PHRASE =
  /\b(?:the|a|an) ((?:[a-z][a-z-]+ ){0,2}[a-z][a-z-]{3,})(?=[,.;:)]|$| (?:of|in|on|at|to|for|with|by|and|or|that|which|who|was|were|is|are|from|as|into|during)\b)/g;

export const STOP_CAPITALISED = new Set([
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
  'According',
  'Despite',
  'Following',
  'Today',
  'Also',
  'Because',
  'Each',
  'Both',
  'Such',
  'Between',
  'Under',
  'Over',
  'Until',
  'Through',
  'Unlike',
  'Like',
  'Although',
  'Thus',
  'Later',
  'Early',
  'First',
  'Many',
  'One',
  'Another',
  'Several',
]);

const PERSON_TITLES =
  /(?:^|\s)(?:King|Queen|President|Sir|Saint|St\.|Pope|Emperor|Empress|Dr\.|General|Prince|Princess|Lord|Lady|Bishop|Archbishop|Professor|Governor|Senator|Chancellor|Duke|Count|Cardinal|Mr\.|Mrs\.|Ms\.|Judge|Captain|Admiral|Sultan|Shah|Khan|Tsar|Czar|Pharaoh|Caliph|Rabbi|Reverend|Father)$/;
const PERSON_AFTER =
  /^(?:,? who\b|'s (?:wife|husband|son|daughter|father|mother|brother|sister|death|life|birth)\b| \((?:born|c\.|\d{4}) | (?:said|says|wrote|writes|was born|died|married|argued|claimed|stated|became|invented|discovered|proposed|believed|suggested|described|published|himself|herself|won|played|sang|directed|painted|composed)\b)/;
/** A role noun just before a two- or three-word name: "physicist Albert Einstein", "the Provost is Eric Isaacs". */
const ROLE_BEFORE =
  /\b(?:[Cc]hairman|[Cc]hairwoman|[Pp]resident|[Dd]irector|[Pp]rovost|[Pp]rofessor|[Dd]ean|author|writer|poet|novelist|scientist|physicist|chemist|biologist|mathematician|engineer|inventor|philosopher|theologian|historian|economist|composer|painter|architect|actor|actress|singer|player|coach|manager|founder|leader|minister|[Ss]ecretary|mayor|student|alumnus|alumna|son|daughter|wife|husband|brother|sister|father|mother|nephew|niece|uncle|aunt|friend|colleague|rival|successor|predecessor)(?: (?:is|was|of the \S+ (?:is|was)))?,?$/;
const ORG_WORDS =
  /\b(?:University|College|School|Institute|Academy|Company|Corporation|Corp\.|Inc\.|Ltd|Party|Church|Council|Association|Society|Committee|Museum|Department|Ministry|Agency|Bank|Group|League|Union|Club|Network|Army|Navy|Force|Parliament|Commission|Court|Board|Foundation|Broadcasting|Records|Orchestra|Organization|Organisation|Federation|Service|Office|Assembly|Senate|Congress|Government|Conference|Team|Railway|Airlines|Studios|Press|Times|News)\b/;
const PLACE_WORDS =
  /\b(?:River|Mountains?|Mount|Lake|Sea|Ocean|Islands?|City|County|Street|Valley|Bay|Province|Kingdom|Republic|Empire|Coast|Desert|Forest|Gulf|Peninsula|Canyon|Falls|Park|Square|Road|Avenue|Bridge|Castle|Palace|Cathedral|Abbey|Stadium|Airport|Harbour|Harbor|Region|District|Basin|Delta|Strait|Channel|Hills?|Plains?)\b/;
const PLACE_BEFORE =
  /\b(?:in|at|near|from|into|across|throughout|towards|toward|outside|inside|within|around|reached|visited|entered|invaded|fled to|moved to|returned to|travelled to|traveled to|sailed to|emigrated to)$/;
const NATIONALITY = /^\p{Lu}[\p{L}]*(?:ish|ian|ese|ic|an|i)$/u;

/** Function words (English): the words a question shares with a passage without saying what it is about. */
export const FUNCTION_WORDS = new Set(
  'a an the of in on at to for with by from as into during and or but that which who whom whose this these those it its is are was were be been being has have had do does did not also there their his her they he she we our than then so such very some any each other most more many much can could would should will may might must about after before between over under through while when where if both either'.split(
    ' ',
  ),
);

/**
 * Words that name people somewhere in a corpus: the given names and surnames of names typed
 * person by a local cue ("Nikola Tesla, who …" makes "Tesla" a person in every passage), so a
 * person mentioned without a cue still gets "who".
 */
export class PersonLexicon {
  /** Per word: occurrences in names typed person, and in names typed place or organisation. */
  private readonly counts = new Map<string, { person: number; other: number }>();

  /** Collects the person words of every passage text. */
  static fromTexts(texts: Iterable<string>): PersonLexicon {
    const lexicon = new PersonLexicon();
    for (const text of texts) {
      for (const sentence of sentences(text)) {
        for (const a of typedAnswers(sentence))
          if (a.type === 'person' || a.type === 'place' || a.type === 'organization') lexicon.add(a.text, a.type === 'person');
      }
    }
    return lexicon;
  }

  /** The name's own words: before any joining word ("David" of "King David I of Scotland"), without titles and numerals. */
  private static nameWords(name: string): string[] {
    const [head = name] = name.split(new RegExp(` ${JOIN}`, 'u'));
    return head.split(' ').filter((w) => !PERSON_TITLES.test(` ${w}`) && !/^[IVXLC]+$/.test(w) && w.length > 1 && !STOP_CAPITALISED.has(w));
  }

  /** Counts one occurrence of a name typed person (or, `person` false, place / organisation). */
  add(name: string, person = true): void {
    for (const w of PersonLexicon.nameWords(name)) {
      const c = this.counts.get(w) ?? { person: 0, other: 0 };
      if (person) c.person++;
      else c.other++;
      this.counts.set(w, c);
    }
  }

  /** A word seen in at least two person names and in more person names than place or organisation names. */
  private isPersonWord(w: string): boolean {
    const c = this.counts.get(w);
    return c !== undefined && c.person >= 2 && c.person > c.other;
  }

  /** A name none of whose words marks an organisation or place, and whose own words are all person words. */
  isPerson(name: string): boolean {
    if (ORG_WORDS.test(name) || PLACE_WORDS.test(name)) return false;
    const words = PersonLexicon.nameWords(name);
    return words.length > 0 && words.every((w) => this.isPersonWord(w));
  }
}

const EMPTY_LEXICON = new PersonLexicon();

function typeOfName(sentence: string, start: number, text: string): AnswerType {
  const before = sentence.slice(0, start).trimEnd();
  const after = sentence.slice(start + text.length);
  if (ORG_WORDS.test(text)) return 'organization';
  if (
    PERSON_TITLES.test(before) ||
    /^(?:King|Queen|President|Sir|Saint|Pope|Emperor|Prince|Princess|Lord|Duke|General|Dr\.) /.test(text) ||
    PERSON_AFTER.test(after)
  )
    return 'person';
  if (ROLE_BEFORE.test(before) && /^\p{Lu}\p{Ll}+(?: \p{Lu}\.?)?(?: \p{Lu}\p{Ll}+){1,2}$/u.test(text) && !PLACE_WORDS.test(text)) return 'person';
  if (/\bby$/.test(before) && /^\p{Lu}\p{Ll}+ (?:\S+ )?\p{Lu}\p{Ll}+$/u.test(text) && !PLACE_WORDS.test(text)) return 'person';
  if (PLACE_WORDS.test(text) || PLACE_BEFORE.test(before)) return 'place';
  return 'thing';
}

/** An item: a name or number, as lists are made of. */
const ITEM = `(?:${CAP}(?: ${JOIN}?${CAP})*|\\d[\\d,.]*)`;
/** Three or more items separated by commas, or two with "and"/"or" after a comma list. */
const LIST = new RegExp(`${ITEM}(?:, ${ITEM}){2,}(?:,? (?:and|or) ${ITEM})?|${ITEM}, ${ITEM},? (?:and|or) ${ITEM}`, 'gu');

/** Character ranges of the sentence's lists ("Bruce, Gray, Ramsay … and Gordon"): no item of one can be singled out by a question. */
function listRanges(sentence: string): [number, number][] {
  return [...sentence.matchAll(LIST)].map((m) => [m.index!, m.index! + m[0].length]);
}

/** A number that refers rather than counts: "article 45", "section 3", "20(1)". */
function isReference(sentence: string, start: number, text: string): boolean {
  return (
    /\b(?:[Aa]rticles?|[Ss]ections?|[Cc]hapters?|[Pp]aragraphs?|[Nn]o\.|[Nn]umber|[Pp]ages?|[Vv]olume|[Rr]oute|[Ss]tate|v\.)\s*$|[(]$/.test(
      sentence.slice(0, start),
    ) || /^\(/.test(sentence.slice(start + text.length))
  );
}

/** The typed answer candidates of one sentence, in order. */
export function typedAnswers(sentence: string, people: PersonLexicon = EMPTY_LEXICON): TypedAnswer[] {
  const out: TypedAnswer[] = [];
  const lists = listRanges(sentence);
  const inList = (start: number, text: string) => lists.some(([a, b]) => start >= a && start + text.length <= b);
  const pattern = new RegExp(ANSWER.source, ANSWER.flags);
  for (let m = pattern.exec(sentence); m !== null; m = pattern.exec(sentence)) {
    const g = m.groups!;
    const kind = (Object.keys(g) as (keyof typeof g)[]).find((k) => g[k] !== undefined)!;
    const text = m[0].replace(/[.,]+$/, '');
    const start = m.index;
    if (kind === 'name') {
      // A leading capitalised function word is not part of a name ("These Normans", "In December
      // 2013"): scan again from the next word, where a date or a shorter name may start.
      const first = /^(\S+) /.exec(text)?.[1];
      if (first && STOP_CAPITALISED.has(first)) {
        pattern.lastIndex = start + first.length + 1;
        continue;
      }
      if (/['’]s?$/.test(text)) continue; // possessive: "David's"
      if (text.length < 2 || STOP_CAPITALISED.has(text)) continue;
      if (start === 0 && !/ /.test(text)) continue; // a capitalised sentence opener is rarely a name on its own
      if (!/ /.test(text) && NATIONALITY.test(text) && /^ [a-z]/u.test(sentence.slice(start + text.length))) continue; // "English throne"
      if (inList(start, text)) continue;
      const local = typeOfName(sentence, start, text);
      out.push({ text, start, type: local === 'thing' && people.isPerson(text) ? 'person' : local });
    } else if (text.length < 2 && kind !== 'number') {
      continue;
    } else if (kind === 'count') {
      if (inList(start, text) || isReference(sentence, start, text)) continue;
      const noun = /^ ([a-z][a-z-]+)/.exec(sentence.slice(start + text.length))?.[1];
      const counted = noun && !FUNCTION_WORDS.has(noun) ? noun : undefined;
      out.push({ text, start, type: 'count', countedNoun: counted });
    } else if (kind === 'number') {
      if (!inList(start, text) && !isReference(sentence, start, text)) out.push({ text, start, type: 'count' });
    } else {
      out.push({ text, start, type: kind as AnswerType });
    }
  }
  for (const m of sentence.matchAll(PHRASE)) {
    const text = m[1];
    if (text === undefined) continue; // PHRASE always captures its group 1
    const start = m.index! + m[0].length - text.length;
    if (text.split(' ').every((w) => FUNCTION_WORDS.has(w))) continue;
    if (out.some((a) => start < a.start + a.text.length && a.start < start + text.length)) continue;
    out.push({ text, start, type: 'phrase' });
  }
  return out.sort((a, b) => a.start - b.start);
}
