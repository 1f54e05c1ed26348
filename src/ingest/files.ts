/**
 * Files a user drops on the passages page → ~100-word passages ready to embed. No DOM: the page
 * reads the file's bytes and hands them here, so the whole pipeline is tested in Node.
 *
 * Formats: .txt and .md (one document; the file name is the title), .jsonl (BEIR/DPR-style
 * `{"title","text"}` lines, each chunked on its own). PDF files go through src/ingest/pdf.ts
 * (asynchronous: pdf.js parses them), into the same result shape. A bad jsonl line is reported with its line
 * number and skipped; the other lines still count. Unreadable bytes (not UTF-8) and files over the
 * size limit are refused whole, before anything is stored.
 */
import { chunkDocument } from '../retrieval/chunking';

/** Files larger than this are refused (the page holds the text in memory while chunking). */
export const MAX_FILE_BYTES = 20 * 2 ** 20;

/** Read here, synchronously. */
export const TEXT_EXTENSIONS = ['.txt', '.md', '.jsonl'] as const;
/** What the passages page accepts: text formats, and PDF through ingestPdf. */
export const SUPPORTED_EXTENSIONS = [...TEXT_EXTENSIONS, '.pdf'] as const;

export interface IngestedPassage {
  readonly title: string;
  readonly text: string;
  /** File the passage came from, for the per-file private/contribute choice. */
  readonly file: string;
}

export interface IngestProblem {
  /** 1-based line for jsonl problems. */
  readonly line?: number;
  /** 1-based page for PDF problems. */
  readonly page?: number;
  readonly message: string;
}

/** "line 3: …" / "page 2: …" for the user. */
export function describeProblem(p: IngestProblem): string {
  const where = p.line !== undefined ? `line ${p.line}: ` : p.page !== undefined ? `page ${p.page}: ` : '';
  return where + p.message;
}

export interface IngestResult {
  readonly file: string;
  readonly passages: IngestedPassage[];
  /** Lines skipped (jsonl) or the reason nothing was read. */
  readonly problems: IngestProblem[];
}

export class IngestError extends Error {
  constructor(
    readonly file: string,
    message: string,
  ) {
    super(`${file}: ${message}`);
    this.name = 'IngestError';
  }
}

export interface IngestOptions {
  readonly maxBytes?: number;
  /** Passage length in words (default 100, as DPR and Atlas). */
  readonly maxWords?: number;
}

export function extension(name: string): string {
  const dot = name.lastIndexOf('.');
  return dot < 0 ? '' : name.slice(dot).toLowerCase();
}

/** A passage title from a file name: no folder, no extension, `_`/`-` as spaces. */
export function titleOf(fileName: string): string {
  const base = fileName.replace(/^.*[\\/]/, '');
  const dot = base.lastIndexOf('.');
  return (dot > 0 ? base.slice(0, dot) : base).replace(/[_-]+/g, ' ').trim();
}

function decodeUtf8(file: string, bytes: Uint8Array): string {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes).replace(/^\uFEFF/, '');
  } catch {
    throw new IngestError(file, 'the file is not UTF-8 text (is it a binary file, or a PDF saved with a .txt name?)');
  }
}

/** Refuses a file over the size limit (the page calls it with File.size, before reading the file). */
export function refuseOversize(name: string, size: number, maxBytes = MAX_FILE_BYTES): void {
  if (size > maxBytes) throw new IngestError(name, `the file is ${formatBytes(size)}, over the ${formatBytes(maxBytes)} limit; split it into smaller files`);
}

/**
 * Parses and chunks one file. Throws IngestError when the whole file must be refused (wrong
 * type, too large, not text, no passage at all); returns per-line problems otherwise.
 */
export function ingestFile(name: string, bytes: Uint8Array, options: IngestOptions = {}): IngestResult {
  const ext = extension(name);
  if (!(TEXT_EXTENSIONS as readonly string[]).includes(ext)) {
    const why = ext === '.pdf' ? 'PDF files are read by ingestPdf (src/ingest/pdf.ts)' : `add ${SUPPORTED_EXTENSIONS.join(', ')} files`;
    throw new IngestError(name, `unsupported file type "${ext || '(none)'}": ${why}`);
  }
  refuseOversize(name, bytes.byteLength, options.maxBytes);
  const text = decodeUtf8(name, bytes);
  const chunk = { maxWords: options.maxWords ?? 100 };
  const passages: IngestedPassage[] = [];
  const problems: IngestProblem[] = [];

  if (ext === '.jsonl') {
    text.split(/\r?\n/).forEach((raw, i) => {
      const line = i + 1;
      if (raw.trim() === '') return;
      let value: unknown;
      try {
        value = JSON.parse(raw);
      } catch (e) {
        problems.push({ line, message: `not valid JSON (${(e as Error).message})` });
        return;
      }
      if (typeof value !== 'object' || value === null || Array.isArray(value)) {
        problems.push({ line, message: 'expected a JSON object like {"title": ..., "text": ...}' });
        return;
      }
      const record = value as Record<string, unknown>;
      if (typeof record.text !== 'string' || record.text.trim() === '') {
        problems.push({ line, message: 'no "text" (every line needs a non-empty "text" string)' });
        return;
      }
      const title = typeof record.title === 'string' ? record.title : '';
      for (const c of chunkDocument({ title, text: record.text }, chunk)) passages.push({ title: c.title, text: c.text, file: name });
    });
  } else {
    const body = ext === '.md' ? stripMarkdown(text) : text;
    if (body.trim() !== '') {
      for (const c of chunkDocument({ title: titleOf(name), text: body }, chunk)) passages.push({ title: c.title, text: c.text, file: name });
    }
  }
  if (passages.length === 0) {
    const why = problems.length ? ` (${problems.length} bad line${problems.length > 1 ? 's' : ''}; first: ${describeProblem(problems[0])})` : '';
    throw new IngestError(name, `no passage found: the file has no text${why}`);
  }
  return { file: name, passages, problems };
}

/** Markdown syntax is noise to the retriever: keep the words, drop markup and code fences. */
export function stripMarkdown(md: string): string {
  return md
    .replace(/```[\s\S]*?```/g, ' ')
    .replace(/!\[([^\]]*)\]\([^)]*\)/g, '$1')
    .replace(/\[([^\]]*)\]\([^)]*\)/g, '$1')
    .replace(/^\s{0,3}#{1,6}\s+/gm, '')
    .replace(/^\s{0,3}>\s?/gm, '')
    .replace(/^\s*[-*+]\s+/gm, '')
    .replace(/(\*\*|__|`)/g, '');
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 2 ** 20) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 2 ** 30) return `${(n / 2 ** 20).toFixed(1)} MiB`;
  return `${(n / 2 ** 30).toFixed(2)} GiB`;
}
