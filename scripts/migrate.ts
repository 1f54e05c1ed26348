/**
 * `npm run migrate -- --from <data dir> --to <new data dir> --database postgres://… [--passage-store <dir | s3://… | pgvector>]
 * [--from-passage-store <dir | s3://…>]`: copies an SQLite deployment into PostgreSQL (+ LanceDB) and a
 * new data folder, verified, all or nothing (server/copy-deployment.ts; docs/DEPLOY.md "5. Moving an embedded deployment to PostgreSQL").
 * Exit status: 0 copied, 2 refused before writing anything, 1 failed and undone.
 * `npm run migrate -- --blobs-into-database --data-dir <dir> --database postgres://…`: puts a PostgreSQL
 * deployment's files into its database blob store in place (server/blobs-into-database.ts).
 */
import { parseArgs } from 'node:util';
import pg from 'pg';
import { parseBlobStoreKind } from '../server/blob-store';
import { putFolderBlobsIntoDatabase } from '../server/blobs-into-database';
import { copyDeployment, CopyRefused } from '../server/copy-deployment';
import { parsePassageStoreLocation } from '../server/lance-passages';
import { parseDatabaseUrl, redactUrl } from '../server/pg-state';
import { isPgvectorStore, missingPgvector, pgvectorAvailability, PGVECTOR_STORE } from '../server/pgvector-passages';

const HELP = `Usage: npm run migrate -- --from <data dir> --to <new data dir> --database <postgres://…>
         [--passage-store <dir | s3://bucket/prefix>] [--from-passage-store <dir | s3://bucket/prefix>]
         [--blob-store folder | database]

Copies a deployment whose state is in its data folder (SQLite state, passage records, model and
sum files) into PostgreSQL (state and passage records), a new data folder (files) and, with
--passage-store, a new LanceDB passage store (vectors). Stop the coordinator on --from first.
The source is only read: it stays a working deployment.

  --from <dir>            the deployment's data folder
  --to <dir>              the new deployment's data folder (absent or empty); model, sum and
                          delta files are hard-linked into it (copied across file systems)
  --database <url>        a PostgreSQL database holding no sessions [CORAG_DATABASE_URL]
  --passage-store <loc>   put the passage vectors into a new LanceDB store there; without it the
                          embeddings go into the PostgreSQL passage records (exact search)
  --passage-store pgvector
                          the new deployment keeps its vectors in PostgreSQL with pgvector: the
                          embeddings are copied into the PostgreSQL records and its first start
                          (with --passage-store pgvector) moves them into pgvector; refused when
                          the database's server has no pgvector
  --from-passage-store <loc>
                          the LanceDB store --from ran with (its --passage-store), where its
                          embeddings are; read only (required when --from used one)
  --blob-store database   also put the model versions and the open rounds' sums and deltas
                          into PostgreSQL (in the same transaction, verified), for running the
                          new deployment with --blob-store database (coordinators on several
                          hosts without a shared data folder) [CORAG_BLOB_STORE] (default folder)
  -h, --help              show this help

Refused (nothing written) when the database already holds any session, when the passage store
already holds these sessions' tables, or when --to is not empty. Any failure undoes everything.

       npm run migrate -- --blobs-into-database --data-dir <dir> --database <postgres://…>

Puts the model versions and the open rounds' sums and deltas of a deployment already in PostgreSQL
(run with the default --blob-store folder) into that database, each verified; run it again if it
is interrupted. Stop every coordinator process first, then start them all with
--blob-store database (each may then have its own data folder). The data folder is only read.
`;

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      from: { type: 'string' },
      to: { type: 'string' },
      database: { type: 'string' },
      'passage-store': { type: 'string' },
      'from-passage-store': { type: 'string' },
      'blob-store': { type: 'string' },
      'blobs-into-database': { type: 'boolean', default: false },
      'data-dir': { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const databaseRaw = values.database ?? process.env.CORAG_DATABASE_URL;
  if (values['blobs-into-database']) {
    if (!values['data-dir'] || databaseRaw === undefined)
      throw new CopyRefused('--blobs-into-database needs --data-dir and --database (npm run migrate -- --help)');
    const database = parseDatabaseUrl(databaseRaw);
    await putFolderBlobsIntoDatabase({ dataDir: values['data-dir'], database, log: (line) => process.stderr.write(`migrate: ${line}\n`) });
    process.stdout.write(`Done. Start every coordinator process with --blob-store database (and --database '${redactUrl(database)}').\n`);
    return 0;
  }
  if (!values.from || !values.to || databaseRaw === undefined) throw new CopyRefused('--from, --to and --database are required (npm run migrate -- --help)');
  const database = parseDatabaseUrl(databaseRaw);
  const pgvector = values['passage-store'] !== undefined && isPgvectorStore(values['passage-store']);
  const passageStore = values['passage-store'] === undefined || pgvector ? undefined : parsePassageStoreLocation(values['passage-store']);
  if (pgvector) {
    // Refused before anything is written: a copy the new deployment could not start on is no use.
    const client = new pg.Client({ connectionString: database });
    try {
      await client.connect();
      const found = await pgvectorAvailability(client);
      if (!found.available) throw new CopyRefused(missingPgvector(database, found.server).message);
    } finally {
      await client.end().catch(() => undefined);
    }
  }
  const fromPassageStore = values['from-passage-store'] === undefined ? undefined : parsePassageStoreLocation(values['from-passage-store']);
  const blobStoreRaw = values['blob-store'] ?? process.env.CORAG_BLOB_STORE;
  const blobStore = blobStoreRaw === undefined ? 'folder' : parseBlobStoreKind(blobStoreRaw);
  const abort = new AbortController();
  // Ctrl-C stops at the next step and undoes what was written.
  process.once('SIGINT', () => {
    process.stderr.write('migrate: interrupted; undoing…\n');
    abort.abort();
  });
  const report = await copyDeployment({
    from: values.from,
    to: values.to,
    database,
    ...(passageStore ? { passageStore } : {}),
    ...(fromPassageStore ? { fromPassageStore } : {}),
    blobStore,
    log: (line) => process.stderr.write(`migrate: ${line}\n`),
    signal: abort.signal,
  });
  process.stdout.write(
    `Copied ${report.sessions.length} session${report.sessions.length === 1 ? '' : 's'} in ${report.seconds.toFixed(1)} s. Start the new deployment with:\n  npm start -- --data-dir ${values.to} --database '${redactUrl(database)}'${passageStore ? ` --passage-store ${passageStore}` : pgvector ? ` --passage-store ${PGVECTOR_STORE}` : ''}${blobStore === 'database' ? ' --blob-store database' : ''}\n${pgvector ? '(its first start moves the embeddings from the PostgreSQL records into pgvector)\n' : ''}(the old one still starts with --data-dir ${values.from}; docs/DEPLOY.md says how to roll back)\n`,
  );
  return 0;
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`migrate: ${(e as Error).message}\n`);
    process.exit(e instanceof CopyRefused || (e as Error).message.startsWith('--') ? 2 : 1);
  },
);
