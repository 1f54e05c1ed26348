/**
 * The LanceDB vector tables of the passage store, as both their writers see them: the coordinator's
 * store (server/lance-passages.ts) and the deployment copy (server/copy-deployment.ts). One table
 * per session, `passages_<sessionId>`, rows (`id` int64 = the passage record's id, `vector`
 * float32[dim]); built and read as Arrow data without per-value copies.
 */
import { createRequire } from 'node:module';
import type { Connection, Table } from '@lancedb/lancedb';

export type Lance = typeof import('@lancedb/lancedb');
type Arrow = typeof import('apache-arrow');

export const vectorTableName = (sessionId: string): string => `passages_${sessionId}`;

/**
 * LanceDB and the Arrow build it understands: the CommonJS one lancedb itself loads (Arrow objects
 * from the ES module build are another class to it: "schemas must be equivalent").
 */
export async function loadLance(): Promise<{ lance: Lance; arrow: Arrow }> {
  const lance = await import('@lancedb/lancedb');
  return { lance, arrow: createRequire(import.meta.url)('apache-arrow') as Arrow };
}

export function vectorSchema(arrow: Arrow, dim: number) {
  const { Schema, Field, Int64, FixedSizeList, Float32 } = arrow;
  return new Schema([new Field('id', new Int64(), false), new Field('vector', new FixedSizeList(dim, new Field('item', new Float32(), true)), false)]);
}

/** Rows (id, vector) as one Arrow table. */
export function vectorRows(arrow: Arrow, ids: readonly number[], vectors: readonly Float32Array[], dim: number) {
  const { makeData, Struct, Int64, Float32, FixedSizeList, Field, RecordBatch, Table: ArrowTable } = arrow;
  const schema = vectorSchema(arrow, dim);
  const flat = new Float32Array(ids.length * dim);
  vectors.forEach((v, i) => flat.set(v, i * dim));
  const id = makeData({ type: new Int64(), length: ids.length, nullCount: 0, data: BigInt64Array.from(ids, (x) => BigInt(x)) });
  const values = makeData({ type: new Float32(), length: flat.length, nullCount: 0, data: flat });
  const vector = makeData({ type: new FixedSizeList(dim, new Field('item', new Float32(), true)), length: ids.length, nullCount: 0, child: values });
  const struct = makeData({ type: new Struct(schema.fields), length: ids.length, nullCount: 0, children: [id, vector] });
  return new ArrowTable(schema, new RecordBatch(schema, struct));
}

/** The `vector` column of a record batch as one row-major Float32Array view (no per-value copies). */
export function vectorsOf(
  batch: {
    numRows: number;
    getChild(name: string): { data: ReadonlyArray<{ offset: number; children: ReadonlyArray<{ offset: number; values: unknown }> }> } | null;
  },
  dim: number,
): Float32Array {
  const data = batch.getChild('vector')!.data[0];
  const child = data.children[0];
  const start = data.offset * dim + child.offset;
  return (child.values as Float32Array).subarray(start, start + batch.numRows * dim);
}

/** Every (id, vector) of a table, or of the rows `where` selects; `withVectors: false` reads the ids only. */
export async function scanVectors(table: Table, dim: number, withVectors: boolean, where?: string): Promise<{ ids: number[]; vectors: Float32Array }> {
  let query = table.query().select(withVectors ? ['id', 'vector'] : ['id']);
  if (where !== undefined) query = query.where(where);
  const result = await query.toArrow();
  const ids: number[] = [];
  const vectors = new Float32Array(withVectors ? result.numRows * dim : 0);
  for (const batch of result.batches) {
    const idColumn = batch.getChild('id')!;
    for (let i = 0; i < batch.numRows; i++) ids.push(Number(idColumn.get(i) as bigint));
    if (withVectors) vectors.set(vectorsOf(batch, dim), (ids.length - batch.numRows) * dim);
  }
  return { ids, vectors };
}

/** Every table name of a connection (paged: tableNames returns at most `limit`). */
export async function allTableNames(conn: Connection): Promise<Set<string>> {
  const names = new Set<string>();
  let startAfter: string | undefined;
  for (;;) {
    const page = await conn.tableNames({ limit: 1000, ...(startAfter === undefined ? {} : { startAfter }) });
    page.forEach((n) => names.add(n));
    if (page.length < 1000) return names;
    startAfter = page[page.length - 1];
  }
}

/** The dimension of a table's `vector` column (throws when it has none). */
export async function vectorDim(table: Table): Promise<number> {
  const field = (await table.schema()).fields.find((f) => f.name === 'vector');
  const dim = (field?.type as { listSize?: number } | undefined)?.listSize;
  if (!dim) throw new Error(`table ${table.name} has no fixed-size "vector" column`);
  return dim;
}
