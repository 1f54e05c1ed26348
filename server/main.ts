/**
 * `npm start`: runs the coordinator. Creates the data folder and, when it holds no session yet, a
 * demo session; serves the built web app from dist/ when present, else a status page; prints the
 * URL to open. Several instances can run side by side with different PORT / CORAG_DATA_DIR.
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { renderUnicodeCompact } from 'uqr';
import { coordinatorBase } from '../src/federated/failover';
import { lanUrls } from '../src/platform/node/lan-urls';
import { chooseServerKey } from './server-key';
import { buildApp, DEFAULT_LIMITS } from './app';
import { LANCE_DEFAULTS, parsePassageStoreLocation } from './lance-passages';
import { DEFAULT_PRESENCE_TTL_MS } from './pg-presence';
import { parseBlobStoreKind } from './blob-store';
import { parseDatabaseUrl, redactUrl } from './pg-state';
import { describePgvector, isPgvectorStore, PGVECTOR_DEFAULTS, PGVECTOR_STORE } from './pgvector-passages';
import { checkpointFromSpec, createDemoSession, hasCoordinatorPassages, seedDemoPassages, type DemoCheckpoints } from './demo';

const HELP = `Usage: npm start -- [options]

Runs the CoRAG coordinator (FedAvg rounds + collaborative passage store).

Options (environment variable in brackets):
  --port <n>            port to listen on; 0 picks a free one [PORT] (default 8787)
  --host <addr>         address to bind [HOST] (default 127.0.0.1; 0.0.0.0 for a LAN)
  --data-dir <path>     data folder: SQLite database, model versions, running sums
                        [CORAG_DATA_DIR] (default ./data)
  --passage-store <dir | s3://bucket/prefix>
                        keep the passage embeddings in LanceDB there (a local folder, created
                        if absent, or S3 with the usual AWS_* credentials) and index a session's
                        store (IVF-PQ) once it passes ${LANCE_DEFAULTS.indexAbove.toLocaleString('en')} passages
                        [CORAG_PASSAGE_STORE] (default: in the passage records, searched
                        exactly); docs/DEPLOY.md
  --passage-store pgvector
                        with --database: keep the passage vectors in PostgreSQL beside their
                        records (needs the pgvector extension on that server; the start-up log
                        says whether it has it) and index a session (HNSW) once it passes
                        ${PGVECTOR_DEFAULTS.indexAbove.toLocaleString('en')} passages. A folder named pgvector: ./pgvector
  --database <postgres://user:password@host:port/database>
                        keep the coordinator state (sessions, clients, rounds, updates, model
                        versions) and the passage records in PostgreSQL [CORAG_DATABASE_URL]
                        (default: in the data folder's SQLite database); docs/DEPLOY.md
  --blob-store <folder | database>
                        where model versions, partial sums and deltas are shared
                        [CORAG_BLOB_STORE] (default folder: the data folder, which several
                        processes must then share). database (needs --database): in
                        PostgreSQL, so coordinators on different hosts share nothing else; the
                        data folder is then each process's own cache; docs/DEPLOY.md §6
  --peer-url <url>      another coordinator process serving the same sessions (same
                        --database and passage store, and the same data folder unless
                        --blob-store database); repeat it, or give a
                        comma-separated list [CORAG_PEER_URLS]. Advertised to clients at
                        /api/peers (tabs fail over to them) and allowed to call this API from
                        their pages (CORS); docs/DEPLOY.md §6
  --presence-ttl <s>    with --database: how long a process's online clients stay counted
                        after it stops refreshing them (it died); refreshed every third of
                        it (default ${DEFAULT_PRESENCE_TTL_MS / 1000})
  --static-dir <path>   built web app to serve at / (default ./dist; a status page when absent)
  --server-key <key>    require this bearer key to create sessions [CORAG_SERVER_KEY]; when
                        --host is not a loopback address and no key is given, one is generated
                        into <data-dir>/server-key.txt (mode 0600) and session creation needs it
  --no-demo             do not create the demo session in an empty data folder, and offer no
                        session on the join page (every participant then needs a join code)
  --reader <model>      the demo session's reader checkpoint: a Hugging Face hub id (e.g.
                        google/flan-t5-base), an http(s) URL base, or a folder inside public/
                        [CORAG_READER] (default: public/models/demo/reader, else tiny random)
  --retriever <model>   the matching Contriever checkpoint (e.g. facebook/contriever-msmarco)
                        [CORAG_RETRIEVER]; give both or neither
  --max-update-mb <n>   largest weight-delta upload (default ${DEFAULT_LIMITS.maxUpdateBytes / 2 ** 20})
  --max-uploads <n>     uploads received at once, all clients together, before 429; each
                        client or admin has one in flight at most (default ${DEFAULT_LIMITS.maxConcurrentUploads})
  --body-timeout <s>    cut off a request body (upload or JSON) that sends nothing for this
                        long, 408 (default ${DEFAULT_LIMITS.bodyIdleTimeoutMs / 1000})
  --min-upload-kbps <n> slowest average upload rate in KiB/s once a body has run longer
                        than --body-timeout, 408 below it (default ${DEFAULT_LIMITS.minUploadBytesPerSecond / 1024})
  --rate-limit <n>      requests per minute per verified token; callers without a valid
                        token share their IP address's bucket (IPv6: its /64)
                        (default ${DEFAULT_LIMITS.rateLimitPerMinute})
  --join-limit <n>      joins per minute per IP address (IPv6: per /64)
                        (default ${DEFAULT_LIMITS.joinsPerMinutePerIp})
  --log                 log every request (JSON lines; tokens are redacted)
  -h, --help            show this help
`;

/** `--peer-url` values (each may be a comma-separated list): coordinator base URLs, checked, without duplicates. */
function parsePeerUrls(values: readonly string[]): string[] {
  const urls = values
    .flatMap((v) => v.split(','))
    .map((u) => u.trim())
    .filter((u) => u !== '');
  return [...new Set(urls.map((u) => coordinatorBase(u)))];
}

function demoCheckpoints(readerSpec: string, retrieverSpec: string): DemoCheckpoints {
  const reader = checkpointFromSpec(readerSpec);
  const retriever = checkpointFromSpec(retrieverSpec);
  return { reader: reader.source, retriever: retriever.source, readerId: reader.id, retrieverId: retriever.id };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      port: { type: 'string' },
      host: { type: 'string' },
      'data-dir': { type: 'string' },
      'static-dir': { type: 'string' },
      'passage-store': { type: 'string' },
      database: { type: 'string' },
      'blob-store': { type: 'string' },
      'peer-url': { type: 'string', multiple: true },
      'presence-ttl': { type: 'string' },
      'server-key': { type: 'string' },
      'no-demo': { type: 'boolean', default: false },
      reader: { type: 'string' },
      retriever: { type: 'string' },
      'max-update-mb': { type: 'string' },
      'max-uploads': { type: 'string' },
      'rate-limit': { type: 'string' },
      'body-timeout': { type: 'string' },
      'min-upload-kbps': { type: 'string' },
      'join-limit': { type: 'string' },
      log: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(HELP);
    return;
  }
  const number = (flag: string, raw: string | undefined): number | undefined => {
    if (raw === undefined) return undefined;
    const n = Number(raw);
    if (!Number.isFinite(n) || n < 0) throw new Error(`--${flag} must be a non-negative number, got "${raw}"`);
    return n;
  };
  const port = number('port', values.port ?? process.env.PORT) ?? 8787;
  const host = values.host ?? process.env.HOST ?? '127.0.0.1';
  const dataDir = resolve(values['data-dir'] ?? process.env.CORAG_DATA_DIR ?? 'data');
  const maxUpdateMb = number('max-update-mb', values['max-update-mb']);
  const readerSpec = values.reader ?? process.env.CORAG_READER;
  const retrieverSpec = values.retriever ?? process.env.CORAG_RETRIEVER;
  if (!readerSpec !== !retrieverSpec) throw new Error('--reader and --retriever go together: give both checkpoints or neither');
  const checkpoints = readerSpec && retrieverSpec ? demoCheckpoints(readerSpec, retrieverSpec) : undefined;
  const passageStoreRaw = values['passage-store'] ?? process.env.CORAG_PASSAGE_STORE;
  const pgvector = passageStoreRaw !== undefined && isPgvectorStore(passageStoreRaw);
  const passageStore = passageStoreRaw === undefined || pgvector ? undefined : parsePassageStoreLocation(passageStoreRaw);
  const databaseRaw = values.database ?? process.env.CORAG_DATABASE_URL;
  const database = databaseRaw === undefined ? undefined : parseDatabaseUrl(databaseRaw);
  if (pgvector && !database)
    throw new Error(
      `--passage-store ${PGVECTOR_STORE} keeps the vectors in PostgreSQL: give --database (for a folder named ${PGVECTOR_STORE}: ./${PGVECTOR_STORE})`,
    );
  const blobStoreRaw = values['blob-store'] ?? process.env.CORAG_BLOB_STORE;
  const blobStore = blobStoreRaw === undefined ? 'folder' : parseBlobStoreKind(blobStoreRaw);
  if (blobStore === 'database' && !database) throw new Error('--blob-store database needs --database (PostgreSQL): the blobs go into that database');
  const presenceTtl = number('presence-ttl', values['presence-ttl']);
  if (presenceTtl !== undefined && presenceTtl < 1) throw new Error('--presence-ttl must be at least 1 second');
  const peerUrls = parsePeerUrls(values['peer-url'] ?? (process.env.CORAG_PEER_URLS ? [process.env.CORAG_PEER_URLS] : []));
  // Without a shared state a peer would be a different coordinator: its tokens, sessions and rounds are not these.
  if (peerUrls.length > 0 && !database) throw new Error('--peer-url needs --database (PostgreSQL): peers must share the state');
  mkdirSync(dataDir, { recursive: true });
  const bodyTimeout = number('body-timeout', values['body-timeout']);
  if (bodyTimeout === 0) throw new Error('--body-timeout must be above 0 seconds');
  const minUploadKbps = number('min-upload-kbps', values['min-upload-kbps']);
  // Beyond loopback anyone on the network could create sessions: require a key (generated if none).
  const serverKey = chooseServerKey(dataDir, host, values['server-key'] ?? process.env.CORAG_SERVER_KEY);

  // Set once listening (a port of 0 picks one): the addresses other devices can open.
  let networkUrls: string[] = [];
  let demo: { id: string; joinCode: string } | undefined;
  // The demo session's admin token is shown once; the owner keeps a copy only they can read here.
  const tokenFile = resolve(dataDir, 'demo-admin-token.txt');
  const { app, coordinator } = await buildApp({
    networkUrls: () => networkUrls,
    // The demo session is open to whoever opens the app (its join page offers it); with
    // --no-demo no session is offered.
    publicSession: () => (values['no-demo'] ? undefined : demo?.id),
    peerUrls,
    presenceTtlMs: presenceTtl === undefined ? undefined : presenceTtl * 1000,
    dataDir,
    ...(database ? { database, blobStore } : {}),
    ...(passageStore ? { passageStore: { uri: passageStore, log: (line: string) => process.stdout.write(`${line}\n`) } } : {}),
    ...(pgvector ? { pgvector: { log: (line: string) => process.stdout.write(`${line}\n`) } } : {}),
    serverKey: serverKey.key,
    staticDir: resolve(values['static-dir'] ?? 'dist'),
    maxUpdateBytes: maxUpdateMb === undefined ? undefined : Math.floor(maxUpdateMb * 2 ** 20),
    maxConcurrentUploads: number('max-uploads', values['max-uploads']),
    rateLimitPerMinute: number('rate-limit', values['rate-limit']),
    joinsPerMinutePerIp: number('join-limit', values['join-limit']),
    bodyIdleTimeoutMs: bodyTimeout === undefined ? undefined : bodyTimeout * 1000,
    minUploadBytesPerSecond: minUploadKbps === undefined ? undefined : minUploadKbps * 1024,
    logger: values.log,
  });

  const sessionIds = await coordinator.sessionIds();
  if (!values['no-demo'] && sessionIds.length === 0) {
    const created = await createDemoSession(coordinator, checkpoints, { log: (line) => process.stdout.write(`${line}\n`) });
    if (!existsSync(tokenFile)) writeFileSync(tokenFile, `${created.adminToken}\n`, { mode: 0o600 });
    demo = { id: created.session.id, joinCode: created.joinCode };
    process.stdout.write(`Demo session ${created.session.id} created; admin token in ${tokenFile}\n`);
  } else if (sessionIds.length > 0) {
    const id = sessionIds[0];
    demo = { id, joinCode: await coordinator.joinCode(id) };
    // A demo store whose seeding a crash interrupted is completed (nothing happens when it is whole).
    if (await hasCoordinatorPassages(coordinator, id)) await seedDemoPassages(coordinator, id, (line) => process.stdout.write(`${line}\n`));
  }

  const address = await app.listen({ port, host });
  const url = address.replace('://0.0.0.0', '://localhost').replace('://[::]', '://localhost');
  networkUrls = lanUrls(host, Number(new URL(address).port));
  process.stdout.write(`CoRAG coordinator listening on ${url}\n`);
  const vectors = pgvector
    ? `vectors in PostgreSQL (pgvector; exact search, an HNSW index per session past ${PGVECTOR_DEFAULTS.indexAbove.toLocaleString('en')} passages)`
    : passageStore
      ? `${database ? 'vectors in ' : ''}LanceDB at ${passageStore}`
      : database
        ? 'embeddings in the records (exact search)'
        : 'in the data folder (SQLite, exact search)';
  process.stdout.write(
    `  data folder: ${dataDir}${blobStore === 'database' ? ' (a cache: model versions, sums and deltas are in PostgreSQL)' : ''}\n  state:       ${database ? `PostgreSQL at ${redactUrl(database)} (this process: node ${coordinator.node})` : 'in the data folder (SQLite)'}\n  passages:    ${database ? 'records in PostgreSQL, ' : ''}${vectors}\n`,
  );
  // Detected at every start with PostgreSQL, so an operator learns the store is there to choose.
  if (database) {
    const line = await describePgvector(database, pgvector).catch((e: unknown) => `not checked (${(e as Error).message})`);
    process.stdout.write(`  pgvector:    ${line}\n`);
  }
  process.stdout.write(`  API docs:    ${url}/api/openapi.json\n`);
  if (peerUrls.length) process.stdout.write(`  peers:       ${peerUrls.join(', ')} (clients fail over to them)\n`);
  if (demo) process.stdout.write(`  join link:   ${url}/?join=${demo.joinCode}   (session ${demo.id})\n`);
  if (demo && networkUrls.length) {
    // For a classroom: the link other devices use, and its QR code for phones.
    const lanJoin = `${networkUrls[0]}/?join=${demo.joinCode}`;
    for (const base of networkUrls) process.stdout.write(`  on the LAN:  ${base}/?join=${demo.joinCode}\n`);
    process.stdout.write(`${renderUnicodeCompact(lanJoin, { ecc: 'M', border: 2 })}\n`);
  } else if (demo) {
    process.stdout.write('  (only this computer can connect; `npm start -- --host 0.0.0.0` lets phones and other computers on the network join)\n');
  }
  if (serverKey.file) {
    process.stdout.write(
      `  server key:  ${serverKey.generated ? 'generated into' : 'in'} ${serverKey.file} (creating a session needs it: Authorization: Bearer <key>)\n`,
    );
  } else if (serverKey.key) process.stdout.write('  server key:  the one configured (creating a session needs it)\n');
  if (demo && existsSync(tokenFile))
    process.stdout.write(`  admin token: in ${tokenFile} (paste it under Dashboard → Organiser controls to open and close rounds)\n`);
  process.stdout.write(`Open ${url} in a browser.\n`);

  const stop = () => void app.close().then(() => process.exit(0));
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

main().catch((e: unknown) => {
  process.stderr.write(`coordinator: ${(e as Error).message}\n`);
  process.exit(1);
});
