import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { readCheckpointFiles, saveCheckpointFiles } from '../../../src/platform/node/pretrain-checkpoint-files';
import type { PretrainCheckpoint } from '../../../src/pretrain/checkpoint';

const dirs: string[] = [];
const tempDir = () => {
  const d = mkdtempSync(join(tmpdir(), 'corag-ckpt-'));
  dirs.push(d);
  return d;
};
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function checkpoint(step: number, weightBytes: number, optimizerBytes: number): PretrainCheckpoint {
  const fill = (n: number, seed: number) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed * 7) & 255);
  return { weights: fill(weightBytes, step), optimizer: fill(optimizerBytes, step + 100), state: JSON.stringify({ step, rng: 42 }) };
}
const stepFolders = (dir: string) => readdirSync(dir).filter((n) => n.startsWith('step-'));

describe('checkpoint files', () => {
  it('cut every blob into parts no larger than the limit and read back byte for byte', () => {
    const dir = tempDir();
    const c = checkpoint(7, 2500, 1000);
    saveCheckpointFiles(dir, c, { partBytes: 1000 });
    const [folder] = stepFolders(dir);
    expect(folder).toMatch(/^step-000007-/);
    const parts = readdirSync(join(dir, folder)).sort();
    expect(parts).toEqual(['optimizer.000', 'weights.000', 'weights.001', 'weights.002']);
    for (const p of parts) expect(statSync(join(dir, folder, p)).size).toBeLessThanOrEqual(1000);
    expect(readCheckpointFiles(dir)).toEqual(c);
  });

  it('has no checkpoint in an empty folder, and keeps only the newest after saving again (same step too)', () => {
    const dir = tempDir();
    expect(readCheckpointFiles(dir)).toBeNull();
    saveCheckpointFiles(dir, checkpoint(1, 10, 10));
    saveCheckpointFiles(dir, checkpoint(2, 20, 20));
    saveCheckpointFiles(dir, checkpoint(2, 30, 30)); // the final save right after a timed one
    expect(stepFolders(dir)).toHaveLength(1);
    expect(readCheckpointFiles(dir)).toEqual(checkpoint(2, 30, 30));
  });

  it('a save killed before its manifest leaves the previous checkpoint readable, and the next save clears the debris', () => {
    const dir = tempDir();
    const first = checkpoint(5, 300, 200);
    saveCheckpointFiles(dir, first, { partBytes: 128 });
    // What a kill mid-save leaves: the next step's folder half-written, a manifest not yet renamed.
    mkdirSync(join(dir, 'step-000009-crashed'));
    writeFileSync(join(dir, 'step-000009-crashed', 'weights.000'), new Uint8Array(17));
    writeFileSync(join(dir, '.manifest.json.4242.tmp'), '{"format":"corag-pre');
    expect(readCheckpointFiles(dir)).toEqual(first);
    saveCheckpointFiles(dir, checkpoint(10, 50, 50));
    expect(existsSync(join(dir, 'step-000009-crashed'))).toBe(false);
    expect(readCheckpointFiles(dir)).toEqual(checkpoint(10, 50, 50));
  });

  it('refuses a damaged or missing part by name instead of resuming from it', () => {
    const dir = tempDir();
    saveCheckpointFiles(dir, checkpoint(3, 2000, 500), { partBytes: 1000 });
    const folder = join(dir, stepFolders(dir)[0]);
    const part = join(folder, 'weights.001');
    const bytes = readFileSync(part);
    bytes[10] ^= 1;
    writeFileSync(part, bytes);
    expect(() => readCheckpointFiles(dir)).toThrow(/weights\.001 is damaged: 1000 bytes, expected 1000 with SHA-256/);
    writeFileSync(part, bytes.subarray(0, 600)); // a truncated copy
    expect(() => readCheckpointFiles(dir)).toThrow(/weights\.001 is damaged: 600 bytes/);
    rmSync(part);
    expect(() => readCheckpointFiles(dir)).toThrow(/weights\.001 is missing/);
  });

  it('still reads the single-file layout earlier versions wrote', () => {
    const dir = tempDir();
    const c = checkpoint(4, 40, 30);
    writeFileSync(join(dir, 'weights.safetensors'), c.weights);
    writeFileSync(join(dir, 'optimizer.safetensors'), c.optimizer);
    writeFileSync(join(dir, 'state.json'), c.state);
    expect(readCheckpointFiles(dir)).toEqual(c);
  });
});
