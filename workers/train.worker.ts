/**
 * The training worker: this tab's CoRAG client. It joins (or resumes) a session, keeps the model,
 * follows the session's events, trains when selected (FederatedCoragClient.participate: one delta,
 * built whole, one upload), evaluates each new global version on the tab's QA pairs, contributes
 * passages, and answers questions (FiD). Everything that touches the model runs one at a time
 * (`exclusive`), so a question asked mid-round never sees half-applied weights.
 */
import * as Comlink from 'comlink';
import { evaluate } from '../src/corag/evaluate';
import { FederatedCoragClient } from '../src/corag/federated-client';
import type { QAPair } from '../src/corag/local-training';
import type { ModelBundle } from '../src/corag/model-bundle';
import { hybridRetrieve, KeywordPassageIndex } from '../src/corag/hybrid-retrieval';
import { generateAnswers } from '../src/corag/reader';
import { CoordinatorPassageSource, mergedPassageSource, retrieve, type PassageSource } from '../src/corag/retrieve';
import { CoragClient, CoragHttpError } from '../src/federated/client';
import { parseTrainingConfig, type RoundInfo, type SessionInfo } from '../src/federated/protocol';
import type { BackendName, BackendReport } from '../src/model/backend';
import { ExactVectorIndex } from '../src/retrieval/vector-index';
import { BrowserStore, KV } from '../src/platform/browser/idb-store';
import { globalVersionBytes } from '../src/platform/browser/session-bundle';
import { buildBundle, startBackend, type SessionAccess } from './runtime';
import type { RoundRecord, StoredCredentials, TrainWorkerEvent, AskResult, RetrievalScope } from './protocol';
import { requestedTrainingScope, trainingScopeWithConsent } from '../src/corag/training-consent';
import { atStage, isAbort, TrainingInputError } from '../src/corag/errors';
import { describeTrainingFailure } from '../src/corag/training-errors';

let store: BrowserStore | undefined;
let access: SessionAccess | undefined;
let credentials: StoredCredentials | undefined;
let session: SessionInfo | undefined;
let bundle: ModelBundle | undefined;
let federated: FederatedCoragClient | undefined;
let following: AbortController | undefined;
/** Set while the user takes part in rounds: the QA pairs to train on. */
let trainingPairs: QAPair[] | null = null;
/**
 * What each new global version is scored on: the session's held-out questions when it hands
 * questions out (never trained on by anyone), else the first of the tab's own.
 */
let evaluationPairs: QAPair[] = [];
/** The participant agreed (in this tab) that training may retrieve from their private passages. */
let privateConsent = false;
let currentRound: RoundInfo | null = null;
/** Rounds this tab has trained in (or started to): one update per round, never a second. */
const attempted = new Set<number>();
let emit: (e: TrainWorkerEvent) => void = () => undefined;

let queue: Promise<unknown> = Promise.resolve();
/** Runs model work one task at a time. */
function exclusive<T>(task: () => Promise<T>): Promise<T> {
  const next = queue.then(task, task);
  queue = next.catch(() => undefined);
  return next;
}

const openStore = async () => (store ??= await BrowserStore.open());
const server = () => new CoragClient(access!.appBase);
const client = () => server().withToken(access!.token);

/** This tab's passages embedded with the session's passage encoder. */
async function localPassages() {
  return (await (await openStore()).allPassages()).filter((p) => p.embedding && p.encoder === session!.config.models.passageEncoder);
}

type LocalPassage = Awaited<ReturnType<typeof localPassages>>[number];

/** This tab's own store: exact inner-product search over its embedded passages. */
function localSource(passages: readonly LocalPassage[]): PassageSource {
  const index = new ExactVectorIndex(bundle!.embeddingDim);
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
  const shared = new CoordinatorPassageSource(client(), access!.sessionId, 'shared');
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
  return trainingScopeWithConsent(requestedTrainingScope(session?.config.training ?? {}), privateConsent).scope;
}

async function participate(round: RoundInfo, signal: AbortSignal): Promise<void> {
  currentRound = round;
  const qaPairs = trainingPairs;
  const scope = trainingScope();
  if (!qaPairs || scope === null || !round.participants.includes(credentials!.clientId) || round.state !== 'open' || attempted.has(round.round)) return;
  attempted.add(round.round);
  await exclusive(async () => {
    // Download (with progress) into the cache first; participate() then reads it from there.
    await atStage('download', () => fetchVersion(round.baseVersion), round.round);
    const source = await atStage('retrieve', () => sourceFor(scope), round.round);
    // (Reads the session's info: a failure here has no stage of its own.)
    federated = await FederatedCoragClient.resume(server(), credentials!, {
      bundle: bundle!,
      qaPairs,
      passageSource: source,
      cache: (await openStore()).modelCache(),
      onEvent: (e) => {
        if (e.type === 'training') emit({ type: 'training', round: e.round, progress: e.progress });
        else if (e.type === 'uploaded') emit({ type: 'uploaded', round: e.round, bytes: e.bytes, numExamples: e.numExamples });
        else if (e.type === 'upload-refused') emit({ type: 'upload-refused', round: e.round, message: e.message, code: e.code });
        else if (e.type === 'upload-retrying') emit({ type: 'upload-retrying', round: e.round, attempt: e.attempt, delayMs: e.delayMs, message: e.message });
      },
    });
    emit({ type: 'round-training', round: round.round });
    await federated.participate(round, signal);
  });
}

/** Global version bytes from the IndexedDB cache, else downloaded with progress events. */
async function fetchVersion(version: number): Promise<Uint8Array> {
  const { bytes, cached } = await globalVersionBytes(access!.appBase, access!, version, (await openStore()).modelCache(), (loaded, total) =>
    emit({ type: 'model', version, cached: false, loaded, total }),
  );
  emit({ type: 'model', version, cached, loaded: bytes.byteLength, total: bytes.byteLength, ready: true });
  return bytes;
}

async function evaluateVersion(round: RoundInfo): Promise<void> {
  currentRound = round;
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
  await exclusive(async () => {
    const st = await openStore();
    bundle!.applyGlobal(await atStage('download', () => fetchVersion(version)), version);
    const source = await atStage('retrieve', () => sourceFor(trainingScope() ?? 'shared'));
    // Searches fail as the 'retrieve' stage; anything else (generation) keeps its own message.
    const staged: PassageSource = { name: source.name, search: (queries, k) => atStage('retrieve', () => source.search(queries, k)) };
    const result = await evaluate(bundle!, sample, staged, { k, maxNewTokens: 16 });
    const record: RoundRecord = {
      round: roundNumber,
      version,
      em: result.exactMatch,
      f1: result.f1,
      nll: result.answerNll,
      examples: sample.length,
      loss: trainLoss,
    };
    const history = ((await st.get<RoundRecord[]>(KV.history)) ?? []).filter((r) => r.round !== roundNumber);
    await st.set(
      KV.history,
      [...history, record].sort((a, b) => a.round - b.round),
    );
    emit({ type: 'evaluated', record });
  });
}

/**
 * A round's work failed: say what failed and what to do (src/corag/training-errors.ts). Not a word
 * about the connection unless it was the connection, and the status dot is left to the event
 * stream (follow). Stored data is untouched; an abort is no failure.
 */
function reportFailure(round: number | undefined): (e: unknown) => void {
  return (e) => {
    if (isAbort(e)) return;
    emit({ type: 'round-failed', failure: describeTrainingFailure(e, round) });
  };
}

function reportEvaluationFailure(version: number | null): (e: unknown) => void {
  return (e) => {
    if (isAbort(e)) return;
    emit({ type: 'notice', kind: 'error', text: describeTrainingFailure(e, undefined, version ?? undefined).message });
  };
}

/** Follows the session until stopped; reconnects after a lost connection (the hello snapshot catches up). */
async function follow(signal: AbortSignal): Promise<void> {
  while (!signal.aborted) {
    try {
      for await (const event of client().events(access!.sessionId, signal)) {
        emit({ type: 'server', event });
        // Model work queues behind `exclusive`; the event loop keeps reading so the page stays live.
        if (event.type === 'hello') {
          session = event.session;
          currentRound = event.session.round;
          emit({ type: 'connection', online: true });
          if (event.session.round) void participate(event.session.round, signal).catch(reportFailure(event.session.round.round));
        } else if (event.type === 'round-opened') void participate(event.round, signal).catch(reportFailure(event.round.round));
        else if (event.type === 'round-closed') void evaluateVersion(event.round).catch(reportEvaluationFailure(event.round.resultVersion));
      }
    } catch (e) {
      if (signal.aborted) return;
      const refused = e instanceof CoragHttpError && e.status < 500;
      emit({
        type: 'connection',
        online: false,
        message: refused
          ? (e as Error).message
          : `lost the connection to the coordinator (${(e as Error).message}); retrying in 3 s — nothing stored is lost, an interrupted upload is never half-sent`,
      });
      if (refused && (e as CoragHttpError).status === 401) return;
    }
    await new Promise((r) => setTimeout(r, 3000));
  }
}

/**
 * Scores the global version this tab joined with, once, so the dashboard's curves start at the
 * round that produced it (round 0: the session's starting model) before this tab's first round.
 */
async function scoreStartingVersion(): Promise<void> {
  const version = bundle?.version;
  if (version === null || version === undefined || !session) return;
  const producedBy = version === 0 ? 0 : currentRound?.resultVersion === version ? currentRound.round : undefined;
  if (producedBy === undefined) return;
  const history = (await (await openStore()).get<RoundRecord[]>(KV.history)) ?? [];
  if (history.some((r) => r.round === producedBy && r.nll !== undefined)) return;
  await scoreVersion(
    producedBy,
    version,
    parseTrainingConfig(session.config.training).passagesPerQuestion ?? 5,
    producedBy === 0 ? undefined : currentRound?.metrics.loss,
  );
}

const api = {
  init(preference: BackendName[], onEvent: (e: TrainWorkerEvent) => void): Promise<BackendReport> {
    emit = onEvent;
    return startBackend(preference);
  },

  /** Joins with a code (or resumes stored credentials when `joinCode` is undefined) and loads the current global model. */
  async connect(appBase: string, joinCode: string | undefined, name: string): Promise<{ credentials: StoredCredentials; session: SessionInfo }> {
    const st = await openStore();
    const stored = await st.get<StoredCredentials>(KV.credentials);
    if (joinCode === undefined || stored?.joinCode === joinCode) {
      if (!stored) throw new Error('no stored session: open a join link first');
      credentials = stored;
    } else {
      const joined = await new CoragClient(appBase).join(joinCode, name || undefined);
      credentials = { ...joined, joinCode, name };
      await st.set(KV.credentials, credentials);
    }
    access = { appBase, sessionId: credentials.sessionId, token: credentials.token };
    session = await client().session(credentials.sessionId);
    const version = session.currentVersion;
    if (version === null) throw new Error(`session "${session.config.name}" has no global model yet; ask its owner to upload one`);
    const next = await buildBundle(access, session, version, st, (loaded, total) => emit({ type: 'model', version, cached: false, loaded, total }));
    bundle?.dispose();
    bundle = next;
    emit({ type: 'model', version, cached: true, loaded: 1, total: 1, ready: true });
    following?.abort();
    following = new AbortController();
    void follow(following.signal);
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
    if (!bundle || !following || !session || !access) throw new Error('Join a session first.');
    const decision = trainingScopeWithConsent(requestedTrainingScope(session.config.training ?? {}), consentToPrivate);
    if (decision.scope === null) throw new Error(decision.explanation);
    let handed: Awaited<ReturnType<CoragClient['trainingQuestions']>> | undefined;
    if (session.config.trainingQuestions) {
      try {
        handed = await client().trainingQuestions(access.sessionId);
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
    if (currentRound?.state === 'open') void participate(currentRound, following.signal).catch(reportFailure(currentRound.round));
    // The starting point of the dashboard's curves: the version this tab holds, scored once.
    void scoreStartingVersion().catch(reportEvaluationFailure(bundle.version));
    return {
      questions: pairs.length,
      handedOut: qaPairs.length === 0,
      shard: qaPairs.length === 0 ? handed?.shard : undefined,
      evaluation: evaluationPairs.length,
    };
  },

  /** Stops taking part from the next round on (a round in training finishes and uploads). */
  stop(): void {
    trainingPairs = null;
    evaluationPairs = [];
  },

  /** Sends passages with their stored embeddings to the collaborative store; returns their store ids. */
  async contribute(passages: Array<{ title: string; text: string; embedding: Float32Array }>): Promise<Array<{ id: number; duplicate: boolean }>> {
    const results = await client().addPassagesInBatches(access!.sessionId, passages.length, (i) => ({
      title: passages[i].title,
      text: passages[i].text,
      embedding: Array.from(passages[i].embedding),
      encoder: session!.config.models.passageEncoder,
    }));
    return [...results];
  },

  /** Takes this tab's passages (store ids) back out of the session store: client.withdrawPassages. */
  withdraw(storeIds: number[]): Promise<Array<{ id: number; outcome: 'withdrawn' | 'kept' | 'gone' }>> {
    return client().withdrawPassages(access!.sessionId, storeIds);
  },

  /**
   * Retrieves top-k for `question` from `scope` and generates the answer with the FiD reader;
   * `extractive`: the answer is restricted to whole words quoted from those passages; `hybrid`:
   * the dense ranking is fused with a BM25 keyword ranking of this tab's passages
   * (src/corag/hybrid-retrieval.ts; the session store is searched densely only).
   */
  ask(question: string, scope: RetrievalScope, k: number, extractive = false, hybrid = false): Promise<AskResult> {
    return exclusive(async () => {
      if (!bundle) throw new Error('join a session first');
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
        rerankedFrom: extractive ? bundle.readerConfig.answer_rerank?.beams : undefined,
        passages: hits.map((h, i) => ({ title: h.title, text: h.text, score: h.score, source: h.source, attention: generated.passageScores[i] })),
        millis: performance.now() - started,
        version: bundle.version,
      };
    });
  },
};

export type TrainWorkerApi = typeof api;
Comlink.expose(api);
