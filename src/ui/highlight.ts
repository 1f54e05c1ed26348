/**
 * Where a generated answer occurs in a retrieved passage, for the QA view's highlights. Matching
 * ignores case and collapses whitespace, as SQuAD's normalisation does for comparison, but the
 * returned segments are slices of the original text so the page shows it unchanged.
 */
export interface TextSegment {
  readonly text: string;
  readonly match: boolean;
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Splits `text` into alternating plain and matching segments (no match: one plain segment). */
export function highlightOccurrences(text: string, answer: string): TextSegment[] {
  const words = answer.trim().split(/\s+/).filter(Boolean);
  if (words.length === 0) return [{ text, match: false }];
  // Word boundaries only where the answer starts/ends with a word character ("paris" not in "parisian").
  const first = /^\w/.test(words[0]) ? '\\b' : '';
  const last = /\w$/.test(words[words.length - 1]) ? '\\b' : '';
  const pattern = new RegExp(`${first}${words.map(escapeRegExp).join('\\s+')}${last}`, 'gi');
  const segments: TextSegment[] = [];
  let at = 0;
  for (const m of text.matchAll(pattern)) {
    if (m.index > at) segments.push({ text: text.slice(at, m.index), match: false });
    segments.push({ text: m[0], match: true });
    at = m.index + m[0].length;
  }
  if (at < text.length || segments.length === 0) segments.push({ text: text.slice(at), match: false });
  return segments;
}
