import { squadPassageId, squadTitle } from '../crab/squad';
import { chunkText } from '../retrieval/chunking';

/**
 * The pretraining corpus: unlabeled passages only. Two sources, parsed from their text here
 * (callers read the files):
 * - DPR Wikipedia passages (`psgs_w100.tsv` layout: id, text, title; already ~100 words each);
 * - SQuAD v1.1 paragraphs as plain text (the `context` fields only: no question, no answer is
 *   read), split into ~100-word passages titled with their article exactly as CRAB-mini splits
 *   them (src/retrieval/chunking.ts, same ids), so the pretrained index and CRAB share passages.
 */

export interface CorpusPassage {
  /** Stable id: `wiki:<dpr id>`, or CRAB-mini's `squad-AAA-PPP-CC` (article, paragraph, chunk). */
  readonly id: string;
  readonly title: string;
  readonly text: string;
}

/** Parses DPR's psgs_w100 TSV (header `id\ttext\ttitle`, optional quoting of text and title). */
export function parseDprPassages(tsv: string): CorpusPassage[] {
  const lines = tsv.split(/\r?\n/);
  const header = lines[0]?.split('\t');
  if (!header || header[0] !== 'id' || header[1] !== 'text' || header[2] !== 'title') {
    throw new Error('DPR passages: expected a header line "id<TAB>text<TAB>title"');
  }
  const unquote = (s: string) => (s.length >= 2 && s.startsWith('"') && s.endsWith('"') ? s.slice(1, -1).replace(/""/g, '"') : s);
  const out: CorpusPassage[] = [];
  for (let i = 1; i < lines.length; i++) {
    if (lines[i].trim() === '') continue;
    const cols = lines[i].split('\t');
    if (cols.length < 3) throw new Error(`DPR passages: line ${i + 1} has ${cols.length} columns, expected 3`);
    out.push({ id: `wiki:${cols[0]}`, text: unquote(cols[1]), title: unquote(cols[2]) });
  }
  return out;
}

interface SquadJson {
  readonly data: { readonly title: string; readonly paragraphs: { readonly context: string }[] }[];
}

/** SQuAD v1.1 paragraphs (contexts only) split into passages of at most `maxWords` words. */
export function squadParagraphPassages(squad: unknown, maxWords = 100): CorpusPassage[] {
  const data = (squad as SquadJson)?.data;
  if (!Array.isArray(data)) throw new Error('SQuAD: expected a JSON object with a "data" array');
  const out: CorpusPassage[] = [];
  data.forEach((article, a) => {
    const title = squadTitle(article.title);
    article.paragraphs.forEach((p, q) => {
      chunkText(p.context, { maxWords }).forEach((chunk, c) => out.push({ id: squadPassageId(a, q, c), title, text: chunk.text }));
    });
  });
  return out;
}
