/**
 * What the page says when taking part fails: each cause its own message, each message what to do.
 * The training worker turns whatever a round threw (src/corag/errors.ts: TrainingInputError,
 * RoundStageError with its stage and cause; CoragHttpError; a network TypeError; an allocation
 * failure) into a TrainingFailure — plain data, because Error classes do not survive the trip from
 * the worker to the page — and the page shows `message`. A round failure never says anything about
 * the connection's state: the status dot follows the event stream alone.
 */
import { isAbort, isQuotaError, RoundStageError, TrainingInputError, TrainingMemoryError, type RoundStage, type StepConfig } from './errors';
import { formatBytes } from './training-fit';
import { CoragHttpError } from '../federated/client';

export type TrainingFailureKind =
  | 'no_questions'
  | 'bad_questions'
  | 'empty_store'
  | 'bad_round_config'
  | 'model_mismatch'
  | 'out_of_memory'
  | 'does_not_fit'
  | 'storage_full'
  | 'connection_lost'
  | 'upload_failed'
  | 'download_failed'
  | 'coordinator_error'
  | 'not_authorized'
  | 'aborted'
  | 'unknown';

export interface TrainingFailure {
  readonly kind: TrainingFailureKind;
  /** The stage of the round that failed, when known. */
  readonly stage?: RoundStage;
  readonly round?: number;
  /** One or two sentences for the participant: what happened and what to do. */
  readonly message: string;
}

/**
 * An allocation that failed: a JS typed array (RangeError), WebAssembly memory that could not grow
 * (Emscripten aborts with "OOM" / "Cannot enlarge memory"; a failed malloc traps as an
 * out-of-bounds access), or a WebGPU buffer (GPUOutOfMemoryError, a device lost for lack of memory).
 */
export function isOutOfMemory(e: unknown): boolean {
  const name = (e as { name?: unknown } | null)?.name;
  if (name === 'GPUOutOfMemoryError') return true;
  const message = String((e as { message?: unknown } | null)?.message ?? e);
  return /out of memory|\bOOM\b|allocation failed|failed to allocate|could not allocate|cannot enlarge memory|maximum memory size exceeded|WebAssembly\.Memory.*grow|memory access out of bounds|invalid (typed )?array( buffer)? length|device (was )?lost/i.test(
    message,
  );
}

/** No HTTP answer at all: the network, or the coordinator is not running (fetch's TypeError, Node's "fetch failed"). */
export function isNetworkError(e: unknown): boolean {
  if (e instanceof CoragHttpError) return false;
  const message = String((e as { message?: unknown } | null)?.message ?? e);
  return /failed to fetch|fetch failed|networkerror|network error|load failed|ECONNREFUSED|ECONNRESET|ETIMEDOUT|socket hang up|network connection was lost/i.test(
    message,
  );
}

const DOING: Record<RoundStage, string> = {
  download: 'downloading the global model',
  retrieve: 'retrieving passages from the session store',
  train: 'training',
  upload: 'uploading the update',
};

/** What the failure did not touch and what happens next, for a round and for scoring a version. */
const AFTERMATH = {
  round: {
    nothingSent: 'no update was sent (the coordinator only ever receives whole updates) and nothing stored in this tab is lost',
    next: 'this tab takes part again when the next round opens',
  },
  evaluation: {
    nothingSent: 'training and updates are not affected; only this point of the dashboard is missing',
    next: 'the next global version is scored as usual',
  },
} as const;

/**
 * The failure `e` of round `round` (or of starting to take part, without a round), for the page;
 * `scoring`: it happened while scoring global version `scoring` on the evaluation questions.
 */
export function describeTrainingFailure(e: unknown, round?: number, scoring?: number): TrainingFailure {
  const stage = e instanceof RoundStageError ? e.stage : undefined;
  const cause = e instanceof RoundStageError ? e.cause : e;
  const { nothingSent: NOTHING_SENT, next: NEXT_ROUND } = AFTERMATH[scoring !== undefined ? 'evaluation' : 'round'];
  const at = scoring !== undefined ? `Scoring global version ${scoring} on the evaluation questions: ` : round !== undefined ? `Round ${round}: ` : '';
  const out = (kind: TrainingFailureKind, message: string): TrainingFailure => ({
    kind,
    ...(stage ? { stage } : {}),
    ...(round !== undefined ? { round } : {}),
    message: at + message,
  });
  const detail = String((cause as { message?: unknown } | null)?.message ?? cause);

  if (isAbort(cause)) return out('aborted', 'stopped before it finished; nothing was sent.');
  if (cause instanceof TrainingInputError) {
    switch (cause.problem) {
      case 'no_questions':
        return out(
          'no_questions',
          'there are no training questions. Load a .jsonl file of questions on the Training page (or press “Use the demo questions”); this session hands out none.',
        );
      case 'bad_questions':
        return out('bad_questions', `${detail}. Fix or remove that question in your file and load it again.`);
      case 'empty_store': {
        const source = String(cause.detail.source ?? '');
        const where =
          source === 'yours'
            ? 'Your own passages are empty: add files on the Passages page.'
            : 'The session’s shared store has no passages yet: contribute some on the Passages page (set “New files are” to “Contribute”, or tick passages of a file), or wait until another participant does.';
        return out('empty_store', `nothing to retrieve from, so there is nothing to train on. ${where} ${capitalize(NEXT_ROUND)}.`);
      }
      case 'bad_round_config':
        return out('bad_round_config', `the session’s training settings cannot be used (${detail}). Tell the session’s organiser; ${NEXT_ROUND}.`);
      case 'model_mismatch':
        return out('model_mismatch', `this tab’s model does not match the session’s (${detail}). Leave the session and join again to load its model.`);
    }
  }
  if (cause instanceof TrainingMemoryError) return out('does_not_fit', memoryMessage(cause, NOTHING_SENT, NEXT_ROUND));
  if (isOutOfMemory(cause)) {
    return out(
      'out_of_memory',
      `the model did not fit in this device’s memory${stage ? ` while ${DOING[stage]}` : ''} (${detail}). Close other tabs and programs and reload this page, or take part from a device with more memory; ${NOTHING_SENT}.`,
    );
  }
  if (isQuotaError(cause) || (cause as { name?: unknown } | null)?.name === 'StorageQuotaError') {
    return out(
      'storage_full',
      `browser storage is full, so the global model could not be kept (${detail}). Free space (remove files on the Passages page or clear this site’s data in another session) and reload; ${NOTHING_SENT}.`,
    );
  }
  if (isNetworkError(cause)) {
    return out(
      'connection_lost',
      `lost the connection to the coordinator while ${stage ? DOING[stage] : 'talking to it'} (${detail}). Check the network and that the coordinator is still running; ${NOTHING_SENT}; ${NEXT_ROUND}.`,
    );
  }
  if (cause instanceof CoragHttpError) {
    if (cause.status === 401) {
      return out(
        'not_authorized',
        `the coordinator no longer knows this tab (${cause.message}): it was probably restarted with a new data folder. Leave the session and join again.`,
      );
    }
    if (stage === 'upload') {
      return out(
        'upload_failed',
        `the update could not be uploaded: the coordinator answered ${cause.message}, also on every retry until the round’s deadline. ${capitalize(NOTHING_SENT)}; ${NEXT_ROUND}.`,
      );
    }
    if (stage === 'download') {
      return out('download_failed', `the global model could not be downloaded: the coordinator answered ${cause.message}. ${capitalize(NEXT_ROUND)}.`);
    }
    return out('coordinator_error', `the coordinator answered ${cause.message}${stage ? ` while ${DOING[stage]}` : ''}. ${capitalize(NEXT_ROUND)}.`);
  }
  return out('unknown', `failed${stage ? ` while ${DOING[stage]}` : ''}: ${detail}. ${capitalize(NOTHING_SENT)}; ${NEXT_ROUND}.`);
}

function stepWords(c: StepConfig): string {
  return `batch ${c.batchSize} with k ${c.k}${c.encoderCheckpointRows ? ' and encoder checkpointing' : ''}`;
}

/** "needs ~X, budget Y; batch 1 with k 4 would fit (~Z)", and what the participant can do about it. */
function memoryMessage(e: TrainingMemoryError, nothingSent: string, next: string): string {
  const d = e.detail;
  const overBudget = d.budgetBytes !== undefined && d.peakBytes > d.budgetBytes;
  const need = overBudget
    ? `it needs ~${formatBytes(d.peakBytes)}, budget ${formatBytes(d.budgetBytes!)}${d.budgetSource ? ` (${d.budgetSource})` : ''}`
    : `its largest tensor (${d.largestTensor}) needs ${formatBytes(d.largestTensorBytes)}, more than the GPU’s largest buffer (${formatBytes(d.maxBufferBytes ?? 0)})`;
  const fits = d.suggestion
    ? `${capitalize(stepWords(d.suggestion.config))} would fit (~${formatBytes(d.suggestion.peakBytes)})${d.policy === 'refuse' ? ', but this session does not let tabs change its batch' : ''}: ask the session’s organiser for it${overBudget ? ', or raise this tab’s memory budget (?memoryBudget=… in the address) if the device has memory to spare' : ''}.`
    : `No smaller step fits: the model’s weights and optimizer state alone need ~${formatBytes(d.weightBytes)}. Take part from a device with more memory${overBudget ? ', or raise this tab’s memory budget (?memoryBudget=… in the address) if this one has memory to spare' : ''}.`;
  return `the session’s training step (${stepWords(d.requested)}) does not fit this tab: ${need}. ${fits} Nothing was trained; ${nothingSent}; ${next}.`;
}

function capitalize(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}
