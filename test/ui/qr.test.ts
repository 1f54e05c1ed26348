import { describe, expect, it } from 'vitest';
import { qrModules, qrSvg } from '../../src/ui/qr';
import { decodeModules, modulesOfSvg } from './qr-decode';

describe('join QR code', () => {
  const link = 'http://192.168.1.23:8787/?join=K7Q2-M9XD';

  it('encodes the join link so a QR reader gets it back, with a 4-module quiet zone', () => {
    const modules = qrModules(link);
    expect(decodeModules(modules)).toBe(link);
    expect(modules.slice(0, 4).flat().some(Boolean)).toBe(false);
    expect(
      modules
        .map((row) => row.slice(-4))
        .flat()
        .some(Boolean),
    ).toBe(false);
  });

  it('draws exactly those modules in the SVG, labelled for screen readers and escaped', () => {
    const modules = qrModules(link);
    const svg = qrSvg(modules, `QR code of the join link ${link}&"`);
    expect(modulesOfSvg(svg)).toEqual(modules);
    expect(decodeModules(modulesOfSvg(svg))).toBe(link);
    expect(svg).toContain('aria-label="QR code of the join link http://192.168.1.23:8787/?join=K7Q2-M9XD&#38;&#34;"');
  });
});
