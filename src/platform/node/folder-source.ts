/**
 * A model folder on local disk (Node only): the ModelSource the CLI, the coordinator and tests use.
 */
import { readFile, stat } from 'node:fs/promises';
import { resolve, sep } from 'node:path';
import { checkFileName, ModelSourceError, type ModelSource } from '../../model/checkpoint/source';

export function folderModelSource(folder: string): ModelSource {
  const root = resolve(folder);
  return {
    describe: () => root,
    async fetchFile(name, onProgress) {
      const path = resolve(root, checkFileName(name));
      // checkFileName rejects `..`; this guards against anything it might miss.
      if (!path.startsWith(root + sep)) throw new ModelSourceError(`model file "${name}" is outside ${root}`);
      let bytes: Buffer;
      try {
        bytes = await readFile(path);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') {
          // A missing model folder is a different mistake from a missing file in it.
          const folderExists = await stat(root).then(
            (s) => s.isDirectory(),
            () => false,
          );
          if (!folderExists) throw new ModelSourceError(`model folder ${root} does not exist`);
          return null;
        }
        throw new ModelSourceError(`cannot read ${path}: ${(e as Error).message}`);
      }
      onProgress?.(bytes.byteLength, bytes.byteLength);
      return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    },
  };
}
