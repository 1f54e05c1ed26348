/**
 * The headless client (scripts/client.ts) named two coordinator processes of one deployment
 * (`--server A,B`: shared PostgreSQL, data folder and LanceDB): it trains a round through A; A is
 * killed with SIGKILL; its event stream is followed again on B (failoverFetch), and it trains the
 * next round, opened on B, through B — the process never restarted, nothing was told it but the
 * two URLs.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { FederatedCoragClient } from '../../src/corag/federated-client';
import type { ModelBundle } from '../../src/corag/model-bundle';
import { CoragClient } from '../../src/federated/client';
import { initBackend } from '../../src/model/backend';
import { tinyBundle } from '../corag/helpers';
import { startCoordinator, waitFor } from '../server/coordinator-process';
import { tempDir } from '../server/helpers';
import { startTestPostgres } from '../server/postgres';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
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

    const anon = new CoragClient(a.url);
    const created = await anon.createSession({
      name: 'failover',
      models: { reader: 'corag/tiny-t5', passageEncoder: 'corag/tiny-contriever (random, seed 2)', embeddingDim: bundle.embeddingDim },
      training: { learningRate: 1e-3, localSteps: 1, passagesPerQuestion: 1, maxLength: 32, batchSize: 1, seed: 3 },
      roundPolicy: { minClients: 1, minUpdates: 1, deadlineSeconds: 300, autoStart: false },
      trainedPrefixes: ['reader.'],
      passages: { embeddingCheck: 'off' },
    });
    const sid = created.session.id;
    const adminA = anon.withToken(created.adminToken);
    expect((await adminA.uploadModel(sid, await bundle.exportGlobal())).version).toBe(0);
    const contributor = await FederatedCoragClient.join(anon, created.joinCode, 'organiser', { bundle });
    await contributor.loadGlobal(0);
    await contributor.contributePassages([{ title: 'alice', text: 'alice lives in paris.' }]);
    const questions = join(dir.path, 'questions.jsonl');
    writeFileSync(questions, `${JSON.stringify({ question: 'where does alice live?', answers: ['paris'] })}\n`);

    const cli = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        join(ROOT, 'scripts/client.ts'),
        '--server',
        `${a.url},${b.url}`,
        '--join',
        created.joinCode,
        '--questions',
        questions,
        '--rounds',
        '2',
      ],
      { cwd: ROOT },
    );
    children.push(cli);
    let stderr = '';
    cli.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => cli.on('exit', (code) => resolve(code)));
    const logged = (what: RegExp) =>
      waitFor(`the client to log ${what}`, () => what.test(stderr) || cli.exitCode !== null, 120).then(() => expect(stderr).toMatch(what));

    await logged(/training on 1 questions/);
    await adminA.openRound(sid);
    await logged(/round 1: update sent/);
    expect((await adminA.closeRound(sid, 1)).accepted).toBe(1);

    a.child.kill('SIGKILL');
    await a.exited;
    // The stream broke with A: followed again, on B (the reconnect moves on from the dead process).
    await logged(new RegExp(`coordinator ${a.url} does not answer .*; now using ${b.url}`));
    const adminB = new CoragClient(b.url, created.adminToken);
    await waitFor('the client to be online on B', async () => (await adminB.session(sid)).online === 1);
    expect((await adminB.openRound(sid)).round).toBe(2);

    expect(await exited, stderr).toBe(0);
    expect(stderr).toMatch(/round 2: update sent \(\d+ bytes, 1 examples\)/);
    expect(stderr).toMatch(/done: trained in 2 round\(s\)/);
    const round = await adminB.closeRound(sid, 2);
    expect([round.state, round.accepted, round.resultVersion]).toEqual(['closed', 1, 2]);
    b.child.kill('SIGTERM');
    await b.exited;
  });
});
