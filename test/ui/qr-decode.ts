/** Reading back QR codes in tests: the modules an SVG draws, decoded by jsQR as a camera would. */
import jsQR from 'jsqr';

/** The dark modules an SVG from qrSvg draws (its path is runs "M x y h w v1 h -w z"). */
export function modulesOfSvg(svg: string): boolean[][] {
  const n = Number(/viewBox="0 0 (\d+) \1"/.exec(svg)![1]);
  const grid = Array.from({ length: n }, () => Array<boolean>(n).fill(false));
  for (const [, x, y, w] of svg.matchAll(/M(\d+) (\d+)h(\d+)v1h-\d+z/g)) {
    for (let i = 0; i < Number(w); i++) grid[Number(y)][Number(x) + i] = true;
  }
  return grid;
}

/** Decodes modules as a camera would see them: 4 px per module, black on white. */
export function decodeModules(modules: readonly (readonly boolean[])[]): string | null {
  const scale = 4,
    n = modules.length,
    size = n * scale;
  const rgba = new Uint8ClampedArray(size * size * 4);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const v = modules[Math.floor(y / scale)][Math.floor(x / scale)] ? 0 : 255;
      rgba.set([v, v, v, 255], (y * size + x) * 4);
    }
  }
  return jsQR(rgba, size, size)?.data ?? null;
}
