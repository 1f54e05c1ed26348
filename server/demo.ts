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
import { fileURLToPath } from 'node:url';
import { encodeModel, type NamedTensor } from '../src/federated/codec';
import { tinyBertConfig, tinyBertWeights, tinyT5Config, tinyT5Weights } from '../src/model/tiny';
import type { Coordinator } from './coordinator';
import type { CreatedSession, SessionModels } from '../src/federated/protocol';

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
  add('reader.', tinyT5Weights(tinyT5Config(), 1));
  const bert = tinyBertWeights(tinyBertConfig(), 2);
  add('query_encoder.', bert);
  add('passage_encoder.', bert);
  return encodeModel(tensors, { format: 'pt', corag: 'demo global model v0' });
}

/** True when both pretrained demo checkpoints are complete on disk. */
export function pretrainedDemoAvailable(): boolean {
  return [PRETRAINED.reader, PRETRAINED.retriever].every((p) => existsSync(PRETRAINED.folder(p) + 'config.json') && existsSync(PRETRAINED.folder(p) + 'model.safetensors'));
}

/**
 * The pretrained checkpoints as one global model in the wire namespace (loaded and checked by the
 * model core's checkpoint loaders, on the cpu backend, once at startup).
 */
async function pretrainedGlobalModel(): Promise<{ models: SessionModels; bytes: Uint8Array }> {
  const [{ initBackend }, { ModelBundle }, { folderModelSource }] = await Promise.all([
    import('../src/model/backend'),
    import('../src/corag/model-bundle'),
    import('../src/platform/node/folder-source'),
  ]);
  await initBackend('cpu');
  const tokenizers = (name: string) => folderModelSource(fileURLToPath(new URL(`../public/models/tokenizers/${name}/`, import.meta.url)));
  const hasTokenizer = (p: string) => existsSync(PRETRAINED.folder(p) + 'tokenizer.json');
  const bundle = await ModelBundle.fromCheckpoints({
    reader: folderModelSource(PRETRAINED.folder(PRETRAINED.reader)),
    retriever: folderModelSource(PRETRAINED.folder(PRETRAINED.retriever)),
    readerTokenizer: hasTokenizer(PRETRAINED.reader) ? undefined : tokenizers('t5'),
    retrieverTokenizer: hasTokenizer(PRETRAINED.retriever) ? undefined : tokenizers('bert-base-uncased'),
  });
  try {
    const hidden = (JSON.parse(readFileSync(PRETRAINED.folder(PRETRAINED.retriever) + 'config.json', 'utf8')) as { hidden_size: number }).hidden_size;
    return {
      models: { reader: PRETRAINED.reader, passageEncoder: PRETRAINED.retriever, embeddingDim: hidden },
      bytes: await bundle.exportGlobal({ format: 'pt', corag: 'pretrained demo global model v0' }),
    };
  } finally {
    bundle.dispose();
  }
}

export async function createDemoSession(coordinator: Coordinator): Promise<CreatedSession> {
  const pretrained = pretrainedDemoAvailable() ? await pretrainedGlobalModel() : undefined;
  return coordinator.createSession(
    {
      name: pretrained ? 'CoRAG demo (pretrained SQuAD models)' : 'CoRAG demo (tiny random models)',
      models: pretrained?.models ?? DEMO_MODELS,
      training: { learningRate: 1e-4, localSteps: 20, passagesPerQuestion: 5, maxLength: 384, batchSize: 4, retrievalSource: 'shared' },
      roundPolicy: { fraction: 1, minClients: 2, minUpdates: 1, deadlineSeconds: 300, autoStart: true },
      trainedPrefixes: ['reader.', 'query_encoder.'],
      strategy: 'fedavg',
    },
    pretrained?.bytes ?? demoGlobalModel(),
  );
}
