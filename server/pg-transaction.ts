/**
 * One PostgreSQL transaction on one pooled connection, the pattern the state, the passage records
 * and the presence table all need: COMMIT when `fn` resolves, ROLLBACK when it throws (the
 * original error is rethrown; a failed ROLLBACK on a broken connection is not), the connection
 * released either way.
 */
import type pg from 'pg';

export async function inTransaction<T>(pool: pg.Pool, fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
  const c = await pool.connect();
  try {
    await c.query('BEGIN');
    const out = await fn(c);
    await c.query('COMMIT');
    return out;
  } catch (e) {
    await c.query('ROLLBACK').catch(() => undefined);
    throw e;
  } finally {
    c.release();
  }
}
