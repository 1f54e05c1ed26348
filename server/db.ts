/**
 * SQLite (better-sqlite3, WAL) is the system of record: sessions, clients, model versions, rounds,
 * accepted updates and passages. Every accept commits here before the HTTP response. Big blobs
 * (model versions, the running sum) live in files whose names the database points to.
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

export function openDatabase(path: string): Db {
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  // FULL: a commit is on disk when the statement returns (the response follows it).
  db.pragma('synchronous = FULL');
  db.pragma('foreign_keys = ON');
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
  return db;
}

function addColumnIfMissing(db: Db, table: string, column: string, type: string): void {
  const columns = db.prepare(`PRAGMA table_info(${table})`).all() as Array<{ name: string }>;
  if (!columns.some((c) => c.name === column)) db.exec(`ALTER TABLE ${table} ADD COLUMN ${column} ${type}`);
}

export const nowIso = (): string => new Date().toISOString();
