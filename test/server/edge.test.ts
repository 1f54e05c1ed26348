/**
 * The coordinator's HTTP edge under a hostile network (issue 17, "authenticate before the body",
 * "limits that hold", "exposure"): uploads are judged from their headers before the body is read,
 * trickling and oversized bodies are cut off and free their slot, safetensors headers are bounded,
 * rate limits are keyed by verified callers, joins are limited per IP, session creation needs the
 * server key beyond loopback, and tokens never reach the log. Every refusal is a 4xx
 * `{error, message}` and leaves the session as it was.
 */
import { spawn } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { request as httpRequest, type ClientRequest, type IncomingHttpHeaders } from 'node:http';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it, vi } from 'vitest';
import { CoragClient, CoragHttpError } from '../../src/federated/client';
import { encodeModel, encodeUpdate } from '../../src/federated/codec';
import type { AppOptions } from '../../server/app';
import { addressBucket } from '../../server/address-bucket';
import { redactSecrets } from '../../server/log-redaction';
import { chooseServerKey, isLoopbackHost } from '../../server/server-key';
import { MODEL_SHAPES, randomTensors, seeded, startServer, tempDir, TRAINED_PREFIXES, trainedShapes } from './helpers';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const MiB = 2 ** 20;

interface Answer {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: { error?: string; message?: string };
  /** Body bytes this client had handed to the socket when the answer arrived. */
  readonly bytesSentBeforeAnswer: number;
}

/** A request (PUT unless told) whose body the test writes piece by piece (node:http, so nothing is buffered for us). */
class RawUpload {
  readonly answer: Promise<Answer>;
  answered = false;
  /** Whether the server said `100 Continue` (to a request sent with `Expect: 100-continue`). */
  continued = false;
  private sent = 0;
  private readonly req: ClientRequest;

  constructor(url: string, path: string, headers: Record<string, string | number>, method = 'PUT') {
    const target = new URL(path, url);
    this.req = httpRequest({
      method,
      host: target.hostname,
      port: target.port,
      path: target.pathname,
      headers: { 'content-type': 'application/octet-stream', ...headers },
    });
    this.answer = new Promise<Answer>((resolve, reject) => {
      this.req.on('response', (res) => {
        const at = this.sent;
        this.answered = true;
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (s: string) => (text += s));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: JSON.parse(text) as Answer['body'], bytesSentBeforeAnswer: at }),
        );
        res.on('error', reject);
      });
      this.req.on('continue', () => (this.continued = true));
      // After the answer the coordinator may close the socket under a sender still writing.
      this.req.on('error', (e) => {
        if (!this.answered) reject(e);
      });
    });
    this.req.flushHeaders();
  }

  get bytesSent(): number {
    return this.sent;
  }

  write(bytes: Uint8Array): boolean {
    this.sent += bytes.byteLength;
    return this.req.write(bytes);
  }

  /** Writes `chunk` repeatedly (waiting for drain) until `total` bytes went out or an answer came. */
  async push(chunk: Uint8Array, total: number): Promise<void> {
    while (!this.answered && this.sent < total) {
      if (!this.write(chunk)) {
        await Promise.race([new Promise((r) => this.req.once('drain', r)), this.answer.catch(() => undefined)]);
      }
    }
  }

  /** Sends `bytes` one `step` at a time, every `intervalMs`, until done or answered. */
  async trickle(bytes: Uint8Array, step: number, intervalMs: number): Promise<void> {
    for (let i = 0; i < bytes.length && !this.answered; i += step) {
      this.write(bytes.subarray(i, i + step));
      await new Promise((r) => setTimeout(r, intervalMs));
    }
  }

  end(): void {
    this.req.end();
  }

  destroy(): void {
    this.req.destroy();
  }
}

const errorOf = async (p: Promise<unknown>): Promise<CoragHttpError> => {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(CoragHttpError);
  return e as CoragHttpError;
};

/** A session with a model, `clients` joined clients and round 1 open with all of them selected. */
async function openRound(url: string, clients: number, random: () => number) {
  const anon = new CoragClient(url);
  const created = await anon.createSession({
    name: 'edge',
    models: { reader: 'r', passageEncoder: 'enc', embeddingDim: 8 },
    roundPolicy: { minClients: clients, minUpdates: 1 },
    trainedPrefixes: TRAINED_PREFIXES,
    // 'enc' is a made-up encoder the coordinator cannot load to check embeddings: trust the test's.
    passages: { embeddingCheck: 'off' },
  });
  const sid = created.session.id;
  const admin = anon.withToken(created.adminToken);
  await admin.uploadModel(sid, encodeModel(randomTensors(MODEL_SHAPES, random)));
  const joined = [];
  for (let i = 0; i < clients; i++) joined.push(await anon.join(created.joinCode, `c${i}`));
  await admin.openRound(sid);
  const update = (n = 5) => encodeUpdate(randomTensors(trainedShapes(), random, 0.01), { round: 1, baseVersion: 0, numExamples: n, metrics: {} });
  return {
    anon,
    sid,
    admin,
    created,
    tokens: joined.map((j) => j.token),
    clients: joined.map((j) => anon.withToken(j.token)),
    update,
    updatePath: `/api/sessions/${sid}/rounds/1/update`,
  };
}

async function withServer<T>(options: Omit<AppOptions, 'dataDir'>, fn: (server: Awaited<ReturnType<typeof startServer>>) => Promise<T>): Promise<T> {
  const dir = tempDir();
  const server = await startServer({ dataDir: dir.path, ...options });
  try {
    return await fn(server);
  } finally {
    await server.app.close();
    dir.remove();
  }
}

describe('uploads are admitted from their headers, before the body', () => {
  it("answers four anonymous trickling uploads 401 without giving them a slot, so a real client's update is accepted", async () => {
    await withServer({ maxConcurrentUploads: 4, rateLimitPerMinute: 10_000 }, async (server) => {
      const s = await openRound(server.url, 2, seeded(1));
      const before = JSON.stringify(await s.admin.session(s.sid));
      const tricklers = [0, 1, 2, 3].map(
        (i) =>
          new RawUpload(server.url, s.updatePath, {
            'content-length': 1_000_000,
            ...(i % 2 ? { authorization: `Bearer ${'z'.repeat(43)}` } : {}),
          }),
      );
      for (const t of tricklers) t.write(new Uint8Array(8));
      const answers = await Promise.all(tricklers.map((t) => t.answer));
      expect(answers.map((a) => [a.status, a.body.error])).toEqual(Array(4).fill([401, 'unauthorized']));
      // Still connected and not done sending: no slot is theirs.
      for (const t of tricklers) t.write(new Uint8Array(8));
      const receipt = await s.clients[0].uploadUpdate(s.sid, 1, s.update());
      expect(receipt.accepted).toBe(1);
      for (const t of tricklers) t.destroy();
      const after = await s.admin.session(s.sid);
      expect(after.round?.accepted).toBe(1);
      expect(JSON.parse(before).clients).toBe(after.clients);
    });
  });

  it('refuses two anonymous 512 MiB uploads before their bodies are read: answered after a few MiB, memory does not grow', async () => {
    await withServer({ rateLimitPerMinute: 10_000 }, async (server) => {
      const s = await openRound(server.url, 1, seeded(2));
      const rssBefore = process.memoryUsage().rss;
      const chunk = new Uint8Array(MiB);
      const uploads = [0, 1].map(() => new RawUpload(server.url, s.updatePath, { 'content-length': 512 * MiB }));
      await Promise.all(uploads.map((u) => u.push(chunk, 512 * MiB)));
      const answers = await Promise.all(uploads.map((u) => u.answer));
      for (const a of answers) {
        expect([a.status, a.body.error]).toEqual([401, 'unauthorized']);
        expect(a.headers.connection).toBe('close');
        expect(a.bytesSentBeforeAnswer).toBeLessThan(32 * MiB); // socket buffers, not the body
      }
      for (const u of uploads) u.destroy();
      expect(process.memoryUsage().rss - rssBefore).toBeLessThan(128 * MiB);
      expect((await s.admin.session(s.sid)).round?.accepted).toBe(0);
    });
  });

  it('with Expect: 100-continue, tells an admitted uploader to go on and never a refused one', async () => {
    await withServer({ rateLimitPerMinute: 10_000 }, async (server) => {
      const s = await openRound(server.url, 1, seeded(11));
      const body = s.update();
      const headers = { expect: '100-continue', 'content-length': body.length };
      const anonymous = new RawUpload(server.url, s.updatePath, headers);
      expect(await anonymous.answer).toMatchObject({ status: 401, body: { error: 'unauthorized' }, bytesSentBeforeAnswer: 0 });
      expect(anonymous.continued).toBe(false);
      anonymous.destroy();
      const admitted = new RawUpload(server.url, s.updatePath, { ...headers, authorization: `Bearer ${s.tokens[0]}` });
      await vi.waitFor(() => expect(admitted.continued).toBe(true));
      admitted.write(body);
      admitted.end();
      expect(await admitted.answer).toMatchObject({ status: 200 });
      expect((await s.admin.session(s.sid)).round?.accepted).toBe(1);
    });
  });

  it('refuses from the headers alone a client not selected, a closed round, a wrong content type and a declared length over the limit', async () => {
    await withServer({ rateLimitPerMinute: 10_000, maxUpdateBytes: 64 * 1024 }, async (server) => {
      const s = await openRound(server.url, 1, seeded(3));
      const late = await s.anon.join(s.created.joinCode, 'late');
      const auth = (token: string) => ({ authorization: `Bearer ${token}` });
      const cases: Array<[Record<string, string | number>, string, number, string]> = [
        [{ ...auth(late.token), 'content-length': 10 * MiB }, s.updatePath, 403, 'not_selected'],
        [{ ...auth(s.tokens[0]), 'content-length': 10 * MiB }, `/api/sessions/${s.sid}/rounds/2/update`, 404, 'round_not_found'],
        [{ ...auth(s.tokens[0]), 'content-length': 10 * MiB, 'content-type': 'application/json' }, s.updatePath, 400, 'expected_octet_stream'],
        [{ ...auth(s.tokens[0]), 'content-length': 10 * MiB }, s.updatePath, 413, 'body_too_large'],
        [{ ...auth(s.tokens[0]), 'content-length': 10 * MiB }, `/api/sessions/${s.sid}/model`, 403, 'admin_only'],
        [{ ...auth(s.created.adminToken), 'content-length': 10 * MiB }, `/api/sessions/${s.sid}/model`, 409, 'round_open'],
      ];
      const before = JSON.stringify(await s.admin.session(s.sid));
      for (const [headers, path, status, code] of cases) {
        const up = new RawUpload(server.url, path, headers);
        up.write(new Uint8Array(1024)); // the rest never comes: an answer must not wait for it
        const a = await up.answer;
        up.destroy();
        expect([a.status, a.body.error], `${path} ${JSON.stringify(headers)}`).toEqual([status, code]);
        expect(a.body.message).toEqual(expect.any(String));
      }
      expect(JSON.stringify(await s.admin.session(s.sid))).toBe(before);
      // A chunked body (no declared length) is cut off once it passes the limit.
      const chunked = new RawUpload(server.url, s.updatePath, { ...auth(s.tokens[0]), 'transfer-encoding': 'chunked' });
      await chunked.push(new Uint8Array(16 * 1024), 4 * MiB);
      expect(await chunked.answer).toMatchObject({ status: 413, body: { error: 'body_too_large' } });
      chunked.destroy();
      expect((await s.clients[0].uploadUpdate(s.sid, 1, s.update())).accepted).toBe(1);
    });
  });
});

describe('upload bodies are read under an idle timeout, a minimum rate and one slot per client', () => {
  it('cuts off a stalled upload with 408 and frees its slot; a second upload by the same client meanwhile gets 429; others are unaffected', async () => {
    // 1.5 s of stall: long enough that the steps below surely happen while it lasts, on a busy machine too.
    await withServer({ bodyIdleTimeoutMs: 1_500, minUploadBytesPerSecond: 1, maxConcurrentUploads: 4, rateLimitPerMinute: 10_000 }, async (server) => {
      const s = await openRound(server.url, 2, seeded(4));
      const body = s.update();
      const stalled = new RawUpload(server.url, s.updatePath, { authorization: `Bearer ${s.tokens[0]}`, 'content-length': body.length });
      stalled.write(body.subarray(0, 100));
      await new Promise((r) => setTimeout(r, 100));
      const second = await errorOf(s.clients[0].uploadUpdate(s.sid, 1, body));
      expect([second.status, second.code]).toEqual([429, 'too_many_uploads']);
      expect((await s.clients[1].uploadUpdate(s.sid, 1, s.update())).accepted).toBe(1);
      const cut = await stalled.answer;
      stalled.destroy();
      expect([cut.status, cut.body.error]).toEqual([408, 'body_timeout']);
      expect((await s.admin.session(s.sid)).round?.accepted).toBe(1);
      // The slot is free again and the refused attempt used nothing up.
      expect((await s.clients[0].uploadUpdate(s.sid, 1, body)).roundComplete).toBe(true);
    });
  });

  it('cuts off a sender that trickles just inside the idle timeout once its average rate is below the minimum', async () => {
    // A piece every 100 ms never trips the 1 s idle timeout; the average rate does.
    await withServer({ bodyIdleTimeoutMs: 1_000, minUploadBytesPerSecond: 10_000, rateLimitPerMinute: 10_000 }, async (server) => {
      const s = await openRound(server.url, 1, seeded(5));
      const body = s.update();
      const slow = new RawUpload(server.url, s.updatePath, { authorization: `Bearer ${s.tokens[0]}`, 'content-length': body.length });
      const started = Date.now();
      void slow.trickle(body, 16, 100);
      const a = await slow.answer;
      slow.destroy();
      expect([a.status, a.body.error]).toEqual([408, 'body_too_slow']);
      expect(Date.now() - started).toBeLessThan(5_000);
      expect((await s.clients[0].uploadUpdate(s.sid, 1, body)).accepted).toBe(1);
    });
  });

  it('cuts off a stalled JSON body (passages) with 408 as well, and stores nothing from it', async () => {
    await withServer({ bodyIdleTimeoutMs: 300, rateLimitPerMinute: 10_000 }, async (server) => {
      const s = await openRound(server.url, 1, seeded(10));
      const json = Buffer.from(JSON.stringify({ passages: [{ title: 't', text: 'trickled', embedding: new Array(8).fill(0.5), encoder: 'enc' }] }));
      const stalled = new RawUpload(
        server.url,
        `/api/sessions/${s.sid}/passages`,
        {
          authorization: `Bearer ${s.tokens[0]}`,
          'content-type': 'application/json',
          'content-length': json.length,
        },
        'POST',
      );
      stalled.write(json.subarray(0, json.length - 5));
      const a = await stalled.answer;
      stalled.destroy();
      expect([a.status, a.body.error]).toEqual([408, 'body_timeout']);
      expect((await s.admin.session(s.sid)).passages).toBe(0);
      expect((await s.clients[0].addPassages(s.sid, JSON.parse(json.toString()).passages)).results).toHaveLength(1);
    });
  });

  it('refuses a 95 MB safetensors header from its first 8 bytes (400 header_too_large) while health stays responsive; the upload is not used up', async () => {
    await withServer({ rateLimitPerMinute: 10_000 }, async (server) => {
      const s = await openRound(server.url, 1, seeded(6));
      const headerBytes = 95_000_000;
      const prefix = Buffer.alloc(8);
      prefix.writeBigUInt64LE(BigInt(headerBytes));
      const huge = new RawUpload(server.url, s.updatePath, { authorization: `Bearer ${s.tokens[0]}`, 'content-length': 8 + headerBytes });
      huge.write(prefix);
      void huge.push(Buffer.from('{"x":'.repeat(13_000)), 8 + headerBytes);
      const t0 = Date.now();
      const health = await fetch(`${server.url}/api/health`);
      expect(health.status).toBe(200);
      expect(Date.now() - t0).toBeLessThan(2_000); // was over 20 s when the header was parsed
      const a = await huge.answer;
      huge.destroy();
      expect([a.status, a.body.error]).toEqual([400, 'header_too_large']);
      expect(a.body.message).toContain(String(headerBytes));
      expect(a.bytesSentBeforeAnswer).toBeLessThan(32 * MiB);
      // The bound is proportional to the round's tensor count: an honest header fits.
      expect((await s.clients[0].uploadUpdate(s.sid, 1, s.update())).accepted).toBe(1);
    });
  });
});

describe('rate limits hold', () => {
  it("puts tokens that do not verify into the caller IP's bucket, answers 429 rate_limited with retry-after, and keeps a verified client's own bucket", async () => {
    const limit = 8;
    await withServer({ rateLimitPerMinute: limit }, async (server) => {
      const anon = new CoragClient(server.url);
      const created = await anon.createSession({ name: 'limits', models: { reader: 'r', passageEncoder: 'enc', embeddingDim: 8 } });
      const sid = created.session.id;
      const member = anon.withToken((await anon.join(created.joinCode)).token);
      const statuses: number[] = [];
      let limited: Response | undefined;
      for (let i = 0; i < 2 * limit; i++) {
        const res = await fetch(`${server.url}/api/sessions/${sid}`, { headers: { authorization: `Bearer random${i}${'x'.repeat(30)}` } });
        statuses.push(res.status);
        if (res.status === 429) limited ??= res;
        else await res.body?.cancel();
      }
      // Fresh bearer strings share one bucket: at most `limit` got through to a 401.
      expect(statuses.filter((s) => s === 401).length).toBeLessThanOrEqual(limit);
      expect(statuses.at(-1)).toBe(429);
      expect(await limited!.json()).toEqual({ error: 'rate_limited', message: expect.stringContaining('without a valid token') });
      expect(Number(limited!.headers.get('retry-after'))).toBeGreaterThan(0);
      const noToken = await errorOf(new CoragClient(server.url).session(sid));
      expect([noToken.status, noToken.code]).toEqual([429, 'rate_limited']);
      // The verified member's bucket is its own, and it runs out too.
      for (let i = 0; i < limit; i++) expect((await member.session(sid)).id).toBe(sid);
      const own = await errorOf(member.session(sid));
      expect([own.status, own.code]).toEqual([429, 'rate_limited']);
      expect(own.message).toContain('with this token');
    });
  });

  it('buckets IPv6 callers per /64 and IPv4-mapped callers as their IPv4 address', () => {
    expect(addressBucket('2001:db8:1:2:aaaa::1')).toBe(addressBucket('2001:0db8:0001:0002:bbbb:cccc:dddd:2'));
    expect(addressBucket('2001:db8:1:2::1')).toBe('2001:db8:1:2::/64');
    expect(addressBucket('2001:db8:1:3::1')).not.toBe(addressBucket('2001:db8:1:2::1'));
    expect(addressBucket('fe80::1%eth0')).toBe('fe80:0:0:0::/64');
    expect(addressBucket('::1')).toBe('0:0:0:0::/64');
    expect(addressBucket('::ffff:192.168.1.20')).toBe('192.168.1.20');
    expect(addressBucket('192.168.1.20')).toBe('192.168.1.20');
  });

  it('limits joins per IP address, and a refused join adds no client', async () => {
    await withServer({ joinsPerMinutePerIp: 3, rateLimitPerMinute: 10_000 }, async (server) => {
      const anon = new CoragClient(server.url);
      const created = await anon.createSession({ name: 'joins', models: { reader: 'r', passageEncoder: 'enc', embeddingDim: 8 } });
      const admin = anon.withToken(created.adminToken);
      for (let i = 0; i < 3; i++) await anon.join(created.joinCode, `j${i}`);
      const res = await fetch(`${server.url}/api/join`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ code: created.joinCode }),
      });
      expect(res.status).toBe(429);
      expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0);
      expect(await res.json()).toEqual({ error: 'rate_limited', message: expect.stringContaining('joins per minute') });
      expect((await admin.session(created.session.id)).clients).toBe(3);
    });
  });
});

describe('session creation needs the server key beyond loopback', () => {
  it('refuses POST /api/sessions without the configured key (401) and accepts it with the key', async () => {
    const key = 'k'.repeat(40);
    await withServer({ serverKey: key }, async (server) => {
      const config = { name: 'keyed', models: { reader: 'r', passageEncoder: 'enc', embeddingDim: 8 } };
      for (const client of [new CoragClient(server.url), new CoragClient(server.url, 'w'.repeat(40)), new CoragClient(server.url, key.slice(0, 39))]) {
        const e = await errorOf(client.createSession(config));
        expect([e.status, e.code]).toEqual([401, 'unauthorized']);
      }
      expect(await server.coordinator.sessionIds()).toEqual([]);
      expect((await new CoragClient(server.url, key).createSession(config)).session.config.name).toBe('keyed');
    });
  });

  it('refuses an anonymous body on a session route, and a session creation without the key, before reading the body', async () => {
    const key = 'k'.repeat(40);
    await withServer({ serverKey: key, rateLimitPerMinute: 10_000 }, async (server) => {
      const created = await new CoragClient(server.url, key).createSession({ name: 'keyed', models: { reader: 'r', passageEncoder: 'enc', embeddingDim: 8 } });
      for (const [method, path, length, code] of [
        ['POST', `/api/sessions/${created.session.id}/passages`, 8 * MiB - 1, 401],
        ['POST', `/api/sessions/${created.session.id}/passages/search`, 8 * MiB - 1, 401],
        ['POST', '/api/sessions', 60 * 1024, 401],
      ] as const) {
        const req = new RawUpload(server.url, path, { 'content-type': 'application/json', 'content-length': length }, method);
        req.write(Buffer.from('{"passages":['));
        const a = await req.answer; // the rest never comes: an answer must not wait for it
        req.destroy();
        expect([a.status, a.body.error], path).toEqual([code, 'unauthorized']);
      }
      expect(await server.coordinator.sessionIds()).toEqual([created.session.id]);
    });
  });

  it('tells loopback from reachable addresses, and generates a key (0600, reused) for a reachable one', () => {
    for (const h of ['127.0.0.1', '127.1.2.3', 'localhost', '::1', '[::1]']) expect(isLoopbackHost(h), h).toBe(true);
    for (const h of ['0.0.0.0', '::', '192.168.1.20', 'example.org', '10.0.0.1']) expect(isLoopbackHost(h), h).toBe(false);
    const dir = tempDir();
    try {
      expect(chooseServerKey(dir.path, '127.0.0.1', undefined)).toEqual({ generated: false });
      expect(chooseServerKey(dir.path, '0.0.0.0', 'configured-key-123456')).toEqual({ key: 'configured-key-123456', generated: false });
      const first = chooseServerKey(dir.path, '0.0.0.0', undefined);
      expect(first.generated).toBe(true);
      expect(first.key).toMatch(/^[A-Za-z0-9_-]{43}$/);
      expect(statSync(first.file!).mode & 0o777).toBe(0o600);
      expect(readFileSync(first.file!, 'utf8').trim()).toBe(first.key);
      expect(chooseServerKey(dir.path, '192.168.1.20', undefined)).toEqual({ key: first.key, file: first.file, generated: false });
    } finally {
      dir.remove();
    }
  });

  it('npm start on 0.0.0.0 without a key generates one, says where it is, and refuses session creation without it', async () => {
    const dir = tempDir();
    const child = spawn(process.execPath, ['--import', 'tsx', 'server/main.ts', '--host', '0.0.0.0', '--port', '0', '--no-demo', '--data-dir', dir.path], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    try {
      const out = await new Promise<string>((resolve, reject) => {
        let text = '';
        child.stdout.on('data', (b: Buffer) => {
          text += b.toString();
          if (/Open http\S+ in a browser/.test(text)) resolve(text);
        });
        child.stderr.on('data', (b: Buffer) => (text += b.toString()));
        child.once('exit', () => reject(new Error(`coordinator exited:\n${text}`)));
      });
      const keyFile = join(dir.path, 'server-key.txt');
      expect(out).toContain(keyFile);
      const port = /listening on http:\/\/[^:]+:(\d+)/.exec(out)![1];
      const url = `http://127.0.0.1:${port}`;
      const config = { name: 'lan', models: { reader: 'r', passageEncoder: 'enc', embeddingDim: 8 } };
      const refused = await errorOf(new CoragClient(url).createSession(config));
      expect([refused.status, refused.code]).toEqual([401, 'unauthorized']);
      const key = readFileSync(keyFile, 'utf8').trim();
      expect(out).not.toContain(key);
      expect(statSync(keyFile).mode & 0o777).toBe(0o600);
      expect((await new CoragClient(url, key).createSession(config)).session.config.name).toBe('lan');
    } finally {
      child.kill('SIGKILL');
      dir.remove();
    }
  });
});

describe('exposure', () => {
  it('never writes a token to the log: not from ?token= on the event stream, not from Authorization headers', async () => {
    const lines: string[] = [];
    const secrets: string[] = [];
    await withServer({ logSink: { write: (line: string) => lines.push(line) }, rateLimitPerMinute: 10_000 }, async (server) => {
      const s = await openRound(server.url, 1, seeded(7));
      secrets.push(s.created.adminToken, ...s.tokens);
      const events = new AbortController();
      const stream = await fetch(`${server.url}/api/sessions/${s.sid}/events?token=${s.tokens[0]}`, { signal: events.signal });
      expect(stream.status).toBe(200);
      const reader = stream.body!.getReader();
      expect(new TextDecoder().decode((await reader.read()).value)).toContain('event: hello');
      events.abort();
      await fetch(`${server.url}/api/sessions/${s.sid}/events?token=${s.created.adminToken}&x=1`).then((r) => r.body?.cancel());
      await fetch(`${server.url}/api/sessions/${s.sid}/nothing?token=${s.tokens[0]}`).then((r) => r.body?.cancel());
      await s.clients[0].uploadUpdate(s.sid, 1, s.update());
      await errorOf(new CoragClient(server.url, s.tokens[0]).uploadUpdate(s.sid, 1, s.update()));
      await new Promise((r) => setTimeout(r, 100));
    });
    const log = lines.join('');
    for (const secret of secrets) expect(log).not.toContain(secret);
    expect(log).toContain('token=[redacted]');
    expect(lines.length).toBeGreaterThan(8);
    const tokens = [...log.matchAll(/[A-Za-z0-9_-]{43}/g)].map((m) => m[0]);
    expect(tokens, 'a 43-character base64url string (a token) in the log').toEqual([]);
  });

  it('redacts ?token= values and Bearer credentials wherever they sit in a line', () => {
    const t = 'AbC_d-0123456789abcdefghijABCDEFGHIJ0123456';
    expect(redactSecrets(`{"url":"/api/sessions/x/events?token=${t}&y=2"}`)).toBe('{"url":"/api/sessions/x/events?token=[redacted]&y=2"}');
    expect(redactSecrets(`/e?a=1&token=${t}`)).toBe('/e?a=1&token=[redacted]');
    expect(redactSecrets(`{"authorization":"Bearer ${t}"}`)).toBe('{"authorization":"Bearer [redacted]"}');
    expect(redactSecrets('no secrets here ?tokens=1')).toBe('no secrets here ?tokens=1');
  });

  it('shows no join code on the status page served without a built web app', async () => {
    await withServer({ rateLimitPerMinute: 10_000 }, async (server) => {
      const s = await openRound(server.url, 1, seeded(8));
      const page = await (await fetch(`${server.url}/`)).text();
      expect(page).toContain('1 session on this coordinator');
      expect(page).toContain('edge');
      expect(page).not.toContain(s.created.joinCode);
      expect(page).not.toContain(s.sid);
    });
  });
});

describe("no 5xx for a client's bytes at the edge", () => {
  it('answers octet-stream bodies on JSON routes and garbage round numbers with 4xx {error, message}', async () => {
    await withServer({ rateLimitPerMinute: 10_000 }, async (server) => {
      const s = await openRound(server.url, 1, seeded(9));
      const requests: Array<[string, string, Record<string, string>, BodyInit | undefined]> = [
        ['POST', '/api/join', { 'content-type': 'application/octet-stream' }, new Uint8Array(100)],
        ['POST', '/api/sessions', { 'content-type': 'application/octet-stream' }, new Uint8Array(128 * 1024)],
        [
          'PUT',
          `/api/sessions/${s.sid}/rounds/abc/update`,
          { authorization: `Bearer ${s.tokens[0]}`, 'content-type': 'application/octet-stream' },
          new Uint8Array(10),
        ],
        [
          'PUT',
          `/api/sessions/${s.sid}/rounds/99999999999999/update`,
          { authorization: `Bearer ${s.tokens[0]}`, 'content-type': 'application/octet-stream' },
          new Uint8Array(10),
        ],
        [
          'PUT',
          `/api/sessions/${s.sid}/rounds/1/update`,
          { authorization: `Bearer ${s.tokens[0]}`, 'content-type': 'application/octet-stream' },
          new Uint8Array(0),
        ],
        [
          'PUT',
          `/api/sessions/${s.sid}/rounds/1/update`,
          { authorization: `Bearer ${s.tokens[0]}`, 'content-type': 'application/octet-stream' },
          new Uint8Array(7),
        ],
        [
          'PUT',
          `/api/sessions/${s.sid}/rounds/1/update`,
          { authorization: `Bearer ${s.tokens[0]}`, 'content-type': 'application/octet-stream' },
          Buffer.from('\xff\xff\xff\xff\xff\xff\xff\xff{', 'latin1'),
        ],
      ];
      const before = JSON.stringify(await s.admin.session(s.sid));
      for (const [method, path, headers, body] of requests) {
        const res = await fetch(`${server.url}${path}`, { method, headers, body });
        const label = `${method} ${path} ${JSON.stringify(headers)}`;
        expect(res.status, label).toBeGreaterThanOrEqual(400);
        expect(res.status, label).toBeLessThan(500);
        expect(await res.json(), label).toEqual({ error: expect.any(String), message: expect.any(String) });
      }
      expect(JSON.stringify(await s.admin.session(s.sid))).toBe(before);
    });
  });
});
