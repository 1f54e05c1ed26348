/**
 * npx tsx scripts/make-pdf-fixture.ts
 *
 * Writes test/fixtures/ingest/field-notes.pdf, the PDF the ingestion tests read: printed by
 * Debian's chromium (embedded subset fonts, compressed streams, a title in the document info, as
 * real-world PDFs have). Three pages: a heading and a paragraph; a longer paragraph (two passages);
 * a drawing with no text at all. The text is written for this fixture (no licence attached).
 * locked.pdf beside it is the same file with a user password (Debian's qpdf):
 *   qpdf --encrypt secret owner 256 -- test/fixtures/ingest/field-notes.pdf test/fixtures/ingest/locked.pdf
 */
import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { chromiumPath, CHROMIUM_FLAGS } from '../test/browser/harness';

const out = resolve(dirname(fileURLToPath(import.meta.url)), '../test/fixtures/ingest/field-notes.pdf');
const PAGE_1 =
  'The village of Marrowby holds its lantern festival on the second Saturday of October. ' +
  'Each household carries one paper lantern to the old stone bridge, and the miller lights the first one at dusk.';
const PAGE_2 = Array.from(
  { length: 9 },
  (_, i) =>
    `Note ${i + 1}: the river below the bridge rose by ${i + 2} centimetres overnight, and the ferry keeper counted ${12 + i} boats moored along the eastern bank before sunrise.`,
).join(' ');

const html = `<!doctype html><html><head><meta charset="utf-8"><title>Marrowby field notes</title>
<style>body{font-family:serif;font-size:12pt;margin:2cm} section{page-break-after:always}</style></head><body>
<section><h1>Marrowby field notes</h1><p>${PAGE_1}</p></section>
<section><p>${PAGE_2}</p></section>
<section><svg width="300" height="200"><rect x="10" y="10" width="120" height="80" fill="#888"/><circle cx="200" cy="120" r="60" fill="#444"/></svg></section>
</body></html>`;

const browser = await chromium.launch({ executablePath: chromiumPath(), args: [...CHROMIUM_FLAGS] });
try {
  const page = await browser.newPage();
  await page.setContent(html);
  mkdirSync(dirname(out), { recursive: true });
  await page.pdf({ path: out, format: 'A5', printBackground: true });
  console.log(`wrote ${out}`);
} finally {
  await browser.close();
}
