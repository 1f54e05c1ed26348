/**
 * The coordinator-state tables as the copy command (server/copy-deployment.ts) sees them: their
 * columns with the value kinds both engines must agree on, how a row is ordered, and one canonical
 * digest per table, computed the same way over SQLite rows and over PostgreSQL rows. Equal digests
 * mean equal rows, value for value and (for clients) in the same join order.
 *
 * Rows are sorted here, in JavaScript, not by `ORDER BY`: PostgreSQL orders text by its database's
 * collation (en_US sorts unlike SQLite's binary order), so the two engines' ORDER BY can differ on
 * the same rows.
 */
import { createHash } from 'node:crypto';

type Kind = 'text' | 'int' | 'bigint' | 'float';

interface Column {
  readonly name: string;
  readonly kind: Kind;
  readonly nullable?: boolean;
  /** The text holds JSON of this shape (checked before anything is copied). */
  readonly json?: 'object' | 'array';
}

export interface TableSpec {
  readonly name: 'sessions' | 'clients' | 'model_versions' | 'rounds' | 'updates' | 'training_questions';
  /** The column naming the row's session. */
  readonly session: 'id' | 'session_id';
  readonly columns: readonly Column[];
  /** Columns a row is ordered by within its session; `ord` is the join order (SQLite rowid, PostgreSQL seq). */
  readonly key: readonly string[];
}

const text = (name: string, extra: Partial<Column> = {}): Column => ({ name, kind: 'text', ...extra });
const int = (name: string, extra: Partial<Column> = {}): Column => ({ name, kind: 'int', ...extra });
const float = (name: string, extra: Partial<Column> = {}): Column => ({ name, kind: 'float', ...extra });

/** In foreign-key order: a table only names rows of the ones before it. */
export const STATE_TABLES: readonly TableSpec[] = [
  {
    name: 'sessions',
    session: 'id',
    columns: [
      text('id'),
      text('config', { json: 'object' }),
      text('admin_token_hash'),
      text('join_code'),
      int('current_version', { nullable: true }),
      text('created_at'),
    ],
    key: ['id'],
  },
  {
    name: 'clients',
    session: 'session_id',
    columns: [text('id'), text('session_id'), text('name'), text('token_hash'), text('joined_at')],
    key: ['ord'],
  },
  {
    name: 'model_versions',
    session: 'session_id',
    columns: [text('session_id'), int('version'), text('file'), int('round', { nullable: true }), text('created_at')],
    key: ['version'],
  },
  {
    name: 'rounds',
    session: 'session_id',
    columns: [
      text('session_id'),
      int('number'),
      text('state'),
      int('base_version'),
      int('result_version', { nullable: true }),
      text('participants', { json: 'array' }),
      text('config', { json: 'object' }),
      text('opened_at'),
      text('deadline_at'),
      text('closed_at', { nullable: true }),
      int('sum_seq'),
      float('weight_total'),
      text('metric_sums', { json: 'object' }),
      text('metrics', { json: 'object' }),
      text('failure_reason', { nullable: true }),
    ],
    key: ['number'],
  },
  {
    name: 'updates',
    session: 'session_id',
    columns: [
      text('session_id'),
      int('round'),
      text('client_id'),
      int('num_examples'),
      float('weight'),
      int('sum_seq'),
      { name: 'bytes', kind: 'bigint' },
      text('accepted_at'),
      float('norm', { nullable: true }),
    ],
    key: ['round', 'client_id'],
  },
  {
    name: 'training_questions',
    session: 'session_id',
    columns: [text('session_id'), int('position'), text('question'), text('answers', { json: 'array' })],
    key: ['position'],
  },
];

export type Row = Record<string, unknown>;

/** PostgreSQL's array type for a column kind (the bulk insert's unnest casts). */
export const PG_ARRAY_TYPE: Record<Kind, string> = { text: 'text[]', int: 'int4[]', bigint: 'int8[]', float: 'float8[]' };

/**
 * A row's values in column order, checked and normalised (PostgreSQL returns int8 as a string; both
 * engines' doubles print the same shortest form). Throws naming the table, the row and the column.
 */
export function rowValues(table: TableSpec, row: Row): unknown[] {
  return table.columns.map((c) => {
    const v = row[c.name];
    const where = () => `${table.name} row ${describeRow(table, row)}: column ${c.name}`;
    if (v === null || v === undefined) {
      if (c.nullable) return null;
      throw new Error(`${where()} is empty`);
    }
    if (c.kind === 'text') {
      if (typeof v !== 'string') throw new Error(`${where()} is not text`);
      if (c.json) checkJson(v, c.json, where);
      return v;
    }
    const n = typeof v === 'bigint' || typeof v === 'string' ? Number(v) : v;
    if (typeof n !== 'number' || !Number.isFinite(n) || (c.kind !== 'float' && !Number.isSafeInteger(n))) {
      throw new Error(`${where()} is not ${c.kind === 'float' ? 'a finite number' : 'an integer'} (${String(v).slice(0, 40)})`);
    }
    return n;
  });
}

function checkJson(value: string, shape: 'object' | 'array', where: () => string): void {
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    throw new Error(`${where()} is not valid JSON`);
  }
  const ok = shape === 'array' ? Array.isArray(parsed) : typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed);
  if (!ok) throw new Error(`${where()} is not a JSON ${shape}`);
}

export function describeRow(table: TableSpec, row: Row): string {
  const id = [table.session, ...table.key.filter((k) => k !== 'ord')].map((k) => `${k}=${String(row[k])}`);
  return `(${id.join(', ')})`;
}

const compare = (a: unknown, b: unknown): number => {
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  const x = String(a);
  const y = String(b);
  return x < y ? -1 : x > y ? 1 : 0;
};

/** Rows grouped by session and sorted by the table's key (numbers numerically, text by code unit). */
export function sortedRows(table: TableSpec, rows: readonly Row[]): Row[] {
  const keyOf = (r: Row) => [r[table.session], ...table.key.map((k) => (k === 'ord' ? Number(r.ord) : r[k]))];
  return [...rows].sort((a, b) => {
    const ka = keyOf(a);
    const kb = keyOf(b);
    for (let i = 0; i < ka.length; i++) {
      const c = compare(ka[i], kb[i]);
      if (c !== 0) return c;
    }
    return 0;
  });
}

/** Row count and SHA-256 of canonical rows (one JSON array per row, in the given order). */
export interface TableDigest {
  readonly rows: number;
  readonly sha256: string;
}

export function digestRows(rows: Iterable<readonly unknown[]>): TableDigest {
  const hash = createHash('sha256');
  let n = 0;
  for (const values of rows) {
    hash.update(JSON.stringify(values));
    hash.update('\n');
    n++;
  }
  return { rows: n, sha256: hash.digest('hex') };
}

/** The digest of a state table's rows (sorted and normalised here). */
export function digestTable(table: TableSpec, rows: readonly Row[]): TableDigest {
  return digestRows(sortedRows(table, rows).map((r) => rowValues(table, r)));
}
