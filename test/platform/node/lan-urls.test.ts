import type { NetworkInterfaceInfo } from 'node:os';
import { describe, expect, it } from 'vitest';
import { lanUrls } from '../../../src/platform/node/lan-urls';

const iface = (address: string, family: 'IPv4' | 'IPv6', internal: boolean) => ({ address, family, internal }) as NetworkInterfaceInfo;
const INTERFACES = {
  lo: [iface('127.0.0.1', 'IPv4', true), iface('::1', 'IPv6', true)],
  eth0: [iface('192.168.1.23', 'IPv4', false), iface('fe80::1', 'IPv6', false)],
  wlan0: [iface('10.0.0.7', 'IPv4', false)],
};

describe('lanUrls', () => {
  it('offers no address to other devices when bound to loopback', () => {
    for (const host of ['127.0.0.1', 'localhost', '::1', '127.0.1.1']) expect(lanUrls(host, 8787, INTERFACES)).toEqual([]);
  });

  it('lists every external IPv4 address for a wildcard bind', () => {
    expect(lanUrls('0.0.0.0', 8787, INTERFACES)).toEqual(['http://192.168.1.23:8787', 'http://10.0.0.7:8787']);
    expect(lanUrls('::', 9000, INTERFACES)).toEqual(['http://192.168.1.23:9000', 'http://10.0.0.7:9000']);
  });

  it('uses a specific bound address as it is, IPv6 in brackets', () => {
    expect(lanUrls('10.0.0.7', 8787, INTERFACES)).toEqual(['http://10.0.0.7:8787']);
    expect(lanUrls('fd00::5', 8787, INTERFACES)).toEqual(['http://[fd00::5]:8787']);
  });
});
