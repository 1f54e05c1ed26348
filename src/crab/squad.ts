/**
 * SQuAD v1.1 as an open-domain corpus: every paragraph is cut into ~100-word passages that keep
 * the article title (underscores become spaces, "Super_Bowl_50" -> "Super Bowl 50"), and every
 * question becomes a QA pair with all its gold answer strings. Which passage answers which
 * question is then decided by BM25 (categories.ts), as for any other corpus.
 */
import { chunkText, type ChunkOptions } from '../retrieval/chunking';
import type { SquadArticle } from './loaders';
import type { Passage, QAPair } from './types';

export interface SquadCorpus {
  passages: Passage[];
  qaPairs: QAPair[];
}

const pad = (n: number, width: number) => String(n).padStart(width, '0');

/** The passage id of chunk `c` of paragraph `p` of article `a`: zero-padded so ids sort in corpus order. */
export function squadPassageId(article: number, paragraph: number, chunk: number): string {
  return `squad-${pad(article, 3)}-${pad(paragraph, 3)}-${pad(chunk, 2)}`;
}

export function squadTitle(title: string): string {
  return title.replace(/_/g, ' ');
}

export function squadToCorpus(articles: readonly SquadArticle[], chunking: ChunkOptions = {}): SquadCorpus {
  const passages: Passage[] = [];
  const qaPairs: QAPair[] = [];
  articles.forEach((article, a) => {
    const title = squadTitle(article.title);
    article.paragraphs.forEach((paragraph, p) => {
      chunkText(paragraph.context, chunking).forEach((chunk, c) => passages.push({ id: squadPassageId(a, p, c), title, text: chunk.text }));
      for (const qa of paragraph.qas) qaPairs.push({ id: qa.id, question: qa.question, answers: qa.answers.map((x) => x.text) });
    });
  });
  return { passages, qaPairs };
}
