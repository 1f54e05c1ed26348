/**
 * The demo session npm start creates: its checkpoints (hub, URL, public/ folder), the open session
 * offered to anyone, and its store pre-seeded with the demo passages by the coordinator.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { decodeModel } from '../../src/federated/codec';
import { hubModelSource } from '../../src/model/checkpoint/source';
import { tinyBertConfig, tinyBertWeights, tinyCheckpointFiles, tinyT5Config, tinyT5Weights } from '../../src/model/tiny';
import { Coordinator } from '../../server/coordinator';
import { checkpointFromSpec, createDemoSession, demoPassages, seedDemoPassages } from '../../server/demo';
import { agrees, embeddingAgreement } from '../../server/passage-intake';
import { contentHash } from '../../server/passages';
import { ModelBundle } from '../../src/corag/model-bundle';
import { embedPassages } from '../../src/corag/retrieve';
import { initBackend } from '../../src/model/backend';
import { loadTokenizer } from '../../src/model/tokenizer';
import { folderModelSource } from '../../src/platform/node/folder-source';
import { startLocalHub } from '../model/checkpoint/local-hub';
import { CoragClient } from '../../src/federated/client';
import { startServer, tempDir } from './helpers';
import { expectIdenticalNumbers } from '../identical-numbers';

const PUBLIC = fileURLToPath(new URL('../../public/', import.meta.url));
const work = tempDir();
afterAll(() => work.remove());

describe('the checkpoints a session starts from (npm start --reader/--retriever)', () => {
  it('passes hub ids and URLs through to browsers and maps a folder inside public/ to its app path', () => {
    expect(checkpointFromSpec('google/flan-t5-base')).toMatchObject({ id: 'google/flan-t5-base' });
    expect(checkpointFromSpec('google/flan-t5-base').source.describe()).toMatch(/^google\/flan-t5-base@main \(https:\/\/huggingface\.co/);
    expect(checkpointFromSpec('https://example.org/models/reader/').id).toBe('https://example.org/models/reader/');
    expect(checkpointFromSpec(join(PUBLIC, 'models/demo/reader')).id).toBe('models/demo/reader');
  });

  it('refuses a local folder that browsers could not load', () => {
    expect(() => checkpointFromSpec(work.path)).toThrow(/must be inside .*public/);
    expect(() => checkpointFromSpec('./not a model id')).toThrow(/public/);
  });

  it('builds global version 0 from checkpoints on a hub and names the hub ids in the session', async () => {
    const t5 = tinyT5Config();
    const bert = tinyBertConfig();
    const repos: Record<string, string> = {};
    for (const [id, files] of [
      ['acme/reader', tinyCheckpointFiles('t5', t5, 11)],
      ['acme/retriever', tinyCheckpointFiles('bert', bert, 12)],
    ] as const) {
      const dir = join(work.path, id.replace('/', '_'));
      mkdirSync(dir, { recursive: true });
      for (const [name, bytes] of files) writeFileSync(join(dir, name), bytes);
      repos[id] = dir; // no tokenizer.json: the session falls back to the project's copies
    }
    const hub = await startLocalHub({ repos });
    try {
      const coordinator = new Coordinator({ dataDir: join(work.path, 'data') });
      const created = await createDemoSession(
        coordinator,
        {
          reader: hubModelSource('acme/reader', { endpoint: hub.url }),
          retriever: hubModelSource('acme/retriever', { endpoint: hub.url }),
          readerId: 'acme/reader',
          retrieverId: 'acme/retriever',
        },
        { seed: false },
      ); // seeding would resolve 'acme/retriever' on the real hub (seeding: below)
      expect(created.session.config.models).toEqual({ reader: 'acme/reader', passageEncoder: 'acme/retriever', embeddingDim: bert.hidden_size });
      // Anyone may join the demo: it aggregates robustly, with sample counts capped at localSteps × batchSize.
      expect([created.session.config.strategy, created.session.config.strategyParams, created.session.config.updateLimits]).toEqual([
        'norm-clip',
        { clipMultiplier: 1 },
        { maxExamplesPerUpdate: 24, maxWeightShare: 0.25 },
      ]);
      // Fine-tuning the pretrained retriever's query side collapses retrieval: the demo trains the reader only.
      expect(created.session.config.trainedPrefixes).toEqual(['reader.']);
      expect(hub.requests).toContain('/acme/reader/resolve/main/model.safetensors');
      const global = decodeModel(readFileSync(coordinator.modelPath(created.session.id, 0)));
      const reader = tinyT5Weights(t5, 11);
      const retriever = tinyBertWeights(bert, 12);
      expect([...global.get('reader.shared.weight')!.data.subarray(0, 8)]).toEqual([...reader.get('shared.weight')!.data.subarray(0, 8)]);
      for (const side of ['query_encoder.', 'passage_encoder.']) {
        const name = 'encoder.layer.0.attention.self.query.weight';
        expectIdenticalNumbers(global.get(side + name)?.data, retriever.get(name)!.data, side + name);
      }
    } finally {
      await hub.close();
    }
  });
});

describe('the open demo session (GET /api/public-session)', () => {
  it("offers the configured session's join code and name, and nothing when none is configured or it does not exist", async () => {
    const dir = tempDir();
    let open: string | undefined;
    const server = await startServer({ dataDir: dir.path, publicSession: () => open });
    try {
      const anon = new CoragClient(server.url);
      const created = await anon.createSession({ name: 'open demo', models: { reader: 'r', passageEncoder: 'e', embeddingDim: 4 } });
      const get = async () => {
        const res = await fetch(`${server.url}/api/public-session`);
        return { status: res.status, body: (await res.json()) as Record<string, unknown> };
      };
      expect(await get()).toMatchObject({ status: 404, body: { error: 'no_public_session' } });
      expect(await anon.publicSession()).toBeNull();
      expect(await anon.network()).toEqual([]);
      open = 'no-such-session';
      expect((await get()).status).toBe(404);
      open = created.session.id;
      expect(await get()).toEqual({ status: 200, body: { joinCode: created.joinCode, name: 'open demo' } });
      expect(await anon.publicSession()).toEqual({ joinCode: created.joinCode, name: 'open demo' });
      expect((await anon.join(created.joinCode, 'visitor')).sessionId).toBe(created.session.id);
    } finally {
      await server.app.close();
      dir.remove();
    }
  });
});

describe("the demo session's store, seeded by the coordinator", () => {
  it('holds the demo passages from the start, contributed by "coordinator" and embedded as a tab embeds them; a restart embeds nothing again', async () => {
    await initBackend('wasm');
    const dir = tempDir();
    try {
      const lines: string[] = [];
      const coordinator = new Coordinator({ dataDir: dir.path });
      const created = await createDemoSession(coordinator, undefined, { tiny: true, log: (line) => lines.push(line) });
      const sid = created.session.id;
      const demo = demoPassages();
      expect(demo.length).toBeGreaterThanOrEqual(347); // 347 jsonl lines, long ones split into ~100-word passages
      expect(created.session.passages).toBe(demo.length);
      expect(await coordinator.passages.contributions(sid)).toEqual([{ clientId: 'coordinator', passages: demo.length }]);
      expect(lines.at(-1)).toMatch(new RegExp(`^Demo store: ${demo.length} demo passages embedded and stored by the coordinator in [\\d.]+ s`));
      expect(created.session.config.passages?.embeddingCheck).toBe('all');
      await coordinator.close();

      // Restart on the same folder: everything is stored already, nothing is embedded.
      const server = await startServer({ dataDir: dir.path });
      try {
        const again = await seedDemoPassages(server.coordinator, sid);
        expect(again).toMatchObject({ added: 0, alreadyStored: demo.length });
        expect(await server.coordinator.passages.count(sid)).toBe(demo.length);

        // A tab that adds the demo passages computes the same embeddings and finds them stored.
        const tokenizers = (name: string) => loadTokenizer(folderModelSource(join(PUBLIC, 'models/tokenizers', name)));
        const spec = {
          readerConfig: tinyT5Config(),
          retrieverConfig: tinyBertConfig(),
          readerTokenizer: await tokenizers('t5'),
          retrieverTokenizer: await tokenizers('bert-base-uncased'),
        };
        const tab = ModelBundle.fromGlobal(spec, readFileSync(server.coordinator.modelPath(sid, 0)), 0);
        try {
          const sample = [demo[0], demo[100], demo[demo.length - 1]];
          const embeddings = await embedPassages(tab, sample);
          const client = new CoragClient(server.url).withToken((await new CoragClient(server.url).join(created.joinCode, 'tab')).token);
          for (const [i, e] of embeddings.entries()) {
            const row = server.coordinator
              .db!.prepare('SELECT client_id, embedding FROM passages WHERE session_id = ? AND hash = ?')
              .get(sid, contentHash(sample[i].title, sample[i].text)) as { client_id: string; embedding: Buffer };
            expect(row.client_id).toBe('coordinator');
            const stored = new Float32Array(row.embedding.buffer.slice(row.embedding.byteOffset, row.embedding.byteOffset + row.embedding.byteLength));
            expect(agrees(embeddingAgreement(e, stored))).toBe(true);
          }
          const added = await client.addPassages(
            sid,
            sample.map((p, i) => ({ ...p, embedding: Array.from(embeddings[i]), encoder: created.session.config.models.passageEncoder })),
          );
          expect(added.results.every((r) => r.duplicate)).toBe(true);
        } finally {
          tab.dispose();
        }
      } finally {
        await server.app.close();
      }
    } finally {
      dir.remove();
    }
  });
});
