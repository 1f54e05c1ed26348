import { describe, expect, it } from 'vitest';
import {
  isTrainedTensor,
  loraAdapterPrefixes,
  parseTrainingConfig,
  PASSAGE_ENCODER_WIRE_PREFIX,
  QUERY_ENCODER_LORA_WIRE_PREFIX,
  QUERY_ENCODER_WIRE_PREFIX,
  READER_LORA_WIRE_PREFIX,
  READER_WIRE_PREFIX,
  trainingConfigProblems,
} from '../../src/federated/protocol';

describe('isTrainedTensor: which global tensors a session trains', () => {
  it("selects exactly the tensors under the session's trained prefixes", () => {
    const prefixes = [READER_WIRE_PREFIX];
    expect(isTrainedTensor(prefixes, 'reader.shared.weight')).toBe(true);
    expect(isTrainedTensor(prefixes, 'query_encoder.embeddings.word_embeddings.weight')).toBe(false);
    expect(isTrainedTensor(prefixes, 'passage_encoder.pooler.dense.weight')).toBe(false);
  });

  it('treats the empty prefix as "everything"', () => {
    expect(isTrainedTensor([''], 'passage_encoder.x')).toBe(true);
  });

  it('matches names by prefix, not by substring', () => {
    expect(isTrainedTensor([QUERY_ENCODER_WIRE_PREFIX], 'reader.query_encoder.x')).toBe(false);
    expect(isTrainedTensor([QUERY_ENCODER_WIRE_PREFIX, PASSAGE_ENCODER_WIRE_PREFIX], 'passage_encoder.x')).toBe(true);
  });
});

describe('parseTrainingConfig: the one reader of a session training record', () => {
  it('reads canonical names before their aliases, numeric strings as numbers, and drops what it cannot use', () => {
    expect(
      parseTrainingConfig({
        learningRate: '0.001',
        lr: 5,
        steps: '2',
        k: 3,
        maxLength: '384',
        batchSize: 'many',
        seed: Infinity,
        retrieverLoss: 'adist',
        retrievalSource: 'yours',
        note: 'x',
      }),
    ).toEqual({ learningRate: 0.001, localSteps: 2, passagesPerQuestion: 3, maxLength: 384, retrieverLoss: 'adist', retrievalSource: 'yours' });
    expect(parseTrainingConfig({ lr: 1e-4, epochs: 2, localEpochs: ' ' })).toEqual({ learningRate: 1e-4, localEpochs: 2 });
    expect(parseTrainingConfig({ retrieverLoss: 'kl', retrievalSource: 'local', clipNorm: true })).toEqual({});
  });

  it('reads the LoRA keys typed, and leaves out values outside their schema', () => {
    expect(parseTrainingConfig({ loraRank: '4', loraAlpha: '8', loraTargets: 'q,v', loraSeed: 3 })).toEqual({
      loraRank: 4,
      loraAlpha: 8,
      loraTargets: 'q,v',
      loraSeed: 3,
    });
    expect(parseTrainingConfig({ loraRank: 0, loraAlpha: -1, loraTargets: 'q,,v', loraSeed: 1.5 })).toEqual({});
    expect(parseTrainingConfig({ loraRank: 1025, loraTargets: 'qv' })).toEqual({});
  });

  it('reads loraQueryTargets as a target list; a session without it keeps the reader-only meaning', () => {
    expect(parseTrainingConfig({ loraRank: 4, loraQueryTargets: 'q,k, v,o' })).toEqual({ loraRank: 4, loraQueryTargets: 'q,k, v,o' });
    expect(parseTrainingConfig({ loraRank: 4, loraQueryTargets: true })).toEqual({ loraRank: 4 });
    expect(loraAdapterPrefixes(parseTrainingConfig({ loraRank: 4 }))).toEqual([READER_LORA_WIRE_PREFIX]);
    expect(loraAdapterPrefixes(parseTrainingConfig({ loraRank: 4, loraQueryTargets: 'x' }))).toEqual([READER_LORA_WIRE_PREFIX]);
    expect(loraAdapterPrefixes(parseTrainingConfig({ loraRank: 4, loraQueryTargets: 'q' }))).toEqual([READER_LORA_WIRE_PREFIX, QUERY_ENCODER_LORA_WIRE_PREFIX]);
    expect(loraAdapterPrefixes(parseTrainingConfig({ learningRate: 1e-3 }))).toBeNull();
  });
});

describe('trainingConfigProblems: what the coordinator refuses when a session is created', () => {
  it('names each known setting whose value parseTrainingConfig would leave out, and nothing else', () => {
    expect(trainingConfigProblems({ learningRate: 1e-3, steps: '2', loraRank: 4, loraTargets: 'q, k', note: 'x' })).toEqual([]);
    expect(trainingConfigProblems({ k: 'three', loraRank: 4, loraTargets: 'q,z', loraSeed: -2 })).toEqual([
      'training.k must be a finite number, got "three"',
      'training.loraTargets must be one or more of q, k, v, o, comma-separated, got "q,z"',
      'training.loraSeed must be an integer >= 0, got -2',
    ]);
  });

  it('names loraQueryTargets when it is not a target list, or is given without a LoRA rank', () => {
    expect(trainingConfigProblems({ loraRank: 4, loraQueryTargets: 'q,k,v,o' })).toEqual([]);
    expect(trainingConfigProblems({ loraRank: 4, loraQueryTargets: 'query' })).toEqual([
      'training.loraQueryTargets must be one or more of q, k, v, o, comma-separated, got "query"',
    ]);
    expect(trainingConfigProblems({ loraRank: 4, loraQueryTargets: true })).toEqual([
      'training.loraQueryTargets must be one or more of q, k, v, o, comma-separated, got true',
    ]);
    expect(trainingConfigProblems({ loraQueryTargets: 'q,v' })).toEqual([
      "training.loraQueryTargets needs training.loraRank (the query encoder's adapters share the reader's LoRA settings)",
    ]);
  });
});
