/**
 * Typed failures of a client's round, so a page (src/corag/training-errors.ts) or a log can say what
 * went wrong and what to do, instead of one message for everything:
 *
 * - TrainingInputError: what the client was given cannot be trained on (no questions, an empty
 *   passage source, a round config without a learning rate, a model of the wrong shape). Retrying
 *   the same round changes nothing; the participant (or organiser) has to change something.
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
 * TrainingInputError and an error that already names its stage pass through unchanged).
 */
export async function atStage<T>(stage: RoundStage, work: () => Promise<T>, round?: number): Promise<T> {
  try {
    return await work();
  } catch (e) {
    if (isAbort(e) || e instanceof TrainingInputError || e instanceof RoundStageError) throw e;
    throw new RoundStageError(stage, e, round);
  }
}

/** The browser refused a storage write because the origin's quota is full (IndexedDB, Cache). */
export function isQuotaError(e: unknown): boolean {
  const name = (e as { name?: string })?.name;
  return name === 'QuotaExceededError' || name === 'NS_ERROR_DOM_QUOTA_REACHED';
}
