/**
 * How much memory one local training step (src/corag/local-training.ts) will need, estimated
 * BEFORE training from shapes alone, and whether that fits the tab: a memory budget and, on
 * WebGPU, the device's largest buffer. A tab that would run out of memory halfway through a
 * round wastes the round and says nothing useful ("allocation failed"); this says up front what
 * it needs and what would fit instead.
 *
 * Why a model of the step and not a trial step: the trial itself is what runs out of memory, and
 * a tab cannot catch a lost GPU device or an aborted wasm heap. The model counts what the code
 * actually keeps alive (read from src/model/t5, src/model/gradients.ts, src/model/optimizer.ts;
 * float32 everywhere), phase by phase, and takes the largest phase:
 *
 *   resident   every parameter the tab holds + AdamW's two moments of every TRAINED parameter
 *   scoring    (PDist only) the reader's forward over B·k (question, passage) rows, no tape,
 *              B rows at a time: one chunk's encoder, then its logits and the gathered CE's two
 *              vocab-sized temporaries
 *   forward    the tensors the gradient functions saved (encoder, decoder, loss) plus the current
 *              tidy's intermediates
 *   backward   all saved tensors + the first gradients (the loss's three vocab-sized ones, the
 *              query encoder's and the LM head's parameter gradients), or at the end all gradients
 *   optimizer  the gradients not yet consumed + AdamW's temporaries of the tensor being updated
 *              (updates go smallest first and free each gradient: src/model/optimizer.ts)
 *
 * With encoder checkpointing (`encoderCheckpointRows`) the encoder keeps nothing for the backward
 * pass and recomputes `rows` passages at a time. The trained parameters are an input (names and
 * shapes), not "reader + query encoder": a parameter-efficient method (LoRA adapters over a frozen
 * base) passes its adapters as the trained set and the base as held-only, and gets no gradients
 * or moments for the base. Accuracy against measured peaks: docs/PERFORMANCE.md "Fits the tab".
 */
import type { BertConfig } from '../model/bert/config';
import { QUERY_PREFIX } from '../model/contriever';
import type { T5Config } from '../model/t5/config';

/** A parameter the tab holds during training. */
export interface HeldParameter {
  readonly name: string;
  readonly shape: readonly number[];
  /** Updated by the step (gets a gradient and AdamW moments); false: read only (frozen). */
  readonly trained: boolean;
}

export type FootprintBackend = 'cpu' | 'wasm' | 'webgpu';

/** The shape of one training step. */
export interface StepShape {
  /** Questions per step. */
  readonly batchSize: number;
  /** Passages per question. */
  readonly k: number;
  /** Tokens per (question, passage) reader row (the padded length: at most the round's maxLength). */
  readonly passageLength: number;
  /** Target tokens (`<extra_id_0> answer</s>`, at most 32). */
  readonly targetLength: number;
  /** Query tokens of the retriever's input (retriever loss only). */
  readonly queryLength: number;
  /** Gradient checkpointing of the FiD encoder, this many passages at a time; absent: off. */
  readonly encoderCheckpointRows?: number;
}

export interface FootprintInput extends StepShape {
  readonly reader: T5Config;
  /** The retriever's config when the step trains the query encoder (retriever loss). */
  readonly retriever?: BertConfig;
  readonly retrieverLoss: 'pdist' | 'adist' | 'none';
  readonly parameters: readonly HeldParameter[];
  readonly backend: FootprintBackend;
  /** AdamW's flat update (default: on webgpu, as src/model/optimizer.ts). */
  readonly flatOptimizer?: boolean;
}

export type FootprintPhase = 'scoring' | 'forward' | 'backward' | 'optimizer';

export interface FootprintEstimate {
  /** Estimated peak bytes of live tensors during a step (after the first: AdamW moments exist). */
  readonly peakBytes: number;
  readonly phase: FootprintPhase;
  readonly parts: {
    /** Every parameter held. */
    readonly weights: number;
    /** AdamW's m and v of the trained parameters. */
    readonly optimizerState: number;
    /** One gradient per trained parameter. */
    readonly gradients: number;
    /** What the peak phase adds on top of weights and optimizer state. */
    readonly peakPhase: number;
  };
  /** The largest single tensor of the step (a WebGPU buffer must hold it). */
  readonly largestTensor: { readonly bytes: number; readonly what: string };
}

const F32 = 4;
/** src/model/optimizer.ts FLAT_GROUP_ELEMENTS (not imported: the model layer's constant is private to the update). */
const FLAT_GROUP_ELEMENTS = 1 << 24;
/**
 * Temporaries of the largest tensor AdamW updates that are live at its peak: measured 4–5 on cpu
 * (the gradient view, the clipped gradient, the new moment, its decayed and scaled parts).
 */
const OPTIMIZER_TEMPORARIES = 5;
/** The same when the update consumes the gradients: the clipped gradient's copy and the new moment with its two parts. */
const CONSUMING_TEMPORARIES = 3;

const elements = (shape: readonly number[]) => shape.reduce((n, s) => n * s, 1);

/** Element counts of one T5 stack's activations (see the per-op accounting in the module comment). */
interface StackCounts {
  /** Everything a forward creates before its tidy ends (no tape: what is live at the end of the stack). */
  readonly all: number;
  /** What the gradient functions keep for the backward pass. */
  readonly saved: number;
}

/**
 * The T5 encoder over `rows` rows of `length` tokens. Per layer (cpu, lean path): saved 7 hidden-
 * sized tensors (norm outputs, residual inputs, attention output), 4 head-sized (q, k, v
 * transposed, merged context), 2 attention maps (scores, probabilities) and the feed-forward's
 * 11 (gated-GELU: the tanh GELU's intermediates) or 1 (ReLU) d_ff-sized ones; created in all: 8,
 * 8, 3 and 11 or 2. The stack adds the position + padding bias (one attention map).
 */
function encoderCounts(c: T5Config, rows: number, length: number): StackCounts {
  const x = rows * length * c.d_model;
  const inner = rows * length * c.num_heads * c.d_kv;
  const attention = rows * c.num_heads * length * length;
  const ff = rows * length * c.d_ff;
  const gated = c.feed_forward_proj === 'gated-gelu';
  const layerAll = 8 * x + 8 * inner + 3 * attention + (gated ? 11 : 2) * ff;
  const layerSaved = 7 * x + 4 * inner + 2 * attention + (gated ? 11 : 1) * ff;
  return { all: c.num_layers * layerAll + attention + 3 * x, saved: c.num_layers * layerSaved + attention + 2 * x };
}

/** The T5 decoder over `rows` targets of `targets` tokens, cross-attending `sources` encoder positions each. */
function decoderCounts(c: T5Config, rows: number, targets: number, sources: number): StackCounts {
  const x = rows * targets * c.d_model;
  const inner = rows * targets * c.num_heads * c.d_kv;
  const self = rows * c.num_heads * targets * targets;
  const crossMap = rows * c.num_heads * targets * sources;
  const crossKV = rows * sources * c.num_heads * c.d_kv;
  const ff = rows * targets * c.d_ff;
  const gated = c.feed_forward_proj === 'gated-gelu';
  const layerAll = 14 * x + 12 * inner + 3 * self + 4 * crossKV + 3 * crossMap + (gated ? 11 : 2) * ff;
  const layerSaved = 10 * x + 7 * inner + 2 * self + 2 * crossKV + 2 * crossMap + (gated ? 11 : 1) * ff;
  return { all: c.num_decoder_layers * layerAll + self + 3 * x, saved: c.num_decoder_layers * layerSaved + self + 2 * x };
}

/** The BERT query encoder over `rows` queries of `length` tokens (small next to the reader). */
function queryEncoderCounts(c: BertConfig, rows: number, length: number): StackCounts {
  const x = rows * length * c.hidden_size;
  const attention = rows * c.num_attention_heads * length * length;
  const ff = rows * length * c.intermediate_size;
  const layer = 12 * x + 3 * attention + 6 * ff;
  return { all: c.num_hidden_layers * layer + 3 * x, saved: c.num_hidden_layers * layer + 2 * x };
}

function positiveInteger(name: string, v: number | undefined): void {
  if (v !== undefined && (!Number.isInteger(v) || v <= 0)) throw new Error(`training footprint: ${name} must be a positive integer, got ${v}`);
}

/** The estimated peak of one training step (pure; no tensors). */
export function estimateTrainingFootprint(input: FootprintInput): FootprintEstimate {
  const { reader: c, batchSize: b, k, passageLength: length, targetLength: targets } = input;
  for (const [name, v] of Object.entries({ batchSize: b, k, passageLength: length, targetLength: targets, queryLength: input.queryLength }))
    positiveInteger(name, v);
  positiveInteger('encoderCheckpointRows', input.encoderCheckpointRows);
  const rows = b * k;
  const vocab = c.vocab_size;

  const weights = input.parameters.reduce((n, p) => n + elements(p.shape), 0) * F32;
  const trained = input.parameters.filter((p) => p.trained);
  const trainedElements = trained.reduce((n, p) => n + elements(p.shape), 0);
  const gradients = trainedElements * F32;
  const optimizerState = 2 * gradients;
  const largestTrained = trained.reduce((m, p) => Math.max(m, elements(p.shape)), 0);
  const queryTrained = trained.filter((p) => p.name.startsWith(QUERY_PREFIX)).reduce((n, p) => n + elements(p.shape), 0);
  const largestReaderTrained = trained.filter((p) => !p.name.startsWith(QUERY_PREFIX)).reduce((m, p) => Math.max(m, elements(p.shape)), 0);
  const flat = input.flatOptimizer ?? input.backend === 'webgpu';
  const optimizerGroup = flat ? Math.max(largestTrained, Math.min(FLAT_GROUP_ELEMENTS, trainedElements)) : largestTrained;

  // A saved tensor shares its buffer on every backend (on wasm since session 12:
  // src/model/wasm/shared-identity.ts; its stock Identity kernel copied).
  const savedFactor = 1;
  const savedWeights = 0;

  const logits = b * targets * vocab;
  // On wasm every Linear transposes its weight explicitly before the product (src/model/matmul.ts):
  // the LM head's [vocab, d_model] copy is live while the logits are computed, beside everything
  // the forward keeps. Invisible under full fine-tuning (its backward peak is larger), it is the
  // forward's largest temporary when only LoRA adapters train (measured: docs/PERFORMANCE.md
  // "flan-t5-base in 4 GiB with LoRA").
  const transposedHead = input.backend === 'wasm' ? vocab * c.d_model : 0;
  const encoder = encoderCounts(c, rows, length);
  const decoder = decoderCounts(c, b, targets, k * length);
  const retrieverLoss = input.retriever ? input.retrieverLoss : 'none';
  const query = retrieverLoss === 'none' || !input.retriever ? { all: 0, saved: 0 } : queryEncoderCounts(input.retriever, b, input.queryLength);

  // Scoring (PDist's target): each of the B·k rows decoded alone, outside the tape, B rows at a
  // time (src/model/t5/row-scores.ts); the gathered sequence CE holds the logits and two
  // vocab-sized temporaries.
  let scoring = 0;
  if (retrieverLoss === 'pdist') {
    const out = b * length * c.d_model;
    const alone = decoderCounts(c, b, targets, length);
    scoring = Math.max(encoderCounts(c, b, length).all, out + alone.all + transposedHead, out + 3 * b * targets * vocab);
  }

  // The training forward and backward (lean gradients).
  const ckpt = input.encoderCheckpointRows;
  const encoderSaved = ckpt === undefined ? encoder.saved * savedFactor : rows * length * c.d_model;
  const decoderSaved = decoder.saved * savedFactor;
  const lossSaved = 3 * logits * savedFactor;
  const forward =
    Math.max(encoder.all, encoderSaved + decoder.all + transposedHead, encoderSaved + decoderSaved + 5 * logits + transposedHead) + savedWeights + query.all;
  const allSaved = encoderSaved + decoderSaved + lossSaved + query.saved * savedFactor + savedWeights;
  const backwardStart = allSaved + 3 * logits + queryTrained + largestReaderTrained;
  let backwardEncoder = 0;
  if (ckpt !== undefined) {
    // Each chunk's forward is recorded and walked while the other gradients are held (×2: the
    // chunk's encoder gradients beside the running totals).
    const chunk = encoderCounts(c, Math.min(ckpt, rows), length);
    backwardEncoder = trainedElements + chunk.all + chunk.saved * (savedFactor - 1) + largestReaderTrained + rows * length * c.d_model;
  }
  // At the end every gradient exists, and the largest (the shared embedding: LM head and both
  // lookups) still has two partial sums being added (measured on wasm, t5-small; PyTorch's
  // backward peaks at the same point).
  const backward = Math.max(backwardStart, backwardEncoder, trainedElements + rows * length * c.d_model, trainedElements + 2 * largestReaderTrained);
  // AdamW consumes the gradients smallest first (src/model/optimizer.ts consumeGradients): while
  // a tensor is updated only the gradients not yet consumed are live, beside the update's
  // temporaries. The flat (webgpu) layout is kept at the older, larger bound (not measured).
  let optimizer = trainedElements + OPTIMIZER_TEMPORARIES * optimizerGroup;
  if (!flat) {
    const sizes = trained.map((p) => elements(p.shape)).sort((x, y) => x - y);
    let remaining = trainedElements;
    optimizer = 0;
    for (const size of sizes) {
      optimizer = Math.max(optimizer, remaining + CONSUMING_TEMPORARIES * size);
      remaining -= size;
    }
  }

  const phases: Record<FootprintPhase, number> = { scoring, forward, backward, optimizer };
  const phase = (Object.keys(phases) as FootprintPhase[]).reduce((best, p) => (phases[p] > phases[best] ? p : best), 'optimizer');
  const peakPhase = phases[phase] * F32;

  const candidates: Array<[number, string]> = [
    [logits, `[${b}, ${targets}, ${vocab}] logits`],
    [rows * c.num_heads * length * length, `[${rows}, ${c.num_heads}, ${length}, ${length}] encoder attention`],
    [optimizerGroup, flat ? `${optimizerGroup}-element flat AdamW group` : `${largestTrained}-element trained parameter`],
    [input.parameters.reduce((m, p) => Math.max(m, elements(p.shape)), 0), 'largest parameter'],
  ];
  const [largestElements, what] = candidates.reduce((m, x) => (x[0] > m[0] ? x : m));
  return {
    peakBytes: weights + optimizerState + peakPhase,
    phase,
    parts: { weights, optimizerState, gradients, peakPhase },
    largestTensor: { bytes: largestElements * F32, what },
  };
}
