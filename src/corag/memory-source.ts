/**
 * A model "folder" held in memory: the ModelSource for checkpoints generated on the fly (the tiny
 * random models of src/model/tiny.ts used by tests, the offline demo and the quick benchmark) or
 * assembled from files the page already has.
 */
import { checkFileName, type ModelSource } from '../model/checkpoint/source';

export function memoryModelSource(description: string, files: ReadonlyMap<string, Uint8Array>): ModelSource {
  return {
    describe: () => description,
    async fetchFile(name, onProgress) {
      const bytes = files.get(checkFileName(name));
      if (!bytes) return null;
      onProgress?.(bytes.byteLength, bytes.byteLength);
      return bytes;
    },
  };
}
