/**
 * One client's local CoRAG training (Atlas-style), the work a federated round asks of a client:
 *
 *   for each batch of QA pairs:
 *     embed the questions with the CURRENT query encoder → top-k passages from the source
 *     reader loss   = FiD token CE of `<extra_id_0> {answer}` given the k passages fused
 *     retriever loss = PDist: KL(softmax(-CE of each passage alone / 0.01) ‖ softmax(q·p/√d / 0.01))
 *                      (or ADist from the reader's cross-attention, or none)
 *     AdamW step on the trainable selection (reader and query encoder each with their own lr)
 *
 * The passage encoder stays frozen, so the store's embeddings stay valid and are reused.
 * Everything a step creates is disposed before the next (numTensors is stable).
 */
import * as tf from '@tensorflow/tfjs-core';
import { attentionDistillationLoss, perplexityDistillationLoss } from '../model/losses';
import { AdamW } from '../model/optimizer';
import { allParameters, namedGradients, selectTrainable, type TrainableSelection } from '../model/trainable';
import { QUERY_PREFIX, padTokenBatch } from '../model/contriever';
import type { ModelBundle } from './model-bundle';
import { buildFidBatch, disposeFidBatch, fidBatchLoss, fidLossWithAttention, perPassageLoss } from './reader';
import { embedQueries, retrievedPassageEmbeddings, type PassageSource } from './retrieve';
import { seededRandom } from '../util/random';
import { atStage, TrainingInputError } from './errors';
import { planStepToFit, type FitPlan, type MemoryFitPolicy, type MemoryLimits } from './training-fit';
import { fidTargetText, FID_MAX_LENGTH } from '../model/t5/fid';
import { estimateTrainingFootprint, type FootprintBackend, type FootprintEstimate, type HeldParameter, type StepShape } from './training-footprint';

export interface QAPair {
  readonly question: string;
  /** Gold answers; the first is the training target. */
  readonly answers: readonly string[];
}

export type RetrieverLoss = 'pdist' | 'adist' | 'none';

export interface TrainProgress {
  /** Steps done so far (1-based after the first step). */
  readonly step: number;
  readonly total: number;
  /** This step's total loss (reader + retriever). */
  readonly loss: number;
  readonly readerLoss: number;
  readonly retrieverLoss: number;
  readonly examplesPerSecond: number;
  readonly etaSeconds: number;
}

export interface LocalTrainingOptions {
  /** Passages per question (paper: 40). */
  readonly k: number;
  /** Token limit per (question, passage) reader input (paper: 384). */
  readonly maxLength?: number;
  /** Total optimizer steps; when absent, `epochs` passes over the QA pairs (default 1). */
  readonly steps?: number;
  readonly epochs?: number;
  /** QA pairs per step (default 4). */
  readonly batchSize?: number;
  /** Reader learning rate (peak). */
  readonly lr: number;
  /** Query-encoder learning rate (default: lr), as Atlas's lr_retriever. */
  readonly retrieverLr?: number;
  readonly warmupSteps?: number;
  readonly weightDecay?: number;
  readonly clipNorm?: number;
  readonly trainable?: TrainableSelection;
  readonly retrieverLoss?: RetrieverLoss;
  /**
   * Gradient checkpointing of the reader's FiD encoder: recompute its activations in the backward
   * pass this many passages at a time instead of keeping them (lower peak memory for one more
   * encoder forward; src/model/gradients.ts). Default: off.
   */
  readonly encoderCheckpointRows?: number;
  /**
   * false: tfjs-core's tf.variableGrads instead of the memory-saving backward pass
   * (src/model/gradients.ts; same gradients, several times the peak memory). Default true.
   */
  readonly lowMemoryGradients?: boolean;
  /**
   * Before training, hold the step's estimated peak memory (src/corag/training-footprint.ts)
   * against these limits (src/corag/training-fit.ts). Absent: no check.
   */
  readonly memoryLimits?: MemoryLimits;
  /**
   * When the step does not fit the limits: 'adapt' (default) trains the largest batch that fits,
   * then with the encoder checkpointed (the step count stays); 'refuse' throws a
   * TrainingMemoryError saying what would fit. Either way nothing is trained when nothing fits.
   */
  readonly memoryFit?: MemoryFitPolicy;
  /** Told the memory check's plan before the first step (with `memoryLimits`). */
  readonly onFit?: (plan: FitPlan) => void;
  /** Seeds the order of QA pairs (default 0). */
  readonly seed?: number;
  readonly signal?: AbortSignal;
  readonly onProgress?: (p: TrainProgress) => void;
}

export interface LocalTrainingResult {
  /** FedAvg weight: the number of QA pairs trained on. */
  readonly numExamples: number;
  readonly steps: number;
  /** Means over the steps. */
  readonly metrics: { readonly loss: number; readonly readerLoss: number; readonly retrieverLoss: number; readonly seconds: number };
  /** Per-step total losses, in order. */
  readonly losses: number[];
  /** The memory check's outcome, with `memoryLimits` (an adapted step says what it changed). */
  readonly fit?: FitPlan;
}

/** Batches of indices: epoch after epoch, each a fresh seeded shuffle, cut into `batchSize`. */
function* batchOrder(n: number, batchSize: number, random: () => number): Generator<number[]> {
  for (;;) {
    const order = Array.from({ length: n }, (_, i) => i);
    for (let i = n - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [order[i], order[j]] = [order[j], order[i]];
    }
    for (let s = 0; s < n; s += batchSize) yield order.slice(s, s + batchSize);
  }
}

/**
 * The estimated peak memory of a training step of `bundle` with `trainable` at `shape`
 * (src/corag/training-footprint.ts): every parameter the bundle holds, the trained ones marked.
 */
export function stepFootprint(
  bundle: ModelBundle,
  trainable: ReadonlyMap<string, tf.Variable>,
  shape: StepShape,
  retrieverLoss: RetrieverLoss,
  backend: FootprintBackend,
): FootprintEstimate {
  // Without a retriever loss the query encoder gets no gradient: nothing of it is trained.
  const trained = new Set([...trainable].filter(([name]) => retrieverLoss !== 'none' || !name.startsWith(QUERY_PREFIX)).map(([, v]) => v));
  const parameters: HeldParameter[] = [...allParameters(bundle.parts)].map(([name, v]) => ({ name, shape: v.shape, trained: trained.has(v) }));
  return estimateTrainingFootprint({ ...shape, reader: bundle.readerConfig, retriever: bundle.retrieverConfig, retrieverLoss, parameters, backend });
}

const mean = (xs: readonly number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : 0);

export async function trainLocally(
  bundle: ModelBundle,
  qaPairs: readonly QAPair[],
  source: PassageSource,
  options: LocalTrainingOptions,
): Promise<LocalTrainingResult> {
  if (qaPairs.length === 0) throw new TrainingInputError('no_questions', 'there are no training questions to train on');
  for (const qa of qaPairs) {
    if (qa.answers.length === 0 || !qa.answers[0].trim())
      throw new TrainingInputError('bad_questions', `training question "${qa.question.slice(0, 120)}" has no answer to train on`);
  }
  const trainable = selectTrainable(bundle.parts, options.trainable ?? 'reader+query-encoder');
  const trainsQuery = [...trainable.keys()].some((n) => n.startsWith(QUERY_PREFIX));
  const retrieverLossKind: RetrieverLoss = trainsQuery ? (options.retrieverLoss ?? 'pdist') : 'none';
  let batchSize = Math.min(options.batchSize ?? 4, qaPairs.length);
  let encoderCheckpointRows = options.encoderCheckpointRows;
  let fit: FitPlan | undefined;
  if (options.memoryLimits) {
    // Refuses (TrainingMemoryError) before anything is trained when nothing fits.
    const lengths = stepLengths(bundle, qaPairs, options.maxLength ?? FID_MAX_LENGTH);
    const backend = footprintBackend();
    fit = planStepToFit(
      { batchSize, k: options.k, encoderCheckpointRows },
      (config) => stepFootprint(bundle, trainable, { ...lengths, ...config }, retrieverLossKind, backend),
      options.memoryLimits,
      options.memoryFit,
    );
    batchSize = fit.config.batchSize;
    encoderCheckpointRows = fit.config.encoderCheckpointRows;
    options.onFit?.(fit);
  }
  const stepsPerEpoch = Math.ceil(qaPairs.length / batchSize);
  const total = options.steps ?? stepsPerEpoch * (options.epochs ?? 1);
  if (!Number.isInteger(total) || total <= 0)
    throw new TrainingInputError('bad_round_config', `the number of training steps must be a positive integer, got ${total}`);

  const schedule = {
    warmupSteps: options.warmupSteps ?? 0,
    totalSteps: total,
    weightDecay: options.weightDecay ?? 0.01,
    clipNorm: options.clipNorm ?? 1,
  };
  const readerOptimizer = new AdamW({ lr: options.lr, ...schedule });
  const retrieverOptimizer = new AdamW({ lr: options.retrieverLr ?? options.lr, ...schedule });
  const isRetrieverParam = (name: string) => name.startsWith(QUERY_PREFIX);

  const encodeOptions = { checkpointRows: encoderCheckpointRows };
  const random = seededRandom(options.seed ?? 0);
  const batches = batchOrder(qaPairs.length, batchSize, random);
  const losses: number[] = [];
  const readerLosses: number[] = [];
  const retrieverLosses: number[] = [];
  const started = performance.now();
  let examples = 0;
  try {
    for (let step = 1; step <= total; step++) {
      options.signal?.throwIfAborted();
      const pairs = (batches.next().value as number[]).map((i) => qaPairs[i]);
      const questions = pairs.map((p) => p.question);
      const answers = pairs.map((p) => p.answers[0]);

      // Re-retrieve with the query encoder as it is now; every question gets the same k.
      const queries = await embedQueries(bundle, questions);
      const retrieved = await atStage('retrieve', () => source.search(queries, options.k));
      const k = Math.min(...retrieved.map((r) => r.length));
      if (k === 0) {
        throw new TrainingInputError('empty_store', `the passage source "${source.name}" has no passages to retrieve from`, { source: source.name });
      }
      const passages = retrieved.map((r) => r.slice(0, k));

      const batch = buildFidBatch(bundle, questions, passages, answers, { maxLength: options.maxLength });
      const passageEmbeddings = retrieverLossKind === 'none' ? null : await retrievedPassageEmbeddings(bundle, passages);
      const goldCe = retrieverLossKind === 'pdist' ? perPassageLoss(bundle, batch) : null;
      const queryTokens =
        retrieverLossKind === 'none'
          ? null
          : padTokenBatch(
              questions.map((q) => bundle.retrieverTokenizer.encode(q, { maxLength: bundle.retrieverConfig.max_position_embeddings })),
              bundle.retrieverConfig.pad_token_id,
            );

      let readerLoss!: tf.Scalar;
      let retrieverLoss!: tf.Scalar;
      const { loss, grads } = namedGradients(
        () => {
          // Summed as Atlas adds reader_loss and retriever_loss before backward().
          let attention: tf.Tensor2D | null = null;
          if (retrieverLossKind === 'adist') {
            const out = fidLossWithAttention(bundle, batch, encodeOptions);
            readerLoss = tf.keep(out.loss);
            attention = out.attention;
          } else {
            readerLoss = tf.keep(fidBatchLoss(bundle, batch, encodeOptions));
          }
          if (retrieverLossKind === 'none') {
            retrieverLoss = tf.keep(tf.scalar(0));
            return tf.clone(readerLoss);
          }
          const q = bundle.retriever.embed('query', queryTokens!);
          retrieverLoss = tf.keep(
            retrieverLossKind === 'pdist'
              ? perplexityDistillationLoss(q, passageEmbeddings!, goldCe!)
              : attentionDistillationLoss(q, passageEmbeddings!, attention!),
          );
          return tf.add(readerLoss, retrieverLoss) as tf.Scalar;
        },
        trainable,
        { lowMemory: options.lowMemoryGradients },
      );

      const split = (retriever: boolean) => new Map([...grads].filter(([name]) => isRetrieverParam(name) === retriever));
      // Each gradient is disposed once its update has read it (the largest last: lower peak).
      await readerOptimizer.apply(trainable, split(false), { consumeGradients: true });
      if (retrieverLossKind !== 'none' || [...grads.keys()].some(isRetrieverParam))
        await retrieverOptimizer.apply(trainable, split(true), { consumeGradients: true });
      const [lossValue, readerValue, retrieverValue] = await Promise.all([loss.data(), readerLoss.data(), retrieverLoss.data()]);
      tf.dispose([loss, readerLoss, retrieverLoss, ...grads.values()]);
      for (const t of [passageEmbeddings, goldCe, queryTokens?.inputIds, queryTokens?.attentionMask]) t?.dispose();
      disposeFidBatch(batch);

      losses.push(lossValue[0]);
      readerLosses.push(readerValue[0]);
      retrieverLosses.push(retrieverValue[0]);
      examples += pairs.length;
      const elapsed = (performance.now() - started) / 1000;
      options.onProgress?.({
        step,
        total,
        loss: lossValue[0],
        readerLoss: readerValue[0],
        retrieverLoss: retrieverValue[0],
        examplesPerSecond: examples / Math.max(elapsed, 1e-9),
        etaSeconds: (elapsed / step) * (total - step),
      });
    }
  } finally {
    readerOptimizer.dispose();
    retrieverOptimizer.dispose();
  }
  return {
    numExamples: qaPairs.length,
    steps: total,
    metrics: { loss: mean(losses), readerLoss: mean(readerLosses), retrieverLoss: mean(retrieverLosses), seconds: (performance.now() - started) / 1000 },
    losses,
    ...(fit && { fit }),
  };
}

/** The backend the footprint is estimated for (anything but wasm and webgpu keeps buffers as cpu does). */
function footprintBackend(): FootprintBackend {
  const name = tf.getBackend();
  return name === 'wasm' || name === 'webgpu' ? name : 'cpu';
}

/**
 * Token lengths of a step on these QA pairs, as long as they can be: reader rows at `maxLength`
 * (passages are only known once retrieved), the longest training target (at most 32 tokens, as
 * buildFidBatch cuts them) and the longest question for the query encoder.
 */
function stepLengths(bundle: ModelBundle, qaPairs: readonly QAPair[], maxLength: number): Pick<StepShape, 'passageLength' | 'targetLength' | 'queryLength'> {
  const longest = (lengths: number[]) => Math.max(1, ...lengths);
  return {
    passageLength: maxLength,
    targetLength: longest(qaPairs.map((qa) => bundle.readerTokenizer.encode(fidTargetText(qa.answers[0]), { maxLength: 32 }).length)),
    queryLength: longest(
      qaPairs.map((qa) => bundle.retrieverTokenizer.encode(qa.question, { maxLength: bundle.retrieverConfig.max_position_embeddings }).length),
    ),
  };
}
