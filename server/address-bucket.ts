/**
 * The rate-limit bucket of a caller's network address. IPv4 addresses are their own bucket; IPv6
 * addresses share one per /64 (one host is usually handed a whole /64, so per-address buckets
 * would give it 2^64 of them); IPv4-mapped IPv6 addresses count as the IPv4 address.
 */
import { isIP } from 'node:net';

export function addressBucket(ip: string): string {
  const address = ip.replace(/%.*$/, '');
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(address);
  if (mapped) return mapped[1];
  if (isIP(address) !== 6) return address;
  const [head, tail] = address.split('::');
  const groups = (s: string | undefined) => (s ? s.split(':') : []);
  const full =
    tail === undefined
      ? groups(head)
      : [...groups(head), ...Array<string>(Math.max(0, 8 - groups(head).length - groups(tail).length)).fill('0'), ...groups(tail)];
  return `${full
    .slice(0, 4)
    .map((g) => parseInt(g, 16).toString(16))
    .join(':')}::/64`;
}
