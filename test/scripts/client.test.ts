/**
 * The headless client (scripts/client.ts) as a separate Node process against the real coordinator:
 * it joins with the join code, builds the session's model as a tab does (tokenizers from the app
 * folder, weights as global version 0), and takes part in a round through FederatedCoragClient.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ModelBundle } from '../../src/corag/model-bundle';
import { CoragClient } from '../../src/federated/client';
import { initBackend } from '../../src/model/backend';
import { tinyBundle } from '../corag/helpers';
import { seeded, startServer, tempDir } from '../server/helpers';
import { prepareClientSession, ROOT, spawnClient } from './client-session';

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
    const session = await prepareClientSession(server.url, bundle, 'headless', dir.path);
    const sid = session.sessionId;
    const admin = new CoragClient(server.url, session.adminToken);
    const cli = spawnClient(['--server', server.url, '--join', session.joinCode, '--name', 'cli', '--questions', session.questions, '--rounds', '1']);
    await cli.logged(/training on 1 questions/);
    expect(cli.stderr()).toMatch(/joined "headless" as \S+ with model v0/);
    const opened = await admin.openRound(sid);
    expect(opened.participants).toHaveLength(2);

    expect(await cli.exited, cli.stderr()).toBe(0);
    expect(cli.stderr()).toMatch(/round 1: update sent \(\d+ bytes, 1 examples\)/);
    expect(cli.stderr()).toMatch(/done: trained in 1 round\(s\)/);
    expect((await admin.round(sid, 1)).accepted).toBe(1);
    const round = await admin.closeRound(sid, 1);
    expect([round.state, round.accepted, round.resultVersion]).toEqual(['closed', 1, 1]);
  });
});
