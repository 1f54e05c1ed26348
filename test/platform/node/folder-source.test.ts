import { beforeAll, describe, expect, it } from 'vitest';
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { folderModelSource } from '../../../src/platform/node/folder-source';
import { resolveModelSource } from '../../../src/model/checkpoint/source';

let folder: string;

beforeAll(async () => {
  folder = await mkdtemp(join(tmpdir(), 'corag-folder-'));
  await writeFile(join(folder, 'config.json'), '{"model_type":"t5"}');
  await mkdir(join(folder, 'sub'));
  await writeFile(join(folder, 'sub', 'part.bin'), new Uint8Array([1, 2, 3]));
});

describe('folderModelSource', () => {
  it('reads files by name, including files in subfolders, and reports their size as progress', async () => {
    const source = folderModelSource(folder);
    expect(source.describe()).toBe(folder);
    const events: Array<[number, number | undefined]> = [];
    expect(new TextDecoder().decode((await source.fetchFile('config.json', (l, t) => events.push([l, t])))!)).toBe('{"model_type":"t5"}');
    expect(events).toEqual([[19, 19]]);
    expect([...(await source.fetchFile('sub/part.bin'))!]).toEqual([1, 2, 3]);
  });

  it('returns null for a missing file', async () => {
    expect(await folderModelSource(folder).fetchFile('model.safetensors')).toBeNull();
  });

  it('says when the folder itself does not exist', async () => {
    await expect(folderModelSource(join(folder, 'nope')).fetchFile('config.json')).rejects.toThrow(`model folder ${join(folder, 'nope')} does not exist`);
  });

  it('refuses names that leave the folder', async () => {
    await expect(folderModelSource(join(folder, 'sub')).fetchFile('../config.json')).rejects.toThrow('invalid model file name "../config.json"');
    await expect(folderModelSource(folder).fetchFile('/etc/passwd')).rejects.toThrow('invalid model file name');
  });

  it('reports read errors other than a missing file', async () => {
    await expect(folderModelSource(folder).fetchFile('sub')).rejects.toThrow(`cannot read ${join(folder, 'sub')}`);
  });

  it('is what resolveModelSource opens for ./relative and /absolute paths', async () => {
    const source = resolveModelSource(folder, { openFolder: folderModelSource });
    expect(await source.fetchFile('config.json')).not.toBeNull();
  });
});
