/**
 * The server key gates session creation (POST /api/sessions). On loopback only this computer can
 * reach the coordinator, so creation may stay open; once it listens beyond loopback (`--host
 * 0.0.0.0`, a LAN address) a key is required: the configured one, or one generated on first start
 * and kept beside the demo admin token in the data folder, readable only by its owner.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { resolve } from 'node:path';
import { newToken } from './tokens';

/** Whether binding `host` makes the coordinator reachable from this computer only. */
export function isLoopbackHost(host: string): boolean {
  const h = host
    .trim()
    .toLowerCase()
    .replace(/^\[(.*)\]$/, '$1');
  if (h === 'localhost' || h.endsWith('.localhost')) return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  if (isIP(h) === 6) return h === '::1' || /^::ffff:127\./.test(h) || h === '0:0:0:0:0:0:0:1';
  return false;
}

export interface ServerKeyChoice {
  /** The key session creation needs, or undefined when creation stays open (loopback, none configured). */
  readonly key?: string;
  /** The file holding a key this function generated or reused. */
  readonly file?: string;
  /** True when the key was generated just now. */
  readonly generated: boolean;
}

/**
 * The configured key if any; else none on loopback; else the key stored in `<dataDir>/server-key.txt`
 * (generated with 0600 permissions when absent).
 */
export function chooseServerKey(dataDir: string, host: string, configured: string | undefined): ServerKeyChoice {
  if (configured) return { key: configured, generated: false };
  if (isLoopbackHost(host)) return { generated: false };
  const file = resolve(dataDir, 'server-key.txt');
  if (existsSync(file)) {
    const key = readFileSync(file, 'utf8').trim();
    if (key.length < 16) throw new Error(`${file} holds no usable server key (delete it to generate a new one)`);
    chmodSync(file, 0o600);
    return { key, file, generated: false };
  }
  const key = newToken();
  writeFileSync(file, `${key}\n`, { mode: 0o600, flag: 'wx' });
  return { key, file, generated: true };
}

/** Compares a presented key with the server key in constant time (hashes first: lengths may differ). */
export function serverKeyMatches(presented: string | undefined, key: string): boolean {
  if (presented === undefined) return false;
  const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest();
  return timingSafeEqual(digest(presented), digest(key));
}
