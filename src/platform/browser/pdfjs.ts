/**
 * pdf.js for the passages page, loaded on first use: about 1.4 MB with its worker, fetched only
 * when someone adds a PDF. Parsing runs in pdf.js's own worker, off the page's thread.
 */
import type { PdfJsLib } from '../../ingest/pdf';
import workerUrl from 'pdfjs-dist/build/pdf.worker.min.mjs?url';

let loading: Promise<PdfJsLib> | undefined;

export function loadPdfJs(): Promise<PdfJsLib> {
  loading ??= import('pdfjs-dist').then((lib) => {
    lib.GlobalWorkerOptions.workerSrc = workerUrl;
    return lib;
  });
  return loading;
}
