/**
 * The demo session `npm start` creates in an empty data folder: a tiny random FiD reader (T5) and
 * Contriever query/passage encoders (BERT) from src/model/tiny, so everything works offline.
 * Global model tensor names are the Hugging Face names under three prefixes: `reader.`,
 * `query_encoder.` and `passage_encoder.`; the passage encoder stays frozen (its embeddings fill the
 * shared store), so only the first two are trained and travel in deltas.
 */
import { encodeModel, type NamedTensor } from '../src/federated/codec';
import { tinyBertConfig, tinyBertWeights, tinyT5Config, tinyT5Weights } from '../src/model/tiny';
import type { Coordinator } from './coordinator';
import type { CreatedSession } from '../src/federated/protocol';

export const DEMO_MODELS = {
  reader: 'corag/tiny-t5 (random, seed 1)',
  passageEncoder: 'corag/tiny-contriever (random, seed 2)',
  embeddingDim: tinyBertConfig().hidden_size,
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

export function createDemoSession(coordinator: Coordinator): CreatedSession {
  return coordinator.createSession(
    {
      name: 'CoRAG demo (tiny random models)',
      models: DEMO_MODELS,
      training: { learningRate: 1e-4, localSteps: 20, passagesPerQuestion: 5, maxLength: 384 },
      roundPolicy: { fraction: 1, minClients: 2, minUpdates: 1, deadlineSeconds: 300, autoStart: true },
      trainedPrefixes: ['reader.', 'query_encoder.'],
      strategy: 'fedavg',
    },
    demoGlobalModel(),
  );
}
