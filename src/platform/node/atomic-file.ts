/**
 * Crash-safe file replacement: write a temp file in the same folder, fsync it, rename it over the
 * target, fsync the folder. A reader (or a restart after SIGKILL) sees the old or the new file,
 * never a torn one.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { open, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

export function fsyncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Writes `chunks` (in order) to `path` atomically and durably. */
export function writeFileAtomic(path: string, chunks: readonly Uint8Array[]): void {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  const fd = openSync(tmp, 'w');
  try {
    for (const c of chunks) {
      let off = 0;
      while (off < c.byteLength) off += writeSync(fd, c, off, c.byteLength - off);
    }
    fsyncSync(fd);
  } catch (e) {
    closeSync(fd);
    unlinkSync(tmp);
    throw e;
  }
  closeSync(fd);
  renameSync(tmp, path);
  fsyncDir(dirname(path));
}

/**
 * writeFileAtomic for bytes produced as they stream in (an update read chunk by chunk, a blob read
 * from the database): `produce` appends through `write`; once it returns, the temp file is synced
 * and renamed over `path`, and its result is returned. A throw leaves `path` as it was and removes
 * the temp file (named per process and call, so concurrent writers of one path never share it).
 */
export async function writeFileAtomicStreamed<T>(path: string, produce: (write: (bytes: Uint8Array) => Promise<void>) => Promise<T>): Promise<T> {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  const out = await open(tmp, 'w');
  let result: T;
  try {
    let position = 0;
    result = await produce(async (bytes) => {
      let done = 0;
      while (done < bytes.byteLength) done += (await out.write(bytes, done, bytes.byteLength - done, position + done)).bytesWritten;
      position += bytes.byteLength;
    });
    await out.sync();
  } catch (e) {
    await out.close();
    await rm(tmp, { force: true });
    throw e;
  }
  await out.close();
  await rename(tmp, path);
  fsyncDir(dirname(path));
  return result;
}
