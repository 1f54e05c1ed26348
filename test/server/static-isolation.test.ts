/**
 * The coordinator serves the web app cross-origin isolated (COOP same-origin + COEP require-corp)
 * so tfjs-backend-wasm may use SharedArrayBuffer threads: the page, its scripts (workers are
 * isolated only when their own script carries COEP) and the .wasm files all carry the headers.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startServer, tempDir } from './helpers';

describe('static web app headers', () => {
  const cleanups: Array<() => Promise<unknown> | void> = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0)) await c();
  });

  async function serve(crossOriginIsolation?: boolean) {
    const dir = tempDir();
    const dist = join(dir.path, 'dist');
    mkdirSync(join(dist, 'assets'), { recursive: true });
    writeFileSync(join(dist, 'index.html'), '<!doctype html><title>app</title>');
    writeFileSync(join(dist, 'assets', 'embed.worker-x.js'), 'self.onmessage = () => {};');
    writeFileSync(join(dist, 'assets', 'tfjs-backend-wasm-threaded-simd-x.wasm'), new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0]));
    const server = await startServer({ dataDir: join(dir.path, 'data'), staticDir: dist, crossOriginIsolation });
    cleanups.push(() => server.app.close(), dir.remove);
    return server.url;
  }

  it('sends COOP and COEP with the page, worker scripts and wasm files', async () => {
    const url = await serve();
    for (const path of ['/', '/index.html', '/assets/embed.worker-x.js', '/assets/tfjs-backend-wasm-threaded-simd-x.wasm']) {
      const res = await fetch(url + path);
      expect(res.status, path).toBe(200);
      expect(res.headers.get('cross-origin-opener-policy'), path).toBe('same-origin');
      expect(res.headers.get('cross-origin-embedder-policy'), path).toBe('require-corp');
    }
  });

  it('leaves them out when crossOriginIsolation is false', async () => {
    const url = await serve(false);
    const res = await fetch(url + '/');
    expect(res.status).toBe(200);
    expect(res.headers.get('cross-origin-opener-policy')).toBeNull();
    expect(res.headers.get('cross-origin-embedder-policy')).toBeNull();
  });
});
