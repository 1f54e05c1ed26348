import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { CoragClient, CoragHttpError } from '../../src/federated/client';
import { answersAResend, coordinatorBase, failoverFetch } from '../../src/federated/failover';

/** A real HTTP server that answers every request with its name, the method, path and body. */
async function listen(name: string, status = 200): Promise<{ url: string; server: Server; close: () => Promise<void> }> {
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      res.statusCode = status;
      res.end(JSON.stringify({ name, method: req.method, path: req.url, body }));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { url, server, close: () => new Promise((r) => server.close(() => r())) };
}

describe('failoverFetch: several coordinators without a load balancer', () => {
  const open: Array<() => Promise<void>> = [];
  afterEach(async () => {
    while (open.length) await open.pop()!();
  });

  it('sends to the first coordinator while it answers', async () => {
    const a = await listen('a');
    const b = await listen('b');
    open.push(a.close, b.close);
    const f = failoverFetch([a.url, b.url]);
    const res = await f(`${a.url}/api/x?q=1`, { method: 'POST', body: 'hi' });
    expect(await res.json()).toEqual({ name: 'a', method: 'POST', path: '/api/x?q=1', body: 'hi' });
  });

  it('resends the same request to the next coordinator when one refuses the connection, and stays with it', async () => {
    const a = await listen('a');
    const b = await listen('b');
    open.push(b.close);
    await a.close(); // nothing listens at a's port any more
    const f = failoverFetch([a.url, b.url]);
    const body = new Uint8Array([104, 105]);
    expect(await (await f(`${a.url}/api/u`, { method: 'PUT', body })).json()).toEqual({ name: 'b', method: 'PUT', path: '/api/u', body: 'hi' });
    // Later requests go to b first, even when they name a's base.
    let asked = 0;
    const counting = failoverFetch([a.url, b.url], (input, init) => {
      asked++;
      return fetch(input, init);
    });
    await counting(`${a.url}/1`);
    asked = 0;
    expect((await (await counting(`${a.url}/2`)).json()).name).toBe('b');
    expect(asked).toBe(1);
  });

  it('marks the answer to a resent request, so a refusal of it can be read as "the first send may have landed"', async () => {
    const a = await listen('a');
    const b = await listen('b', 409);
    open.push(b.close);
    await a.close();
    const switches: string[] = [];
    const f = failoverFetch([a.url, b.url], undefined, { onSwitch: (from, to) => switches.push(`${from} -> ${to}`) });
    const resent = await f(`${a.url}/api/u`, { method: 'PUT', body: 'x' });
    expect(answersAResend(resent)).toBe(true);
    expect(switches).toEqual([`${a.url} -> ${b.url}`]);
    // The next request goes to b first: a plain answer, no switch.
    expect(answersAResend(await f(`${a.url}/api/u`, { method: 'PUT', body: 'x' }))).toBe(false);
    expect(switches).toHaveLength(1);
    // CoragClient carries the mark on its error (FederatedCoragClient then takes duplicate_update as landed).
    const refused = await new CoragClient(a.url, 't', failoverFetch([a.url, b.url])).uploadUpdate('s', 1, new Uint8Array([1])).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(CoragHttpError);
    expect((refused as CoragHttpError).resent).toBe(true);
  });

  it('returns an HTTP error as the coordinator answered it, without trying another', async () => {
    const a = await listen('a', 503);
    const b = await listen('b');
    open.push(a.close, b.close);
    const res = await failoverFetch([a.url, b.url])(`${a.url}/api/x`);
    expect(res.status).toBe(503);
    expect((await res.json()).name).toBe('a');
  });

  it('rejects with the last connection error when no coordinator answers', async () => {
    const a = await listen('a');
    const b = await listen('b');
    await a.close();
    await b.close();
    await expect(failoverFetch([a.url, b.url])(`${a.url}/x`)).rejects.toThrow(TypeError);
  });

  it('does not try another coordinator after the caller aborted', async () => {
    const a = await listen('a');
    const b = await listen('b');
    open.push(b.close);
    await a.close();
    const stop = new AbortController();
    stop.abort();
    await expect(failoverFetch([a.url, b.url])(`${a.url}/x`, { signal: stop.signal })).rejects.toThrow();
  });

  it('passes URLs outside its coordinators through unchanged, and refuses a list that is empty or not http(s)', async () => {
    const a = await listen('a');
    const other = await listen('other');
    open.push(a.close, other.close);
    expect((await (await failoverFetch([a.url])(`${other.url}/y`)).json()).name).toBe('other');
    expect(() => failoverFetch([])).toThrow(/at least one/);
    expect(() => failoverFetch(['ftp://x'])).toThrow(/not an http/);
    expect(coordinatorBase('https://c.example:8788/corag/')).toBe('https://c.example:8788/corag');
    expect(() => coordinatorBase('http://c.example/?x=1')).toThrow(/no query/);
    expect(() => coordinatorBase('not a url')).toThrow(/not an http/);
  });
});
