/**
 * The demo session `npm start` creates in an empty data folder. When the pretrained demo
 * checkpoints exist (public/models/demo/{reader,retriever}/, Hugging Face layout) the session
 * trains those; otherwise tiny random models from src/model/tiny, so everything works offline.
 *
 * Global model tensor names are the Hugging Face names under three prefixes: `reader.`,
 * `query_encoder.` and `passage_encoder.`; the passage encoder stays frozen (its embeddings fill the
 * shared store), so only the first two are trained and travel in deltas.
 *
 * `models.reader` / `models.passageEncoder` tell the browser where the configs and tokenizers are:
 * a folder of the web app (public/ is served as static files) or a `corag/tiny-*` id
 * (src/platform/browser/session-bundle.ts).
 */
import { existsSync, readFileSync } from 'node:fs';
import { isAbsolute, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { encodeModel, type NamedTensor } from '../src/federated/codec';
import { isHubModelId, resolveModelSource, type ModelSource } from '../src/model/checkpoint/source';
import { tinyBertConfig, tinyBertWeights, tinyT5Config, tinyT5Weights } from '../src/model/tiny';
import { folderModelSource } from '../src/platform/node/folder-source';
import type { PassageText } from '../src/corag/retrieve';
import { ingestFile } from '../src/ingest/files';
import { readQaJsonl, splitLines } from '../src/crab/loaders';
import type { Coordinator } from './coordinator';
import { COORDINATOR_CONTRIBUTOR } from './passage-intake';
import {
  PASSAGE_ENCODER_WIRE_PREFIX,
  QUERY_ENCODER_WIRE_PREFIX,
  READER_WIRE_PREFIX,
  type CreatedSession,
  type SessionModels,
  type TrainingQuestion,
} from '../src/federated/protocol';

export const DEMO_MODELS = {
  reader: 'corag/tiny-t5 (random, seed 1)',
  passageEncoder: 'corag/tiny-contriever (random, seed 2)',
  embeddingDim: tinyBertConfig().hidden_size,
} as const;

/** Pretrained demo checkpoints, as URL paths of the web app and folders on disk. */
const PRETRAINED = {
  reader: 'models/demo/reader',
  retriever: 'models/demo/retriever',
  folder: (path: string) => fileURLToPath(new URL(`../public/${path}/`, import.meta.url)),
} as const;

export function demoGlobalModel(): Uint8Array {
  const tensors = new Map<string, NamedTensor>();
  const add = (prefix: string, weights: Map<string, { shape: number[]; data: Float32Array }>) => {
    for (const [name, t] of weights) tensors.set(prefix + name, t);
  };
  add(READER_WIRE_PREFIX, tinyT5Weights(tinyT5Config(), 1));
  const bert = tinyBertWeights(tinyBertConfig(), 2);
  add(QUERY_ENCODER_WIRE_PREFIX, bert);
  add(PASSAGE_ENCODER_WIRE_PREFIX, bert);
  return encodeModel(tensors, { format: 'pt', corag: 'demo global model v0' });
}

/** True when both pretrained demo checkpoints are complete on disk. */
export function pretrainedDemoAvailable(): boolean {
  return [PRETRAINED.reader, PRETRAINED.retriever].every(
    (p) => existsSync(PRETRAINED.folder(p) + 'config.json') && existsSync(PRETRAINED.folder(p) + 'model.safetensors'),
  );
}

/** Where a session's checkpoints come from: what the server reads and what browsers are told. */
export interface DemoCheckpoints {
  /** Read by the server (to build global version 0). */
  readonly reader: ModelSource;
  readonly retriever: ModelSource;
  /** Told to browsers in `models` (an app folder such as models/demo/reader, an http(s) URL or a hub id). */
  readonly readerId: string;
  readonly retrieverId: string;
}

function publicFolderSource(appPath: string): ModelSource {
  return folderModelSource(fileURLToPath(new URL(`../public/${appPath}/`, import.meta.url)));
}

/**
 * A checkpoint named on the command line (`--reader` / `--retriever`): a hub id or http(s) URL
 * (browsers fetch it too), or a folder inside public/ (browsers get it from this server). A folder
 * elsewhere is refused: the tabs could not load its config and tokenizer.
 */
export function checkpointFromSpec(spec: string): { source: ModelSource; id: string } {
  const s = spec.trim();
  if (/^https?:\/\//i.test(s) || isHubModelId(s)) return { source: resolveModelSource(s), id: s };
  const publicDir = fileURLToPath(new URL('../public/', import.meta.url));
  const folder = resolve(s);
  const inside = relative(publicDir, folder);
  if (inside.startsWith('..') || isAbsolute(inside) || inside === '') {
    throw new Error(`model "${spec}": a local checkpoint folder must be inside ${publicDir} so browsers can load it (or give a hub id / URL)`);
  }
  return { source: folderModelSource(folder), id: inside.split(sep).join('/') };
}

/**
 * The checkpoints as one global model in the wire namespace (loaded and checked by the model core's
 * checkpoint loaders, on the cpu backend, once at startup). A checkpoint without tokenizer.json
 * uses the project's copy of its tokenizer (the same t5 / bert-base-uncased vocabularies).
 */
async function checkpointGlobalModel(checkpoints: DemoCheckpoints): Promise<{ models: SessionModels; bytes: Uint8Array }> {
  const [{ initBackend }, { ModelBundle }] = await Promise.all([import('../src/model/backend'), import('../src/corag/model-bundle')]);
  // wasm: the passage encoder then embeds the demo passages on it too (~12× faster than cpu).
  await initBackend(['wasm', 'cpu']);
  const hasTokenizer = async (source: ModelSource) => (await source.fetchFile('tokenizer.json')) !== null;
  const bundle = await ModelBundle.fromCheckpoints({
    reader: checkpoints.reader,
    retriever: checkpoints.retriever,
    readerTokenizer: (await hasTokenizer(checkpoints.reader)) ? undefined : publicFolderSource('models/tokenizers/t5'),
    retrieverTokenizer: (await hasTokenizer(checkpoints.retriever)) ? undefined : publicFolderSource('models/tokenizers/bert-base-uncased'),
  });
  try {
    return {
      models: { reader: checkpoints.readerId, passageEncoder: checkpoints.retrieverId, embeddingDim: bundle.embeddingDim },
      bytes: await bundle.exportGlobal({ format: 'pt', corag: `global model v0 from ${checkpoints.readerId} + ${checkpoints.retrieverId}` }),
    };
  } finally {
    bundle.dispose();
  }
}

function pretrainedDemoCheckpoints(): DemoCheckpoints {
  return {
    reader: publicFolderSource(PRETRAINED.reader),
    retriever: publicFolderSource(PRETRAINED.retriever),
    readerId: PRETRAINED.reader,
    retrieverId: PRETRAINED.retriever,
  };
}

/**
 * The demo passages (public/demo/passages.jsonl, SQuAD-derived), chunked exactly as a tab's
 * "Add the demo passages" button chunks them, so a tab that contributes them too finds them stored
 * already (same title and text → same content hash).
 */
export function demoPassages(): PassageText[] {
  const bytes = readFileSync(fileURLToPath(new URL('../public/demo/passages.jsonl', import.meta.url)));
  return ingestFile('demo-passages.jsonl', new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength)).passages.map((p) => ({
    title: p.title,
    text: p.text,
  }));
}

/** The demo questions (public/demo/qa.jsonl, 150 SQuAD questions about the demo passages). */
export function demoQuestions(): TrainingQuestion[] {
  const text = readFileSync(fileURLToPath(new URL('../public/demo/qa.jsonl', import.meta.url)), 'utf8');
  return [...readQaJsonl(splitLines(text), { source: 'public/demo/qa.jsonl' })].map((q) => ({ question: q.question, answers: [...q.answers] }));
}

/**
 * How the demo hands out its questions: 30 held out for evaluating every new global version, and
 * shards of 24 (one round's localSteps × batchSize) by join order, so five participants train on
 * disjoint questions before shards repeat.
 */
export const DEMO_QUESTION_SHARDS = { perClient: 24, heldOut: 30, seed: 1 } as const;

/**
 * The coordinator contributes the demo passages to the session's store itself (contributor
 * "coordinator"), embedded with the session's frozen passage encoder, so training and the shared
 * search work before anyone adds a file. Each batch is committed as it is embedded; passages
 * already stored are skipped, so a restart after a crash resumes and a second call does nothing.
 */
export async function seedDemoPassages(
  coordinator: Coordinator,
  sessionId: string,
  log: (line: string) => void = () => undefined,
): Promise<{ added: number; alreadyStored: number; seconds: number }> {
  const passages = demoPassages();
  let lastPrinted = 0;
  const result = await coordinator.passageIntake.seed(sessionId, passages, (done, total) => {
    if (done === total || performance.now() - lastPrinted > 2000) {
      lastPrinted = performance.now();
      log(`  embedding the demo passages into the session store: ${done} / ${total}`);
    }
  });
  log(
    result.added > 0
      ? `Demo store: ${result.added} demo passages embedded and stored by the coordinator in ${result.seconds.toFixed(1)} s (${(result.added / Math.max(result.seconds, 1e-9)).toFixed(1)} passages/s)${result.alreadyStored ? `; ${result.alreadyStored} were stored already` : ''}`
      : `Demo store: all ${result.alreadyStored} demo passages are stored already`,
  );
  return result;
}

/** True when the coordinator has contributed to the session (a demo store seeded, or being seeded). */
export async function hasCoordinatorPassages(coordinator: Coordinator, sessionId: string): Promise<boolean> {
  return (await coordinator.passages.contributions(sessionId)).some((c) => c.clientId === COORDINATOR_CONTRIBUTOR);
}

export interface DemoSessionOptions {
  /** Force the tiny random models even when the pretrained demo checkpoints exist (tests). */
  readonly tiny?: boolean;
  /** Progress of seeding the demo passages (npm start prints it); seeding is skipped with `seed: false`. */
  readonly log?: (line: string) => void;
  readonly seed?: boolean;
}

/**
 * The demo session. `checkpoints` (from --reader/--retriever) overrides the default: the pretrained
 * demo checkpoints when present, else tiny random models. Its store is seeded with the demo passages
 * (seedDemoPassages) before this returns. Every new passage a participant contributes is recomputed
 * by the coordinator (`embeddingCheck: 'all'`): anyone who opens the app may join this session.
 */
export async function createDemoSession(coordinator: Coordinator, checkpoints?: DemoCheckpoints, options: DemoSessionOptions = {}): Promise<CreatedSession> {
  const chosen = checkpoints ?? (!options.tiny && pretrainedDemoAvailable() ? pretrainedDemoCheckpoints() : undefined);
  const pretrained = chosen ? await checkpointGlobalModel(chosen) : undefined;
  const name = checkpoints
    ? `CoRAG (${checkpoints.readerId} + ${checkpoints.retrieverId})`
    : pretrained
      ? 'CoRAG demo (pretrained SQuAD models)'
      : 'CoRAG demo (tiny random models)';
  const created = await coordinator.createSession(
    {
      name,
      models: pretrained?.models ?? DEMO_MODELS,
      // Chosen on CRAB-mini DEV questions with the pretrained pair (scripts/finetune-curves.ts,
      // docs/CRAB-RESULTS.md "Why fine-tuning hurt"): the reader at lr 1e-4 lowers dev NLL for
      // about 6 steps of 4 pairs and then starts to overfit; 128-token inputs are what the pair
      // was pretrained on and keep a laptop tab's step short.
      training: { learningRate: 1e-4, localSteps: 6, passagesPerQuestion: 4, maxLength: 128, batchSize: 4, retrievalSource: 'shared' },
      // Two updates at least: the adaptive clip bound of a round with ONE update is that update's
      // own norm, so a lone participant could otherwise set the model by itself.
      roundPolicy: { fraction: 1, minClients: 2, minUpdates: 2, deadlineSeconds: 300, autoStart: true },
      // The reader only: one query-encoder step of the pretrained retriever reorders every ranking
      // (its embeddings share one dominant direction; dev R@4 fell from 43 % to 1-2 % within 6
      // steps at lr 1e-3), so the session keeps the retriever it started with.
      trainedPrefixes: [READER_WIRE_PREFIX],
      // The demo's join code is public: anyone can take part, so a robust default. Norm clipping at
      // the round's (lower) median update norm bounds what any one participant (fewer than half) can do to
      // the model — a scaled, FLT_MAX or model-replacement update counts as one ordinary-sized
      // step — while costing honest rounds little (docs/ROBUSTNESS.md), and it works from two
      // participants up, which the demo's minClients allows (median and Krum need more to mean
      // anything). Weights above the round's median count as the median and no share exceeds the
      // default 0.25 (equal shares below four participants); num_examples is capped at
      // localSteps × batchSize = 24.
      strategy: 'norm-clip',
      strategyParams: { clipMultiplier: 1 },
      passages: { embeddingCheck: 'all' },
      // Each participant is handed its own shard of the demo questions, so "Take part in rounds"
      // is the only click a newcomer needs; 30 are held out for the dashboard's evaluation.
      trainingQuestions: { questions: demoQuestions(), ...DEMO_QUESTION_SHARDS },
    },
    pretrained?.bytes ?? demoGlobalModel(),
  );
  if (options.seed !== false) await seedDemoPassages(coordinator, created.session.id, options.log);
  return { ...created, session: await coordinator.sessionInfo(created.session.id) };
}
