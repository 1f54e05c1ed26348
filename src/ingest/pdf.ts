/**
 * PDF files → passages, through Mozilla's pdf.js (pdfjs-dist): the text layer of each page, in
 * the order pdf.js reports it, chunked like a .txt file. Each page is chunked on its own, so a
 * passage's title says where it came from ("Field notes, p. 3") and a passage never straddles a
 * page break, where running heads and footnotes would glue unrelated text together.
 *
 * pdf.js is handed in (a browser page loads its build with a worker, Node tests its legacy build):
 * this module has no DOM and no bundler specifics, like src/ingest/files.ts. Refused whole, before
 * anything is stored: files over the size limit, bytes that are not a PDF, password-protected
 * files, and PDFs without any text layer (scans). Pages without text are reported and skipped.
 */
import { chunkDocument } from '../retrieval/chunking';
import { IngestError, refuseOversize, titleOf, type IngestedPassage, type IngestOptions, type IngestProblem, type IngestResult } from './files';

/** The part of pdf.js this module uses (structurally typed, so either build fits). */
export interface PdfJsLib {
  getDocument(source: { data: Uint8Array; isEvalSupported?: boolean; verbosity?: number }): { promise: Promise<PdfDocument>; destroy(): Promise<void> };
}

interface PdfDocument {
  readonly numPages: number;
  getMetadata(): Promise<{ info?: unknown }>;
  getPage(pageNumber: number): Promise<{ getTextContent(): Promise<{ items: ReadonlyArray<object> }> }>;
}

/** Files pdf.js would need a password for; their text cannot be read. */
function isPasswordError(e: unknown): boolean {
  return (e as { name?: string })?.name === 'PasswordException';
}

/**
 * A page's text from pdf.js text items: `str` pieces, `hasEOL` line ends. A word hyphenated across
 * a line end is joined again ("retrie-\nval" → "retrieval"); other line ends become spaces.
 */
export function pageText(items: ReadonlyArray<object>): string {
  let text = '';
  for (const item of items) {
    const { str, hasEOL } = item as { str?: unknown; hasEOL?: unknown };
    if (typeof str === 'string') text += str;
    if (hasEOL === true) text += '\n';
  }
  return text
    .replace(/(\p{L})-\n(\p{Ll})/gu, '$1$2')
    .replace(/\s+/g, ' ')
    .trim();
}

/** `onPage(done, total)` after each page: a long PDF takes a while to read. */
export async function ingestPdf(
  name: string,
  bytes: Uint8Array,
  pdfjs: PdfJsLib,
  options: IngestOptions & { onPage?: (done: number, total: number) => void } = {},
): Promise<IngestResult> {
  refuseOversize(name, bytes.byteLength, options.maxBytes);
  // pdf.js takes ownership of (detaches) the buffer it is given: hand it a copy. Verbosity 0
  // (errors only): its warnings (a damaged xref it repairs, no glyph data for a standard font,
  // which text extraction does not need) are not the user's business; failures still throw.
  const task = pdfjs.getDocument({ data: bytes.slice(), isEvalSupported: false, verbosity: 0 });
  let doc: PdfDocument;
  try {
    doc = await task.promise;
  } catch (e) {
    await task.destroy().catch(() => undefined);
    if (isPasswordError(e)) throw new IngestError(name, 'the PDF is password-protected; save a copy without the password and add that');
    throw new IngestError(name, `not a readable PDF (${(e as Error)?.message ?? String(e)})`);
  }
  try {
    const info = (await doc.getMetadata().catch(() => ({ info: undefined }))).info as { Title?: unknown } | undefined;
    const title = typeof info?.Title === 'string' && info.Title.trim() ? info.Title.trim() : titleOf(name);
    const chunk = { maxWords: options.maxWords ?? 100 };
    const passages: IngestedPassage[] = [];
    const problems: IngestProblem[] = [];
    for (let page = 1; page <= doc.numPages; page++) {
      let text: string;
      try {
        text = pageText((await (await doc.getPage(page)).getTextContent()).items);
      } catch (e) {
        problems.push({ page, message: `could not be read (${(e as Error)?.message ?? String(e)})` });
        options.onPage?.(page, doc.numPages);
        continue;
      }
      if (!/[\p{L}\p{N}]/u.test(text)) {
        problems.push({ page, message: 'no text (an image or a scan?)' });
        options.onPage?.(page, doc.numPages);
        continue;
      }
      const pageTitle = doc.numPages > 1 ? `${title}, p. ${page}` : title;
      for (const c of chunkDocument({ title: pageTitle, text }, chunk)) passages.push({ title: c.title, text: c.text, file: name });
      options.onPage?.(page, doc.numPages);
    }
    if (passages.length === 0) {
      throw new IngestError(
        name,
        `no text found in ${doc.numPages} page${doc.numPages === 1 ? '' : 's'}: the PDF has no text layer (a scan?); run OCR on it first`,
      );
    }
    return { file: name, passages, problems };
  } finally {
    await task.destroy().catch(() => undefined);
  }
}
