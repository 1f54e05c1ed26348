/**
 * Test-only fault injection. With CORAG_CRASH_AT=<point>[,<point>...] the coordinator kills itself
 * with SIGKILL (no cleanup, like a power cut) the first time execution reaches a named point, so the
 * crash-safety tests can stop it at exactly the moments that matter. `<point>#<n>` crashes on the
 * n-th arrival. Unset in production: then this is a no-op.
 */
export type CrashPoint =
  | 'upload:received' // update body read, nothing validated or stored yet
  | 'upload:sum-written' // new running-sum file on disk, SQLite not yet committed
  | 'upload:committed' // update committed, response not yet sent
  | 'aggregate:start' // round marked closing, new version not yet written
  | 'aggregate:written' // new version file on disk, SQLite not yet committed
  | 'passages:committed' // passages committed, response not yet sent
  | 'passages:vectors-committed' // LanceDB store: new vectors committed, their records not yet
  | 'passages:records-withdrawn' // LanceDB store: a withdrawal's records committed, its vector not yet deleted
  | 'blob:chunk-written'; // database blob store: a chunk of a blob inserted, its transaction not yet committed

const armed = new Map<string, number>();
for (const spec of (process.env.CORAG_CRASH_AT ?? '').split(',').filter(Boolean)) {
  const [point, nth] = spec.split('#');
  armed.set(point, nth ? Number(nth) : 1);
}

export function crashPoint(point: CrashPoint): void {
  const left = armed.get(point);
  if (left === undefined) return;
  if (left > 1) {
    armed.set(point, left - 1);
    return;
  }
  process.kill(process.pid, 'SIGKILL');
}
