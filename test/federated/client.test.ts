import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CoragClient } from '../../src/federated/client';
import { encodeModel } from '../../src/federated/codec';
import { MAX_PASSAGES_PER_REQUEST } from '../../src/federated/protocol';
import { randomTensors, seeded, startServer, tempDir } from '../server/helpers';

describe('CoragClient.addPassagesInBatches: any number of passages, in requests the server takes', () => {
  const dir = tempDir();
  let server: Awaited<ReturnType<typeof startServer>>;
  let client: CoragClient;
  let sid: string;
  const requests: number[] = [];
  beforeAll(async () => {
    server = await startServer({ dataDir: dir.path, random: seeded(9), rateLimitPerMinute: 10_000 });
    const anon = new CoragClient(server.url);
    const created = await anon.createSession({
      name: 'batches',
      models: { reader: 'r', passageEncoder: 'enc', embeddingDim: 4 },
      trainedPrefixes: [''],
      // 'enc' is no encoder the coordinator can load; passage trust is tested in test/server/passage-intake.test.ts.
      passages: { embeddingCheck: 'off' },
    });
    sid = created.session.id;
    const token = (await anon.join(created.joinCode)).token;
    // Counts the passages of every POST .../passages the client sends.
    const counting: typeof fetch = async (input, init) => {
      if (String(input).endsWith('/passages') && init?.method === 'POST') requests.push(JSON.parse(String(init.body)).passages.length);
      return fetch(input, init);
    };
    client = new CoragClient(server.url, token, counting);
  });
  afterAll(async () => {
    await server.app.close();
    dir.remove();
  });

  const passage = (i: number) => ({ title: `t${i}`, text: `passage number ${i}`, embedding: [i, 1, 0, 0], encoder: 'enc' });

  it('splits into requests of at most MAX_PASSAGES_PER_REQUEST and returns one result per passage, in order', async () => {
    const n = 2 * MAX_PASSAGES_PER_REQUEST + 3;
    const results = await client.addPassagesInBatches(sid, n, passage);
    expect(requests).toEqual([MAX_PASSAGES_PER_REQUEST, MAX_PASSAGES_PER_REQUEST, 3]);
    expect(results).toHaveLength(n);
    expect(new Set(results.map((r) => r.id)).size).toBe(n);
    expect(results.every((r) => !r.duplicate)).toBe(true);
    // Sending the same passages again stores nothing new: each comes back as its first id.
    const again = await client.addPassagesInBatches(sid, n, passage);
    expect(again.map((r) => r.id)).toEqual(results.map((r) => r.id));
    expect(again.every((r) => r.duplicate)).toBe(true);
  });

  it('sends no request for no passages', async () => {
    requests.length = 0;
    expect(await client.addPassagesInBatches(sid, 0, passage)).toEqual([]);
    expect(requests).toEqual([]);
  });
});

describe('CoragClient.downloadModel: the bytes of a global version, with progress when asked', () => {
  const dir = tempDir();
  let server: Awaited<ReturnType<typeof startServer>>;
  afterAll(async () => {
    await server.app.close();
    dir.remove();
  });

  it('reports the bytes read so far against the content-length and returns exactly what the admin uploaded', async () => {
    server = await startServer({ dataDir: dir.path, random: seeded(4) });
    const anon = new CoragClient(server.url);
    const created = await anon.createSession({
      name: 'download',
      models: { reader: 'r', passageEncoder: 'enc', embeddingDim: 4 },
      trainedPrefixes: ['reader.'],
      passages: { embeddingCheck: 'off' },
    });
    const sid = created.session.id;
    // 1 MiB: more than one chunk of the response stream.
    const model = encodeModel(randomTensors([['reader.shared.weight', [512, 512]]], seeded(1)));
    const same = (a: Uint8Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(model.buffer, model.byteOffset, model.byteLength));
    expect((await anon.withToken(created.adminToken).uploadModel(sid, model)).version).toBe(0);
    const client = anon.withToken((await anon.join(created.joinCode)).token);

    const progress: Array<[number, number | undefined]> = [];
    const bytes = await client.downloadModel(sid, 0, (loaded, total) => progress.push([loaded, total]));
    expect(same(bytes)).toBe(true);
    expect(same(await client.downloadModel(sid, 0))).toBe(true);
    expect(progress.length).toBeGreaterThan(1);
    expect(progress.at(-1)).toEqual([model.byteLength, model.byteLength]);
    for (let i = 1; i < progress.length; i++) expect(progress[i][0]).toBeGreaterThan(progress[i - 1][0]);
    for (const [, total] of progress) expect(total).toBe(model.byteLength);
  });
});
