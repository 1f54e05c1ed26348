/**
 * The training worker: this tab's CoRAG client, a thin comlink adapter over the one client runtime,
 * FederatedCoragClient (src/corag/federated-client.ts). It keeps ONE runtime per connection (join
 * or resume), which follows the session's events, reconnects, trains when selected (one delta,
 * built whole, one upload) and contributes passages; this worker adds what belongs to a tab: the
 * stored credentials, the tab's own passages as a retrieval source, the evaluation of each new
 * global version on the tab's questions (kept for the dashboard), and answering questions (FiD).
 * Everything that touches the model runs one at a time (`modelQueue`), so a question asked
 * mid-round never sees half-applied weights.
 */
import * as Comlink from 'comlink';
import { FederatedCoragClient, SerialQueue, type BackgroundFailure, type ClientEvent } from '../src/corag/federated-client';
import type { QAPair } from '../src/corag/local-training';
import { hybridRetrieve, KeywordPassageIndex } from '../src/corag/hybrid-retrieval';
import { generateAnswers } from '../src/corag/reader';
import { CoordinatorPassageSource, mergedPassageSource, retrieve, type PassageSource } from '../src/corag/retrieve';
import type { CoragClient } from '../src/federated/client';
import { joinOrResume, tabCoordinator } from '../src/federated/rejoin';
import { parseTrainingConfig, type RoundInfo, type SessionInfo } from '../src/federated/protocol';
import * as tf from '@tensorflow/tfjs-core';
import { webGpuBufferLimit, type BackendName, type BackendReport } from '../src/model/backend';
import { defaultMemoryLimits, describeAdaptedStep, type MemoryLimits } from '../src/corag/training-fit';
import { ExactVectorIndex } from '../src/retrieval/vector-index';
import { BrowserStore, KV } from '../src/platform/browser/idb-store';
import { buildBundle, startBackend, type SessionAccess } from './runtime';
import type { RoundRecord, StoredCredentials, TrainWorkerEvent, AskResult, RetrievalScope } from './protocol';
import { requestedTrainingScope, trainingScopeWithConsent } from '../src/corag/training-consent';
import { isAbort, TrainingInputError } from '../src/corag/errors';
import { describeTrainingFailure } from '../src/corag/training-errors';

let store: BrowserStore | undefined;
/** This connection's client: one per join or resume, replaced by the next. */
let runtime: FederatedCoragClient | undefined;
let following: AbortController | undefined;
/** Set while the user takes part in rounds: the QA pairs to train on (kept for the next connection too). */
let trainingPairs: QAPair[] | null = null;
/**
 * What each new global version is scored on: the session's held-out questions when it hands
 * questions out (never trained on by anyone), else the first of the tab's own.
 */
let evaluationPairs: QAPair[] = [];
/** The participant agreed (in this tab) that training may retrieve from their private passages. */
let privateConsent = false;
let emit: (e: TrainWorkerEvent) => void = () => undefined;
/** The model's work, one task at a time, across connections: rounds, evaluations, questions. */
const modelQueue = new SerialQueue();
/** Read-modify-writes of the tab's round history, one at a time. */
const historyWrites = new SerialQueue();
/** The participant's memory budget for training (the page's ?memoryBudget= or setting); undefined: the default. */
let memoryBudgetBytes: number | undefined;

/**
 * What a training step may use here (src/corag/training-fit.ts): the participant's budget, else
 * half the device memory the browser reports (capped by wasm's heap), and WebGPU's largest buffer.
 */
function memoryLimits(): MemoryLimits {
  const deviceMemory = (navigator as { deviceMemory?: number }).deviceMemory;
  const budget: MemoryLimits =
    memoryBudgetBytes !== undefined ? { budgetBytes: memoryBudgetBytes, budgetSource: 'set for this tab' } : defaultMemoryLimits(tf.getBackend(), deviceMemory);
  const maxBufferBytes = webGpuBufferLimit();
  return maxBufferBytes === undefined ? budget : { ...budget, maxBufferBytes };
}

const openStore = async () => (store ??= await BrowserStore.open());

function connected(): FederatedCoragClient {
  if (!runtime) throw new Error('Join a session first.');
  return runtime;
}

/** The one place a runtime event becomes the page's event (null: the page has no use for it). */
function workerEvent(e: ClientEvent): TrainWorkerEvent | null {
  switch (e.type) {
    case 'server':
      return { type: 'server', event: e.event };
    case 'connection':
      return e.message === undefined ? { type: 'connection', online: e.online } : { type: 'connection', online: e.online, message: e.message };
    case 'download-progress':
      return { type: 'model', version: e.version, cached: false, loaded: e.loaded, total: e.total };
    case 'model-loaded':
      return { type: 'model', version: e.version, cached: e.cached, loaded: e.bytes, total: e.bytes, ready: true };
    case 'training-started':
      return { type: 'round-training', round: e.round };
    case 'training':
      return { type: 'training', round: e.round, progress: e.progress };
    case 'step-adapted':
      return { type: 'notice', kind: 'info', text: describeAdaptedStep(e.plan, e.round) };
    case 'uploaded':
      return { type: 'uploaded', round: e.round, bytes: e.bytes, numExamples: e.numExamples };
    case 'upload-refused':
      return { type: 'upload-refused', round: e.round, message: e.message, code: e.code };
    case 'upload-retrying':
      return { type: 'upload-retrying', round: e.round, attempt: e.attempt, delayMs: e.delayMs, message: e.message };
    // The page follows rounds through the 'server' events.
    case 'round-skipped':
    case 'downloading':
    case 'round-closed':
      return null;
  }
}

/**
 * Something failed in the background (a round's part, or scoring a new version): say what failed
 * and what to do (src/corag/training-errors.ts). Not a word about the connection unless it was the
 * connection, and the status dot is left to the event stream. Stored data is untouched; an abort
 * is no failure.
 */
function reportFailure(e: unknown, failure: BackgroundFailure): void {
  if (isAbort(e)) return;
  if (failure.during === 'round') emit({ type: 'round-failed', failure: describeTrainingFailure(e, failure.round) });
  else emit({ type: 'notice', kind: 'error', text: describeTrainingFailure(e, undefined, failure.version ?? undefined).message });
}

function reportEvaluationFailure(version: number | null): (e: unknown) => void {
  return (e) => reportFailure(e, { during: 'round-closed', round: 0, version });
}

/** This tab's passages embedded with the session's passage encoder. */
async function localPassages() {
  const encoder = connected().session.config.models.passageEncoder;
  return (await (await openStore()).allPassages()).filter((p) => p.embedding && p.encoder === encoder);
}

type LocalPassage = Awaited<ReturnType<typeof localPassages>>[number];

/** This tab's own store: exact inner-product search over its embedded passages. */
function localSource(passages: readonly LocalPassage[]): PassageSource {
  const index = new ExactVectorIndex(connected().bundle.embeddingDim);
  index.add(
    passages.map((p) => p.id),
    passages.map((p) => p.embedding!),
  );
  const byId = new Map(passages.map((p) => [p.id, p]));
  return {
    name: 'yours',
    async search(queries, k) {
      return queries.map((q) =>
        index.search(q, k).map(({ id, score }) => {
          const p = byId.get(id)!;
          return { title: p.title, text: p.text, source: 'yours', id, score, embedding: p.embedding };
        }),
      );
    },
  };
}

/** Where `scope` retrieves from; `ownPassages`: this tab's passages when the caller has read them already. */
async function sourceFor(scope: RetrievalScope, ownPassages?: readonly LocalPassage[]): Promise<PassageSource> {
  const rt = connected();
  const shared = new CoordinatorPassageSource(rt.client, rt.session.id, 'shared');
  if (scope === 'shared') return shared;
  const own = localSource(ownPassages ?? (await localPassages()));
  if (scope === 'yours') return own;
  return mergedPassageSource([own, shared]);
}

/**
 * Where training retrieves from: the session's `training.retrievalSource` ('shared' by default),
 * private passages only with the participant's consent (src/corag/training-consent.ts); null: this tab
 * does not take part.
 */
function trainingScope(): RetrievalScope | null {
  return trainingScopeWithConsent(requestedTrainingScope(runtime?.session.config.training ?? {}), privateConsent).scope;
}

/** The training input the runtime asks for at each round: the QA pairs, and a source built then (own passages change). */
function setTraining(rt: FederatedCoragClient, pairs: QAPair[]): void {
  rt.setTraining(pairs, () => {
    const scope = trainingScope();
    if (scope === null) throw new Error(trainingScopeWithConsent(requestedTrainingScope(rt.session.config.training ?? {}), privateConsent).explanation);
    return sourceFor(scope);
  });
}

/** The round-closed hook: scores the version a round produced. */
async function evaluateRound(round: RoundInfo): Promise<void> {
  if (round.state !== 'closed' || round.resultVersion === null) return;
  await scoreVersion(round.round, round.resultVersion, parseTrainingConfig(round.config).passagesPerQuestion ?? 5, round.metrics.loss);
}

/**
 * Scores global `version` (what round `roundNumber` produced; round 0 = the starting model) on the
 * evaluation questions: EM/F1 of the answers and the gold answers' NLL, kept in the tab's history
 * for the dashboard. Does nothing without evaluation questions.
 */
async function scoreVersion(roundNumber: number, version: number, k: number, trainLoss?: number): Promise<void> {
  const sample = evaluationPairs.slice(0, 30);
  if (sample.length === 0) return;
  const result = await connected().evaluateGlobal(version, sample, () => sourceFor(trainingScope() ?? 'shared'), { k, maxNewTokens: 16, round: roundNumber });
  const record: RoundRecord = {
    round: roundNumber,
    version,
    em: result.exactMatch,
    f1: result.f1,
    nll: result.answerNll,
    examples: sample.length,
    loss: trainLoss,
  };
  await historyWrites.run(async () => {
    const st = await openStore();
    const history = ((await st.get<RoundRecord[]>(KV.history)) ?? []).filter((r) => r.round !== roundNumber);
    await st.set(
      KV.history,
      [...history, record].sort((a, b) => a.round - b.round),
    );
  });
  emit({ type: 'evaluated', record });
}

/**
 * Scores the global version this tab joined with, once, so the dashboard's curves start at the
 * round that produced it (round 0: the session's starting model) before this tab's first round.
 */
async function scoreStartingVersion(rt: FederatedCoragClient): Promise<void> {
  const version = rt.bundle.version;
  const currentRound = rt.currentRound;
  if (version === null) return;
  const producedBy = version === 0 ? 0 : currentRound?.resultVersion === version ? currentRound.round : undefined;
  if (producedBy === undefined) return;
  const history = (await (await openStore()).get<RoundRecord[]>(KV.history)) ?? [];
  if (history.some((r) => r.round === producedBy && r.nll !== undefined)) return;
  await scoreVersion(
    producedBy,
    version,
    parseTrainingConfig(rt.session.config.training).passagesPerQuestion ?? 5,
    producedBy === 0 ? undefined : currentRound?.metrics.loss,
  );
}

const api = {
  /** `memoryBudget`: the participant's budget for training in bytes (src/ui/memory-setting.ts); absent: the default. */
  init(preference: BackendName[], onEvent: (e: TrainWorkerEvent) => void, memoryBudget?: number): Promise<BackendReport> {
    emit = onEvent;
    memoryBudgetBytes = memoryBudget;
    return startBackend(preference);
  },

  /** Joins with a code (or resumes stored credentials when `joinCode` is undefined) and loads the current global model. */
  async connect(appBase: string, joinCode: string | undefined, name: string): Promise<{ credentials: StoredCredentials; session: SessionInfo }> {
    const st = await openStore();
    // This page's coordinator, and the processes it names as its peers (or named at the last
    // connect, when it gives no answer now): when it stops answering, requests (the event
    // stream's reconnect included) move on to a peer (src/federated/rejoin.ts).
    const server = await tabCoordinator(appBase, st, undefined, {
      onSwitch: (_from, to) => emit({ type: 'coordinator', url: to }),
    });
    // The stored client, or a join whose key survives a reload mid-join (no ghost client).
    const credentials = await joinOrResume(server, st, joinCode, name);
    const access: SessionAccess = { appBase, sessionId: credentials.sessionId, token: credentials.token };
    const session = await server.withToken(credentials.token).session(credentials.sessionId);
    const version = session.currentVersion;
    if (version === null) throw new Error(`session "${session.config.name}" has no global model yet; ask its owner to upload one`);
    const bundle = await buildBundle(access, session, version, st, (loaded, total) => emit({ type: 'model', version, cached: false, loaded, total }));
    let next: FederatedCoragClient;
    try {
      next = await FederatedCoragClient.resume(server, credentials, {
        bundle,
        cache: st.modelCache(),
        queue: modelQueue,
        // Checked before training: a step that does not fit is made smaller (when the session allows) or refused, with what would fit.
        training: { memoryLimits: memoryLimits() },
        onEvent: (e) => {
          const event = workerEvent(e);
          if (event) emit(event);
        },
      });
    } catch (e) {
      bundle.dispose();
      throw e;
    }
    // The previous connection stops; its model is freed once the work queued on it is done.
    following?.abort();
    const previous = runtime;
    if (previous) void modelQueue.run(async () => previous.bundle.dispose());
    runtime = next;
    if (trainingPairs) setTraining(next, trainingPairs);
    emit({ type: 'model', version, cached: true, loaded: 1, total: 1, ready: true });
    following = new AbortController();
    void next
      .run({ signal: following.signal, onError: reportFailure, onRoundClosed: evaluateRound })
      .catch((e) => emit({ type: 'notice', kind: 'error', text: (e as Error).message }));
    return { credentials, session };
  },

  /**
   * Takes part in every round this client is selected for, training on `qaPairs` (also the round
   * open right now, when it selected this client). Without questions of its own the tab trains on
   * the shard the session hands it (GET .../training-questions); a session that hands questions
   * out also supplies the held-out ones each new version is scored on. `consentToPrivate`: the
   * participant ticked that training may use their private passages (needed when the session asks
   * for them). Errors carry a message for the participant (src/corag/training-errors.ts).
   */
  async start(qaPairs: QAPair[], consentToPrivate = false): Promise<{ questions: number; handedOut: boolean; shard?: number; evaluation: number }> {
    const rt = connected();
    const session = rt.session;
    const decision = trainingScopeWithConsent(requestedTrainingScope(session.config.training ?? {}), consentToPrivate);
    if (decision.scope === null) throw new Error(decision.explanation);
    let handed: Awaited<ReturnType<CoragClient['trainingQuestions']>> | undefined;
    if (session.config.trainingQuestions) {
      try {
        handed = await rt.client.trainingQuestions(session.id);
      } catch (e) {
        // Own questions still work without the session's; without either there is nothing to train on.
        if (qaPairs.length === 0) throw new Error(`Could not get this session's training questions — ${describeTrainingFailure(e).message}`);
      }
    }
    const pairs = qaPairs.length > 0 ? qaPairs : (handed?.questions.map((q) => ({ question: q.question, answers: [...q.answers] })) ?? []);
    if (pairs.length === 0) throw new Error(describeTrainingFailure(new TrainingInputError('no_questions', 'no training questions')).message);
    privateConsent = consentToPrivate;
    trainingPairs = pairs;
    evaluationPairs = handed?.evaluation.length ? handed.evaluation.map((q) => ({ question: q.question, answers: [...q.answers] })) : pairs.slice(0, 16);
    // Also the round open right now, when it selected this client.
    setTraining(rt, pairs);
    // The starting point of the dashboard's curves: the version this tab holds, scored once.
    void scoreStartingVersion(rt).catch(reportEvaluationFailure(rt.bundle.version));
    return {
      questions: pairs.length,
      handedOut: qaPairs.length === 0,
      shard: qaPairs.length === 0 ? handed?.shard : undefined,
      evaluation: evaluationPairs.length,
    };
  },

  /** Stops taking part from the next round on (a round in training finishes and uploads). */
  stop(): void {
    runtime?.stopTraining();
    trainingPairs = null;
    evaluationPairs = [];
  },

  /** Sends passages with their stored embeddings to the collaborative store; returns their store ids. */
  async contribute(passages: Array<{ title: string; text: string; embedding: Float32Array }>): Promise<Array<{ id: number; duplicate: boolean }>> {
    const results = await connected().contributeEmbedded(passages.length, (i) => passages[i]);
    return [...results];
  },

  /** Takes this tab's passages (store ids) back out of the session store: client.withdrawPassages. */
  withdraw(storeIds: number[]): Promise<Array<{ id: number; outcome: 'withdrawn' | 'kept' | 'gone' }>> {
    const rt = connected();
    return rt.client.withdrawPassages(rt.session.id, storeIds);
  },

  /**
   * Retrieves top-k for `question` from `scope` and generates the answer with the FiD reader;
   * `extractive`: the answer is restricted to whole words quoted from those passages; `hybrid`:
   * the dense ranking is fused with a BM25 keyword ranking of this tab's passages
   * (src/corag/hybrid-retrieval.ts; the session store is searched densely only).
   */
  ask(question: string, scope: RetrievalScope, k: number, extractive = false, hybrid = false): Promise<AskResult> {
    return modelQueue.run(async () => {
      if (!runtime) throw new Error('join a session first');
      const bundle = runtime.bundle;
      const started = performance.now();
      // One read of this tab's passages serves both the dense source and the keyword index.
      const own = scope === 'shared' ? [] : await localPassages();
      const source = await sourceFor(scope, own);
      const keywordPassages = hybrid ? own : [];
      const [hits] =
        keywordPassages.length > 0
          ? [
              await hybridRetrieve(
                bundle,
                source,
                new KeywordPassageIndex(
                  keywordPassages.map((p) => ({ id: p.id, title: p.title, text: p.text, embedding: p.embedding! })),
                  'yours',
                ),
                question,
                { k },
              ),
            ]
          : await retrieve(bundle, source, [question], { k });
      if (hits.length === 0) return { answer: '', passages: [], millis: performance.now() - started, version: bundle.version };
      const [generated] = await generateAnswers(bundle, [question], [hits], { maxNewTokens: 24, extractive });
      return {
        answer: generated.answer,
        extractive,
        hybrid: keywordPassages.length > 0,
        // generateAnswers reranks extractive answers with the reader's own weights when it has them.
        rerankedFrom: extractive ? bundle.policy.reader.answerRerank?.beams : undefined,
        passages: hits.map((h, i) => ({ title: h.title, text: h.text, score: h.score, source: h.source, attention: generated.passageScores[i] })),
        millis: performance.now() - started,
        version: bundle.version,
      };
    });
  },
};

export type TrainWorkerApi = typeof api;
Comlink.expose(api);
