/**
 * Copies an SQLite deployment into PostgreSQL (+ LanceDB): `npm run migrate` (scripts/migrate.ts,
 * docs/DEPLOY.md "5. Moving an embedded deployment to PostgreSQL").
 *
 * Source: a data folder (`--from`) whose coordinator is stopped: its SQLite state (sessions and
 * their token hashes, clients, model version records, rounds, accepted updates with their metrics,
 * training questions), its passage records and embeddings (in the SQLite records, or in the
 * LanceDB store it ran with: `--from-passage-store`), its files (model versions, running sums,
 * delta files, the server key). Target: a PostgreSQL database holding none of the sessions (state
 * AND passage records), a NEW data folder (`--to`, files only) and, with `--passage-store`, a new
 * LanceDB store for the vectors (else the embeddings stay in the PostgreSQL records). The source is
 * only read: it stays a working deployment, which is the way back.
 *
 * All or nothing. The state rows and the passage records go into PostgreSQL in ONE transaction,
 * which is verified (every table read back inside it: row counts and a canonical SHA-256 per table,
 * server/deployment-tables.ts, server/passage-records-copy.ts) and committed last. Everything before
 * the commit is undone on failure: the new data folder is built under `<to>.partial` (removed),
 * LanceDB tables are created only for the copied sessions (dropped), and a schema this run created
 * in an empty database is dropped again. The new folder
 * gets its name just before the commit; a crash in between leaves `--to` beside a PostgreSQL that
 * holds nothing, and the next run says to remove it. Model and sum files are immutable once written
 * (written to a temp name, then renamed), so they are hard-linked when both folders share a file
 * system and copied otherwise; either way every file is checked (same inode, or same SHA-256).
 * With `blobStore: 'database'` (`--blob-store database`) the model versions and the open rounds'
 * sums and deltas also go into the database blob store (server/pg-blob-store.ts) in the same
 * transaction, each read back chunk by chunk (SHA-256 computed by PostgreSQL) before the commit.
 */
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, linkSync, lstatSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { dirname, join, resolve, sep } from 'node:path';
import type { Connection, Table } from '@lancedb/lancedb';
import Database from 'better-sqlite3';
import pg from 'pg';
import { createStrategy } from '../src/federated/strategy';
import type { SessionConfig } from '../src/federated/protocol';
import { SQLITE_SCHEMA_VERSION, type Db } from './db';
import { describeRow, digestTable, PG_ARRAY_TYPE, rowValues, STATE_TABLES, type Row, type TableDigest, type TableSpec } from './deployment-tables';
import { allTableNames, loadLance, scanVectors, vectorDim, vectorRows, vectorSchema, vectorTableName } from './lance-vectors';
import { compareDigests, copyPassageRecords, postgresPassageDigests, sqlitePassageDigests, type PassageTable } from './passage-records-copy';
import type { BlobStoreKind } from './blob-store';
import { verifyBlob, writeBlob } from './pg-blob-store';
import { PostgresState, redactUrl } from './pg-state';

export interface CopyDeploymentOptions {
  /** The embedded deployment's data folder (its coordinator stopped). */
  readonly from: string;
  /** The new deployment's data folder: absent or empty. */
  readonly to: string;
  /** postgres://… of a database holding no sessions (an empty one gets the schema). */
  readonly database: string;
  /** A new LanceDB location (parsePassageStoreLocation) for the vectors; absent: the embeddings go into the PostgreSQL records. */
  readonly passageStore?: string;
  /** The LanceDB store the source ran with (`--passage-store` there), where its embeddings are; needed when its records hold none. */
  readonly fromPassageStore?: string;
  /** Progress lines. */
  readonly log?: (line: string) => void;
  /** Stops the copy at the next step (undoing it), e.g. on Ctrl-C. */
  readonly signal?: AbortSignal;
  /** Embeddings per session compared bit for bit after the copy (default 64). */
  readonly sampleEmbeddings?: number;
  /**
   * `database`: the model versions and the open rounds' sums and deltas also go into the database
   * blob store (server/pg-blob-store.ts), in the copy's transaction, for `--blob-store database`;
   * default `folder`: the new data folder only.
   */
  readonly blobStore?: BlobStoreKind;
}

export interface CopyReport {
  readonly sessions: readonly string[];
  readonly tables: Readonly<Record<TableSpec['name'] | PassageTable, TableDigest>>;
  readonly files: { readonly count: number; readonly bytes: number; readonly linked: number };
  /** Files also written into the database blob store (blobStore 'database'), verified chunk by chunk. */
  readonly blobs: number;
  /** Where the vectors went: LanceDB (`passageStore`) or the PostgreSQL records. */
  readonly passagesIn: 'lancedb' | 'postgresql';
  readonly embeddingsSampled: number;
  readonly seconds: number;
}

/** The data folder's own database files and scratch space: everything else in it is copied. */
const NOT_COPIED = new Set(['coordinator.sqlite', 'coordinator.sqlite-wal', 'coordinator.sqlite-shm', 'coordinator.sqlite-journal', 'tmp']);
const INSERT_CHUNK = 1000;

export async function copyDeployment(options: CopyDeploymentOptions): Promise<CopyReport> {
  const started = performance.now();
  const log = options.log ?? (() => undefined);
  const from = resolve(options.from);
  const to = resolve(options.to);
  const staging = `${to}.partial`;
  checkFolders(from, to, staging);
  const checkAbort = () => {
    if (options.signal?.aborted) throw new Error('interrupted');
  };

  if (options.fromPassageStore !== undefined && options.fromPassageStore === options.passageStore) {
    throw new CopyRefused(
      `--passage-store ${options.passageStore} is the store the source runs with (--from-passage-store): give a new store for the copy (the source's stays as it is: the way back)`,
    );
  }
  const source = openSource(from);
  const target = new PgTarget(options.database);
  let vectors: SourceVectors | undefined;
  const lanceTables: string[] = [];
  // A local store folder this run creates is removed whole on failure (LanceDB writes bookkeeping into it on connect).
  const createdStore = options.passageStore !== undefined && !/^s3:\/\//.test(options.passageStore) && !existsSync(options.passageStore);
  let renamed = false;
  try {
    // ---- 1. read the source (one read transaction: a consistent snapshot) and check it
    source.exec('BEGIN');
    const snapshot = readState(source);
    const sessionIds = snapshot.sessionIds;
    log(
      `source ${from}: ${sessionIds.length} session${sessionIds.length === 1 ? '' : 's'}, ${STATE_TABLES.map((t) => `${snapshot.rows.get(t.name)!.length} ${t.name}`).join(', ')}, ${countPassages(source)} passages`,
    );
    const files = listFiles(from);
    checkReferencedFiles(from, snapshot, files);
    const inLance = source.prepare('SELECT session_id FROM passages WHERE length(embedding) = 0 LIMIT 1').get() as { session_id: string } | undefined;
    if (inLance && options.fromPassageStore === undefined) {
      throw new CopyRefused(
        `--from ${from} ran with --passage-store: the embeddings of session ${inLance.session_id} (and maybe others) are in that LanceDB store, not in its database; name it with --from-passage-store <its folder or s3:// URI>`,
      );
    }
    if (options.fromPassageStore !== undefined) vectors = await SourceVectors.open(options.fromPassageStore, source);

    // ---- 2. PostgreSQL: schema, lock, refuse a database that holds sessions
    await target.open(log);
    const held = await target.heldSessions(sessionIds);
    if (held.ours.length > 0) {
      throw new CopyRefused(
        `PostgreSQL ${redactUrl(options.database)} already holds ${held.ours.length} of these ${sessionIds.length} sessions (e.g. ${held.ours[0]}): this deployment was copied there already. Nothing was written.`,
      );
    }
    if (held.others > 0) {
      throw new CopyRefused(
        `PostgreSQL ${redactUrl(options.database)} holds ${held.others} other session${held.others === 1 ? '' : 's'}: copy into a database no deployment uses (passage ids and data folders belong to one deployment). Nothing was written.`,
      );
    }
    if (options.passageStore) lanceTables.push(...(await checkLanceTarget(options.passageStore, source, sessionIds)));
    checkAbort();

    // ---- 3. the state rows, one session at a time, in the one transaction
    for (const [i, id] of sessionIds.entries()) {
      for (const table of STATE_TABLES) await target.insert(table, snapshot.bySession(table, id), id);
      log(`state: session ${id} (${i + 1}/${sessionIds.length}): ${STATE_TABLES.map((t) => `${snapshot.bySession(t, id).length} ${t.name}`).join(', ')}`);
      checkAbort();
    }

    // ---- 4. the new data folder (files only: no database), then the passage records into the
    // transaction and their vectors into LanceDB (or into the records)
    mkdirSync(staging, { recursive: true });
    const copied = copyFiles(from, staging, files, log, checkAbort);
    // The files the coordinator reads through its blob store (server/coordinator.ts: models, rounds).
    const blobFiles = options.blobStore === 'database' ? files.filter((f) => f.startsWith(`sessions${sep}`)) : [];
    for (const [i, rel] of blobFiles.entries()) {
      await target.putBlob(rel.split(sep).join('/'), join(staging, rel));
      if (i === blobFiles.length - 1) log(`blobs: ${blobFiles.length} files into the database blob store`);
      checkAbort();
    }
    const lanceTarget = options.passageStore ? await LanceTarget.open(options.passageStore, snapshot) : undefined;
    let passages: Record<PassageTable, TableDigest>;
    try {
      passages = await target.copyPassages(source, snapshot, vectors, lanceTarget, log);
    } finally {
      lanceTarget?.close();
    }
    checkAbort();

    // ---- 5. verify: PostgreSQL read back inside the transaction, the folder, the embeddings
    const tables = {} as Record<TableSpec['name'] | PassageTable, TableDigest>;
    for (const table of STATE_TABLES) {
      const want = digestTable(table, snapshot.rows.get(table.name)!);
      const got = digestTable(table, await target.readBack(table, sessionIds));
      compareDigests(`PostgreSQL table ${table.name}`, want, got);
      tables[table.name] = got;
    }
    const got = await target.passageDigests(sessionIds);
    for (const name of Object.keys(passages) as PassageTable[]) {
      compareDigests(`PostgreSQL table ${name}`, passages[name], got[name]);
      tables[name] = got[name];
    }
    const embeddingsSampled = await verifyEmbeddings(source, vectors, target, options.passageStore, sessionIds, options.sampleEmbeddings ?? 64);
    verifyFiles(from, staging, files);
    for (const rel of blobFiles) await target.verifyBlob(rel.split(sep).join('/'), join(from, rel));
    log(
      `verified: ${[...STATE_TABLES.map((t) => t.name), ...(Object.keys(passages) as PassageTable[])].map((n) => `${n} ${tables[n].rows}`).join(', ')} (counts and SHA-256 equal); ${copied.count} files (${copied.linked} hard-linked, the rest SHA-256 equal)${blobFiles.length ? `, ${blobFiles.length} of them in the database blob store (each chunk's SHA-256 equal)` : ''}; ${embeddingsSampled} embeddings bit-equal in ${options.passageStore ? 'LanceDB' : 'PostgreSQL'}`,
    );

    // ---- 6. the source must not have changed meanwhile (a coordinator still running on it)
    source.exec('COMMIT');
    const again = readState(source);
    for (const table of STATE_TABLES) {
      compareDigests(
        `the source's ${table.name} (changed during the copy: stop its coordinator and run again)`,
        tables[table.name],
        digestTable(table, again.rows.get(table.name)!),
      );
    }
    const sourceNow = sqlitePassageDigests(source);
    for (const name of ['passages', 'passage_contributors', 'passage_checks'] as const) {
      compareDigests(`the source's ${name} (changed during the copy: stop its coordinator and run again)`, tables[name], sourceNow[name]);
    }
    checkAbort();

    // ---- 7. name the folder, then commit: PostgreSQL never names sessions whose folder is missing
    renameSync(staging, to);
    renamed = true;
    await target.commit();
    log(
      `committed: ${sessionIds.length} sessions in PostgreSQL ${redactUrl(options.database)}, data folder ${to}${options.passageStore ? `, embeddings in ${options.passageStore}` : ''}`,
    );
    return {
      sessions: sessionIds,
      tables,
      files: copied,
      blobs: blobFiles.length,
      passagesIn: options.passageStore ? 'lancedb' : 'postgresql',
      embeddingsSampled,
      seconds: (performance.now() - started) / 1000,
    };
  } catch (e) {
    await target.rollback(log);
    if (createdStore) rmSync(options.passageStore!, { recursive: true, force: true });
    else if (options.passageStore && lanceTables.length > 0) await dropLanceTables(options.passageStore, lanceTables, log);
    rmSync(staging, { recursive: true, force: true });
    if (renamed) rmSync(to, { recursive: true, force: true });
    if (e instanceof CopyRefused) throw e;
    throw new Error(`${(e as Error).message}\nNothing was copied: PostgreSQL, the passage store and ${to} are as they were; the source is untouched.`, {
      cause: e,
    });
  } finally {
    if (source.inTransaction) source.exec('COMMIT');
    source.close();
    vectors?.close();
    await target.close();
  }
}

/** A refusal before anything was written (the message says so). */
export class CopyRefused extends Error {}

// ------------------------------------------------------------------ folders

function checkFolders(from: string, to: string, staging: string): void {
  if (!existsSync(join(from, 'coordinator.sqlite'))) throw new CopyRefused(`--from ${from} is not a coordinator data folder (no coordinator.sqlite)`);
  const inside = (a: string, b: string) => a === b || a.startsWith(b + sep);
  if (inside(to, from) || inside(from, to)) throw new CopyRefused(`--to ${to} must be a new folder outside --from ${from} (and not around it)`);
  if (existsSync(staging)) {
    throw new CopyRefused(`${staging} is left from an interrupted copy (PostgreSQL was not committed, so nothing refers to it): remove it and run again`);
  }
  if (existsSync(to) && (!statSync(to).isDirectory() || readdirSync(to).length > 0)) {
    throw new CopyRefused(`--to ${to} exists and is not an empty folder: give a new folder for the new deployment (the source folder stays as it is)`);
  }
}

/** The source database, read-only, at this coordinator's schema version. */
function openSource(from: string): Db {
  const db = new Database(join(from, 'coordinator.sqlite'), { readonly: true, fileMustExist: true });
  try {
    const hasVersions = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'").get() !== undefined;
    const version = hasVersions ? (db.prepare('SELECT COALESCE(MAX(version), 0) AS v FROM schema_migrations').get() as { v: number }).v : 0;
    if (version !== SQLITE_SCHEMA_VERSION) {
      throw new CopyRefused(
        `${from}: its database's schema is version ${version}, this coordinator's is ${SQLITE_SCHEMA_VERSION}: ${version < SQLITE_SCHEMA_VERSION ? 'start this coordinator on it once (it upgrades the schema), stop it, then copy' : 'copy it with the newer coordinator'}`,
      );
    }
    return db;
  } catch (e) {
    db.close();
    throw e;
  }
}

/** Every file under the data folder but its database and tmp/, relative; anything not a plain file or folder is refused. */
function listFiles(from: string): string[] {
  const out: string[] = [];
  const walk = (rel: string) => {
    for (const name of readdirSync(join(from, rel))) {
      const path = rel ? join(rel, name) : name;
      if (!rel && NOT_COPIED.has(name)) continue;
      const st = lstatSync(join(from, path));
      if (st.isDirectory()) walk(path);
      else if (st.isFile()) out.push(path);
      else throw new CopyRefused(`${join(from, path)} is neither a file nor a folder (a link?): a data folder holds only files the coordinator wrote`);
    }
  };
  walk('');
  return out.sort();
}

/** Every model version the state names, and the running state of each open round, must be a file in the folder. */
function checkReferencedFiles(from: string, snapshot: StateSnapshot, files: readonly string[]): void {
  const present = new Set(files);
  const need = (session: string, path: string, what: string) => {
    if (!present.has(path)) throw new Error(`session ${session}: ${what} names ${join(from, path)}, which is missing`);
  };
  for (const v of snapshot.rows.get('model_versions')!) {
    if (v.file !== `v${String(v.version)}.safetensors`)
      throw new Error(`model_versions row ${describeRow(STATE_TABLES[2], v)}: file "${String(v.file)}" is not v<version>.safetensors`);
    need(String(v.session_id), join('sessions', String(v.session_id), 'models', String(v.file)), `model version ${String(v.version)}`);
  }
  const configs = new Map(snapshot.rows.get('sessions')!.map((s) => [String(s.id), JSON.parse(String(s.config)) as SessionConfig]));
  for (const r of snapshot.rows.get('rounds')!) {
    if (r.state !== 'open' && r.state !== 'closing') continue;
    const session = String(r.session_id);
    const config = configs.get(session)!;
    const dir = join('sessions', session, 'rounds', String(r.number));
    if (createStrategy(config.strategy, config.strategyParams).storage === 'running-sum') {
      if (Number(r.sum_seq) > 0) need(session, join(dir, `sum-${String(r.sum_seq)}.safetensors`), `open round ${String(r.number)}`);
    } else {
      for (const u of snapshot.bySession(STATE_TABLES[4], session).filter((u) => u.round === r.number))
        need(session, join(dir, `delta-${String(u.sum_seq)}.safetensors`), `open round ${String(r.number)}`);
    }
  }
}

/** Hard links (the files are immutable) where the file system allows, copies elsewhere. */
function copyFiles(
  from: string,
  to: string,
  files: readonly string[],
  log: (line: string) => void,
  checkAbort: () => void,
): { count: number; bytes: number; linked: number } {
  let bytes = 0;
  let linked = 0;
  let lastLog = performance.now();
  for (const [i, rel] of files.entries()) {
    const src = join(from, rel);
    const dst = join(to, rel);
    mkdirSync(dirname(dst), { recursive: true });
    try {
      linkSync(src, dst);
      linked++;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'EXDEV' && code !== 'EPERM' && code !== 'EMLINK') throw e;
      copyFileSync(src, dst);
    }
    bytes += statSync(dst).size;
    if (performance.now() - lastLog > 2000 || i === files.length - 1) {
      log(`files: ${i + 1}/${files.length}, ${(bytes / 2 ** 20).toFixed(1)} MiB (${linked} hard-linked)`);
      lastLog = performance.now();
    }
    checkAbort();
  }
  return { count: files.length, bytes, linked };
}

function verifyFiles(from: string, to: string, files: readonly string[]): void {
  const sha = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');
  for (const rel of files) {
    const a = statSync(join(from, rel));
    const b = statSync(join(to, rel));
    const same = (a.ino === b.ino && a.dev === b.dev) || (a.size === b.size && sha(join(from, rel)) === sha(join(to, rel)));
    if (!same) throw new Error(`verification failed: ${join(to, rel)} differs from ${join(from, rel)}`);
  }
}

// ------------------------------------------------------------------ the state in SQLite

interface StateSnapshot {
  readonly sessionIds: string[];
  readonly rows: Map<TableSpec['name'], Row[]>;
  bySession(table: TableSpec, sessionId: string): Row[];
}

/** Every state row, checked (types, JSON columns, rows of sessions that exist). */
function readState(db: Db): StateSnapshot {
  const rows = new Map<TableSpec['name'], Row[]>();
  for (const table of STATE_TABLES) {
    const cols = table.columns.map((c) => c.name).join(', ');
    const list = db.prepare(`SELECT ${cols}, rowid AS ord FROM ${table.name}`).all() as Row[];
    for (const r of list) rowValues(table, r);
    rows.set(table.name, list);
  }
  const sessionIds = rows
    .get('sessions')!
    .map((s) => String(s.id))
    .sort();
  const known = new Set(sessionIds);
  const grouped = new Map<string, Map<string, Row[]>>();
  for (const table of STATE_TABLES) {
    const byId = new Map<string, Row[]>(sessionIds.map((id) => [id, []]));
    for (const r of rows.get(table.name)!) {
      const id = String(r[table.session]);
      if (!known.has(id)) throw new Error(`${table.name} row ${describeRow(table, r)} belongs to no session`);
      byId.get(id)!.push(r);
    }
    grouped.set(table.name, byId);
  }
  const orphans = db.prepare('SELECT COUNT(*) AS n FROM passages WHERE session_id NOT IN (SELECT id FROM sessions)').get() as { n: number };
  if (orphans.n > 0) throw new Error(`${orphans.n} passages belong to no session`);
  return { sessionIds, rows, bySession: (table, id) => grouped.get(table.name)!.get(id)! };
}

function countPassages(db: Db): number {
  return (db.prepare('SELECT COUNT(*) AS n FROM passages').get() as { n: number }).n;
}

// ------------------------------------------------------------------ embeddings

/** The LanceDB store the source ran with: its vectors read by passage id (never written). */
class SourceVectors {
  private readonly tables = new Map<string, Promise<{ table: Table; dim: number }>>();

  private constructor(private readonly conn: Connection) {}

  static async open(uri: string, source: Db): Promise<SourceVectors> {
    const { lance } = await loadLance();
    const conn = await lance.connect(uri).catch((e: unknown) => {
      throw new CopyRefused(`--from-passage-store ${uri}: ${(e as Error).message}`);
    });
    const names = await allTableNames(conn);
    const sessions = source.prepare('SELECT DISTINCT session_id FROM passages WHERE length(embedding) = 0').pluck().all() as string[];
    const missing = sessions.filter((id) => !names.has(vectorTableName(id)));
    if (missing.length > 0) {
      conn.close();
      throw new CopyRefused(
        `--from-passage-store ${uri} holds no vectors of session ${missing[0]} (table ${vectorTableName(missing[0])}): is it the store --from ran with?`,
      );
    }
    return new SourceVectors(conn);
  }

  /** The float32 bytes of each row's vector, by id (absent when the store has none). */
  async get(rows: ReadonlyArray<{ id: number; session_id: string }>): Promise<Map<number, Buffer>> {
    const out = new Map<number, Buffer>();
    const bySession = new Map<string, number[]>();
    for (const r of rows) bySession.set(r.session_id, [...(bySession.get(r.session_id) ?? []), r.id]);
    for (const [sessionId, ids] of bySession) {
      let t = this.tables.get(sessionId);
      if (!t) {
        t = this.conn.openTable(vectorTableName(sessionId)).then(async (table) => ({ table, dim: await vectorDim(table) }));
        this.tables.set(sessionId, t);
      }
      const { table, dim } = await t;
      const { ids: found, vectors } = await scanVectors(table, dim, true, `id IN (${ids.join(',')})`);
      found.forEach((id, i) => out.set(id, Buffer.from(vectors.slice(i * dim, (i + 1) * dim).buffer)));
    }
    return out;
  }

  close(): void {
    this.conn.close();
  }
}

/** The new LanceDB store: one table per session with passages, created on its first vectors. */
class LanceTarget {
  private readonly tables = new Map<string, Table>();

  private constructor(
    private readonly conn: Connection,
    private readonly arrow: Awaited<ReturnType<typeof loadLance>>['arrow'],
    private readonly dims: Map<string, unknown>,
  ) {}

  static async open(uri: string, snapshot: StateSnapshot): Promise<LanceTarget> {
    const { lance, arrow } = await loadLance();
    return new LanceTarget(await lance.connect(uri), arrow, sessionDims(snapshot));
  }

  async add(rows: ReadonlyArray<{ id: number; session_id: string }>, embeddings: readonly Buffer[]): Promise<void> {
    const bySession = new Map<string, number[]>();
    rows.forEach((r, i) => bySession.set(r.session_id, [...(bySession.get(r.session_id) ?? []), i]));
    for (const [sessionId, at] of bySession) {
      const dim = Number(this.dims.get(sessionId));
      let table = this.tables.get(sessionId);
      if (!table) {
        // mode 'create' without existOk: a table of this session (another copy's?) is an error, not a merge.
        table = await this.conn.createEmptyTable(vectorTableName(sessionId), vectorSchema(this.arrow, dim), { mode: 'create' });
        this.tables.set(sessionId, table);
      }
      await table.add(
        vectorRows(
          this.arrow,
          at.map((i) => rows[i].id),
          at.map((i) => new Float32Array(embeddings[i].buffer.slice(embeddings[i].byteOffset, embeddings[i].byteOffset + embeddings[i].byteLength))),
          dim,
        ),
      );
    }
  }

  close(): void {
    this.conn.close();
  }
}

/** The LanceDB tables this copy will create; refused if one exists (another copy, or this folder's store already). */
async function checkLanceTarget(uri: string, source: Db, sessionIds: readonly string[]): Promise<string[]> {
  const withPassages = sessionIds.filter((id) => source.prepare('SELECT 1 FROM passages WHERE session_id = ? LIMIT 1').get(id) !== undefined);
  const names = withPassages.map(vectorTableName);
  if (names.length === 0) return [];
  const { lance } = await loadLance();
  const conn = await lance.connect(uri);
  try {
    const existing = await allTableNames(conn);
    const taken = names.filter((n) => existing.has(n));
    if (taken.length > 0) {
      throw new CopyRefused(
        `the passage store ${uri} already holds ${taken.length} of these sessions' tables (e.g. ${taken[0]}): copy into a store no deployment of these sessions uses (or drop those tables if a crashed copy left them). Nothing was written.`,
      );
    }
    return names;
  } finally {
    conn.close();
  }
}

async function dropLanceTables(uri: string, names: readonly string[], log: (line: string) => void): Promise<void> {
  try {
    const { lance } = await loadLance();
    const conn = await lance.connect(uri);
    try {
      const existing = await allTableNames(conn);
      for (const n of names) if (existing.has(n)) await conn.dropTable(n);
    } finally {
      conn.close();
    }
  } catch (e) {
    log(`could not drop the LanceDB tables this copy created in ${uri} (${(e as Error).message}): drop ${names.join(', ')} by hand`);
  }
}

/**
 * Per session: as many embeddings in the new place (LanceDB, or the PostgreSQL records read back
 * inside the transaction) as records, and a sample (first, last, evenly spaced) bit-equal to the
 * source's (its records, or the LanceDB store it ran with). Returns how many were compared.
 */
async function verifyEmbeddings(
  source: Db,
  sourceVectors: SourceVectors | undefined,
  target: PgTarget,
  uri: string | undefined,
  sessionIds: readonly string[],
  perSession: number,
): Promise<number> {
  const { lance } = await loadLance();
  const conn = uri ? await lance.connect(uri) : undefined;
  let compared = 0;
  try {
    for (const id of sessionIds) {
      const ids = source.prepare('SELECT id FROM passages WHERE session_id = ? ORDER BY id').pluck().all(id) as number[];
      if (ids.length === 0) continue;
      const n = Math.min(perSession, ids.length);
      const pick = [...new Set(Array.from({ length: n }, (_, i) => ids[Math.floor((i * (ids.length - 1)) / Math.max(1, n - 1))]))];
      const inRecords = new Map(
        pick
          .map((pid) => [pid, source.prepare('SELECT embedding FROM passages WHERE id = ?').pluck().get(pid) as Buffer] as const)
          .filter(([, b]) => b.length > 0),
      );
      const fromStore = await sourceVectors?.get(pick.filter((pid) => !inRecords.has(pid)).map((pid) => ({ id: pid, session_id: id })));
      const want = (pid: number) => inRecords.get(pid) ?? fromStore?.get(pid);
      let got: Map<number, Buffer>;
      if (conn) {
        const table = await conn.openTable(vectorTableName(id));
        const rows = await table.countRows();
        if (rows !== ids.length) throw new Error(`verification failed: session ${id} has ${ids.length} passages but ${rows} vectors in LanceDB`);
        const dim = await vectorDim(table);
        const { ids: found, vectors } = await scanVectors(table, dim, true, `id IN (${pick.join(',')})`);
        got = new Map(found.map((pid, i) => [pid, Buffer.from(vectors.slice(i * dim, (i + 1) * dim).buffer)]));
        const { count } = await target.embeddings(id, []);
        if (count > 0) throw new Error(`verification failed: session ${id}: ${count} embeddings were left in the PostgreSQL records beside LanceDB`);
      } else {
        const stored = await target.embeddings(id, pick);
        if (stored.count !== ids.length)
          throw new Error(`verification failed: session ${id} has ${ids.length} passages but ${stored.count} embeddings in PostgreSQL`);
        got = stored.bytes;
      }
      for (const pid of pick) {
        const g = got.get(pid);
        const w = want(pid);
        if (!g || !w || !g.equals(w)) throw new Error(`verification failed: the embedding of passage ${pid} (session ${id}) differs from the source's`);
        compared++;
      }
    }
  } finally {
    conn?.close();
  }
  return compared;
}

// ------------------------------------------------------------------ PostgreSQL

/** The target database: schema through PostgresState (as a coordinator's first start), then one transaction. */
class PgTarget {
  private client?: pg.Client;
  private tablesBefore?: Set<string>;

  constructor(private readonly url: string) {}

  async open(log: (line: string) => void): Promise<void> {
    const probe = new pg.Client({ connectionString: this.url });
    await probe.connect().catch((e: unknown) => {
      throw new CopyRefused(`PostgreSQL ${redactUrl(this.url)}: ${(e as Error).message}`);
    });
    try {
      this.tablesBefore = new Set(
        (await probe.query<{ tablename: string }>('SELECT tablename FROM pg_tables WHERE schemaname = current_schema()')).rows.map((r) => r.tablename),
      );
    } finally {
      await probe.end();
    }
    const state = new PostgresState(this.url);
    try {
      await state.open();
    } finally {
      await state.close();
    }
    if (!this.tablesBefore.has('schema_migrations')) log(`PostgreSQL ${redactUrl(this.url)}: schema created (dropped again if the copy fails)`);
    this.client = new pg.Client({ connectionString: this.url });
    await this.client.connect();
    await this.client.query('BEGIN');
    // No coordinator may create or change sessions while this copy decides and writes (readers go on).
    await this.client.query('LOCK TABLE sessions IN SHARE ROW EXCLUSIVE MODE');
  }

  async heldSessions(ids: readonly string[]): Promise<{ ours: string[]; others: number }> {
    const rows = (await this.client!.query<{ id: string }>('SELECT id FROM sessions')).rows.map((r) => r.id);
    const mine = new Set(ids);
    return { ours: rows.filter((id) => mine.has(id)).sort(), others: rows.filter((id) => !mine.has(id)).length };
  }

  /** One session's rows of one table, in chunks of unnest arrays (clients in join order: their seq follows it). */
  async insert(table: TableSpec, rows: readonly Row[], sessionId: string): Promise<void> {
    const ordered = [...rows].sort((a, b) => Number(a.ord) - Number(b.ord));
    const cols = table.columns.map((c) => `"${c.name}"`).join(', ');
    const arrays = table.columns.map((c, i) => `$${i + 1}::${PG_ARRAY_TYPE[c.kind]}`).join(', ');
    const sql = `INSERT INTO ${table.name} (${cols}) SELECT ${cols} FROM unnest(${arrays}) WITH ORDINALITY AS u(${cols}, ord) ORDER BY ord`;
    for (let i = 0; i < ordered.length; i += INSERT_CHUNK) {
      const chunk = ordered.slice(i, i + INSERT_CHUNK).map((r) => rowValues(table, r));
      const params = table.columns.map((_, c) => chunk.map((values) => values[c]));
      try {
        await this.client!.query(sql, params);
      } catch (e) {
        const detail = (e as { detail?: string }).detail;
        throw new Error(`copying session ${sessionId}, table ${table.name}: ${(e as Error).message}${detail ? ` (${detail})` : ''}`);
      }
    }
  }

  /** The rows of `table` for these sessions as this transaction sees them (clients with their seq as `ord`). */
  async readBack(table: TableSpec, sessionIds: readonly string[]): Promise<Row[]> {
    const cols = table.columns.map((c) => `"${c.name}"`).join(', ');
    const ord = table.name === 'clients' ? ', seq AS ord' : '';
    return (await this.client!.query<Row>(`SELECT ${cols}${ord} FROM ${table.name} WHERE "${table.session}" = ANY($1::text[])`, [sessionIds])).rows;
  }

  /**
   * The passage records (server/passage-records-copy.ts) into the transaction; their embeddings
   * from the source's records or its LanceDB store, either kept in the records or, with a LanceDB
   * target, written there (and the records' left empty).
   */
  async copyPassages(
    source: Db,
    snapshot: StateSnapshot,
    vectors: SourceVectors | undefined,
    lance: LanceTarget | undefined,
    log: (line: string) => void,
  ): Promise<Record<PassageTable, TableDigest>> {
    const dims = sessionDims(snapshot);
    const embeddingsOf = async (rows: ReadonlyArray<{ id: number; session_id: string; embedding: Buffer }>): Promise<Buffer[]> => {
      const fromLance = await vectors?.get(rows.filter((r) => r.embedding.length === 0));
      return rows.map((r) => {
        const bytes = r.embedding.length > 0 ? r.embedding : fromLance?.get(r.id);
        if (!bytes) throw new Error(`passage ${r.id} of session ${r.session_id} has no embedding in the source's records nor in --from-passage-store`);
        const dim = dims.get(r.session_id);
        if (typeof dim !== 'number' || bytes.length !== 4 * dim) {
          throw new Error(
            `passage ${r.id} of session ${r.session_id}: its embedding has ${bytes.length} bytes, the session's dimension ${String(dim)} needs ${4 * Number(dim)}`,
          );
        }
        return bytes;
      });
    };
    let n = 0;
    const digests = await copyPassageRecords(
      this.client!,
      source,
      async (rows) => (lance ? rows.map(() => Buffer.alloc(0)) : embeddingsOf(rows)),
      async (rows) => {
        n += rows.length;
        if (lance) await lance.add(rows, await embeddingsOf(rows));
      },
    );
    log(`passages: ${n} records into PostgreSQL${lance ? ', their vectors into LanceDB' : ' with their embeddings'}`);
    return digests;
  }

  async passageDigests(sessionIds: readonly string[]): Promise<Record<PassageTable, TableDigest>> {
    return postgresPassageDigests(this.client!, sessionIds);
  }

  /** Stored embeddings of a session in the transaction: how many, and the bytes of `ids`. */
  async embeddings(sessionId: string, ids: readonly number[]): Promise<{ count: number; bytes: Map<number, Buffer> }> {
    const count = (
      await this.client!.query<{ n: number }>('SELECT COUNT(*)::int AS n FROM passages WHERE session_id = $1 AND octet_length(embedding) > 0', [sessionId])
    ).rows[0].n;
    const rows = await this.client!.query<{ id: string; embedding: Buffer }>(
      'SELECT id, embedding FROM passages WHERE session_id = $1 AND id = ANY($2::int8[])',
      [sessionId, ids],
    );
    return { count, bytes: new Map(rows.rows.map((r) => [Number(r.id), r.embedding])) };
  }

  /** A file into the database blob store, in the copy's transaction. */
  async putBlob(key: string, path: string): Promise<void> {
    await writeBlob(this.client!, key, path);
  }

  /** A blob read back inside the transaction: its chunks' SHA-256 (computed by PostgreSQL) against the source file. */
  async verifyBlob(key: string, path: string): Promise<void> {
    await verifyBlob(this.client!, key, path);
  }

  async commit(): Promise<void> {
    await this.client!.query('COMMIT');
  }

  /** Undoes the transaction, and the schema when this run created it and nothing else wrote to it since. */
  async rollback(log: (line: string) => void): Promise<void> {
    if (this.client) await this.client.query('ROLLBACK').catch(() => undefined);
    if (!this.tablesBefore || this.tablesBefore.has('schema_migrations')) return;
    const c = new pg.Client({ connectionString: this.url });
    try {
      await c.connect();
      const created = (await c.query<{ tablename: string }>('SELECT tablename FROM pg_tables WHERE schemaname = current_schema()')).rows
        .map((r) => r.tablename)
        .filter((t) => !this.tablesBefore!.has(t));
      for (const t of created) {
        const { rows } = await c.query<{ any: boolean }>(`SELECT EXISTS (SELECT 1 FROM "${t}" ${t === 'schema_migrations' ? 'WHERE false' : ''}) AS any`);
        if (rows[0].any) return; // someone else uses it now: leave the schema
      }
      if (created.length > 0) await c.query(`DROP TABLE IF EXISTS ${created.map((t) => `"${t}"`).join(', ')} CASCADE`);
    } catch (e) {
      log(`could not drop the schema this copy created (${(e as Error).message}); its tables are empty`);
    } finally {
      await c.end().catch(() => undefined);
    }
  }

  async close(): Promise<void> {
    await this.client?.end().catch(() => undefined);
  }
}

function sessionDims(snapshot: StateSnapshot): Map<string, unknown> {
  return new Map(snapshot.rows.get('sessions')!.map((s) => [String(s.id), (JSON.parse(String(s.config)) as SessionConfig).models?.embeddingDim]));
}
