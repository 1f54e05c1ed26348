/**
 * The addresses at which other devices (phones, classmates' laptops) can reach this coordinator,
 * from the address it is bound to: none for a loopback address, every non-internal IPv4 address of
 * the machine for a wildcard (0.0.0.0 / ::), else the bound address itself.
 */
import { networkInterfaces, type NetworkInterfaceInfo } from 'node:os';

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '::1']);
const WILDCARD = new Set(['0.0.0.0', '::', '']);

export function lanUrls(boundHost: string, port: number, interfaces: NodeJS.Dict<NetworkInterfaceInfo[]> = networkInterfaces()): string[] {
  if (LOOPBACK.has(boundHost) || boundHost.startsWith('127.')) return [];
  if (!WILDCARD.has(boundHost)) return [`http://${boundHost.includes(':') ? `[${boundHost}]` : boundHost}:${port}`];
  const urls: string[] = [];
  for (const infos of Object.values(interfaces)) {
    for (const info of infos ?? []) {
      if (!info.internal && info.family === 'IPv4') urls.push(`http://${info.address}:${port}`);
    }
  }
  return [...new Set(urls)];
}
