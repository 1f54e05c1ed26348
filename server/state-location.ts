/**
 * A data folder belongs to one state store: its own SQLite database (the default) or PostgreSQL
 * (`--database`). Started with the other one, a coordinator would silently ignore the sessions
 * (SQLite state under --database) or serve files and passages of sessions it does not know
 * (PostgreSQL state forgotten), so it refuses; `npm run migrate` (server/copy-deployment.ts) copies
 * an SQLite deployment into PostgreSQL instead.
 *
 * With PostgreSQL the data folder holds no database: state and passage records are in PostgreSQL,
 * so processes on several hosts can share the folder over a network file system (where SQLite's
 * locks are unreliable). A marker file says the folder is PostgreSQL's. A folder from before the
 * passage records moved to PostgreSQL (PostgreSQL state, passage records in the folder's SQLite)
 * is reported as `legacyPassages`: the coordinator moves those records into PostgreSQL on start
 * (server/passage-records-copy.ts).
 */
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { openDatabase, type Db } from './db';

const SQLITE_FILE = 'coordinator.sqlite';
/** Written into a data folder a coordinator with PostgreSQL state uses (its content says why). */
const POSTGRES_MARKER = 'STATE-IN-POSTGRESQL';

export interface DataFolderDatabase {
  /** The folder's SQLite database (SQLite state), or null (PostgreSQL state). */
  readonly db: Db | null;
  /** PostgreSQL state: the folder's SQLite file, when it still holds passage records to move into PostgreSQL. */
  readonly legacyPassages?: string;
}

/** Opens (SQLite) or checks (PostgreSQL) the data folder's database; throws one line saying why it may not be used. */
export function openDataFolderDatabase(dataDir: string, database: string | undefined): DataFolderDatabase {
  const path = join(dataDir, SQLITE_FILE);
  if (!database) {
    if (existsSync(join(dataDir, POSTGRES_MARKER))) {
      throw new Error(
        `the data folder ${dataDir} was used with PostgreSQL state (${POSTGRES_MARKER}): start the coordinator with the --database it was used with`,
      );
    }
    const db = openDatabase(path);
    try {
      const n = (db.prepare('SELECT COUNT(DISTINCT session_id) AS n FROM passages WHERE session_id NOT IN (SELECT id FROM sessions)').get() as { n: number }).n;
      if (n > 0) {
        throw new Error(
          `the data folder ${dataDir} holds passages of ${n} session${n === 1 ? '' : 's'} whose state is in PostgreSQL: start the coordinator with the --database it was used with`,
        );
      }
    } catch (e) {
      db.close();
      throw e;
    }
    return { db };
  }
  let legacy = false;
  if (existsSync(path)) {
    const db = new Database(path, { readonly: true, fileMustExist: true });
    try {
      const count = (table: string) =>
        db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(table) === undefined
          ? 0
          : (db.prepare(`SELECT COUNT(*) AS n FROM ${table}`).get() as { n: number }).n;
      const n = count('sessions');
      if (n > 0) {
        throw new Error(
          `the data folder ${dataDir} holds ${n} session${n === 1 ? '' : 's'} in its SQLite database, which --database would ignore: start without --database, or give another --data-dir (to move this deployment into PostgreSQL: npm run migrate -- --from <this folder> --to <new folder> --database …, docs/DEPLOY.md)`,
        );
      }
      legacy = count('passages') > 0 || count('passage_checks') > 0;
    } finally {
      db.close();
    }
  }
  writeFileSync(
    join(dataDir, POSTGRES_MARKER),
    'This data folder belongs to a coordinator whose state and passage records are in PostgreSQL (--database / CORAG_DATABASE_URL).\n',
  );
  return { db: null, ...(legacy ? { legacyPassages: path } : {}) };
}
