/**
 * Training questions a session hands out (GET /api/sessions/:id/training-questions): a shard per
 * client by join order, disjoint while the pool lasts, never holding a held-out question; the same
 * answer after a restart; hostile input refused with 4xx.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CoragClient, CoragHttpError } from '../../src/federated/client';
import type { TrainingQuestion } from '../../src/federated/protocol';
import { Coordinator } from '../../server/coordinator';
import { createDemoSession, DEMO_QUESTION_SHARDS, demoQuestions } from '../../server/demo';
import { startServer, tempDir } from './helpers';

const MODELS = { reader: 'r', passageEncoder: 'e', embeddingDim: 4 } as const;
const pool = (n: number): TrainingQuestion[] => Array.from({ length: n }, (_, i) => ({ question: `question ${i}?`, answers: [`answer ${i}`] }));
const texts = (qs: readonly TrainingQuestion[]) => qs.map((q) => q.question);

async function refused(call: () => Promise<unknown>, status: number, code: string): Promise<CoragHttpError> {
  const e = await call().then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(CoragHttpError);
  expect([(e as CoragHttpError).status, (e as CoragHttpError).code]).toEqual([status, code]);
  return e as CoragHttpError;
}

describe('GET /api/sessions/:id/training-questions', () => {
  const dir = tempDir();
  let server: Awaited<ReturnType<typeof startServer>>;
  let anon: CoragClient;
  let sid: string;
  let admin: CoragClient;
  let joinCode: string;

  beforeAll(async () => {
    server = await startServer({ dataDir: dir.path });
    anon = new CoragClient(server.url);
    // 23 distinct questions (one duplicate, differing in case and spacing, is dropped): 5 held out, shards of 6.
    const questions = [...pool(23), { question: '  QUESTION   3? ', answers: ['other'] }];
    const created = await anon.createSession({ name: 'shards', models: MODELS, trainingQuestions: { questions, perClient: 6, heldOut: 5, seed: 7 } });
    sid = created.session.id;
    joinCode = created.joinCode;
    admin = anon.withToken(created.adminToken);
    expect(created.session.config.trainingQuestions).toEqual({ pool: 23, perClient: 6, heldOut: 5, seed: 7 });
  });
  afterAll(async () => {
    await server?.app.close();
    dir.remove();
  });

  it('hands each client its own shard by join order, disjoint while the pool lasts, never a held-out question', async () => {
    const clients: CoragClient[] = [];
    for (let i = 0; i < 5; i++) clients.push(anon.withToken((await anon.join(joinCode, `c${i}`)).token));
    const answers = await Promise.all(clients.map((c) => c.trainingQuestions(sid)));
    expect(answers.map((a) => a.shard)).toEqual([0, 1, 2, 3, 4]);
    const evaluation = texts(answers[0].evaluation);
    expect(evaluation).toHaveLength(5);
    for (const a of answers) {
      expect(a.questions).toHaveLength(6);
      expect(texts(a.evaluation)).toEqual(evaluation); // everyone scores on the same held-out set
      expect(texts(a.questions).filter((q) => evaluation.includes(q))).toEqual([]);
      for (const q of a.questions) expect(q.answers).toEqual([`answer ${q.question.match(/\d+/)![0]}`]);
    }
    // 18 questions besides the held-out ones: shards 0-2 are disjoint and cover them all ...
    const first3 = answers.slice(0, 3).flatMap((a) => texts(a.questions));
    expect(new Set(first3).size).toBe(18);
    expect(new Set([...first3, ...evaluation])).toEqual(new Set(texts(pool(23))));
    // ... then shards repeat: the 4th client gets shard 0's questions again.
    expect(texts(answers[3].questions)).toEqual(texts(answers[0].questions));
    // Deterministic: asking again gives the same shard.
    expect(await clients[1].trainingQuestions(sid)).toEqual(answers[1]);
    // The pool is shuffled, not handed out in the creator's order.
    expect(texts(answers[0].questions)).not.toEqual(texts(pool(23)).slice(5, 11));
  });

  it('wraps a shard around the end of the pool when perClient does not divide it', async () => {
    const created = await anon.createSession({ name: 'wrap', models: MODELS, trainingQuestions: { questions: pool(10), perClient: 4, heldOut: 3 } });
    const tokens = [];
    for (let i = 0; i < 3; i++) tokens.push((await anon.join(created.joinCode)).token);
    const shards = await Promise.all(tokens.map((t) => anon.withToken(t).trainingQuestions(created.session.id)));
    // 7 training questions: shard 0 = 0..3, shard 1 = 4..6 + 0, shard 2 = 1..4.
    expect(new Set([...texts(shards[0].questions), ...texts(shards[1].questions).slice(0, 3)]).size).toBe(7);
    expect(texts(shards[1].questions)[3]).toBe(texts(shards[0].questions)[0]);
    expect(texts(shards[2].questions)).toEqual([...texts(shards[0].questions).slice(1), texts(shards[1].questions)[0]]);
  });

  it('needs a client token of that session; a session without questions answers 404 no_training_questions', async () => {
    await refused(() => anon.trainingQuestions(sid), 401, 'unauthorized');
    await refused(() => anon.withToken('not-a-token').trainingQuestions(sid), 401, 'unauthorized');
    await refused(() => admin.trainingQuestions(sid), 403, 'client_only');
    const other = await anon.createSession({ name: 'bring your own', models: MODELS });
    const stranger = anon.withToken((await anon.join(other.joinCode)).token);
    await refused(() => stranger.trainingQuestions(other.session.id), 404, 'no_training_questions');
    await refused(() => stranger.trainingQuestions(sid), 401, 'unauthorized'); // a token of another session
    expect(other.session.config.trainingQuestions).toBeUndefined();
  });

  it('refuses pools that cannot be handed out, and malformed ones, with 400', async () => {
    const create = (trainingQuestions: unknown) => anon.createSession({ name: 'bad', models: MODELS, trainingQuestions } as never);
    expect((await refused(() => create({ questions: pool(5), heldOut: 5 }), 400, 'invalid_training_questions')).message).toMatch(/leaves none to train on/);
    expect((await refused(() => create({ questions: pool(5), heldOut: 2, perClient: 4 }), 400, 'invalid_training_questions')).message).toMatch(
      /shards of 4 questions/,
    );
    await refused(() => create({ questions: [{ question: '   ', answers: ['a'] }, ...pool(3)] }), 400, 'invalid_training_questions');
    await refused(() => create({ questions: [{ question: 'q?', answers: ['  '] }, ...pool(3)] }), 400, 'invalid_training_questions');
    for (const bad of [
      { questions: [] },
      { questions: [{ question: 'q?', answers: [] }] },
      { questions: [{ question: 'q?', answers: [''] }] },
      { questions: [{ question: 'q'.repeat(1001), answers: ['a'] }] },
      { questions: [{ question: 'q?', answers: ['a'], extra: 1 }] },
      { questions: pool(3), perClient: 0 },
      { questions: pool(3), heldOut: -1 },
      { questions: pool(3), seed: 1.5 },
      { questions: 'all of them' },
      { perClient: 3 },
    ])
      await refused(() => create(bad), 400, 'invalid_request');
    // Route parameters are checked too: never a 5xx.
    const res = await fetch(`${server.url}/api/sessions/${encodeURIComponent('../x')}/training-questions`, { headers: { authorization: 'Bearer x' } });
    expect(res.status).toBeGreaterThanOrEqual(400);
    expect(res.status).toBeLessThan(500);
  });

  it('is published in the OpenAPI document with its response schema', async () => {
    const doc = await (await fetch(`${server.url}/api/openapi.json`)).json();
    const route = doc.paths['/api/sessions/{sessionId}/training-questions'];
    expect(route.get.responses['200'].content['application/json'].schema.required).toEqual(['shard', 'questions', 'evaluation']);
  });

  it('gives a client the same shard after the coordinator restarts', async () => {
    const token = (await anon.join(joinCode, 'late')).token;
    const before = await anon.withToken(token).trainingQuestions(sid);
    await server.app.close();
    server = await startServer({ dataDir: dir.path });
    anon = new CoragClient(server.url);
    expect(await anon.withToken(token).trainingQuestions(sid)).toEqual(before);
  });
});

describe('the demo session hands out the demo questions', () => {
  it('30 held out, shards of 24 of public/demo/qa.jsonl by join order', async () => {
    const dir = tempDir();
    const coordinator = new Coordinator({ dataDir: dir.path });
    try {
      const created = await createDemoSession(coordinator, undefined, { tiny: true, seed: false });
      const all = demoQuestions();
      expect(all).toHaveLength(150);
      expect(created.session.config.trainingQuestions).toEqual({ pool: 150, ...DEMO_QUESTION_SHARDS });
      const sid = created.session.id;
      const a = await coordinator.join(created.joinCode, 'a');
      const b = await coordinator.join(created.joinCode, 'b');
      const [qa, qb] = [await coordinator.trainingQuestionsFor(sid, a.clientId), await coordinator.trainingQuestionsFor(sid, b.clientId)];
      expect([qa.questions.length, qb.questions.length, qa.evaluation.length]).toEqual([24, 24, 30]);
      // Stored trimmed (some SQuAD questions end in a space).
      const known = new Map(all.map((q) => [q.question.trim(), q.answers.map((x) => x.trim())]));
      for (const q of [...qa.questions, ...qb.questions, ...qa.evaluation]) expect(known.get(q.question)).toEqual(q.answers);
      expect(new Set([...texts(qa.questions), ...texts(qb.questions), ...texts(qa.evaluation)]).size).toBe(78);
    } finally {
      await coordinator.close();
      dir.remove();
    }
  });
});
