/**
 * The data folder's SQLite database (better-sqlite3, WAL), with the default state store: the system
 * of record for sessions, clients, model versions, rounds and accepted updates
 * (server/sqlite-state.ts) and for the passage records (server/sqlite-passages.ts). With
 * `--database postgres://…` all of these live in PostgreSQL instead (server/pg-state.ts,
 * server/pg-passages.ts) and the data folder has no database (server/state-location.ts). Every
 * accept commits before the HTTP response. Big blobs (model versions, the running sum) live in
 * files whose names the database points to.
 *
 * Schema versions: `schema_migrations` records each version applied. Version 1 is the schema below
 * together with the upgrades made before versions were recorded (they stay idempotent and run on
 * every open); later changes are appended to MIGRATIONS and run once, in order, in a transaction.
 */
import Database from 'better-sqlite3';

export type Db = Database.Database;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS sessions (
  id TEXT PRIMARY KEY,
  config TEXT NOT NULL,
  admin_token_hash TEXT NOT NULL UNIQUE,
  join_code TEXT NOT NULL UNIQUE,
  current_version INTEGER,
  created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS clients (
  id TEXT PRIMARY KEY,
  session_id TEXT NOT NULL REFERENCES sessions(id),
  name TEXT NOT NULL,
  token_hash TEXT NOT NULL UNIQUE,
  joined_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS clients_by_session ON clients(session_id, joined_at);
CREATE TABLE IF NOT EXISTS model_versions (
  session_id TEXT NOT NULL REFERENCES sessions(id),
  version INTEGER NOT NULL,
  file TEXT NOT NULL,
  round INTEGER,
  created_at TEXT NOT NULL,
  PRIMARY KEY (session_id, version)
);
CREATE TABLE IF NOT EXISTS rounds (
  session_id TEXT NOT NULL REFERENCES sessions(id),
  number INTEGER NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('open','closing','closed','failed')),
  base_version INTEGER NOT NULL,
  result_version INTEGER,
  participants TEXT NOT NULL,
  config TEXT NOT NULL,
  opened_at TEXT NOT NULL,
  deadline_at TEXT NOT NULL,
  closed_at TEXT,
  -- the running-sum file in effect: sum-<sum_seq>.safetensors (0 = no update yet)
  sum_seq INTEGER NOT NULL DEFAULT 0,
  weight_total REAL NOT NULL DEFAULT 0,
  metric_sums TEXT NOT NULL DEFAULT '{}',
  metrics TEXT NOT NULL DEFAULT '{}',
  PRIMARY KEY (session_id, number)
);
CREATE TABLE IF NOT EXISTS updates (
  session_id TEXT NOT NULL,
  round INTEGER NOT NULL,
  client_id TEXT NOT NULL REFERENCES clients(id),
  num_examples INTEGER NOT NULL,
  weight REAL NOT NULL,
  sum_seq INTEGER NOT NULL,
  bytes INTEGER NOT NULL,
  accepted_at TEXT NOT NULL,
  PRIMARY KEY (session_id, round, client_id)
);
CREATE TABLE IF NOT EXISTS passages (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  session_id TEXT NOT NULL REFERENCES sessions(id),
  client_id TEXT NOT NULL,
  hash TEXT NOT NULL,
  title TEXT NOT NULL,
  text TEXT NOT NULL,
  embedding BLOB NOT NULL,
  created_at TEXT NOT NULL,
  UNIQUE (session_id, hash)
);
CREATE INDEX IF NOT EXISTS passages_by_client ON passages(session_id, client_id);
-- Every client that contributed a passage (the first one is passages.client_id; a duplicate adds a
-- row). A passage leaves the store when its last contributor withdraws it.
CREATE TABLE IF NOT EXISTS passage_contributors (
  passage_id INTEGER NOT NULL REFERENCES passages(id) ON DELETE CASCADE,
  client_id TEXT NOT NULL,
  PRIMARY KEY (passage_id, client_id)
);
-- A session's pool of training questions in handing-out order (server/training-questions.ts):
-- positions below the policy's heldOut are the evaluation set.
CREATE TABLE IF NOT EXISTS training_questions (
  session_id TEXT NOT NULL REFERENCES sessions(id),
  position INTEGER NOT NULL,
  question TEXT NOT NULL,
  answers TEXT NOT NULL,
  PRIMARY KEY (session_id, position)
);
`;

/** Schema changes after version 1, in order: version i + 2 is MIGRATIONS[i]. */
const MIGRATIONS: ReadonlyArray<{ name: string; up: (db: Db) => void }> = [
  {
    // Idempotent joins (server/coordinator.ts join): the SHA-256 of a join's idempotency key, per
    // session, and the client it created; rows older than the replay window are deleted by the
    // next keyed join of the session.
    name: 'join-keys',
    up: (db) =>
      db.exec(`
CREATE TABLE join_keys (
  session_id TEXT NOT NULL REFERENCES sessions(id),
  key_hash TEXT NOT NULL,
  client_id TEXT NOT NULL REFERENCES clients(id),
  created_at TEXT NOT NULL,
  PRIMARY KEY (session_id, key_hash)
);
CREATE INDEX join_keys_by_age ON join_keys(session_id, created_at);`),
  },
];
export const SQLITE_SCHEMA_VERSION = 1 + MIGRATIONS.length;

/**
 * `foreignKeys: false` for a database whose passage records name sessions it does not hold (a data
 * folder from before PostgreSQL held the passage records: server/passage-records-copy.ts moves them).
 */
export function openDatabase(path: string, options: { foreignKeys?: boolean } = {}): Db {
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  // FULL: a commit is on disk when the statement returns (the response follows it).
  db.pragma('synchronous = FULL');
  db.pragma(`foreign_keys = ${options.foreignKeys === false ? 'OFF' : 'ON'}`);
  db.pragma('busy_timeout = 5000');
  db.exec(SCHEMA);
  // A database from before passage_contributors: every passage gets its first contributor. (Once
  // migrated, a passage always has a contributor row, so an empty table beside passages means
  // exactly that.)
  const migrated = db.prepare('SELECT 1 FROM passage_contributors LIMIT 1').get() !== undefined;
  if (!migrated) db.exec('INSERT OR IGNORE INTO passage_contributors (passage_id, client_id) SELECT id, client_id FROM passages');
  // Robust aggregation (issue 17): each update's L2 norm (NULL for updates accepted before it was
  // recorded: unknown, so no norm bound can be derived from them), and why a failed round failed.
  addColumnIfMissing(db, 'updates', 'norm', 'REAL');
  addColumnIfMissing(db, 'rounds', 'failure_reason', 'TEXT');
  migrate(db);
  return db;
}

function migrate(db: Db): void {
  db.exec('CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)');
  db.transaction(() => {
    const at = (db.prepare('SELECT COALESCE(MAX(version), 0) AS v FROM schema_migrations').get() as { v: number }).v;
    if (at > SQLITE_SCHEMA_VERSION) {
      throw new Error(`the database's schema is version ${at}, newer than this coordinator's (${SQLITE_SCHEMA_VERSION}): run a newer coordinator`);
    }
    const record = db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)');
    if (at < 1) record.run(1, 'initial', nowIso());
    for (let v = Math.max(at, 1) + 1; v <= SQLITE_SCHEMA_VERSION; v++) {
      const m = MIGRATIONS[v - 2];
      m.up(db);
      record.run(v, m.name, nowIso());
    }
  }).immediate();
}

function addColumnIfMissing(db: Db, table: string, column: string, type: string): void {
  const columns = db.prepare(`PRAGMA table_info(${table})`).all() as Array<{ name: string }>;
  if (!columns.some((c) => c.name === column)) db.exec(`ALTER TABLE ${table} ADD COLUMN ${column} ${type}`);
}

export const nowIso = (): string => new Date().toISOString();
