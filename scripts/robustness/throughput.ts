/**
 * Aggregation throughput of every strategy against FedAvg on the same deltas, for
 * bench/server.bench.ts and scripts/robustness-table.ts. FedAvg: add w·Δ into the float64 running
 * sum per client, then divide (what the coordinator does at accept and close). Stored-delta
 * strategies: aggregate the same deltas from delta files on disk (written once, read back in
 * chunks at close, as the coordinator does; the files are in the page cache after writing).
 * Validation/decoding of the upload is the same for all and excluded.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { NamedTensor } from '../../src/federated/codec';
import { addWeighted, createStrategy, emptyRunningSum, strategyNames, type StoredDeltaStrategy } from '../../src/federated/strategy';
import { deltaNorm } from '../../src/federated/strategies/delta-chunks';
import { fileDeltaChunks, writeDeltaFile } from '../../server/delta-files';
import { seededRandom } from '../../src/util/random';

export interface ThroughputRow {
  readonly strategy: string;
  /** Million delta values (clients × params) aggregated per second. */
  readonly mValuesPerSecond: number;
  /** FedAvg's time / this strategy's time (1 = as fast as FedAvg). */
  readonly relativeToFedAvg: number;
  readonly ms: number;
}

export function aggregationThroughput(params: number, clients: number): ThroughputRow[] {
  const random = seededRandom(3);
  const shapes = new Map<string, readonly number[]>([['w', [params]]]);
  const deltas = Array.from(
    { length: clients },
    () => new Map<string, NamedTensor>([['w', { shape: [params], data: Float32Array.from({ length: params }, () => random() * 2 - 1) }]]),
  );
  const updates = deltas.map((d, i) => ({ weight: 10 + i, norm: deltaNorm(new Map([['w', d.get('w')!.data]])) }));
  const dir = mkdtempSync(join(tmpdir(), 'corag-throughput-'));
  try {
    const paths = deltas.map((d, i) => {
      const p = join(dir, `delta-${i + 1}.safetensors`);
      writeDeltaFile(p, d);
      return p;
    });
    const rows: Array<{ strategy: string; ms: number }> = [];
    const once = (name: string): number => {
      const strategy = createStrategy(name);
      const t = performance.now();
      if (strategy.storage === 'running-sum') {
        const sum = emptyRunningSum(shapes);
        deltas.forEach((d, i) => addWeighted(sum, d, updates[i].weight));
        strategy.aggregate(sum, updates);
      } else {
        const chunks = fileDeltaChunks(paths, shapes);
        try {
          (strategy as StoredDeltaStrategy).aggregate(chunks, updates, 0.25);
        } finally {
          chunks.close();
        }
      }
      return performance.now() - t;
    };
    // Best of three, strategies interleaved: the first run of anything pays for JIT warm-up, and
    // on a shared machine the minimum is the least disturbed measurement.
    const best = new Map(strategyNames().map((n) => [n, Infinity]));
    for (let rep = 0; rep < 3; rep++) for (const name of strategyNames()) best.set(name, Math.min(best.get(name)!, once(name)));
    for (const [strategy, ms] of best) rows.push({ strategy, ms });
    const fedavg = rows.find((r) => r.strategy === 'fedavg')!.ms;
    return rows.map((r) => ({ strategy: r.strategy, ms: r.ms, mValuesPerSecond: (params * clients) / 1e6 / (r.ms / 1e3), relativeToFedAvg: fedavg / r.ms }));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export function throughputTable(params: number, clients: number): string[] {
  const rows = aggregationThroughput(params, clients);
  return [
    `${params.toLocaleString('en')} parameters × ${clients} clients, best of 3 (FedAvg: adding every delta into the running sum and dividing; the others: reading the stored deltas back from their files and aggregating):`,
    '',
    '| strategy | ms | M values / s | speed vs fedavg |',
    '|---|---:|---:|---:|',
    ...rows.map((r) => `| ${r.strategy} | ${r.ms.toFixed(0)} | ${r.mValuesPerSecond.toFixed(1)} | ${r.relativeToFedAvg.toFixed(2)} |`),
  ];
}
