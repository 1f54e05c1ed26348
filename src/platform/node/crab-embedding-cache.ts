/**
 * Passage embeddings of a CRAB store, cached beside the CRAB cache. The passage encoder is frozen
 * in every CRAB method and lab script, so a store's vectors depend only on the encoder's weights
 * and the passage ids: embedding ~3,000 passages costs minutes on a 2-core machine, reading them
 * back milliseconds. The file name carries a hash of both, so another encoder or another store
 * never reads stale vectors.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ModelBundle } from '../../corag/model-bundle';
import { embedPassages, LocalPassageStore, type PassageText } from '../../corag/retrieve';

/** A LocalPassageStore of `ids` (their text from `text`), embedded once per encoder and store. */
export async function cachedEmbeddedStore(
  bundle: ModelBundle,
  options: {
    readonly name: string;
    readonly ids: readonly string[];
    readonly text: (id: string) => PassageText;
    readonly encoderFile: string;
    readonly cacheDir: string;
  },
): Promise<LocalPassageStore> {
  const { ids, text } = options;
  const key = createHash('sha256').update(readFileSync(options.encoderFile)).update(JSON.stringify(ids)).digest('hex').slice(0, 16);
  const cacheFile = join(options.cacheDir, `embeddings-${key}.f32`);
  const dim = bundle.embeddingDim;
  let vectors: Float32Array[];
  if (existsSync(cacheFile)) {
    const flat = new Float32Array(new Uint8Array(readFileSync(cacheFile)).buffer);
    if (flat.length !== ids.length * dim) throw new Error(`${cacheFile}: ${flat.length} floats, expected ${ids.length} × ${dim}`);
    vectors = ids.map((_, i) => flat.subarray(i * dim, (i + 1) * dim));
  } else {
    vectors = await embedPassages(bundle, ids.map(text), { batchSize: 32 });
    const flat = new Float32Array(ids.length * dim);
    vectors.forEach((v, i) => flat.set(v, i * dim));
    writeFileSync(cacheFile, new Uint8Array(flat.buffer));
  }
  const store = LocalPassageStore.empty(dim, options.name);
  store.add(ids.map(text), vectors);
  return store;
}
