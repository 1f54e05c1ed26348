/**
 * A pretraining checkpoint on disk (Node), written so that a kill at any moment leaves the last
 * complete checkpoint readable, and in parts small enough for the GPU machine's file transfers
 * (16 MiB per file coming back; docs/lab/PRETRAINING.md says what that does and does not allow).
 *
 *   checkpoint/
 *     manifest.json            step, trainer state, and per blob its parts with size and SHA-256
 *     step-000123-<id>/weights.000  the blobs of one save, cut into parts of at most `partBytes`
 *     step-000123-<id>/optimizer.000, optimizer.001, …
 *
 * Saving writes a new folder (a fresh name for every save, so nothing the manifest names is ever
 * overwritten), then replaces manifest.json atomically, and only then deletes the other step
 * folders: until the manifest names the new folder, the old one is intact and is what a reader
 * gets. Reading checks every part's size and hash, so a truncated or damaged copy fails loudly
 * instead of resuming from garbage.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from './atomic-file';
import { sha256Hex } from './crab-files';
import type { PretrainCheckpoint } from '../../pretrain/checkpoint';

/** Parts stay under the device's 16 MiB limit per file brought back. */
export const CHECKPOINT_PART_BYTES = 15 * 2 ** 20;

const MANIFEST = 'manifest.json';
const FORMAT = 'corag-pretrain-checkpoint';
const BLOBS = ['weights', 'optimizer'] as const;

interface PartEntry {
  readonly file: string;
  readonly bytes: number;
  readonly sha256: string;
}

interface Manifest {
  readonly format: typeof FORMAT;
  readonly version: 1;
  readonly folder: string;
  /** PretrainerState JSON, as the trainer wrote it. */
  readonly state: string;
  readonly blobs: Record<(typeof BLOBS)[number], PartEntry[]>;
}

function stepOf(state: string): number {
  const step = (JSON.parse(state) as { step?: unknown }).step;
  if (!Number.isInteger(step) || (step as number) < 0) throw new Error(`checkpoint state has no valid step: ${state.slice(0, 80)}`);
  return step as number;
}

export function saveCheckpointFiles(dir: string, checkpoint: PretrainCheckpoint, options: { partBytes?: number } = {}): void {
  const partBytes = options.partBytes ?? CHECKPOINT_PART_BYTES;
  if (!Number.isInteger(partBytes) || partBytes <= 0) throw new Error(`partBytes must be a positive integer, got ${partBytes}`);
  mkdirSync(dir, { recursive: true });
  const folder = `step-${String(stepOf(checkpoint.state)).padStart(6, '0')}-${Date.now().toString(36)}${Math.floor(Math.random() * 36 ** 4).toString(36)}`;
  const staging = join(dir, folder);
  mkdirSync(staging);
  const blobs = {} as Record<(typeof BLOBS)[number], PartEntry[]>;
  for (const blob of BLOBS) {
    const bytes = checkpoint[blob];
    const parts: PartEntry[] = [];
    // An empty blob still gets one (empty) part, so every blob has a file to check.
    for (let offset = 0, i = 0; offset < bytes.byteLength || i === 0; offset += partBytes, i++) {
      const part = bytes.subarray(offset, Math.min(bytes.byteLength, offset + partBytes));
      const file = `${blob}.${String(i).padStart(3, '0')}`;
      writeFileAtomic(join(staging, file), [part]);
      parts.push({ file, bytes: part.byteLength, sha256: sha256Hex(part) });
    }
    blobs[blob] = parts;
  }
  const manifest: Manifest = { format: FORMAT, version: 1, folder, state: checkpoint.state, blobs };
  writeFileAtomic(join(dir, MANIFEST), [new TextEncoder().encode(JSON.stringify(manifest, null, 1))]);
  for (const name of readdirSync(dir)) {
    if (name !== folder && name !== MANIFEST && name.startsWith('step-')) rmSync(join(dir, name), { recursive: true, force: true });
  }
}

function readManifest(dir: string): Manifest | null {
  const path = join(dir, MANIFEST);
  if (!existsSync(path)) return null;
  const m = JSON.parse(readFileSync(path, 'utf8')) as Manifest;
  if (m.format !== FORMAT || m.version !== 1 || typeof m.folder !== 'string' || typeof m.state !== 'string') {
    throw new Error(`${path}: not a ${FORMAT} manifest (version 1)`);
  }
  return m;
}

/** The last complete checkpoint in `dir`, or null when none was ever completed there. */
export function readCheckpointFiles(dir: string): PretrainCheckpoint | null {
  const manifest = readManifest(dir);
  if (!manifest) return readLegacyCheckpoint(dir);
  const folder = join(dir, manifest.folder);
  const blob = (name: (typeof BLOBS)[number]): Uint8Array => {
    const parts = manifest.blobs[name].map((entry) => {
      const path = join(folder, entry.file);
      if (!existsSync(path)) throw new Error(`checkpoint ${path} is missing (copy the whole checkpoint folder)`);
      const bytes = new Uint8Array(readFileSync(path));
      if (bytes.byteLength !== entry.bytes || sha256Hex(bytes) !== entry.sha256) {
        throw new Error(`checkpoint ${path} is damaged: ${bytes.byteLength} bytes, expected ${entry.bytes} with SHA-256 ${entry.sha256.slice(0, 12)}…`);
      }
      return bytes;
    });
    const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
    let offset = 0;
    for (const p of parts) {
      out.set(p, offset);
      offset += p.byteLength;
    }
    return out;
  };
  return { weights: blob('weights'), optimizer: blob('optimizer'), state: manifest.state };
}

/** The single-file layout of earlier versions (weights.safetensors, optimizer.safetensors, state.json). */
function readLegacyCheckpoint(dir: string): PretrainCheckpoint | null {
  if (!existsSync(join(dir, 'state.json'))) return null;
  return {
    weights: new Uint8Array(readFileSync(join(dir, 'weights.safetensors'))),
    optimizer: new Uint8Array(readFileSync(join(dir, 'optimizer.safetensors'))),
    state: readFileSync(join(dir, 'state.json'), 'utf8'),
  };
}
