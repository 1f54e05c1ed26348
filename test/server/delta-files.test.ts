/** Stored deltas read back in chunks from disk give exactly what the same deltas in memory give. */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import { createStrategy, type StoredDeltaStrategy } from '../../src/federated/strategy';
import { inMemoryDeltaChunks } from '../../src/federated/strategies/delta-chunks';
import { fileDeltaChunks, writeDeltaFile } from '../../server/delta-files';
import { randomTensors, seeded, tempDir, trainedShapes } from './helpers';

describe('delta files', () => {
  it('visit the same chunks as the in-memory deltas, so every strategy aggregates them identically', () => {
    const dir = tempDir();
    try {
      const random = seeded(9);
      const deltas = Array.from({ length: 5 }, () => randomTensors(trainedShapes(), random, 0.1));
      const paths = deltas.map((d, i) => {
        const p = join(dir.path, `delta-${i + 1}.safetensors`);
        writeDeltaFile(p, d);
        return p;
      });
      const shapes = new Map(trainedShapes().map(([n, s]) => [n, s as readonly number[]]));
      const updates = deltas.map((_, i) => ({ weight: i + 1, norm: 1 + i / 10 }));
      for (const name of ['norm-clip', 'median', 'trimmed-mean', 'multi-krum', 'centered-clip']) {
        const strategy = createStrategy(name) as StoredDeltaStrategy;
        const fromFiles = fileDeltaChunks(paths, shapes, 100);
        try {
          const a = strategy.aggregate(fromFiles, updates, 0.3);
          const b = strategy.aggregate(inMemoryDeltaChunks(deltas, 100), updates, 0.3);
          for (const [tensor, values] of a.delta) expect(values, `${name} ${tensor}`).toEqual(b.delta.get(tensor));
        } finally {
          fromFiles.close();
        }
      }
      writeFileSync(paths[2], new Uint8Array(40));
      expect(() => fileDeltaChunks(paths, shapes)).toThrow(/delta-3/);
    } finally {
      dir.remove();
    }
  });
});
