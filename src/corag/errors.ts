/**
 * Typed failures of a client's round, so a page (src/corag/training-errors.ts) or a log can say what
 * went wrong and what to do, instead of one message for everything:
 *
 * - TrainingInputError: what the client was given cannot be trained on (no questions, an empty
 *   passage source, a round config without a learning rate, a model of the wrong shape). Retrying
 *   the same round changes nothing; the participant (or organiser) has to change something.
 * - TrainingMemoryError: the round's training step would not fit this client's memory (its
 *   estimated footprint, src/corag/training-fit.ts), found before training started. The error
 *   carries what would fit, so the page can say it.
 * - RoundStageError: something failed at one stage of a round (download, retrieve, train, upload);
 *   `cause` is the original error (a CoragHttpError, a network TypeError, an allocation failure...).
 */

/** What the client cannot train on; `problem` is a stable code. */
export type TrainingInputProblem =
  /** No training questions (the tab loaded none and the session hands out none). */
  | 'no_questions'
  /** A question without a (non-empty) answer. */
  | 'bad_questions'
  /** The passage source to retrieve from has no passages. */
  | 'empty_store'
  /** The round's hyper-parameters cannot be used (no learning rate or k, a step count that is no positive integer). */
  | 'bad_round_config'
  /** The session's model does not match the one this client holds (embedding size). */
  | 'model_mismatch';

export class TrainingInputError extends Error {
  constructor(
    readonly problem: TrainingInputProblem,
    message: string,
    readonly detail: Readonly<Record<string, string | number>> = {},
  ) {
    super(message);
    this.name = 'TrainingInputError';
  }
}

/** The shape of a training step that decides its memory (src/corag/training-fit.ts). */
export interface StepConfig {
  readonly batchSize: number;
  /** Passages per question. */
  readonly k: number;
  /** FiD encoder checkpointing, passages at a time; absent: off. */
  readonly encoderCheckpointRows?: number;
}

export interface TrainingMemoryDetail {
  readonly requested: StepConfig;
  /** Estimated peak bytes of the requested step. */
  readonly peakBytes: number;
  readonly largestTensorBytes: number;
  /** What the largest tensor is ("[16, 9, 32128] logits scored per passage"). */
  readonly largestTensor: string;
  readonly budgetBytes?: number;
  readonly budgetSource?: string;
  /** WebGPU's largest buffer, when that is a limit. */
  readonly maxBufferBytes?: number;
  /** Weights + optimizer state: what any step of this model needs. */
  readonly weightBytes: number;
  /** The closest step that would fit, with its estimated peak; absent: none does. */
  readonly suggestion?: { readonly config: StepConfig; readonly peakBytes: number };
  /** The session's choice: 'adapt' (nothing at the requested k fits) or 'refuse' (the session does not let clients change the batch). */
  readonly policy: 'adapt' | 'refuse';
}

/** The training step would not fit this client's memory; nothing was trained or sent. */
export class TrainingMemoryError extends Error {
  constructor(readonly detail: TrainingMemoryDetail) {
    const mb = (b: number) => `${Math.round(b / 2 ** 20)} MiB`;
    const limit =
      detail.budgetBytes !== undefined && detail.peakBytes > detail.budgetBytes
        ? `needs ~${mb(detail.peakBytes)}, budget ${mb(detail.budgetBytes)}`
        : `its largest tensor (${detail.largestTensor}) needs ${mb(detail.largestTensorBytes)}, the GPU's largest buffer is ${mb(detail.maxBufferBytes ?? 0)}`;
    const s = detail.suggestion;
    super(
      `training step of batch ${detail.requested.batchSize} with k ${detail.requested.k} does not fit: ${limit}` +
        (s
          ? `; batch ${s.config.batchSize} with k ${s.config.k}${s.config.encoderCheckpointRows ? ' and encoder checkpointing' : ''} would fit (~${mb(s.peakBytes)})`
          : '; no smaller step fits'),
    );
    this.name = 'TrainingMemoryError';
  }
}

/** The stages of one round, in order. */
export type RoundStage = 'download' | 'retrieve' | 'train' | 'upload';

export class RoundStageError extends Error {
  constructor(
    readonly stage: RoundStage,
    override readonly cause: unknown,
    readonly round?: number,
  ) {
    super(`${round !== undefined ? `round ${round}, ` : ''}${stage}: ${(cause as Error)?.message ?? String(cause)}`);
    this.name = 'RoundStageError';
  }
}

/** True for an abort (the round was stopped on purpose), not a failure. */
export function isAbort(e: unknown): boolean {
  return (e as { name?: string } | null)?.name === 'AbortError';
}

/**
 * Runs one stage: an error it throws comes out as a RoundStageError naming the stage (an abort, a
 * TrainingInputError, a TrainingMemoryError and an error that already names its stage pass through unchanged).
 */
export async function atStage<T>(stage: RoundStage, work: () => Promise<T>, round?: number): Promise<T> {
  try {
    return await work();
  } catch (e) {
    if (isAbort(e) || e instanceof TrainingInputError || e instanceof TrainingMemoryError || e instanceof RoundStageError) throw e;
    throw new RoundStageError(stage, e, round);
  }
}

/** The browser refused a storage write because the origin's quota is full (IndexedDB, Cache). */
export function isQuotaError(e: unknown): boolean {
  const name = (e as { name?: string })?.name;
  return name === 'QuotaExceededError' || name === 'NS_ERROR_DOM_QUOTA_REACHED';
}
