/**
 * Copy decoding: the reader's last-layer cross-attention used as a pointer over its input tokens
 * while generating (the copy distribution of pointer-generator networks, See et al. 2017), mixed
 * with the LM head's distribution.
 *
 * Why: a small reader trained with copy-attention supervision (src/model/t5/copy-attention.ts)
 * learns *where* the answer is long before its LM head learns to turn the attended position into
 * exactly that token among tens of thousands. Reading the token straight off the attended
 * position uses what the model already knows. The weights stay a plain T5; only decoding changes.
 *
 * Who decides what: the LM head alone decides the "control" tokens (EOS, sentinels, padding) —
 * whether to stop, the `<extra_id_0>` the target format starts with — because the supervised
 * heads were never trained to point at those. The remaining probability mass is split between
 * the LM head (1 − weight) and the pointer (weight), where the pointer's share is the attention
 * mass on each input token, averaged over the chosen heads and renormalised over non-control
 * tokens. Each row still sums to 1, so beam scores stay log-probabilities.
 */

export interface CopyDecodingOptions {
  /** Share of the non-control probability mass given to the pointer, in [0, 1]. */
  readonly weight: number;
  /** Heads of the last decoder layer whose cross-attention points (default: all). */
  readonly heads?: readonly number[];
  /** Per example (encoder batch row), the token id at each encoder position [S]. */
  readonly sourceIds: readonly Int32Array[];
  /** Tokens the LM head alone scores (EOS, pad, sentinels). */
  readonly controlTokens: ReadonlySet<number>;
}

/** Checks a copy-decoding request against the encoder batch and the model; throws a clear error. */
export function validateCopyDecoding(copy: CopyDecodingOptions, examples: number, sourceLength: number, numHeads: number): void {
  if (!(copy.weight >= 0 && copy.weight <= 1)) throw new Error(`copy decoding: weight must be in [0, 1], got ${copy.weight}`);
  if (copy.sourceIds.length !== examples) throw new Error(`copy decoding: ${copy.sourceIds.length} source rows for ${examples} examples`);
  for (const ids of copy.sourceIds) {
    if (ids.length !== sourceLength) throw new Error(`copy decoding: a source row has ${ids.length} ids, the encoder output ${sourceLength} positions`);
  }
  for (const h of copy.heads ?? []) {
    if (!Number.isInteger(h) || h < 0 || h >= numHeads) throw new Error(`copy decoding: head ${h} is not among the ${numHeads} heads`);
  }
  if (copy.heads && copy.heads.length === 0) throw new Error('copy decoding: heads is empty');
}

/**
 * Mixes next-token log-probabilities with the pointer, in place. `logProbs` [rows, vocab] are the
 * LM head's log-softmax; `attention` [rows, heads, S] the last decoder layer's cross-attention of
 * the new position; `exampleOf(row)` the example whose source ids the row reads (beams share one).
 */
export function mixCopyDistribution(
  logProbs: Float32Array,
  attention: Float32Array,
  rows: number,
  vocab: number,
  numHeads: number,
  sourceLength: number,
  copy: CopyDecodingOptions,
  exampleOf: (row: number) => number,
): void {
  const heads = copy.heads ?? Array.from({ length: numHeads }, (_, h) => h);
  const pointer = new Float32Array(vocab);
  for (let r = 0; r < rows; r++) {
    const source = copy.sourceIds[exampleOf(r)];
    pointer.fill(0);
    let pointed = 0;
    for (const h of heads) {
      const base = (r * numHeads + h) * sourceLength;
      for (let s = 0; s < sourceLength; s++) {
        const id = source[s];
        if (copy.controlTokens.has(id) || id < 0 || id >= vocab) continue;
        const a = attention[base + s];
        pointer[id] += a;
        pointed += a;
      }
    }
    const row = logProbs.subarray(r * vocab, (r + 1) * vocab);
    let control = 0;
    for (const id of copy.controlTokens) if (id >= 0 && id < vocab) control += Math.exp(row[id]);
    const content = Math.max(0, 1 - control);
    // Nothing pointed at a content token (all attention on control positions): the LM alone.
    if (pointed <= 0 || content <= 0) continue;
    const pointerShare = (copy.weight * content) / pointed;
    for (let v = 0; v < vocab; v++) {
      if (copy.controlTokens.has(v)) continue;
      row[v] = Math.log((1 - copy.weight) * Math.exp(row[v]) + pointerShare * pointer[v]);
    }
  }
}
