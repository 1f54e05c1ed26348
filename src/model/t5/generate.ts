/**
 * Autoregressive decoding over an encoder output (plain T5 or a fused FiD encoding) with an
 * incremental KV cache: each step feeds only the newest token; self-attention keys/values of
 * earlier positions and the cross-attention keys/values come from the cache.
 */
import * as tf from '@tensorflow/tfjs-core';
import { mixCopyDistribution, validateCopyDecoding, type CopyDecodingOptions } from './copy-decoding';
import type { DecoderCache } from './decoder';
import type { T5Model } from './model';

export interface GenerateOptions {
  /** Most tokens to generate after the start token. */
  readonly maxNewTokens: number;
  /** End-of-sequence is suppressed until this many tokens were generated (HF `min_new_tokens`). */
  readonly minNewTokens?: number;
  /** Defaults to the config's eos_token_id. */
  readonly eosTokenId?: number;
  /** Defaults to the config's decoder_start_token_id. */
  readonly startTokenId?: number;
  /** Restricts each step's next token (e.g. to spans of the passages); absent: any token. */
  readonly constraint?: DecodingConstraint;
  /** Mix a pointer over the input tokens into each step's distribution (src/model/t5/copy-decoding.ts). */
  readonly copy?: CopyDecodingOptions;
}

/**
 * Which tokens may come next. Tokens outside the returned list get score -∞ (applied after the
 * log-softmax in beam search, like HF's logits processors, so scores stay the model's own).
 */
export interface DecodingConstraint {
  /**
   * `example` is the row of the encoder batch (beams of one example share it); `generated` the
   * tokens produced so far, without the start token. An empty list means "end here" (EOS); null
   * means no restriction for this row.
   */
  allowedNext(example: number, generated: readonly number[]): readonly number[] | null;
}

interface ResolvedOptions {
  readonly maxNewTokens: number;
  readonly minNewTokens: number;
  readonly eos: number;
  readonly start: number;
  readonly constraint?: DecodingConstraint;
  readonly copy?: CopyDecodingOptions;
}

function resolve(model: T5Model, encoderHidden: tf.Tensor, options: GenerateOptions): ResolvedOptions {
  const { maxNewTokens, minNewTokens = 0 } = options;
  if (options.copy) validateCopyDecoding(options.copy, encoderHidden.shape[0], encoderHidden.shape[1]!, model.config.num_heads);
  if (!Number.isInteger(maxNewTokens) || maxNewTokens <= 0) throw new Error(`generate: maxNewTokens must be a positive integer, got ${maxNewTokens}`);
  if (!Number.isInteger(minNewTokens) || minNewTokens < 0) throw new Error(`generate: minNewTokens must be a non-negative integer, got ${minNewTokens}`);
  return {
    maxNewTokens,
    minNewTokens,
    eos: options.eosTokenId ?? model.config.eos_token_id,
    start: options.startTokenId ?? model.config.decoder_start_token_id,
    constraint: options.constraint,
    copy: options.copy,
  };
}

/** Additive mask [rows, vocab]: 0 where the constraint allows a token, -∞ elsewhere. */
function constraintMask(
  constraint: DecodingConstraint,
  rows: number,
  vocab: number,
  eos: number,
  exampleOf: (row: number) => number,
  generatedOf: (row: number) => readonly number[],
): tf.Tensor2D {
  const mask = new Float32Array(rows * vocab).fill(-Infinity);
  for (let r = 0; r < rows; r++) {
    const allowed = constraint.allowedNext(exampleOf(r), generatedOf(r));
    if (allowed === null) {
      mask.fill(0, r * vocab, (r + 1) * vocab);
      continue;
    }
    if (allowed.length === 0) mask[r * vocab + eos] = 0;
    for (const id of allowed) if (Number.isInteger(id) && id >= 0 && id < vocab) mask[r * vocab + id] = 0;
  }
  return tf.tensor2d(mask, [rows, vocab]);
}

/**
 * Runs one cached decoder step for `tokens` (one per row) and returns log-probabilities or logits
 * [rows, vocab] (always log-probabilities with copy decoding; `exampleOf` maps a row to its example).
 */
async function nextTokenScores(
  model: T5Model,
  cache: DecoderCache,
  tokens: Int32Array,
  suppressEos: number | null,
  logProbs: boolean,
  allowedMask: tf.Tensor2D | undefined,
  copy: CopyDecodingOptions | undefined,
  exampleOf: (row: number) => number,
): Promise<tf.Tensor2D> {
  const input = tf.tensor2d(tokens, [tokens.length, 1], 'int32');
  let logits: tf.Tensor2D;
  let normalised = false;
  if (copy) {
    const step = model.stepLogitsAndAttention(input, cache);
    const lm = tf.logSoftmax(step.logits);
    const [rows, vocab] = lm.shape;
    const [, heads, sources] = step.attention.shape;
    const [mixed, attention] = (await Promise.all([lm.data(), step.attention.data()])) as [Float32Array, Float32Array];
    mixCopyDistribution(mixed, attention, rows, vocab, heads, sources, copy, exampleOf);
    tf.dispose([step.logits, step.attention, lm]);
    logits = tf.tensor2d(mixed, [rows, vocab]);
    normalised = true;
  } else {
    logits = model.stepLogits(input, cache);
  }
  input.dispose();
  const scores = tf.tidy(() => {
    let s: tf.Tensor2D = logProbs && !normalised ? tf.logSoftmax(logits) : logits;
    if (suppressEos !== null) {
      // Like HF's logits processors: -inf after the log-softmax, without renormalising.
      const isEos = tf.cast(tf.oneHot(tf.tensor1d([suppressEos], 'int32'), logits.shape[1]), 'bool');
      s = tf.where(isEos, tf.fill(s.shape, -Infinity), s) as tf.Tensor2D;
    }
    if (allowedMask) s = tf.add(s, allowedMask);
    return s;
  });
  allowedMask?.dispose();
  if (scores !== logits) logits.dispose();
  return scores;
}

/**
 * Greedy decoding of each row of `encoderHidden` [B, S, d] / `encoderMask` [B, S]. Returns per
 * row the token ids, starting with the start token and ending with EOS when one was produced.
 */
export async function greedyGenerate(model: T5Model, encoderHidden: tf.Tensor, encoderMask: tf.Tensor, options: GenerateOptions): Promise<number[][]> {
  const o = resolve(model, encoderHidden, options);
  const rows = encoderHidden.shape[0];
  const sequences = Array.from({ length: rows }, () => [o.start]);
  const finished = new Array<boolean>(rows).fill(false);
  const cache = model.createDecoderCache(encoderHidden, encoderMask);
  try {
    let last = new Int32Array(rows).fill(o.start);
    for (let step = 0; step < o.maxNewTokens && !finished.every(Boolean); step++) {
      const mask =
        o.constraint &&
        constraintMask(
          o.constraint,
          rows,
          model.config.vocab_size,
          o.eos,
          (r) => r,
          (r) => sequences[r].slice(1),
        );
      const scores = await nextTokenScores(model, cache, last, step < o.minNewTokens ? o.eos : null, false, mask, o.copy, (r) => r);
      const best = tf.argMax(scores, 1);
      const ids = (await best.data()) as Int32Array;
      tf.dispose([scores, best]);
      last = new Int32Array(rows);
      for (let r = 0; r < rows; r++) {
        // Finished rows keep feeding EOS: their output is no longer read.
        last[r] = finished[r] ? o.eos : ids[r];
        if (finished[r]) continue;
        sequences[r].push(ids[r]);
        if (ids[r] === o.eos) finished[r] = true;
      }
    }
  } finally {
    cache.dispose();
  }
  return sequences;
}

export interface BeamSearchOptions extends GenerateOptions {
  readonly numBeams: number;
  /** Hypothesis score = sum of log-probabilities / generated_length ** lengthPenalty (default 1). */
  readonly lengthPenalty?: number;
  /** Stop an example as soon as numBeams hypotheses ended (default false: stop when none can improve). */
  readonly earlyStopping?: boolean;
}

export interface BeamHypothesis {
  /** Start token, generated tokens, and EOS when the hypothesis ended. */
  readonly tokens: number[];
  /** Length-penalised sum of token log-probabilities. */
  readonly score: number;
}

/** The numBeams best finished hypotheses of one example. */
class FinishedHypotheses {
  readonly items: BeamHypothesis[] = [];

  constructor(private readonly capacity: number) {}

  add(h: BeamHypothesis): void {
    this.items.push(h);
    this.items.sort((a, b) => b.score - a.score);
    if (this.items.length > this.capacity) this.items.pop();
  }

  get full(): boolean {
    return this.items.length >= this.capacity;
  }

  get worst(): number {
    return this.items[this.items.length - 1].score;
  }
}

/**
 * Beam search (the classic Hugging Face BeamSearchScorer): per example keep numBeams running
 * prefixes; each step take the 2·numBeams best continuations by summed log-probability;
 * continuations ending in EOS become finished hypotheses (if among the numBeams best), the rest
 * the next beams. Returns per example its numBeams best hypotheses, best first.
 */
export async function beamSearch(model: T5Model, encoderHidden: tf.Tensor, encoderMask: tf.Tensor, options: BeamSearchOptions): Promise<BeamHypothesis[][]> {
  const o = resolve(model, encoderHidden, options);
  const { numBeams, lengthPenalty = 1, earlyStopping = false } = options;
  if (!Number.isInteger(numBeams) || numBeams <= 0) throw new Error(`beamSearch: numBeams must be a positive integer, got ${numBeams}`);
  const batch = encoderHidden.shape[0];
  const rows = batch * numBeams;
  const vocab = model.config.vocab_size;
  const normalise = (sum: number, length: number) => sum / length ** lengthPenalty;

  // Row b·numBeams + j is beam j of example b; the encoder side is repeated per beam once.
  const [beamHidden, beamMask] = tf.tidy(() => {
    const repeat = tf.tensor1d(
      Int32Array.from({ length: rows }, (_, r) => Math.floor(r / numBeams)),
      'int32',
    );
    return [tf.gather(encoderHidden, repeat), tf.gather(encoderMask, repeat)];
  });
  const cache = model.createDecoderCache(beamHidden, beamMask);
  tf.dispose([beamHidden, beamMask]);
  const finished = Array.from({ length: batch }, () => new FinishedHypotheses(numBeams));
  const done = new Array<boolean>(batch).fill(false);
  let sequences = Array.from({ length: rows }, () => [o.start]);
  // Only beam 0 is live at the start, so the first step does not pick the same token numBeams times;
  // dead beams (-∞) never produce a kept continuation (see the break below).
  let beamScores = Float32Array.from({ length: rows }, (_, r) => (r % numBeams === 0 ? 0 : -Infinity));
  try {
    let last = new Int32Array(rows).fill(o.start);
    for (let step = 0; step < o.maxNewTokens && !done.every(Boolean); step++) {
      const generated = step + 1;
      const mask =
        o.constraint &&
        constraintMask(
          o.constraint,
          rows,
          vocab,
          o.eos,
          (r) => Math.floor(r / numBeams),
          (r) => sequences[r].slice(1),
        );
      const logProbs = await nextTokenScores(model, cache, last, step < o.minNewTokens ? o.eos : null, true, mask, o.copy, (r) => Math.floor(r / numBeams));
      const top = tf.tidy(() => {
        const total = tf.add(logProbs, tf.tensor2d(beamScores, [rows, 1]));
        return tf.topk(tf.reshape(total, [batch, numBeams * vocab]), Math.min(2 * numBeams, numBeams * vocab));
      });
      const [values, indices] = await Promise.all([top.values.data(), top.indices.data()]);
      const k = top.values.shape[1]!;
      tf.dispose([logProbs, top.values, top.indices]);

      const nextSequences: number[][] = [];
      const nextScores = new Float32Array(rows);
      const sourceRows = new Int32Array(rows);
      last = new Int32Array(rows);
      for (let b = 0; b < batch; b++) {
        let kept = 0;
        if (!done[b]) {
          for (let rank = 0; rank < k && kept < numBeams; rank++) {
            const flat = indices[b * k + rank];
            const row = b * numBeams + Math.floor(flat / vocab);
            const token = flat % vocab;
            const score = values[b * k + rank];
            // Masked-out continuations (a constraint, or EOS before minNewTokens) are never kept.
            if (score === -Infinity) break;
            if (token === o.eos) {
              if (rank < numBeams) finished[b].add({ tokens: [...sequences[row], token], score: normalise(score, generated) });
              continue;
            }
            const slot = b * numBeams + kept++;
            nextSequences[slot] = [...sequences[row], token];
            nextScores[slot] = score;
            sourceRows[slot] = row;
            last[slot] = token;
          }
          const bestRunning = values[b * k];
          done[b] = finished[b].full && (earlyStopping || finished[b].worst >= normalise(bestRunning, generated));
        }
        // Finished examples keep placeholder beams so the batch shape stays fixed.
        for (; kept < numBeams; kept++) {
          const slot = b * numBeams + kept;
          nextSequences[slot] = sequences[slot];
          nextScores[slot] = -Infinity;
          sourceRows[slot] = slot;
          last[slot] = o.eos;
        }
      }
      cache.reorderSelf(sourceRows);
      sequences = nextSequences;
      beamScores = nextScores;
    }
    // Examples that ran out of tokens: their running beams compete with the finished ones.
    for (let b = 0; b < batch; b++) {
      if (done[b]) continue;
      for (let j = 0; j < numBeams; j++) {
        const row = b * numBeams + j;
        if (beamScores[row] > -Infinity) finished[b].add({ tokens: sequences[row], score: normalise(beamScores[row], sequences[row].length - 1) });
      }
    }
  } finally {
    cache.dispose();
  }
  return finished.map((f) => f.items);
}
