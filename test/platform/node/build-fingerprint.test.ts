import { mkdirSync, mkdtempSync, renameSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { builtFingerprint, sourceFingerprint, STAMP_FILE } from '../../../src/platform/node/build-fingerprint';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function project(): string {
  const root = mkdtempSync(join(tmpdir(), 'corag-fp-'));
  dirs.push(root);
  mkdirSync(join(root, 'src/ui'), { recursive: true });
  writeFileSync(join(root, 'index.html'), '<!doctype html>');
  writeFileSync(join(root, 'src/ui/main.ts'), 'console.log(1);');
  writeFileSync(join(root, 'src/ui/dom.ts'), 'export {};');
  return root;
}
const INPUTS = ['index.html', 'src', 'public'];

describe('sourceFingerprint', () => {
  it('changes when a file changes, is added or is renamed, and not when only its time changes', () => {
    const root = project();
    const base = sourceFingerprint(root, INPUTS);
    expect(sourceFingerprint(root, INPUTS)).toBe(base);
    utimesSync(join(root, 'src/ui/main.ts'), new Date(2001, 1, 1), new Date(2001, 1, 1));
    expect(sourceFingerprint(root, INPUTS)).toBe(base);
    writeFileSync(join(root, 'src/ui/main.ts'), 'console.log(2);');
    const edited = sourceFingerprint(root, INPUTS);
    expect(edited).not.toBe(base);
    renameSync(join(root, 'src/ui/dom.ts'), join(root, 'src/ui/dom2.ts'));
    const renamed = sourceFingerprint(root, INPUTS);
    expect(renamed).not.toBe(edited);
    mkdirSync(join(root, 'public'));
    writeFileSync(join(root, 'public/data.json'), '{}');
    expect(sourceFingerprint(root, INPUTS)).not.toBe(renamed);
  });

  it('reads the stamp of a build only when the build is there', () => {
    const root = project();
    const dist = join(root, 'dist');
    expect(builtFingerprint(dist)).toBeNull();
    mkdirSync(dist);
    writeFileSync(join(dist, STAMP_FILE), 'abc\n');
    expect(builtFingerprint(dist)).toBeNull(); // no index.html: an emptied or broken dist/
    writeFileSync(join(dist, 'index.html'), '<!doctype html>');
    expect(builtFingerprint(dist)).toBe('abc');
  });
});
