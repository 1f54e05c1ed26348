/** predictions.jsonl: the documented line format, a lossless round trip, and errors that name the line. */
import { describe, expect, it } from 'vitest';
import { parsePredictionsJsonl, predictionsJsonl, type PredictionRow } from '../../src/crab/predictions';

const row: PredictionRow = {
  method: 'corag',
  shots: 16,
  store: 'REL',
  seed: 0,
  round: 2,
  split: 'test',
  client: 3,
  question_id: '5733be284776f41900661182',
  prediction: 'Saint Bernadette "Soubirous"',
  em: 0,
  f1: 0.4,
  nll_sum: 4.215,
  nll_tokens: 5,
};

describe('predictions.jsonl', () => {
  it('writes one JSON object per line with the documented keys in order, and reads it back unchanged', () => {
    const text = predictionsJsonl([row, { ...row, split: 'dev', em: 1, f1: 1 }]);
    expect(text.split('\n')[0]).toBe(
      '{"method":"corag","shots":16,"store":"REL","seed":0,"round":2,"split":"test","client":3,"question_id":"5733be284776f41900661182","prediction":"Saint Bernadette \\"Soubirous\\"","em":0,"f1":0.4,"nll_sum":4.215,"nll_tokens":5}',
    );
    expect(text.endsWith('\n')).toBe(true);
    expect(parsePredictionsJsonl(text)).toEqual([row, { ...row, split: 'dev', em: 1, f1: 1 }]);
    expect(predictionsJsonl([])).toBe('');
  });

  it('rejects a bad line, naming its number and the problem', () => {
    const good = predictionsJsonl([row]).trim();
    expect(() => parsePredictionsJsonl(`${good}\n{"method":"fedprox"}`)).toThrow(/predictions.jsonl:2: unknown method/);
    expect(() => parsePredictionsJsonl(good.replace('"em":0', '"em":2'))).toThrow(/:1: em must be 0 or 1/);
    expect(() => parsePredictionsJsonl(good.replace('"split":"test"', '"split":"train"'))).toThrow(/split must be dev or test/);
    expect(() => parsePredictionsJsonl('{')).toThrow(/:1: not JSON/);
  });
});
