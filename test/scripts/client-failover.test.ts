/**
 * The headless client (scripts/client.ts) named two coordinator processes of one deployment
 * (`--server A,B`: shared PostgreSQL, data folder and LanceDB): it trains a round through A; A is
 * killed with SIGKILL; its event stream is followed again on B (failoverFetch), and it trains the
 * next round, opened on B, through B — the process never restarted, nothing was told it but the
 * two URLs.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { ModelBundle } from '../../src/corag/model-bundle';
import { CoragClient } from '../../src/federated/client';
import { initBackend } from '../../src/model/backend';
import { tinyBundle } from '../corag/helpers';
import { startCoordinator, waitFor } from '../server/coordinator-process';
import { tempDir } from '../server/helpers';
import { startTestPostgres } from '../server/postgres';
import { prepareClientSession, ROOT, spawnClient } from './client-session';

const cluster = await startTestPostgres();
afterAll(() => cluster?.stop());

describe.skipIf(!cluster)('scripts/client.ts with two coordinator processes', () => {
  const dir = tempDir();
  const children: ChildProcess[] = [];
  let bundle: ModelBundle | undefined;
  afterAll(() => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    bundle?.dispose();
    dir.remove();
  });

  it('trains through the first, goes on through the second once the first is killed', async () => {
    await initBackend('wasm');
    const database = await cluster!.createDatabase();
    const dataDir = join(dir.path, 'data');
    mkdirSync(dataDir);
    const lance = join(dir.path, 'lance');
    // The client reads the models' configs and tokenizers from a coordinator's app folder.
    const args = ['--static-dir', join(ROOT, 'public')];
    const starting = Promise.all([startCoordinator(dataDir, database, lance, { args }), startCoordinator(dataDir, database, lance, { args })]);
    bundle = await tinyBundle();
    const [a, b] = await starting;
    children.push(a.child, b.child);

    const session = await prepareClientSession(a.url, bundle, 'failover', dir.path);
    const sid = session.sessionId;
    const adminA = new CoragClient(a.url, session.adminToken);
    const cli = spawnClient(['--server', `${a.url},${b.url}`, '--join', session.joinCode, '--questions', session.questions, '--rounds', '2']);
    children.push(cli.child);

    await cli.logged(/training on 1 questions/);
    await adminA.openRound(sid);
    await cli.logged(/round 1: update sent/);
    expect((await adminA.closeRound(sid, 1)).accepted).toBe(1);

    a.child.kill('SIGKILL');
    await a.exited;
    // The stream broke with A: followed again, on B (the reconnect moves on from the dead process).
    await cli.logged(new RegExp(`coordinator ${a.url} does not answer .*; now using ${b.url}`));
    const adminB = new CoragClient(b.url, session.adminToken);
    await waitFor('the client to be online on B', async () => (await adminB.session(sid)).online === 1);
    expect((await adminB.openRound(sid)).round).toBe(2);

    expect(await cli.exited, cli.stderr()).toBe(0);
    expect(cli.stderr()).toMatch(/round 2: update sent \(\d+ bytes, 1 examples\)/);
    expect(cli.stderr()).toMatch(/done: trained in 2 round\(s\)/);
    const round = await adminB.closeRound(sid, 2);
    expect([round.state, round.accepted, round.resultVersion]).toEqual(['closed', 1, 2]);
    b.child.kill('SIGTERM');
    await b.exited;
  }, 300_000);
});
