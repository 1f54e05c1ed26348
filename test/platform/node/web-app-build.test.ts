import { mkdirSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { STAMP_FILE } from '../../../src/platform/node/build-fingerprint';
import { cachedWebAppBuild, type buildWebApp } from '../../../src/platform/node/web-app-build';

const roots: string[] = [];
afterEach(() => {
  for (const root of roots.splice(0)) rmSync(root, { recursive: true, force: true });
});

/** A project folder with some of the web app's inputs (build-fingerprint.ts WEB_APP_INPUTS). */
function project(): string {
  const root = mkdtempSync(join(tmpdir(), 'corag-web-app-build-'));
  roots.push(root);
  writeFileSync(join(root, 'index.html'), '<p>v1</p>');
  mkdirSync(join(root, 'src'));
  writeFileSync(join(root, 'src', 'main.ts'), 'export {};');
  return root;
}

/** A builder that writes index.html's text and the stamp, slowly, counting its calls. */
function countingBuilder(delayMs = 200) {
  const calls: string[] = [];
  const builder: typeof buildWebApp = async (root, outDir, _options, fingerprint) => {
    calls.push(outDir);
    await new Promise((resolve) => setTimeout(resolve, delayMs));
    mkdirSync(outDir, { recursive: true });
    writeFileSync(join(outDir, 'index.html'), readFileSync(join(root, 'index.html')));
    writeFileSync(join(outDir, STAMP_FILE), `${fingerprint}\n`);
  };
  return { calls, builder };
}

describe('cachedWebAppBuild', () => {
  it('builds once for concurrent callers and hands every caller the same finished folder', async () => {
    const root = project();
    const { calls, builder } = countingBuilder();
    const folders = await Promise.all([0, 1, 2].map(() => cachedWebAppBuild(root, { minify: false, sourcemap: false }, builder)));
    expect(calls).toHaveLength(1);
    expect(new Set(folders).size).toBe(1);
    expect(readFileSync(join(folders[0]!, 'index.html'), 'utf8')).toBe('<p>v1</p>');
    expect(calls[0]).not.toBe(folders[0]); // built aside, renamed into place
    expect(existsSync(calls[0]!)).toBe(false);
  });

  it('reuses the build while the sources are unchanged and builds again after a change', async () => {
    const root = project();
    const { calls, builder } = countingBuilder(0);
    const first = await cachedWebAppBuild(root, { minify: false, sourcemap: false }, builder);
    expect(await cachedWebAppBuild(root, { minify: false, sourcemap: false }, builder)).toBe(first);
    expect(calls).toHaveLength(1);
    writeFileSync(join(root, 'index.html'), '<p>v2</p>');
    const second = await cachedWebAppBuild(root, { minify: false, sourcemap: false }, builder);
    expect(second).not.toBe(first);
    expect(readFileSync(join(second, 'index.html'), 'utf8')).toBe('<p>v2</p>');
    // Minified and plain builds are separate.
    await cachedWebAppBuild(root, { minify: true, sourcemap: false }, builder);
    expect(calls).toHaveLength(3);
  });

  it('never reuses an interrupted build (no stamp) and takes over a lock left by a dead builder', async () => {
    const root = project();
    const failing: typeof buildWebApp = async () => {
      throw new Error('vite failed');
    };
    await expect(cachedWebAppBuild(root, { minify: false, sourcemap: false }, failing)).rejects.toThrow('vite failed');
    const cache = join(root, 'node_modules', '.cache', 'corag-web-app');
    // A lock from a builder killed 11 minutes ago.
    mkdirSync(join(cache, 'plain.lock'));
    const old = new Date(Date.now() - 11 * 60_000);
    utimesSync(join(cache, 'plain.lock'), old, old);
    const { calls, builder } = countingBuilder(0);
    const folder = await cachedWebAppBuild(root, { minify: false, sourcemap: false }, builder);
    expect(calls).toHaveLength(1);
    expect(readFileSync(join(folder, 'index.html'), 'utf8')).toBe('<p>v1</p>');
    expect(existsSync(join(cache, 'plain.lock'))).toBe(false);
  });
});
