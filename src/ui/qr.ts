/**
 * QR codes for joining from a phone or another computer (the dashboard's "Join from another
 * device"). uqr encodes (zero dependencies, any runtime); this module draws the modules as one SVG
 * path. No DOM: the page inserts the markup, and the Node tests decode the very modules drawn.
 */
import { encode } from 'uqr';

/** The QR code of `text` as rows of modules (true = dark), with the 4-module quiet zone the standard asks for. */
export function qrModules(text: string): boolean[][] {
  // Error correction M: survives a glare spot on a projected code, still small for a URL.
  return encode(text, { ecc: 'M', border: 4 }).data;
}

const escapeAttr = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** SVG markup of `modules`: one path of dark runs on white, crisp at any size. */
export function qrSvg(modules: readonly (readonly boolean[])[], label: string): string {
  const n = modules.length;
  let d = '';
  modules.forEach((row, y) => {
    for (let x = 0; x < n;) {
      if (!row[x]) {
        x++;
        continue;
      }
      const start = x;
      while (x < n && row[x]) x++;
      d += `M${start} ${y}h${x - start}v1h${start - x}z`;
    }
  });
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${n} ${n}" shape-rendering="crispEdges" role="img" aria-label="${escapeAttr(label)}">` +
    `<rect width="${n}" height="${n}" fill="#fff"/><path d="${d}" fill="#000"/></svg>`
  );
}
