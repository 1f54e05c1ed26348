/**
 * Training questions a session hands out (SessionConfig.trainingQuestions): a classroom shard per
 * participant, as an organiser would hand out worksheets, so a tab can take part in rounds without
 * bringing questions of its own (the demo session: public/demo/qa.jsonl).
 *
 * At creation the pool is deduplicated (by question text, case and spacing ignored), shuffled once
 * with the policy's seed and stored; the first `heldOut` questions form the evaluation set and are
 * never in a shard. The n-th client to join (0-based, the clients table's insertion order) gets
 * shard n: `perClient` consecutive questions of the rest starting at n × perClient, wrapping
 * around, so shards are disjoint until the pool runs out and then repeat.
 */
import { badRequest, notFound } from './errors';
import type { CoordinatorState } from './state';
import type { TrainingQuestion, TrainingQuestionPolicy, TrainingQuestionsResponse } from '../src/federated/protocol';
import { seededRandom, shuffled } from '../src/util/random';

/** A pool as a session creator sends it (the JSON schema has bounded every field already). */
export interface TrainingQuestionsInput {
  readonly questions: readonly TrainingQuestion[];
  readonly perClient?: number;
  readonly heldOut?: number;
  readonly seed?: number;
}

/** Held out when the creator does not say: a fifth of the pool, at most 30. */
const defaultHeldOut = (pool: number) => Math.min(30, Math.floor(pool / 5));
/** Questions per client when the creator does not say: at most 32. */
const defaultPerClient = (training: number) => Math.min(32, training);

const key = (q: string) => q.trim().replace(/\s+/g, ' ').toLowerCase();

/**
 * Checks a pool and fixes its order: what createSession stores. Refuses (400
 * `invalid_training_questions`) a pool that leaves no question to train on or shards larger than
 * what is left after the held-out set.
 */
export function preparePool(input: TrainingQuestionsInput): { policy: TrainingQuestionPolicy; ordered: TrainingQuestion[] } {
  const seen = new Set<string>();
  const unique: TrainingQuestion[] = [];
  for (const q of input.questions) {
    const question = q.question.trim();
    const answers = q.answers.map((a) => a.trim()).filter((a) => a.length > 0);
    if (!question) throw badRequest('invalid_training_questions', 'a training question is empty');
    if (answers.length === 0) throw badRequest('invalid_training_questions', `training question "${question.slice(0, 80)}" has no non-empty answer`);
    if (seen.has(key(question))) continue;
    seen.add(key(question));
    unique.push({ question, answers });
  }
  const heldOut = input.heldOut ?? defaultHeldOut(unique.length);
  if (heldOut >= unique.length) {
    throw badRequest('invalid_training_questions', `holding out ${heldOut} of ${unique.length} distinct questions leaves none to train on`);
  }
  const training = unique.length - heldOut;
  const perClient = input.perClient ?? defaultPerClient(training);
  if (perClient > training) {
    throw badRequest(
      'invalid_training_questions',
      `shards of ${perClient} questions need at least ${perClient} questions besides the ${heldOut} held out; the pool has ${training}`,
    );
  }
  const seed = input.seed ?? 1;
  return { policy: { pool: unique.length, perClient, heldOut, seed }, ordered: shuffled(unique, seededRandom(seed)) };
}

export class TrainingQuestionStore {
  constructor(private readonly state: CoordinatorState) {}

  /** `clientId`'s shard and the held-out evaluation set; 404 when the session hands out none. */
  async forClient(sessionId: string, policy: TrainingQuestionPolicy | undefined, clientId: string): Promise<TrainingQuestionsResponse> {
    if (!policy) throw notFound('no_training_questions', 'this session hands out no training questions: load your own');
    const shard = await this.state.joinOrder(sessionId, clientId);
    const training = policy.pool - policy.heldOut;
    const start = (shard * policy.perClient) % training;
    const first = await this.state.trainingQuestions(sessionId, policy.heldOut + start, Math.min(policy.perClient, training - start));
    const wrapped = policy.perClient - first.length > 0 ? await this.state.trainingQuestions(sessionId, policy.heldOut, policy.perClient - first.length) : [];
    return { shard, questions: [...first, ...wrapped], evaluation: await this.state.trainingQuestions(sessionId, 0, policy.heldOut) };
  }
}
