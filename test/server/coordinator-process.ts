/**
 * Coordinator processes for the several-coordinators tests and bench/coordinator-processes.ts: `tsx server/main.ts` on a free port,
 * sharing one PostgreSQL database, one data folder and one LanceDB folder, plus more options
 * (peers, a static folder, a presence TTL). Resolves with the URL it prints once listening.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

export interface CoordinatorProcess {
  readonly url: string;
  readonly child: ChildProcess;
  /** Settles when the process has exited. */
  readonly exited: Promise<unknown>;
}

export interface CoordinatorProcessOptions {
  /** Default 0: a free one, known once it listens. */
  readonly port?: number;
  /** More `server/main.ts` options. */
  readonly args?: readonly string[];
}

export function startCoordinator(dataDir: string, database: string, passages: string, options: CoordinatorProcessOptions = {}): Promise<CoordinatorProcess> {
  const env: NodeJS.ProcessEnv = { ...process.env, CORAG_CRASH_AT: '' };
  delete env.CORAG_DATABASE_URL;
  delete env.CORAG_PEER_URLS;
  const args = [
    '--import',
    'tsx',
    'server/main.ts',
    '--port',
    String(options.port ?? 0),
    '--no-demo',
    '--data-dir',
    dataDir,
    '--database',
    database,
    '--passage-store',
    passages,
    '--max-uploads',
    '16',
    ...(options.args ?? []),
  ];
  const child = spawn(process.execPath, args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise((res) => child.once('exit', res));
  return new Promise((resolve, reject) => {
    let out = '';
    // Both pipes are drained for the whole run (a full pipe would block the server); only the
    // start of the output is kept, for the URL and the error message.
    const seen = (b: Buffer) => {
      if (out.length < 20_000) out += b.toString();
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) resolve({ url: m[1], child, exited });
    };
    child.stdout!.on('data', seen);
    child.stderr!.on('data', (b: Buffer) => {
      seen(b);
      process.stderr.write(b);
    });
    child.once('exit', () => reject(new Error(`coordinator exited before listening:\n${out}`)));
  });
}

/** Free ports to name as peers before the processes start (each is told the others' URLs). */
export async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<Server>((res) => {
          const s = createServer();
          s.listen(0, '127.0.0.1', () => res(s));
        }),
    ),
  );
  const ports = servers.map((s) => (s.address() as AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise((res) => s.close(res))));
  return ports;
}

/** Waits on state the test can read (rounds, recorded events, logs), checked every 50 ms, up to `seconds` (60). */
export async function waitFor(what: string, ok: () => boolean | Promise<boolean>, seconds = 60): Promise<void> {
  for (let t = 0; t < seconds * 20; t++) {
    if (await ok()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}
