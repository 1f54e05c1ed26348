import { describe, expect, it } from 'vitest';
import { isTrainedTensor, PASSAGE_ENCODER_WIRE_PREFIX, QUERY_ENCODER_WIRE_PREFIX, READER_WIRE_PREFIX } from '../../src/federated/protocol';

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
