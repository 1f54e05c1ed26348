/**
 * A throwaway PostgreSQL cluster for one test file: `initdb` into a temp folder, `pg_ctl start` on a
 * Unix socket in that folder only (no TCP port), fsync off; each test asks for a fresh database.
 * As root (CI) the server runs as the `postgres` user (initdb refuses root).
 *
 * Where PostgreSQL is not installed, `startTestPostgres` returns undefined after saying so, and
 * the PostgreSQL variants of the tests are skipped — except under CI=true, where it throws: CI
 * installs PostgreSQL (.ci/run), so a missing one is a broken CI, not a reason to skip.
 */
import { execFileSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';

export interface TestPostgres {
  /** A new, empty database; its URL. */
  createDatabase(): Promise<string>;
  stop(): Promise<void>;
}

/** Where initdb and pg_ctl are: Debian's versioned folder (newest), else PATH. */
function binDir(): string | undefined {
  const debian = '/usr/lib/postgresql';
  if (existsSync(debian)) {
    const versions = readdirSync(debian)
      .filter((v) => existsSync(join(debian, v, 'bin', 'initdb')))
      .sort((a, b) => Number(b) - Number(a));
    if (versions.length) return join(debian, versions[0], 'bin');
  }
  try {
    const found = execFileSync('sh', ['-c', 'command -v initdb'], { encoding: 'utf8' }).trim();
    return found ? join(found, '..') : undefined;
  } catch {
    return undefined;
  }
}

export async function startTestPostgres(): Promise<TestPostgres | undefined> {
  const bin = binDir();
  if (!bin) {
    const why = 'PostgreSQL (initdb) is not installed';
    if (process.env.CI) throw new Error(`${why}; CI must install it (.ci/run: apt-get install -y postgresql)`);
    process.stderr.write(`\n  skipping the PostgreSQL variants: ${why} (Debian: apt-get install postgresql)\n\n`);
    return undefined;
  }
  const dir = mkdtempSync(join(tmpdir(), 'corag-pg-'));
  const asRoot = process.getuid?.() === 0;
  const run = (tool: string, args: string[]) => {
    const cmd = join(bin, tool);
    try {
      execFileSync(asRoot ? 'runuser' : cmd, asRoot ? ['-u', 'postgres', '--', cmd, ...args] : args, { stdio: 'pipe', timeout: 60_000 });
    } catch (e) {
      const out = e as { stderr?: Buffer; stdout?: Buffer };
      const log = existsSync(join(dir, 'log')) ? readFileSync(join(dir, 'log'), 'utf8') : '';
      throw new Error(`${tool} failed: ${out.stderr?.toString() ?? ''}${out.stdout?.toString() ?? ''}${log}`);
    }
  };
  if (asRoot) {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
    chownSync(dir, uid, gid);
  }
  const data = join(dir, 'data');
  run('initdb', ['-D', data, '-A', 'trust', '-U', 'corag', '-E', 'UTF8', '--locale=C', '--no-sync']);
  run('pg_ctl', [
    'start',
    '-w',
    '-D',
    data,
    '-l',
    join(dir, 'log'),
    '-o',
    `-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c listen_addresses='' -k ${dir} -p 5432`,
  ]);
  const url = (db: string) => `postgresql://corag@/${db}?host=${encodeURIComponent(dir)}&port=5432`;
  let n = 0;
  return {
    async createDatabase() {
      const name = `t${++n}`;
      const admin = new pg.Client({ connectionString: url('postgres') });
      await admin.connect();
      try {
        await admin.query(`CREATE DATABASE ${name}`);
      } finally {
        await admin.end();
      }
      return url(name);
    },
    async stop() {
      try {
        run('pg_ctl', ['stop', '-D', data, '-m', 'immediate']);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}

/** Where a test's coordinator keeps its state: SQLite (database undefined) or a fresh PostgreSQL database. */
export interface StateBackend {
  readonly name: 'SQLite' | 'PostgreSQL';
  /** True where PostgreSQL is absent (never under CI): the variant is skipped. */
  readonly skip: boolean;
  database(): Promise<string | undefined>;
}

export function stateBackends(cluster: TestPostgres | undefined): StateBackend[] {
  return [
    { name: 'SQLite', skip: false, database: async () => undefined },
    { name: 'PostgreSQL', skip: !cluster, database: () => cluster!.createDatabase() },
  ];
}
