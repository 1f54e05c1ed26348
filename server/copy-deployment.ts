/**
 * Copies an embedded deployment into PostgreSQL (+ LanceDB): `npm run migrate` (scripts/migrate.ts,
 * docs/DEPLOY.md "5. Moving an embedded deployment to PostgreSQL").
 *
 * Source: a data folder (`--from`) whose coordinator is stopped: its SQLite state (sessions and
 * their token hashes, clients, model version records, rounds, accepted updates with their metrics,
 * training questions), its passage records and embeddings, its files (model versions, running sums,
 * delta files, the server key). Target: a PostgreSQL database holding none of the sessions, a NEW
 * data folder (`--to`) and, with `--passage-store`, a LanceDB store. The source is only read: it stays
 * a working deployment, which is the way back.
 *
 * All or nothing. The state rows go into PostgreSQL in ONE transaction, which is verified (every
 * table read back inside it: row counts and a canonical SHA-256 per table, server/deployment-tables.ts)
 * and committed last. Everything before the commit is undone on failure: the new data folder is
 * built under `<to>.partial` (removed), LanceDB tables are created only for the copied sessions
 * (dropped), and a schema this run created in an empty database is dropped again. The new folder
 * gets its name just before the commit; a crash in between leaves `--to` beside a PostgreSQL that
 * holds nothing, and the next run says to remove it. Model and sum files are immutable once written
 * (written to a temp name, then renamed), so they are hard-linked when both folders share a file
 * system and copied otherwise; either way every file is checked (same inode, or same SHA-256).
 */
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, linkSync, lstatSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { dirname, join, resolve, sep } from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import { createStrategy } from '../src/federated/strategy';
import type { SessionConfig } from '../src/federated/protocol';
import { openDatabase, SQLITE_SCHEMA_VERSION, type Db } from './db';
import { describeRow, digestRows, digestTable, PG_ARRAY_TYPE, rowValues, STATE_TABLES, type Row, type TableDigest, type TableSpec } from './deployment-tables';
import { LancePassageStore } from './lance-passages';
import { PostgresState, redactUrl } from './pg-state';

export interface CopyDeploymentOptions {
  /** The embedded deployment's data folder (its coordinator stopped). */
  readonly from: string;
  /** The new deployment's data folder: absent or empty. */
  readonly to: string;
  /** postgres://… of a database holding no sessions (an empty one gets the schema). */
  readonly database: string;
  /** A LanceDB location (parsePassageStoreLocation) for the embeddings; absent: they stay in the new folder's SQLite. */
  readonly passageStore?: string;
  /** Progress lines. */
  readonly log?: (line: string) => void;
  /** Stops the copy at the next step (undoing it), e.g. on Ctrl-C. */
  readonly signal?: AbortSignal;
  /** Embeddings per session compared bit for bit after the copy (default 64). */
  readonly sampleEmbeddings?: number;
}

export interface CopyReport {
  readonly sessions: readonly string[];
  readonly tables: Readonly<Record<TableSpec['name'] | 'passages' | 'passage_contributors', TableDigest>>;
  readonly files: { readonly count: number; readonly bytes: number; readonly linked: number };
  readonly passagesIn: 'lancedb' | 'sqlite';
  readonly embeddingsSampled: number;
  readonly seconds: number;
}

/** The data folder's own database files and scratch space: everything else in it is copied. */
const NOT_COPIED = new Set(['coordinator.sqlite', 'coordinator.sqlite-wal', 'coordinator.sqlite-shm', 'coordinator.sqlite-journal', 'tmp']);
const PASSAGE_COLUMNS = ['id', 'session_id', 'client_id', 'hash', 'title', 'text', 'created_at'] as const;
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

  const source = openSource(from);
  const target = new PgTarget(options.database);
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

    // ---- 4. the new data folder: files, then the passage records (and embeddings)
    mkdirSync(staging, { recursive: true });
    const copied = copyFiles(from, staging, files, log, checkAbort);
    const passages = copyPassages(source, join(staging, 'coordinator.sqlite'), snapshot, log);
    if (options.passageStore) {
      const db = openDatabase(join(staging, 'coordinator.sqlite'), { foreignKeys: false });
      const store = new LancePassageStore(db, { uri: options.passageStore, log }, async () => sessionIds);
      try {
        await store.open();
      } finally {
        await store.close();
        db.close();
      }
    }
    checkAbort();

    // ---- 5. verify: PostgreSQL read back inside the transaction, the folder, the embeddings
    const tables = {} as Record<TableSpec['name'] | 'passages' | 'passage_contributors', TableDigest>;
    for (const table of STATE_TABLES) {
      const want = digestTable(table, snapshot.rows.get(table.name)!);
      const got = digestTable(table, await target.readBack(table, sessionIds));
      compareDigests(`PostgreSQL table ${table.name}`, want, got);
      tables[table.name] = got;
    }
    const copiedDb = new Database(join(staging, 'coordinator.sqlite'), { readonly: true, fileMustExist: true });
    let embeddingsSampled: number;
    try {
      for (const name of ['passages', 'passage_contributors'] as const) {
        const got = passageDigest(copiedDb, name);
        compareDigests(`the new folder's ${name}`, passages[name], got);
        tables[name] = got;
      }
      embeddingsSampled = await verifyEmbeddings(source, copiedDb, options.passageStore, sessionIds, options.sampleEmbeddings ?? 64);
    } finally {
      copiedDb.close();
    }
    verifyFiles(from, staging, files);
    log(
      `verified: ${[...STATE_TABLES.map((t) => t.name), 'passages', 'passage_contributors'].map((n) => `${n} ${tables[n as keyof typeof tables].rows}`).join(', ')} (counts and SHA-256 equal); ${copied.count} files (${copied.linked} hard-linked, the rest SHA-256 equal); ${embeddingsSampled} embeddings bit-equal in ${options.passageStore ? 'LanceDB' : 'SQLite'}`,
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
    for (const name of ['passages', 'passage_contributors'] as const) {
      compareDigests(`the source's ${name} (changed during the copy: stop its coordinator and run again)`, tables[name], passageDigest(source, name));
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
      passagesIn: options.passageStore ? 'lancedb' : 'sqlite',
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

/** The passage records' digest (embeddings are compared separately), in id / contributor order. */
function passageDigest(db: Db, table: 'passages' | 'passage_contributors'): TableDigest {
  const sql =
    table === 'passages'
      ? `SELECT ${PASSAGE_COLUMNS.join(', ')} FROM passages ORDER BY id`
      : 'SELECT passage_id, client_id FROM passage_contributors ORDER BY passage_id, rowid';
  return digestRows(db.prepare(sql).raw().iterate() as Iterable<unknown[]>);
}

/**
 * The passage records (ids kept: clients and LanceDB rows name passages by id) and their embeddings
 * into the new folder's database, in one transaction; each embedding must have the session's size.
 */
function copyPassages(
  source: Db,
  path: string,
  snapshot: StateSnapshot,
  log: (line: string) => void,
): Record<'passages' | 'passage_contributors', TableDigest> {
  const dims = new Map(snapshot.rows.get('sessions')!.map((s) => [String(s.id), (JSON.parse(String(s.config)) as SessionConfig).models?.embeddingDim]));
  const db = openDatabase(path, { foreignKeys: false });
  try {
    const insert = db.prepare('INSERT INTO passages (id, session_id, client_id, hash, title, text, embedding, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)');
    const contributor = db.prepare('INSERT INTO passage_contributors (passage_id, client_id) VALUES (?, ?)');
    let n = 0;
    db.transaction(() => {
      const rows = source
        .prepare('SELECT id, session_id, client_id, hash, title, text, embedding, created_at FROM passages ORDER BY id')
        .iterate() as Iterable<{
        id: number;
        session_id: string;
        client_id: string;
        hash: string;
        title: string;
        text: string;
        embedding: Buffer;
        created_at: string;
      }>;
      for (const p of rows) {
        const dim = dims.get(p.session_id);
        if (p.embedding.length === 0) {
          throw new Error(
            `passage ${p.id} of session ${p.session_id} has its embedding in a LanceDB store (this folder was run with --passage-store): copying such a folder is not supported yet (its embeddings would have to be read from that store)`,
          );
        }
        if (typeof dim !== 'number' || p.embedding.length !== 4 * dim) {
          throw new Error(
            `passage ${p.id} of session ${p.session_id}: its embedding has ${p.embedding.length} bytes, the session's dimension ${String(dim)} needs ${4 * Number(dim)}`,
          );
        }
        insert.run(p.id, p.session_id, p.client_id, p.hash, p.title, p.text, p.embedding, p.created_at);
        n++;
      }
      for (const c of source.prepare('SELECT passage_id, client_id FROM passage_contributors ORDER BY rowid').iterate() as Iterable<{
        passage_id: number;
        client_id: string;
      }>)
        contributor.run(c.passage_id, c.client_id);
      // Ids are never reused (AUTOINCREMENT): the new folder continues after the source's last one.
      const seq = source.prepare("SELECT seq FROM sqlite_sequence WHERE name = 'passages'").get() as { seq: number } | undefined;
      if (seq) {
        db.prepare("DELETE FROM sqlite_sequence WHERE name = 'passages'").run();
        db.prepare("INSERT INTO sqlite_sequence (name, seq) VALUES ('passages', ?)").run(seq.seq);
      }
    })();
    log(`passages: ${n} records into ${path}`);
    return { passages: passageDigest(source, 'passages'), passage_contributors: passageDigest(source, 'passage_contributors') };
  } finally {
    db.close();
  }
}

// ------------------------------------------------------------------ embeddings

type Lance = typeof import('@lancedb/lancedb');

/** The LanceDB tables this copy will create; refused if one exists (another copy, or this folder's store already). */
async function checkLanceTarget(uri: string, source: Db, sessionIds: readonly string[]): Promise<string[]> {
  const withPassages = sessionIds.filter((id) => source.prepare('SELECT 1 FROM passages WHERE session_id = ? LIMIT 1').get(id) !== undefined);
  const names = withPassages.map((id) => `passages_${id}`);
  if (names.length === 0) return [];
  const lance: Lance = await import('@lancedb/lancedb');
  const conn = await lance.connect(uri);
  try {
    const existing = new Set<string>();
    let startAfter: string | undefined;
    for (;;) {
      const page = await conn.tableNames({ limit: 1000, ...(startAfter === undefined ? {} : { startAfter }) });
      page.forEach((n) => existing.add(n));
      if (page.length < 1000) break;
      startAfter = page[page.length - 1];
    }
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
    const lance: Lance = await import('@lancedb/lancedb');
    const conn = await lance.connect(uri);
    try {
      const existing = new Set(await conn.tableNames({ limit: 100_000 }));
      for (const n of names) if (existing.has(n)) await conn.dropTable(n);
    } finally {
      conn.close();
    }
  } catch (e) {
    log(`could not drop the LanceDB tables this copy created in ${uri} (${(e as Error).message}): drop ${names.join(', ')} by hand`);
  }
}

/**
 * Per session: as many embeddings in the new place as records, and a sample (first, last, evenly
 * spaced) bit-equal to the source's. Returns how many were compared.
 */
async function verifyEmbeddings(source: Db, copied: Db, uri: string | undefined, sessionIds: readonly string[], perSession: number): Promise<number> {
  const lance: Lance | undefined = uri ? await import('@lancedb/lancedb') : undefined;
  const conn = lance && uri ? await lance.connect(uri) : undefined;
  let compared = 0;
  try {
    for (const id of sessionIds) {
      const ids = source.prepare('SELECT id FROM passages WHERE session_id = ? ORDER BY id').pluck().all(id) as number[];
      if (ids.length === 0) continue;
      const pick = [
        ...new Set(
          Array.from(
            { length: Math.min(perSession, ids.length) },
            (_, i) => ids[Math.floor((i * (ids.length - 1)) / Math.max(1, Math.min(perSession, ids.length) - 1))],
          ),
        ),
      ];
      const want = (pid: number) => source.prepare('SELECT embedding FROM passages WHERE id = ?').pluck().get(pid) as Buffer;
      let got: Map<number, Buffer>;
      if (conn) {
        const table = await conn.openTable(`passages_${id}`);
        const rows = await table.countRows();
        if (rows !== ids.length) throw new Error(`verification failed: session ${id} has ${ids.length} passages but ${rows} vectors in LanceDB`);
        const result = await table
          .query()
          .where(`id IN (${pick.join(',')})`)
          .select(['id', 'vector'])
          .toArrow();
        got = new Map();
        for (const batch of result.batches) {
          const idCol = batch.getChild('id')!;
          const vecCol = batch.getChild('vector')!;
          for (let i = 0; i < batch.numRows; i++) {
            const v = (vecCol.get(i) as { toArray(): Float32Array }).toArray();
            got.set(Number(idCol.get(i) as bigint), Buffer.from(v.buffer, v.byteOffset, v.byteLength));
          }
        }
        const blobs = copied.prepare('SELECT COUNT(*) AS n FROM passages WHERE session_id = ? AND length(embedding) > 0').get(id) as { n: number };
        if (blobs.n > 0) throw new Error(`verification failed: session ${id}: ${blobs.n} embeddings were left in the new folder's SQLite beside LanceDB`);
      } else {
        const n = copied.prepare('SELECT COUNT(*) AS n FROM passages WHERE session_id = ? AND length(embedding) > 0').get(id) as { n: number };
        if (n.n !== ids.length) throw new Error(`verification failed: session ${id} has ${ids.length} passages but ${n.n} embeddings in the new folder`);
        got = new Map(pick.map((pid) => [pid, copied.prepare('SELECT embedding FROM passages WHERE id = ?').pluck().get(pid) as Buffer]));
      }
      for (const pid of pick) {
        const g = got.get(pid);
        if (!g || !g.equals(want(pid))) throw new Error(`verification failed: the embedding of passage ${pid} (session ${id}) differs from the source's`);
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

function compareDigests(what: string, want: TableDigest, got: TableDigest): void {
  if (want.rows !== got.rows || want.sha256 !== got.sha256) {
    throw new Error(
      `verification failed: ${what}: source ${want.rows} rows (sha256 ${want.sha256.slice(0, 12)}…), copy ${got.rows} rows (sha256 ${got.sha256.slice(0, 12)}…)`,
    );
  }
}
