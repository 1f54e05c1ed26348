/**
 * Copy decoding for FiD batches (src/model/t5/copy-decoding.ts): the token at each fused encoder
 * position, and the control tokens the pointer leaves to the LM head.
 */
import type { CopyDecodingOptions } from '../model/t5/copy-decoding';
import type { TextTokenizer } from '../model/tokenizer';

const controlCache = new WeakMap<TextTokenizer, ReadonlySet<number>>();

/** EOS, padding, unknown and every sentinel (`<extra_id_N>`) of a T5 tokenizer, cached. */
export function controlTokens(tokenizer: TextTokenizer): ReadonlySet<number> {
  let set = controlCache.get(tokenizer);
  if (!set) {
    const ids = new Set<number>([tokenizer.padId]);
    if (tokenizer.eosId !== undefined) ids.add(tokenizer.eosId);
    for (const token of ['<unk>', '<pad>', '</s>']) {
      const id = tokenizer.tokenToId(token);
      if (id !== undefined) ids.add(id);
    }
    for (let n = 0; ; n++) {
      const id = tokenizer.tokenToId(`<extra_id_${n}>`);
      if (id === undefined) break;
      ids.add(id);
    }
    set = ids;
    controlCache.set(tokenizer, set);
  }
  return set;
}

/**
 * Copy-decoding options for a FiD batch whose input ids are [B·k, L] row-major (row b·k + j is
 * question b with passage j): example b's fused encoder positions are its k rows one after another.
 */
export function fidCopyDecoding(tokenizer: TextTokenizer, inputIds: Int32Array, batchSize: number, numPassages: number, weight: number): CopyDecodingOptions {
  const perExample = inputIds.length / batchSize;
  if (!Number.isInteger(perExample) || perExample % numPassages !== 0) {
    throw new Error(`fidCopyDecoding: ${inputIds.length} ids are not ${batchSize} examples of ${numPassages} equal rows`);
  }
  return {
    weight,
    sourceIds: Array.from({ length: batchSize }, (_, b) => inputIds.subarray(b * perExample, (b + 1) * perExample)),
    controlTokens: controlTokens(tokenizer),
  };
}
