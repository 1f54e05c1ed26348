/**
 * `npm run migrate` as a process (scripts/migrate.ts): exit status 2 and one line for a refusal,
 * 0 and the start command for a copy into a real PostgreSQL (test/server/postgres.ts, and PGlite
 * with pgvector for `--passage-store pgvector`: test/server/pglite-vector.ts); what the copy does is
 * tested in test/server/copy-deployment.test.ts.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { startServer, tempDir } from '../server/helpers';
import { startTestPglite } from '../server/pglite-vector';
import { startTestPostgres } from '../server/postgres';

const cluster = await startTestPostgres();
afterAll(() => cluster?.stop());
const lite = await startTestPglite();
afterAll(() => lite.stop());

function migrate(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', 'scripts/migrate.ts', ...args], { timeout: 120_000 }, (error, stdout, stderr) =>
      resolve({ code: error ? Number((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

describe('npm run migrate', () => {
  const dir = tempDir();
  afterAll(() => dir.remove());

  it('refuses missing options, a foreign URL scheme and a folder that is not a data folder with exit status 2', async () => {
    const missing = await migrate(['--from', dir.path]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/--from, --to and --database are required/);
    const scheme = await migrate(['--from', dir.path, '--to', join(dir.path, 'x'), '--database', 'mysql://a@b/c']);
    expect(scheme.code).toBe(2);
    expect(scheme.stderr).toMatch(/"mysql:\/\/" is not supported/);
    const notData = await migrate(['--from', dir.path, '--to', join(dir.path, 'x'), '--database', 'postgres://a@/b']);
    expect(notData.code).toBe(2);
    expect(notData.stderr).toMatch(/is not a coordinator data folder/);
    expect(existsSync(join(dir.path, 'x'))).toBe(false);
  });

  it.skipIf(!cluster)('copies a deployment, prints how to start it, and refuses a --to that is not empty', async () => {
    const source = join(dir.path, 'source');
    const server = await startServer({ dataDir: source });
    await server.coordinator.createSession({ name: 's', models: { reader: 'r', passageEncoder: 'p', embeddingDim: 4 } });
    await server.app.close();
    const database = await cluster!.createDatabase();
    const busy = join(dir.path, 'busy');
    mkdirSync(busy);
    writeFileSync(join(busy, 'keep.txt'), 'x');
    const refused = await migrate(['--from', source, '--to', busy, '--database', database]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/exists and is not an empty folder/);

    const to = join(dir.path, 'copy');
    const done = await migrate(['--from', source, '--to', to, '--database', database, '--passage-store', join(dir.path, 'lance')]);
    expect(done.stderr).toMatch(/migrate: verified: sessions 1, clients 0/);
    expect(done.code).toBe(0);
    expect(done.stdout).toContain(`Copied 1 session`);
    expect(done.stdout).toContain(`npm start -- --data-dir ${to} --database`);
    // State and passage records are in PostgreSQL now: the new folder holds files only.
    expect(existsSync(to)).toBe(true);
    expect(existsSync(join(to, 'coordinator.sqlite'))).toBe(false);
    const same = await migrate([
      '--from',
      source,
      '--to',
      join(dir.path, 'copy2'),
      '--database',
      database,
      '--passage-store',
      join(dir.path, 'lance'),
      '--from-passage-store',
      join(dir.path, 'lance'),
    ]);
    expect(same.code).toBe(2);
    expect(same.stderr).toMatch(/is the store the source runs with/);
  });

  it('--passage-store pgvector: refused (2, nothing written) where the server has no pgvector; else copied with the pgvector start command', async () => {
    const source = join(dir.path, 'source-pgvector');
    const server = await startServer({ dataDir: source });
    await server.coordinator.createSession({ name: 's', models: { reader: 'r', passageEncoder: 'p', embeddingDim: 4 } });
    await server.app.close();
    if (cluster) {
      const debian = await migrate([
        '--from',
        source,
        '--to',
        join(dir.path, 'pgv-debian'),
        '--database',
        await cluster.createDatabase(),
        '--passage-store',
        'pgvector',
      ]);
      expect(debian.code).toBe(2);
      expect(debian.stderr).toMatch(/migrate: --passage-store pgvector: .* does not have the pgvector extension .*apt install postgresql-15-pgvector/);
      expect(existsSync(join(dir.path, 'pgv-debian'))).toBe(false);
    }
    const to = join(dir.path, 'pgv-copy');
    const done = await migrate(['--from', source, '--to', to, '--database', await lite.createDatabase(), '--passage-store', 'pgvector']);
    expect(done.code, done.stderr).toBe(0);
    expect(done.stdout).toMatch(/npm start -- --data-dir .*pgv-copy --database '.*' --passage-store pgvector\n\(its first start moves the embeddings/);
  }, 120_000);
});
