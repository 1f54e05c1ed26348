/**
 * Node file access for CRAB building: streaming line reads (so DPR's 13 GB psgs_w100.tsv never
 * has to fit in one string), sha256 of inputs and outputs, and the loader of a built CRAB cache
 * folder for the experiment runner.
 */
import { createHash } from 'node:crypto';
import { closeSync, openSync, readFileSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import type { CrabQaRecord } from '../../crab/build';
import type { CrabSplits } from '../../crab/splits';
import type { StoreLayout, TrainingStoreName } from '../../crab/stores';
import type { Passage } from '../../crab/types';
import { readPassagesJsonl, splitLines } from '../../crab/loaders';

/** Lines of a UTF-8 file without their "\n" / "\r\n", read in 1 MiB chunks. */
export function* readLinesSync(path: string): Generator<string> {
  const fd = openSync(path, 'r');
  try {
    const decoder = new StringDecoder('utf8');
    const buffer = Buffer.alloc(1 << 20);
    let pending = '';
    for (;;) {
      const n = readSync(fd, buffer, 0, buffer.length, null);
      if (n === 0) break;
      pending += decoder.write(buffer.subarray(0, n));
      const lines = pending.split('\n');
      pending = lines.pop()!;
      for (const line of lines) yield line.endsWith('\r') ? line.slice(0, -1) : line;
    }
    pending += decoder.end();
    if (pending !== '') yield pending.endsWith('\r') ? pending.slice(0, -1) : pending;
  } finally {
    closeSync(fd);
  }
}

export function sha256Hex(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** sha256 of a file, streamed. */
export function sha256File(path: string): string {
  const hash = createHash('sha256');
  const fd = openSync(path, 'r');
  try {
    const buffer = Buffer.alloc(1 << 20);
    for (let n; (n = readSync(fd, buffer, 0, buffer.length, null)) > 0;) hash.update(buffer.subarray(0, n));
  } finally {
    closeSync(fd);
  }
  return hash.digest('hex');
}

export interface CrabCache {
  manifest: unknown;
  passages: Passage[];
  qa: CrabQaRecord[];
  splits: CrabSplits;
  stores: { training: Record<string, Record<TrainingStoreName, StoreLayout>>; test: StoreLayout };
}

/** A question of a folder's qa.jsonl: a built CRAB's (with its split) or public/demo's (none). */
export type FolderQuestion = Pick<CrabQaRecord, 'id' | 'question' | 'answers' | 'relevant'> & { split?: CrabQaRecord['split'] };

/**
 * passages.jsonl and the questions of qa.jsonl that have a relevant passage, of one split or
 * (`'all'`) every one, the first `limit`: what the evaluation scripts measure on, from a built
 * CRAB cache or from public/demo (whose questions have no split, so only `'all'` takes them).
 */
export function readQuestionFolder(dir: string, split: string, limit = Infinity): { passages: Passage[]; questions: FolderQuestion[] } {
  const passages = [...readPassagesJsonl(readLinesSync(join(dir, 'passages.jsonl')), { source: 'passages.jsonl' })];
  const questions = splitLines(readFileSync(join(dir, 'qa.jsonl'), 'utf8'))
    .map((line) => JSON.parse(line) as FolderQuestion)
    .filter((q) => (split === 'all' || q.split === split) && q.relevant.length > 0)
    .slice(0, limit);
  return { passages, questions };
}

/** Reads a folder written by scripts/build-crab-mini.ts. */
export function readCrabCache(dir: string): CrabCache {
  const json = (name: string) => JSON.parse(readFileSync(join(dir, name), 'utf8'));
  const named = (layout: Omit<StoreLayout, 'name'>, name: string): StoreLayout => ({ name, ...layout });
  const rawStores = json('stores.json') as { training: Record<string, Record<string, Omit<StoreLayout, 'name'>>>; test: Omit<StoreLayout, 'name'> };
  return {
    manifest: json('manifest.json'),
    passages: [...readPassagesJsonl(readLinesSync(join(dir, 'passages.jsonl')), { source: 'passages.jsonl' })],
    qa: splitLines(readFileSync(join(dir, 'qa.jsonl'), 'utf8')).map((line) => JSON.parse(line) as CrabQaRecord),
    splits: json('splits.json') as CrabSplits,
    stores: {
      training: Object.fromEntries(
        Object.entries(rawStores.training).map(([shots, s]) => [shots, Object.fromEntries(Object.entries(s).map(([n, l]) => [n, named(l, n)]))]),
      ) as Record<string, Record<TrainingStoreName, StoreLayout>>,
      test: named(rawStores.test, 'TEST'),
    },
  };
}
