/**
 * The attack suite (issue 17, "Must show"): real rounds over HTTP with the tiny model, 1 of 4 and
 * 2 of 8 participants hostile, every attack in scripts/robustness/attacks.ts against every
 * strategy. For each: no 5xx, refused uploads leave the round as it was, the published model is
 * finite, and the distance to honest-only FedAvg is measured — and bounded for the robust
 * strategies where they claim to bound it.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { strategyNames } from '../../src/federated/strategy';
import { ATTACKS } from '../../scripts/robustness/attacks';
import { runScenario, type ScenarioResult } from '../../scripts/robustness/harness';
import { startServer } from './helpers';

const SCENARIOS = [
  { participants: 4, hostile: 1 },
  { participants: 8, hostile: 2 },
] as const;
/** Attacks whose hostile deltas are huge: a robust strategy must keep the result near honest FedAvg. */
const MAGNITUDE_ATTACKS = new Set(['scale-1e3', 'flt-max', 'model-replacement']);

/**
 * ~100 sessions and ~1,000 durable accepts: on a memory-backed folder when there is one, so fsync
 * (what test/server/crash.test.ts exercises) does not dominate the run on a busy disk.
 */
function fastTempDir(): { path: string; remove: () => void } {
  const path = mkdtempSync(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'corag-attacks-'));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

describe('attack suite over HTTP', () => {
  const dir = fastTempDir();
  let server: Awaited<ReturnType<typeof startServer>>;
  const results = new Map<string, ScenarioResult>();
  beforeAll(async () => {
    server = await startServer({ dataDir: dir.path, rateLimitPerMinute: 1_000_000, maxConcurrentUploads: 64 });
  });
  afterAll(async () => {
    await server.app.close();
    dir.remove();
    const rows = [...results].map(([k, r]) => `${k}: ${r.relativeDistance[0].toPrecision(3)}`);
    console.log(`relative distance to honest-only FedAvg:\n${rows.join('\n')}`);
  });

  for (const { participants, hostile } of SCENARIOS) {
    for (const attack of ATTACKS) {
      it(`${hostile} of ${participants} hostile, ${attack.name}: no 5xx, refusals change nothing, every strategy publishes a finite model`, async () => {
        // One session per strategy, run side by side (the coordinator serialises within a session only).
        const runs = await Promise.all(
          strategyNames().map(async (strategy, s) => ({
            strategy,
            result: await runScenario(server.url, { strategy, participants, hostile, attack, rounds: 1, seed: 100 + s }),
          })),
        );
        for (const { strategy, result } of runs) {
          results.set(`${hostile}/${participants} ${attack.name} ${strategy}`, result);
          const label = `${strategy} vs ${attack.name}`;
          expect(
            result.statuses.every((st) => st > 0 && st < 500),
            `${label}: ${result.statuses}`,
          ).toBe(true);
          expect(result.refusedUnchanged, label).toBe(result.refused);
          expect(result.refused, label).toBe(attack.refused ? hostile : 0);
          expect(result.publishedFinite, label).toBe(true);
          const d = result.relativeDistance[0];
          expect(Number.isFinite(d) || result.rounds[0].state === 'failed', `${label}: distance ${d}`).toBe(true);
          // Refused updates never count: FedAvg then is exactly the FedAvg of the honest ones.
          if (attack.refused && strategy === 'fedavg') expect(d, label).toBeLessThan(1e-5);
          // A robust strategy keeps a huge hostile delta from moving the model further than one
          // honest step (relative distance 1 = as far as the honest update itself).
          if (strategy !== 'fedavg' && MAGNITUDE_ATTACKS.has(attack.name)) expect(d, label).toBeLessThan(1);
        }
      });
    }
  }

  it('FedAvg is exact without an attack and is moved far by a scaled update, which every robust strategy bounds', () => {
    expect(results.get('1/4 none fedavg')!.relativeDistance[0]).toBeLessThan(1e-5);
    expect(results.get('1/4 scale-1e3 fedavg')!.relativeDistance[0]).toBeGreaterThan(100);
  });
});
