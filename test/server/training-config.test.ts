/**
 * The session's training record is checked against the protocol's trainingConfigSchema when the
 * session is created over HTTP: a known setting whose value does not fit (LoRA keys included) is a
 * 400 naming the field, and no session is made; good values are stored as sent and read typed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CoragClient, CoragHttpError } from '../../src/federated/client';
import { parseTrainingConfig, QUERY_ENCODER_LORA_WIRE_PREFIX, READER_LORA_WIRE_PREFIX, type TrainingRecord } from '../../src/federated/protocol';
import { startServer, tempDir } from './helpers';

describe('POST /api/sessions: the training record', () => {
  const dir = tempDir();
  let server: Awaited<ReturnType<typeof startServer>>;
  let anon: CoragClient;
  const models = { reader: 'r', passageEncoder: 'p', embeddingDim: 8 };
  const lora = (training: TrainingRecord) => anon.createSession({ name: 'lora', models, training, trainedPrefixes: [READER_LORA_WIRE_PREFIX] });

  beforeAll(async () => {
    server = await startServer({ dataDir: dir.path });
    anon = new CoragClient(server.url);
  });
  afterAll(async () => {
    await server.app.close();
    dir.remove();
  });

  async function refused(training: TrainingRecord, mention: string, create = lora, code = 'invalid_training_config'): Promise<void> {
    const before = await server.coordinator.state.sessionIds();
    const err = await create(training).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err, JSON.stringify(training)).toBeInstanceOf(CoragHttpError);
    const e = err as CoragHttpError;
    expect([e.status, e.code]).toEqual([400, code]);
    expect(e.message).toContain(mention);
    expect(await server.coordinator.state.sessionIds()).toEqual(before);
  }

  it('refuses LoRA settings that do not fit their schema (400, naming the field), and makes no session', async () => {
    await refused({ loraRank: 0 }, 'training.loraRank must be an integer >= 1 and <= 1024, got 0');
    await refused({ loraRank: 2.5 }, 'training.loraRank must be an integer');
    await refused({ loraRank: 'big' }, 'training.loraRank must be an integer >= 1 and <= 1024, got "big"');
    await refused({ loraRank: 4096 }, 'training.loraRank');
    await refused({ loraRank: 4, loraAlpha: 0 }, 'training.loraAlpha must be a finite number > 0, got 0');
    await refused({ loraRank: 4, loraAlpha: '-1' }, 'training.loraAlpha');
    await refused({ loraRank: 4, loraTargets: 'q,x' }, 'training.loraTargets must be one or more of q, k, v, o, comma-separated, got "q,x"');
    await refused({ loraRank: 4, loraTargets: 'query' }, 'training.loraTargets');
    await refused({ loraRank: 4, loraTargets: '' }, 'training.loraTargets');
    await refused({ loraRank: 4, loraTargets: 4 }, 'training.loraTargets');
    await refused({ loraRank: 4, loraSeed: -1 }, 'training.loraSeed must be an integer >= 0, got -1');
    await refused({ loraRank: 4, loraSeed: 'seven' }, 'training.loraSeed');
  });

  it('refuses the other known settings when their values do not fit, naming the field as sent (alias included)', async () => {
    await refused({ lr: 'fast' }, 'training.lr must be a finite number, got "fast"');
    await refused({ retrieverLoss: 'kl' }, 'training.retrieverLoss must be one of pdist, adist, none, got "kl"');
    await refused(
      { memoryFit: 'squeeze', localSteps: 'x' },
      'training.localSteps must be a finite number, got "x"; training.memoryFit must be one of adapt, refuse',
    );
  });

  it('stores a boolean in the free-form record as a boolean, not as the number the schema coerced it to before', async () => {
    const created = await lora({ loraRank: 4, note: true, off: false, count: 1, zero: 0, flag: 'true' });
    expect(created.session.config.training).toEqual({ loraRank: 4, note: true, off: false, count: 1, zero: 0, flag: true });
  });

  it('accepts good LoRA settings (numbers also as numeric strings), stores them, and reads them typed', async () => {
    const training = { learningRate: 1e-2, loraRank: 8, loraAlpha: 4.5, loraTargets: 'q, k,v , o', loraSeed: 7, note: 'free-form keys stay' };
    // The HTTP edge already turns a numeric string into the number (the record's schema coerces).
    const created = await lora({ ...training, loraRank: '8' });
    expect(created.session.config.training).toEqual(training);
    expect(parseTrainingConfig(created.session.config.training)).toEqual({
      learningRate: 1e-2,
      loraRank: 8,
      loraAlpha: 4.5,
      loraTargets: 'q, k,v , o',
      loraSeed: 7,
    });
    const fetched = await anon.withToken(created.adminToken).session(created.session.id);
    expect(fetched.config.training).toEqual(training);
    // The rank alone turns LoRA on; the other keys have defaults.
    expect((await lora({ loraRank: 1 })).session.config.training).toEqual({ loraRank: 1 });
  });

  it('LoRA on the query encoder: loraQueryTargets must be a target list with a loraRank, and the session must aggregate both adapter sets and nothing else', async () => {
    const both = [READER_LORA_WIRE_PREFIX, QUERY_ENCODER_LORA_WIRE_PREFIX];
    const withPrefixes = (trainedPrefixes: string[]) => (training: TrainingRecord) => anon.createSession({ name: 'qlora', models, training, trainedPrefixes });
    await refused(
      { loraRank: 4, loraQueryTargets: 'q,dense' },
      'training.loraQueryTargets must be one or more of q, k, v, o, comma-separated, got "q,dense"',
      withPrefixes(both),
    );
    await refused({ loraRank: 4, loraQueryTargets: true }, 'training.loraQueryTargets must be one or more of q, k, v, o', withPrefixes(both));
    await refused({ loraQueryTargets: 'q,v' }, 'training.loraQueryTargets needs training.loraRank', withPrefixes(both));
    // Adapters that no prefix aggregates, or prefixes for adapters the session does not build.
    await refused({ loraRank: 4, loraQueryTargets: 'q,v' }, `its trainedPrefixes must be ${JSON.stringify(both)}`, lora, 'invalid_lora_session');
    await refused({ loraRank: 4 }, `its trainedPrefixes must be ["${READER_LORA_WIRE_PREFIX}"]`, withPrefixes(both), 'invalid_lora_session');
    await refused({ loraRank: 4, loraQueryTargets: 'q,v' }, 'trainedPrefixes must be', withPrefixes([...both, 'query_encoder.']), 'invalid_lora_session');

    const created = await withPrefixes(both)({ loraRank: 4, loraQueryTargets: 'q,k,v,o' });
    expect(created.session.config.trainedPrefixes).toEqual(both);
    expect(parseTrainingConfig(created.session.config.training)).toEqual({ loraRank: 4, loraQueryTargets: 'q,k,v,o' });
  });
});
