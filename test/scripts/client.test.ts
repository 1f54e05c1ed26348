/**
 * The headless client (scripts/client.ts) as a separate Node process against the real coordinator:
 * it joins with the join code, builds the session's model as a tab does (tokenizers from the app
 * folder, weights as global version 0), and takes part in a round through FederatedCoragClient.
 */
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FederatedCoragClient } from '../../src/corag/federated-client';
import type { ModelBundle } from '../../src/corag/model-bundle';
import { CoragClient } from '../../src/federated/client';
import { initBackend } from '../../src/model/backend';
import { tinyBundle } from '../corag/helpers';
import { seeded, startServer, tempDir } from '../server/helpers';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

describe('scripts/client.ts: a headless participant', () => {
  const dir = tempDir();
  let server: Awaited<ReturnType<typeof startServer>>;
  let bundle: ModelBundle;
  beforeAll(async () => {
    await initBackend('wasm');
    server = await startServer({ dataDir: dir.path, random: seeded(7), staticDir: join(ROOT, 'public') });
    bundle = await tinyBundle();
  });
  afterAll(async () => {
    await server.app.close();
    dir.remove();
    bundle.dispose();
  });

  it('joins with the code, trains in the round it is selected for, uploads once and stops after --rounds', async () => {
    const anon = new CoragClient(server.url);
    const created = await anon.createSession({
      name: 'headless',
      models: { reader: 'corag/tiny-t5', passageEncoder: 'corag/tiny-contriever (random, seed 2)', embeddingDim: bundle.embeddingDim },
      training: { learningRate: 1e-3, localSteps: 1, passagesPerQuestion: 1, maxLength: 32, batchSize: 1, seed: 3 },
      roundPolicy: { minClients: 1, minUpdates: 1, deadlineSeconds: 300, autoStart: false },
      trainedPrefixes: ['reader.'],
    });
    const sid = created.session.id;
    const admin = anon.withToken(created.adminToken);
    expect((await admin.uploadModel(sid, await bundle.exportGlobal())).version).toBe(0);
    // A passage in the session store, contributed by an organiser's client (selected too; it never uploads).
    const contributor = await FederatedCoragClient.join(anon, created.joinCode, 'organiser', { bundle });
    await contributor.loadGlobal(0);
    await contributor.contributePassages([{ title: 'alice', text: 'alice lives in paris.' }]);
    const questions = join(dir.path, 'questions.jsonl');
    writeFileSync(questions, `${JSON.stringify({ question: 'where does alice live?', answers: ['paris'] })}\n`);

    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        join(ROOT, 'scripts/client.ts'),
        '--server',
        server.url,
        '--join',
        created.joinCode,
        '--name',
        'cli',
        '--questions',
        questions,
        '--rounds',
        '1',
      ],
      { cwd: ROOT },
    );
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    for (let t = 0; !/training on 1 questions/.test(stderr) && t < 1200; t++) {
      if (child.exitCode !== null) break;
      await new Promise((res) => setTimeout(res, 100));
    }
    expect(stderr).toMatch(/joined "headless" as \S+ with model v0/);
    const opened = await admin.openRound(sid);
    expect(opened.participants).toHaveLength(2);

    expect(await exited, stderr).toBe(0);
    expect(stderr).toMatch(/round 1: update sent \(\d+ bytes, 1 examples\)/);
    expect(stderr).toMatch(/done: trained in 1 round\(s\)/);
    expect((await admin.round(sid, 1)).accepted).toBe(1);
    const round = await admin.closeRound(sid, 1);
    expect([round.state, round.accepted, round.resultVersion]).toEqual(['closed', 1, 1]);
  });
});
