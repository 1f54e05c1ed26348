/**
 * Splitting documents into ~100-word passages, the unit DPR, Atlas and CoRAG retrieve.
 *
 * Words are maximal runs of non-whitespace. With `sentenceAware` (the default) a passage ends at a
 * sentence end whenever the next sentence would overflow `maxWords`; a sentence longer than
 * `maxWords` is cut into `maxWords`-word pieces. Without it the text is cut into fixed windows of
 * exactly `maxWords` words (the DPR psgs_w100 layout). A trailing passage shorter than `minWords`
 * is merged into the one before it, so no passage is a stub (that one may reach
 * maxWords + minWords − 1 words). Passage text is the original substring (whitespace, punctuation
 * and character offsets kept), so answer spans given as character offsets map into passages.
 * Never returns an empty passage: whitespace-only text yields no passages at all.
 */

export interface ChunkOptions {
  /** Target and normal maximum passage length in words (default 100). */
  maxWords?: number;
  /** A trailing passage shorter than this is merged into the previous one (default maxWords / 4, floored). */
  minWords?: number;
  /** Break at sentence ends where possible (default true). */
  sentenceAware?: boolean;
}

export interface TextChunk {
  /** text.slice(start, end): from the first character of the first word to the last of the last. */
  text: string;
  start: number;
  end: number;
  words: number;
}

export interface TitledText {
  title: string;
  text: string;
}

export interface TitledChunk extends TextChunk {
  title: string;
}

interface WordSpan {
  start: number;
  end: number;
}

// A sentence ends at a word ending in . ! or ? (optionally followed by closing quotes/brackets)
// when the next word starts like a sentence (capital letter, digit or opening quote/bracket).
// Cheap on purpose: a false break (e.g. after "U.S.") only moves a passage boundary.
const SENTENCE_END = /[.!?]["'”’)\]]*$/u;
const SENTENCE_START = /^["'“‘([]*[\p{Lu}\p{N}]/u;

export function chunkText(text: string, options: ChunkOptions = {}): TextChunk[] {
  const maxWords = options.maxWords ?? 100;
  if (!Number.isInteger(maxWords) || maxWords < 1) throw new RangeError(`chunkText: maxWords must be a positive integer, got ${maxWords}`);
  const minWords = options.minWords ?? Math.floor(maxWords / 4);
  if (!Number.isInteger(minWords) || minWords < 0 || minWords > maxWords) {
    throw new RangeError(`chunkText: minWords must be an integer in [0, maxWords], got ${minWords}`);
  }
  const sentenceAware = options.sentenceAware ?? true;

  const words: WordSpan[] = [];
  for (const m of text.matchAll(/\S+/g)) words.push({ start: m.index, end: m.index + m[0].length });
  if (words.length === 0) return [];

  // Sentences as [firstWord, endWord) ranges, each at most maxWords long.
  const pieces: Array<[number, number]> = [];
  const pushSentence = (from: number, to: number) => {
    for (let s = from; s < to; s += maxWords) pieces.push([s, Math.min(to, s + maxWords)]);
  };
  if (sentenceAware) {
    let from = 0;
    words.forEach((span, w) => {
      const next = words[w + 1]; // none after the last word: it ends the last sentence
      const word = text.slice(span.start, span.end);
      if (!next || (SENTENCE_END.test(word) && SENTENCE_START.test(text.slice(next.start, next.end)))) {
        pushSentence(from, w + 1);
        from = w + 1;
      }
    });
  } else {
    pushSentence(0, words.length);
  }

  // Greedy packing of whole pieces into passages of at most maxWords words.
  const ranges: Array<[number, number]> = [];
  for (const [from, to] of pieces) {
    const current = ranges[ranges.length - 1];
    if (current && to - current[0] <= maxWords) current[1] = to;
    else ranges.push([from, to]);
  }
  const tail = ranges[ranges.length - 1];
  const beforeTail = ranges[ranges.length - 2];
  if (tail && beforeTail && tail[1] - tail[0] < minWords) {
    ranges.pop();
    beforeTail[1] = tail[1];
  }

  return ranges.map(([from, to]) => {
    const first = words[from];
    const last = words[to - 1];
    if (!first || !last) throw new Error(`chunkText: passage [${from}, ${to}) is outside the ${words.length} words`);
    const { start } = first;
    const { end } = last;
    return { text: text.slice(start, end), start, end, words: to - from };
  });
}

/** Chunks a titled document; every passage keeps the document's title. */
export function chunkDocument(document: TitledText, options: ChunkOptions = {}): TitledChunk[] {
  return chunkText(document.text, options).map((chunk) => ({ ...chunk, title: document.title }));
}
