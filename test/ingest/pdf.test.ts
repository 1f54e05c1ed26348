import { readFileSync } from 'node:fs';
import * as pdfjs from 'pdfjs-dist/legacy/build/pdf.mjs';
import { describe, expect, it } from 'vitest';
import { ingestPdf, pageText } from '../../src/ingest/pdf';

const fixture = () => new Uint8Array(readFileSync(new URL('../fixtures/ingest/field-notes.pdf', import.meta.url)));

/** A valid PDF 1.4 file whose pages have the given content streams (Helvetica as /F1), xref offsets exact. */
function minimalPdf(contents: string[]): Uint8Array {
  const objects: string[] = [];
  const pageIds = contents.map((_, i) => 4 + 2 * i);
  objects[1] = '<< /Type /Catalog /Pages 2 0 R >>';
  objects[2] = `<< /Type /Pages /Kids [${pageIds.map((id) => `${id} 0 R`).join(' ')}] /Count ${contents.length} >>`;
  objects[3] = '<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>';
  contents.forEach((stream, i) => {
    objects[pageIds[i]] = `<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> /Contents ${pageIds[i] + 1} 0 R >>`;
    objects[pageIds[i] + 1] = `<< /Length ${stream.length} >>\nstream\n${stream}\nendstream`;
  });
  let out = '%PDF-1.4\n';
  const offsets: number[] = [];
  for (let id = 1; id < objects.length; id++) {
    offsets[id] = out.length;
    out += `${id} 0 obj\n${objects[id]}\nendobj\n`;
  }
  const xref = out.length;
  out += `xref\n0 ${objects.length}\n0000000000 65535 f \n${offsets
    .slice(1)
    .map((o) => `${String(o).padStart(10, '0')} 00000 n \n`)
    .join('')}`;
  out += `trailer\n<< /Size ${objects.length} /Root 1 0 R >>\nstartxref\n${xref}\n%%EOF\n`;
  return new TextEncoder().encode(out);
}

describe('ingestPdf', () => {
  it('turns each page of a chromium-printed PDF into passages titled by the document title and page', async () => {
    const pages: string[] = [];
    const r = await ingestPdf('field-notes.pdf', fixture(), pdfjs, { onPage: (done, total) => pages.push(`${done}/${total}`) });
    expect(pages).toEqual(['1/3', '2/3', '3/3']); // progress for every page, the text-less one too
    expect(r.file).toBe('field-notes.pdf');
    expect(r.passages.map((p) => p.title)).toEqual(['Marrowby field notes, p. 1', ...Array(3).fill('Marrowby field notes, p. 2')]);
    expect(r.passages[0].text).toBe(
      'Marrowby field notes The village of Marrowby holds its lantern festival on the second Saturday of October. ' +
        'Each household carries one paper lantern to the old stone bridge, and the miller lights the first one at dusk.',
    );
    // Page 2 is one ~250-word paragraph: ~100-word passages in order, none taking text from another page.
    expect(r.passages.slice(1).map((p) => p.text.split(' ')[0] + ' ' + p.text.split(' ')[1])).toEqual(['Note 1:', 'Note 4:', 'Note 7:']);
    for (const p of r.passages) expect(p.text.split(' ').length).toBeLessThanOrEqual(100);
    expect(r.passages.every((p) => p.file === 'field-notes.pdf')).toBe(true);
    // Page 3 is a drawing: reported, not an error for the whole file.
    expect(r.problems).toEqual([{ page: 3, message: 'no text (an image or a scan?)' }]);
  });

  it('titles passages after the file name when the PDF has no title, and reads a one-page PDF without page numbers', async () => {
    const r = await ingestPdf('lab_report-2.pdf', minimalPdf(['BT /F1 12 Tf 72 720 Td (Copper conducts heat well.) Tj ET']), pdfjs);
    expect(r.passages).toEqual([{ title: 'lab report 2', text: 'Copper conducts heat well.', file: 'lab_report-2.pdf' }]);
    expect(r.problems).toEqual([]);
  });

  it('refuses bytes that are not a PDF, a PDF without any text layer, and oversize files, with the file named', async () => {
    await expect(ingestPdf('notes.pdf', new TextEncoder().encode('just some text, renamed'), pdfjs)).rejects.toThrow(/^notes\.pdf: not a readable PDF/);
    await expect(ingestPdf('cut.pdf', fixture().slice(0, 9), pdfjs)).rejects.toThrow(/^cut\.pdf: not a readable PDF/);
    await expect(ingestPdf('scan.pdf', minimalPdf(['0 0 1 rg 72 72 200 200 re f', '']), pdfjs)).rejects.toThrow(
      /no text found in 2 pages: the PDF has no text layer \(a scan\?\); run OCR/,
    );
    await expect(ingestPdf('big.pdf', fixture(), pdfjs, { maxBytes: 1000 })).rejects.toThrow(/over the 1000 B limit/);
  });

  it('refuses a password-protected PDF with what to do about it', async () => {
    // field-notes.pdf encrypted with a user password (scripts/make-pdf-fixture.ts says how).
    const locked = new Uint8Array(readFileSync(new URL('../fixtures/ingest/locked.pdf', import.meta.url)));
    await expect(ingestPdf('locked.pdf', locked, pdfjs)).rejects.toThrow(/^locked\.pdf: the PDF is password-protected; save a copy without the password/);
  });

  it("leaves the caller's bytes intact (pdf.js detaches the buffer it parses)", async () => {
    const bytes = fixture();
    await ingestPdf('field-notes.pdf', bytes, pdfjs);
    expect(bytes.byteLength).toBeGreaterThan(1000);
    expect(new TextDecoder().decode(bytes.subarray(0, 5))).toBe('%PDF-');
  });
});

describe('pageText', () => {
  it('joins a word hyphenated across a line end, turns other line ends into spaces and skips marked-content items', () => {
    const items = [
      { str: 'Dense retrie-', hasEOL: true },
      { str: 'val works; ', hasEOL: false },
      { type: 'beginMarkedContent' },
      { str: 'well-known', hasEOL: true },
      { str: 'Atlas.', hasEOL: false },
    ];
    expect(pageText(items)).toBe('Dense retrieval works; well-known Atlas.');
  });

  it('keeps a hyphen before a capitalised word (a compound or a name, not a split word)', () => {
    expect(
      pageText([
        { str: 'Franco-', hasEOL: true },
        { str: 'Prussian war', hasEOL: false },
      ]),
    ).toBe('Franco- Prussian war');
  });
});
