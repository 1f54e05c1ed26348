/**
 * Each way taking part can fail gets its own message, saying what to do (src/corag/training-errors.ts);
 * only a real network failure speaks of the connection.
 */
import { describe, expect, it } from 'vitest';
import { atStage, RoundStageError, TrainingInputError } from '../../src/corag/errors';
import { CoragHttpError } from '../../src/federated/client';
import { describeTrainingFailure, isNetworkError, isOutOfMemory } from '../../src/corag/training-errors';

const at = (stage: 'download' | 'retrieve' | 'train' | 'upload', cause: unknown) => new RoundStageError(stage, cause, 3);

describe('describeTrainingFailure', () => {
  it('names an empty store and what to do, without a word about the connection (the observed bug)', () => {
    const f = describeTrainingFailure(
      new TrainingInputError('empty_store', 'the passage source "shared" has no passages to retrieve from', { source: 'shared' }),
      1,
    );
    expect(f).toMatchObject({ kind: 'empty_store', round: 1 });
    expect(f.message).toMatch(/^Round 1: nothing to retrieve from/);
    expect(f.message).toMatch(/contribute some on the Passages page/);
    expect(f.message).not.toMatch(/connection|offline/i);
    expect(describeTrainingFailure(new TrainingInputError('empty_store', 'x', { source: 'yours' })).message).toMatch(/Your own passages are empty/);
  });

  it('names missing questions, unusable questions, round settings and a model mismatch', () => {
    expect(describeTrainingFailure(new TrainingInputError('no_questions', 'none'))).toMatchObject({
      kind: 'no_questions',
      message: expect.stringMatching(/Load a \.jsonl file of questions/),
    });
    expect(describeTrainingFailure(new TrainingInputError('bad_questions', 'training question "q?" has no answer to train on')).message).toMatch(
      /"q\?" has no answer.*Fix or remove/,
    );
    expect(describeTrainingFailure(new TrainingInputError('bad_round_config', 'round 2 names no learning rate'), 2).message).toMatch(
      /^Round 2: the session’s training settings cannot be used \(round 2 names no learning rate\)\. Tell the session’s organiser/,
    );
    expect(describeTrainingFailure(new TrainingInputError('model_mismatch', '8 vs 16')).message).toMatch(/Leave the session and join again/);
  });

  it('tells an out-of-memory failure at any stage from everything else, for every allocation failure we know', () => {
    const causes = [
      new RangeError('Array buffer allocation failed'),
      new RangeError('Invalid typed array length: 4294967296'),
      new Error('Aborted(OOM). Build with -sASSERTIONS for more info.'),
      new Error('Aborted(Cannot enlarge memory arrays to size 2147549184 bytes (OOM))'),
      Object.assign(new Error('WebAssembly.Memory.grow(): Maximum memory size exceeded'), { name: 'RangeError' }),
      Object.assign(new Error('memory access out of bounds'), { name: 'RuntimeError' }),
      Object.assign(new Error('Not enough memory left'), { name: 'GPUOutOfMemoryError' }),
      new Error('Failed to allocate buffer of size 805306368'),
      new Error('WebGPU device was lost: out of memory'),
    ];
    for (const cause of causes) {
      expect(isOutOfMemory(cause), cause.message).toBe(true);
      const f = describeTrainingFailure(at('train', cause), 3);
      expect(f, cause.message).toMatchObject({ kind: 'out_of_memory', stage: 'train', round: 3 });
      expect(f.message).toMatch(/did not fit in this device’s memory while training .*Close other tabs/);
    }
    expect(describeTrainingFailure(at('download', new RangeError('Array buffer allocation failed'))).message).toMatch(/while downloading the global model/);
    for (const other of [
      new TypeError('Failed to fetch'),
      new Error('the number of steps must be a positive integer'),
      new CoragHttpError(413, 'body_too_large', 'too big'),
    ]) {
      expect(isOutOfMemory(other), other.message).toBe(false);
    }
  });

  it('says "lost the connection" only when there was no HTTP answer, naming the stage', () => {
    for (const [stage, words] of [
      ['download', 'downloading the global model'],
      ['retrieve', 'retrieving passages'],
      ['upload', 'uploading the update'],
    ] as const) {
      for (const cause of [
        new TypeError('Failed to fetch'),
        new TypeError('fetch failed'),
        new TypeError('NetworkError when attempting to fetch resource.'),
        new TypeError('Load failed'),
      ]) {
        expect(isNetworkError(cause)).toBe(true);
        const f = describeTrainingFailure(at(stage, cause), 4);
        expect(f).toMatchObject({ kind: 'connection_lost', stage });
        expect(f.message).toContain(`lost the connection to the coordinator while ${words}`);
        expect(f.message).toMatch(/; no update was sent/);
      }
    }
    expect(isNetworkError(new CoragHttpError(503, 'unavailable', 'down'))).toBe(false);
    // Without a stage it does not pretend to know which one.
    expect(describeTrainingFailure(new TypeError('Failed to fetch'), 2).message).toMatch(
      /^Round 2: lost the connection to the coordinator while talking to it \(Failed to fetch\)/,
    );
  });

  it('tells a failed upload (the coordinator answered) from a lost connection, a failed download, and a forgotten token', () => {
    const upload = describeTrainingFailure(at('upload', new CoragHttpError(503, 'unavailable', 'down')), 5);
    expect(upload).toMatchObject({ kind: 'upload_failed', stage: 'upload' });
    expect(upload.message).toMatch(/^Round 5: the update could not be uploaded: the coordinator answered 503 unavailable: down/);
    expect(upload.message).not.toMatch(/lost the connection/);
    expect(describeTrainingFailure(at('download', new CoragHttpError(404, 'version_not_found', 'no v7')))).toMatchObject({
      kind: 'download_failed',
      message: expect.stringMatching(/global model could not be downloaded/),
    });
    expect(describeTrainingFailure(at('retrieve', new CoragHttpError(429, 'rate_limited', 'slow down')))).toMatchObject({
      kind: 'coordinator_error',
      message: expect.stringMatching(/answered 429 rate_limited: slow down while retrieving passages/),
    });
    expect(describeTrainingFailure(at('upload', new CoragHttpError(401, 'unauthorized', 'bad token')))).toMatchObject({
      kind: 'not_authorized',
      message: expect.stringMatching(/join again/),
    });
  });

  it('names full browser storage, an abort and anything else with its stage', () => {
    const quota = Object.assign(new Error('The quota has been exceeded.'), { name: 'QuotaExceededError' });
    expect(describeTrainingFailure(at('download', quota)).kind).toBe('storage_full');
    expect(describeTrainingFailure(Object.assign(new Error('aborted'), { name: 'AbortError' })).kind).toBe('aborted');
    const other = describeTrainingFailure(at('train', new Error('fidBatchLoss: the batch has no answers')), 6);
    expect(other).toMatchObject({ kind: 'unknown', stage: 'train' });
    expect(other.message).toBe(
      'Round 6: failed while training: fidBatchLoss: the batch has no answers. No update was sent (the coordinator only ever receives whole updates) and nothing stored in this tab is lost; this tab takes part again when the next round opens.',
    );
  });

  it('words a failure while scoring a version as such: nothing about updates or rounds', () => {
    const f = describeTrainingFailure(at('retrieve', new TypeError('Failed to fetch')), undefined, 1);
    expect(f.message).toBe(
      'Scoring global version 1 on the evaluation questions: lost the connection to the coordinator while retrieving passages from the session store (Failed to fetch). Check the network and that the coordinator is still running; training and updates are not affected; only this point of the dashboard is missing; the next global version is scored as usual.',
    );
  });

  it('gives every kind its own message', () => {
    const failures = [
      new TrainingInputError('no_questions', 'a'),
      new TrainingInputError('empty_store', 'a'),
      new TrainingInputError('bad_round_config', 'a'),
      at('train', new RangeError('Array buffer allocation failed')),
      at('upload', new TypeError('Failed to fetch')),
      at('upload', new CoragHttpError(500, 'internal', 'x')),
      at('download', new CoragHttpError(500, 'internal', 'x')),
      at('upload', new CoragHttpError(401, 'unauthorized', 'x')),
    ].map((e) => describeTrainingFailure(e));
    expect(new Set(failures.map((f) => f.kind)).size).toBe(failures.length);
    expect(new Set(failures.map((f) => f.message.split(/[.(:]/)[0])).size).toBe(failures.length);
  });
});

describe('atStage', () => {
  it('wraps a failure in its stage once, and lets aborts and input errors through as they are', async () => {
    const net = new TypeError('Failed to fetch');
    await expect(
      atStage(
        'upload',
        async () => {
          throw net;
        },
        2,
      ),
    ).rejects.toMatchObject({ name: 'RoundStageError', stage: 'upload', round: 2, cause: net, message: 'round 2, upload: Failed to fetch' });
    const inner = new RoundStageError('retrieve', net);
    await expect(
      atStage('train', async () => {
        throw inner;
      }),
    ).rejects.toBe(inner);
    const input = new TrainingInputError('empty_store', 'empty');
    await expect(
      atStage('train', async () => {
        throw input;
      }),
    ).rejects.toBe(input);
    const abort = Object.assign(new Error('stop'), { name: 'AbortError' });
    await expect(
      atStage('train', async () => {
        throw abort;
      }),
    ).rejects.toBe(abort);
    expect(await atStage('train', async () => 7)).toBe(7);
  });
});
