/**
 * Copies passage records from a data folder's SQLite database into PostgreSQL, inside the caller's
 * transaction, and reads them back for verification before the caller commits. Two callers:
 * `npm run migrate` (server/copy-deployment.ts: a whole deployment into PostgreSQL) and a
 * coordinator with `--database` starting on a data folder from before the records moved into
 * PostgreSQL (`moveLegacyPassageRecords`).
 *
 * Ids are kept (clients and LanceDB rows name passages by id) and the id sequence continues after
 * the source's high-water mark (SQLite's AUTOINCREMENT counter: withdrawn ids are never reused).
 * Contributors keep their order (a withdrawal credits the earliest remaining one).
 */
import { createHash } from 'node:crypto';
import { renameSync, rmSync } from 'node:fs';
import Database from 'better-sqlite3';
import type pg from 'pg';
import type { Db } from './db';
import { digestRows, type TableDigest } from './deployment-tables';

/** Rows per bulk statement (unnest arrays). */
const CHUNK = 1000;

export type PassageTable = 'passages' | 'passage_contributors' | 'passage_checks' | 'passage_embeddings';

interface SourcePassage {
  id: number;
  session_id: string;
  client_id: string;
  hash: string;
  title: string;
  text: string;
  embedding: Buffer;
  created_at: string;
}

/**
 * The embedding a copied record gets: the source's bytes, nothing (the vector goes to LanceDB), or
 * bytes fetched elsewhere (a source whose vectors are in LanceDB). Called per chunk of records.
 */
export type EmbeddingsFor = (rows: ReadonlyArray<{ id: number; session_id: string; embedding: Buffer }>) => Promise<Buffer[]>;

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/**
 * Inserts the source's passage records, contributors and embedding-check history on `c` (in its
 * transaction; the caller commits). `onChunk` sees each chunk of records as read (their embeddings
 * as stored in PostgreSQL), e.g. to write vectors elsewhere. Returns the digests of what it inserted.
 */
export async function copyPassageRecords(
  c: pg.ClientBase,
  source: Db,
  embeddingsFor: EmbeddingsFor,
  onChunk?: (rows: readonly SourcePassage[]) => Promise<void>,
): Promise<Record<PassageTable, TableDigest>> {
  const embeddingRows: Array<[number, string]> = [];
  let last = -Infinity;
  const page = source.prepare('SELECT id, session_id, client_id, hash, title, text, embedding, created_at FROM passages WHERE id > ? ORDER BY id LIMIT ?');
  for (;;) {
    const rows = page.all(last === -Infinity ? -1 : last, CHUNK) as SourcePassage[];
    if (rows.length === 0) break;
    last = rows[rows.length - 1].id;
    const embeddings = await embeddingsFor(rows);
    await c.query(
      `INSERT INTO passages (id, session_id, client_id, hash, title, text, embedding, created_at)
       SELECT * FROM unnest($1::int8[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bytea[], $8::text[])`,
      [
        rows.map((r) => r.id),
        rows.map((r) => r.session_id),
        rows.map((r) => r.client_id),
        rows.map((r) => r.hash),
        rows.map((r) => r.title),
        rows.map((r) => r.text),
        embeddings,
        rows.map((r) => r.created_at),
      ],
    );
    for (const [i, r] of rows.entries()) embeddingRows.push([r.id, sha(embeddings[i])]);
    await onChunk?.(rows);
  }
  let contributors: Array<{ passage_id: number; client_id: string }> = [];
  const flush = async () => {
    if (contributors.length === 0) return;
    // ORDER BY ord: the identity seq follows the source's rowid order.
    await c.query(
      'INSERT INTO passage_contributors (passage_id, client_id) SELECT p, cl FROM unnest($1::int8[], $2::text[]) WITH ORDINALITY AS u(p, cl, ord) ORDER BY ord',
      [contributors.map((r) => r.passage_id), contributors.map((r) => r.client_id)],
    );
    contributors = [];
  };
  for (const r of source.prepare('SELECT passage_id, client_id FROM passage_contributors ORDER BY rowid').iterate() as Iterable<{
    passage_id: number;
    client_id: string;
  }>) {
    contributors.push(r);
    if (contributors.length === CHUNK) await flush();
  }
  await flush();
  const checks = hasTable(source, 'passage_checks')
    ? (source.prepare('SELECT session_id, client_id, batches, mismatches FROM passage_checks').all() as Array<{
        session_id: string;
        client_id: string;
        batches: number;
        mismatches: number;
      }>)
    : [];
  for (let i = 0; i < checks.length; i += CHUNK) {
    const chunk = checks.slice(i, i + CHUNK);
    await c.query(
      'INSERT INTO passage_checks (session_id, client_id, batches, mismatches) SELECT * FROM unnest($1::text[], $2::text[], $3::int4[], $4::int4[])',
      [chunk.map((r) => r.session_id), chunk.map((r) => r.client_id), chunk.map((r) => r.batches), chunk.map((r) => r.mismatches)],
    );
  }
  // Ids continue after the source's high-water mark (AUTOINCREMENT's, which withdrawn ids moved).
  const seq = hasTable(source, 'sqlite_sequence')
    ? ((source.prepare("SELECT seq FROM sqlite_sequence WHERE name = 'passages'").get() as { seq: number } | undefined)?.seq ?? 0)
    : 0;
  await c.query("SELECT setval('passages_id_seq', GREATEST($1::int8, (SELECT COALESCE(MAX(id), 0) FROM passages), 1))", [seq]);
  return {
    ...sqlitePassageDigests(source),
    passage_embeddings: digestRows(embeddingRows),
  };
}

function hasTable(db: Db, name: string): boolean {
  return db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(name) !== undefined;
}

const PASSAGE_COLUMNS = 'id, session_id, client_id, hash, title, text, created_at';

/** The digests of an SQLite database's passage records (embeddings aside): ids, contributors in order, check history. */
export function sqlitePassageDigests(db: Db): Record<Exclude<PassageTable, 'passage_embeddings'>, TableDigest> {
  const rows = (sql: string) => db.prepare(sql).raw().iterate() as Iterable<unknown[]>;
  return {
    passages: digestRows(rows(`SELECT ${PASSAGE_COLUMNS} FROM passages ORDER BY id`)),
    passage_contributors: digestRows(rows('SELECT passage_id, client_id FROM passage_contributors ORDER BY passage_id, rowid')),
    // Text ordered by code unit, as PostgreSQL's COLLATE "C" below.
    passage_checks: hasTable(db, 'passage_checks')
      ? digestRows(rows('SELECT session_id, client_id, batches, mismatches FROM passage_checks ORDER BY session_id, client_id'))
      : digestRows([]),
  };
}

/** The same digests read from PostgreSQL (on `c`: inside the copy's transaction), and (id, SHA-256) of every stored embedding. */
export async function postgresPassageDigests(c: pg.ClientBase, sessionIds?: readonly string[]): Promise<Record<PassageTable, TableDigest>> {
  const filter = sessionIds ? 'WHERE session_id = ANY($1::text[])' : '';
  const params = sessionIds ? [sessionIds] : [];
  const rows = async (sql: string) => (await c.query({ text: sql, values: params, rowMode: 'array' })).rows as unknown[][];
  // int8 comes back as text: numbers, as SQLite gives them.
  const num = (r: unknown[], ...at: number[]) => r.map((v, i) => (at.includes(i) ? Number(v) : v));
  return {
    passages: digestRows((await rows(`SELECT ${PASSAGE_COLUMNS} FROM passages ${filter} ORDER BY id`)).map((r) => num(r, 0))),
    passage_contributors: digestRows(
      (
        await rows(
          `SELECT c.passage_id, c.client_id FROM passage_contributors c JOIN passages p ON p.id = c.passage_id ${filter.replace('session_id', 'p.session_id')} ORDER BY c.passage_id, c.seq`,
        )
      ).map((r) => num(r, 0)),
    ),
    passage_checks: digestRows(
      await rows(`SELECT session_id, client_id, batches, mismatches FROM passage_checks ${filter} ORDER BY session_id COLLATE "C", client_id COLLATE "C"`),
    ),
    passage_embeddings: digestRows((await rows(`SELECT id, encode(sha256(embedding), 'hex') FROM passages ${filter} ORDER BY id`)).map((r) => num(r, 0))),
  };
}

/** Throws when two digests differ, naming what. */
export function compareDigests(what: string, want: TableDigest, got: TableDigest): void {
  if (want.rows !== got.rows || want.sha256 !== got.sha256) {
    throw new Error(
      `verification failed: ${what}: source ${want.rows} rows (sha256 ${want.sha256.slice(0, 12)}…), copy ${got.rows} rows (sha256 ${got.sha256.slice(0, 12)}…)`,
    );
  }
}

/**
 * A data folder from before the passage records moved into PostgreSQL (PostgreSQL state, records in
 * its SQLite file): the records go into PostgreSQL in one transaction (embeddings as they are: in
 * the records, or empty when LanceDB holds them), verified (counts and SHA-256 read back before
 * COMMIT), then the SQLite file is renamed `coordinator.sqlite.moved-to-postgresql` (kept, not
 * deleted). Processes starting together: an advisory lock, and whoever comes second finds the
 * records there (a crash between COMMIT and the rename, too) and only renames.
 */
export async function moveLegacyPassageRecords(pool: pg.Pool, path: string, log: (line: string) => void): Promise<void> {
  const c = await pool.connect();
  try {
    await c.query('BEGIN');
    await c.query("SELECT pg_advisory_xact_lock(hashtextextended('corag legacy passage records', 0))");
    let source: Db;
    try {
      // Checkpointed first, so that the renamed file alone holds everything.
      const rw = new Database(path, { fileMustExist: true });
      rw.pragma('wal_checkpoint(TRUNCATE)');
      rw.close();
      source = new Database(path, { readonly: true, fileMustExist: true });
    } catch {
      await c.query('ROLLBACK');
      return; // another process moved and renamed it meanwhile
    }
    try {
      const first = source.prepare('SELECT id FROM passages ORDER BY id LIMIT 1').get() as { id: number } | undefined;
      const done =
        ((first === undefined ? await c.query('SELECT 1 FROM passage_checks LIMIT 1') : await c.query('SELECT 1 FROM passages WHERE id = $1', [first.id]))
          .rowCount ?? 0) > 0;
      if (!done) {
        const want = await copyPassageRecords(c, source, async (rows) => rows.map((r) => r.embedding));
        const got = await postgresPassageDigests(c);
        for (const t of Object.keys(want) as PassageTable[]) compareDigests(`moving the passage records into PostgreSQL: ${t}`, want[t], got[t]);
        await c.query('COMMIT');
        log(`passage records: moved ${want.passages.rows} passages (${want.passage_contributors.rows} contributions) from ${path} into PostgreSQL (verified)`);
      } else await c.query('COMMIT');
    } finally {
      source.close();
    }
  } catch (e) {
    await c.query('ROLLBACK').catch(() => undefined);
    throw new Error(`moving the passage records of ${path} into PostgreSQL failed, nothing was changed: ${(e as Error).message}`, { cause: e });
  } finally {
    c.release();
  }
  // Committed (here or by another process): the file is kept under another name, never read again.
  try {
    renameSync(path, `${path}.moved-to-postgresql`);
  } catch (e) {
    // Another process starting beside this one renamed it after its COMMIT.
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  for (const suffix of ['-wal', '-shm']) rmSync(`${path}${suffix}`, { force: true });
}
