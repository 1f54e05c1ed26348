/**
 * A local HTTP server on 127.0.0.1 for checkpoint tests (nothing reaches the internet). It serves
 * folders the way the Hugging Face hub does (`/{org}/{name}/resolve/{revision}/{file}`) and as a
 * plain URL base (`/files/{name}/{file}`), answers 404 for anything else, and records requests.
 */
import { createServer, type Server } from 'node:http';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';

export interface LocalHubOptions {
  /** Hub repositories: id ("org/name") -> folder. */
  repos?: Record<string, string>;
  /** Revisions the hub knows; default ["main"]. */
  revisions?: string[];
  /** URL-base folders: name -> folder, served under /files/{name}/. */
  folders?: Record<string, string>;
  /** Send bodies chunked, without content-length (as some CDNs do). */
  chunked?: boolean;
  /** Paths answered with this HTTP status instead of a file. */
  failures?: Record<string, number>;
}

export interface LocalHub {
  readonly url: string;
  /** Every request path, in order. */
  readonly requests: string[];
  close(): Promise<void>;
}

export async function startLocalHub(options: LocalHubOptions): Promise<LocalHub> {
  const requests: string[] = [];
  const revisions = options.revisions ?? ['main'];
  const resolvePath = (path: string): string | undefined => {
    const hub = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(path);
    if (hub) {
      const folder = options.repos?.[hub[1]];
      return folder && revisions.includes(decodeURIComponent(hub[2])) ? join(folder, hub[3]) : undefined;
    }
    const plain = /^\/files\/([^/]+)\/(.+)$/.exec(path);
    const folder = plain && options.folders?.[plain[1]];
    return folder ? join(folder, plain[2]) : undefined;
  };
  const server: Server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://127.0.0.1').pathname;
    requests.push(path);
    const failure = options.failures?.[path];
    if (failure) {
      res.writeHead(failure, { 'content-type': 'text/plain' }).end('failure injected by the test');
      return;
    }
    const file = resolvePath(path);
    const notFound = () => res.writeHead(404, { 'content-type': 'text/plain' }).end('Entry not found');
    if (!file) return notFound();
    readFile(file).then((bytes) => {
      if (options.chunked) {
        res.writeHead(200, { 'content-type': 'application/octet-stream' });
        const step = Math.max(1, Math.ceil(bytes.byteLength / 4));
        for (let i = 0; i < bytes.byteLength; i += step) res.write(bytes.subarray(i, i + step));
        res.end();
      } else {
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(bytes.byteLength) }).end(bytes);
      }
    }, notFound);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () => new Promise<void>((resolve, reject) => server.close((e) => (e ? reject(e) : resolve()))),
  };
}
