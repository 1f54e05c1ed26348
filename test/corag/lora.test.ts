/**
 * LoRA as a session option (issue 20): the bundle's adapters, what a LoRA update carries and
 * weighs, merged inference, and a federated round through the real coordinator whose published
 * version holds the FedAvg of the clients' adapters.
 */
import { readFileSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FederatedCoragClient, loraConfigFromTraining, type ClientEvent } from '../../src/corag/federated-client';
import type { QAPair } from '../../src/corag/local-training';
import { ModelBundle, QUERY_ENCODER_LORA_WIRE_PREFIX, READER_LORA_WIRE_PREFIX, trainableForWirePrefixes } from '../../src/corag/model-bundle';
import { generateAnswers } from '../../src/corag/reader';
import { CoordinatorPassageSource, embedQueries, type PassageText } from '../../src/corag/retrieve';
import { CoragClient } from '../../src/federated/client';
import { decodeModel, decodeUpdate, encodeUpdate, type NamedTensor } from '../../src/federated/codec';
import { initBackend } from '../../src/model/backend';
import { bertParameterShapes, parseBertConfig } from '../../src/model/bert/config';
import { padTokenBatch } from '../../src/model/contriever';
import { bertLoraShapes, t5LoraShapes, type LoraConfig } from '../../src/model/lora';
import { maxRelativeError } from '../../src/model/numerics';
import { parseT5Config, t5ParameterShapes } from '../../src/model/t5/config';
import { allParameters, selectTrainable } from '../../src/model/trainable';
import { stepFootprint } from '../../src/corag/local-training';
import { estimateTrainingFootprint, type HeldParameter } from '../../src/corag/training-footprint';
import { tinyBertConfig, tinyT5Config } from '../../src/model/tiny';
import { fedAvgExpected, seeded, startServer, tempDir } from '../server/helpers';
import { tinyBundle } from './helpers';
import { expectIdenticalNumbers } from '../identical-numbers';

const LORA: LoraConfig = { rank: 8, alpha: 16, targets: ['q', 'v'], seed: 0 };
const numel = (shapes: Iterable<readonly number[]>) => [...shapes].reduce((n, s) => n + s.reduce((a, b) => a * b, 1), 0);

/** Hugging Face's configs of the two hub readers (config.json fields; t5-small is T5Config's defaults). */
const T5_SMALL = parseT5Config({ model_type: 't5' });
const demoConfig = (part: string) => JSON.parse(readFileSync(new URL(`../../public/models/demo/${part}/config.json`, import.meta.url), 'utf8'));
const CONTRIEVER = parseBertConfig(JSON.parse(readFileSync(new URL('../fixtures/hub-configs/contriever.config.json', import.meta.url), 'utf8')));
const FLAN_T5_BASE = parseT5Config({
  model_type: 't5',
  d_model: 768,
  d_ff: 2048,
  d_kv: 64,
  num_heads: 12,
  num_layers: 12,
  num_decoder_layers: 12,
  feed_forward_proj: 'gated-gelu',
  tie_word_embeddings: false,
  vocab_size: 32128,
});

describe('LoRA session option: training config and update size', () => {
  it('reads the LoRA option from a session training config (numbers may arrive as strings)', () => {
    expect(loraConfigFromTraining({ learningRate: 1e-3 })).toBeNull();
    expect(loraConfigFromTraining({ loraRank: 8 })).toEqual({ rank: 8, alpha: 16, targets: ['q', 'v'], seed: 0 });
    expect(loraConfigFromTraining({ loraRank: '4', loraAlpha: '4', loraTargets: 'q, k,v,o', loraSeed: 9 })).toEqual({
      rank: 4,
      alpha: 4,
      targets: ['q', 'k', 'v', 'o'],
      seed: 9,
    });
    // A round that still carries a bad value (a session stored before the coordinator checked them) fails typed.
    expect(() => loraConfigFromTraining({ loraRank: 'big' })).toThrow('training.loraRank must be an integer');
    expect(() => loraConfigFromTraining({ loraRank: 4, loraTargets: 'q,x' })).toThrow(expect.objectContaining({ problem: 'bad_round_config' }));
    expect(() => loraConfigFromTraining({ loraRank: 4, loraSeed: 0.5 })).toThrow('training.loraSeed');
    // The query encoder's adapters: their own targets, the reader's rank, alpha and seed.
    expect(loraConfigFromTraining({ loraRank: 4, loraQueryTargets: 'v, q' })).toEqual({
      rank: 4,
      alpha: 8,
      targets: ['q', 'v'],
      seed: 0,
      queryTargets: ['v', 'q'],
    });
    expect(() => loraConfigFromTraining({ loraRank: 4, loraQueryTargets: 'dense' })).toThrow('training.loraQueryTargets');
  });

  it('a reader + query-encoder LoRA update is a small fraction of the fp32 reader + query-encoder bytes (tiny, demo pair, t5-small / flan-t5-base with contriever)', () => {
    const rows: string[] = [];
    for (const [name, reader, retriever] of [
      ['tiny test models', tinyT5Config(), tinyBertConfig()],
      ['shipped demo pair', parseT5Config(demoConfig('reader')), parseBertConfig(demoConfig('retriever'))],
      ['t5-small + contriever', T5_SMALL, CONTRIEVER],
      ['flan-t5-base + contriever', FLAN_T5_BASE, CONTRIEVER],
    ] as const) {
      // What a full session (trainedPrefixes reader. and query_encoder.) uploads per client, in fp32.
      const fullBytes = 4 * (numel(t5ParameterShapes(reader).values()) + numel(bertParameterShapes(retriever).values()));
      for (const lora of [
        { ...LORA, queryTargets: ['q', 'v'] },
        { ...LORA, targets: ['q', 'k', 'v', 'o'], queryTargets: ['q', 'k', 'v', 'o'] },
        { ...LORA, rank: 64, alpha: 128, queryTargets: ['q', 'v'] },
      ] as LoraConfig[]) {
        const query = numel(bertLoraShapes(retriever, { ...lora, targets: lora.queryTargets! }).values());
        const loraBytes = 4 * (numel(t5LoraShapes(reader, lora).values()) + query);
        rows.push(
          `${name} r=${lora.rank} reader ${lora.targets.join('')} + query ${lora.queryTargets!.join('')}: ${loraBytes} / ${fullBytes} bytes = ${((100 * loraBytes) / fullBytes).toFixed(3)} % (query encoder ${4 * query} bytes)`,
        );
        expect(loraBytes / fullBytes).toBeLessThan(0.25);
      }
    }
    // contriever: 12 layers × q,v × (8·768 + 768·8).
    expect(numel(bertLoraShapes(CONTRIEVER, LORA).values())).toBe(12 * 2 * 12288);
    console.log(rows.join('\n'));
  });

  it('a LoRA update is a small fraction of the fp32 full-weight bytes for t5-small and flan-t5-base', () => {
    const rows: string[] = [];
    for (const [name, config] of [
      ['t5-small', T5_SMALL],
      ['flan-t5-base', FLAN_T5_BASE],
    ] as const) {
      const full = numel(t5ParameterShapes(config).values());
      for (const lora of [LORA, { ...LORA, targets: ['q', 'k', 'v', 'o'] } as LoraConfig, { ...LORA, rank: 64, alpha: 128 }]) {
        const adapters = numel(t5LoraShapes(config, lora).values());
        rows.push(`${name} r=${lora.rank} ${lora.targets.join('')}: ${adapters} / ${full} params = ${((100 * adapters) / full).toFixed(3)} %`);
        expect(adapters / full).toBeLessThan(0.25);
      }
    }
    // t5-small: 18 attention layers × q,v × (8·512 + 512·8); flan-t5-base: 36 × 2 × (8·768 + 768·8).
    expect(numel(t5LoraShapes(T5_SMALL, LORA).values())).toBe(18 * 2 * 8192);
    expect(numel(t5LoraShapes(FLAN_T5_BASE, LORA).values())).toBe(36 * 2 * 12288);
    console.log(rows.join('\n'));
  });
});

describe('a bundle with LoRA adapters', () => {
  let bundle: ModelBundle;
  let plain: ModelBundle;
  beforeAll(async () => {
    await initBackend('cpu');
    bundle = await tinyBundle();
    plain = await tinyBundle();
    bundle.enableLora(LORA);
  });
  afterAll(() => {
    bundle.dispose();
    plain.dispose();
  });

  it('carries the adapters as reader.lora.* wire tensors, freezes every other reader weight and trains only the adapters', async () => {
    const adapters = bundle.wireNamesMatching([READER_LORA_WIRE_PREFIX]);
    expect(adapters).toHaveLength(t5LoraShapes(bundle.readerConfig, LORA).size);
    expect(adapters.every((n) => n.startsWith('reader.lora.') && /\.(q|v)\.lora_[AB]\.weight$/.test(n))).toBe(true);
    expect(bundle.wireNames().length).toBe(plain.wireNames().length + adapters.length);
    const selected = selectTrainable(bundle.parts, trainableForWirePrefixes([READER_LORA_WIRE_PREFIX]));
    expect([...selected.keys()].sort()).toEqual(bundle.localNames(adapters).sort());
    expect(bundle.readerParams.get('encoder.block.0.layer.0.SelfAttention.q.weight').trainable).toBe(false);
    // A full-reader selection now names frozen weights: refused rather than silently trained.
    expect(() => selectTrainable(bundle.parts, 'reader')).toThrow(/frozen/);
    bundle.enableLora(LORA); // the same config again: nothing changes
    expect(() => bundle.enableLora({ ...LORA, rank: 4 })).toThrow(/already has LoRA/);

    // An update of the adapters alone, against the fp32 update of the whole reader.
    const initial = await bundle.exportGlobal();
    bundle.applyGlobal(initial, 0);
    const loraBody = await bundle.encodeDelta(adapters, { round: 1, numExamples: 1, metrics: {} });
    plain.applyGlobal(await plain.exportGlobal(), 0);
    const readerBody = await plain.encodeDelta(plain.wireNamesMatching(['reader.']), { round: 1, numExamples: 1, metrics: {} });
    const ratio = loraBody.byteLength / readerBody.byteLength;
    console.log(`tiny reader: LoRA update ${loraBody.byteLength} bytes, full-reader update ${readerBody.byteLength} bytes (${(100 * ratio).toFixed(1)} %)`);
    expect(ratio).toBeLessThan(0.25);
    const shapes = new Map(adapters.map((n) => [n, [...decodeModel(initial).get(n)!.shape]]));
    expect([...decodeUpdate(loraBody, shapes).deltas.keys()].sort()).toEqual([...adapters].sort());
  });

  it('B = 0: the same answers and the same global weights as without adapters; a tab builds it from the global version', async () => {
    const questions = ['where does alice live?'];
    const passages: PassageText[][] = [[{ title: 'alice', text: 'alice lives in paris.' }]];
    const [a] = await generateAnswers(bundle, questions, passages, { maxNewTokens: 6 });
    const [b] = await generateAnswers(plain, questions, passages, { maxNewTokens: 6 });
    expect(a.tokens).toEqual(b.tokens);

    const bytes = await bundle.exportGlobal();
    expect(() => ModelBundle.fromGlobal(plain, bytes, 0)).toThrow(/LoRA config/);
    expect(() => plain.applyGlobal(bytes, 0)).toThrow(/enable LoRA/);
    const tab = ModelBundle.fromGlobal(bundle, bytes, 0);
    expect(tab.lora).toEqual(LORA);
    expect(tab.wireNames()).toEqual(bundle.wireNames());
    tab.dispose();
  });

  it('answers with merged weights (W + (alpha/r)·B·A) that give the adapter path’s logits, recomputed when the adapters change', async () => {
    const ids = tf.tensor2d([[5, 6, 7, 8, 1]], [1, 5], 'int32');
    const mask = tf.onesLike(ids);
    const labels = tf.tensor2d([[9, 10, 1]], [1, 3], 'int32');
    const logitsOf = async (model: ModelBundle['reader']) => {
      const out = model.forward(ids, mask, labels);
      const data = (await out.logits.data()) as Float32Array;
      tf.dispose([out.logits, out.loss, out.encoderHidden]);
      return data;
    };
    const before = await logitsOf(bundle.inferenceReader);
    expect(bundle.inferenceReader).not.toBe(bundle.reader);
    for (const [name, v] of bundle.readerParams.entries()) {
      if (name.endsWith('.lora_B.weight')) v.assign(tf.randomNormal(v.shape, 0, 0.05, 'float32', 4));
    }
    const unmerged = await logitsOf(bundle.reader);
    const merged = await logitsOf(bundle.inferenceReader);
    expect(maxRelativeError(merged, unmerged)).toBeLessThan(1e-5);
    expect(maxRelativeError(merged, before)).toBeGreaterThan(1e-3); // the cache did not serve stale merges
    const count = tf.memory().numTensors;
    await logitsOf(bundle.inferenceReader);
    expect(tf.memory().numTensors).toBe(count); // merged once, then served from the cache
    tf.dispose([ids, mask, labels]);
  });
});

const QUERY_LORA: LoraConfig = { ...LORA, queryTargets: ['q', 'k', 'v', 'o'] };

describe('a bundle with LoRA adapters on the reader and the query encoder', () => {
  let bundle: ModelBundle;
  let full: ModelBundle;
  beforeAll(async () => {
    await initBackend('cpu');
    bundle = await tinyBundle();
    full = await tinyBundle();
    bundle.enableLora(QUERY_LORA);
  });
  afterAll(() => {
    bundle.dispose();
    full.dispose();
  });

  it('carries the query adapters as query_encoder.lora.* wire tensors, trains them only in a session that aggregates them, and leaves the passage encoder alone', async () => {
    const query = bundle.wireNamesMatching([QUERY_ENCODER_LORA_WIRE_PREFIX]);
    expect(query).toHaveLength(bertLoraShapes(bundle.retrieverConfig, LORA).size * 2); // q, k, v, o instead of q, v
    expect(query.every((n) => /^query_encoder\.lora\.encoder\.layer\.\d\.attention\.(self\.(query|key|value)|output\.dense)\.lora_[AB]\.weight$/.test(n))).toBe(
      true,
    );
    const reader = bundle.wireNamesMatching([READER_LORA_WIRE_PREFIX]);
    const both = selectTrainable(bundle.parts, trainableForWirePrefixes([READER_LORA_WIRE_PREFIX, QUERY_ENCODER_LORA_WIRE_PREFIX]));
    expect([...both.keys()].sort()).toEqual(bundle.localNames([...reader, ...query]).sort());
    const readerOnly = selectTrainable(bundle.parts, trainableForWirePrefixes([READER_LORA_WIRE_PREFIX]));
    expect([...readerOnly.keys()].sort()).toEqual(bundle.localNames(reader).sort());
    expect(bundle.retriever.params.get('query.encoder.layer.0.attention.self.query.weight').trainable).toBe(false);
    expect(() => selectTrainable(bundle.parts, 'query-encoder')).toThrow(/frozen/);
    expect(bundle.retriever.parameterNames('passage').some((n) => n.includes('lora'))).toBe(false);
    bundle.enableLora({ ...QUERY_LORA, queryTargets: ['o', 'v', 'k', 'q'] }); // the same config again
    expect(() => bundle.enableLora({ ...QUERY_LORA, queryTargets: ['q'] })).toThrow(/already has LoRA/);

    // The update of both adapter sets against the fp32 update of the whole reader and query encoder.
    bundle.applyGlobal(await bundle.exportGlobal(), 0);
    const loraBody = await bundle.encodeDelta([...reader, ...query], { round: 1, numExamples: 1, metrics: {} });
    full.applyGlobal(await full.exportGlobal(), 0);
    const fullBody = await full.encodeDelta(full.wireNamesMatching(['reader.', 'query_encoder.']), { round: 1, numExamples: 1, metrics: {} });
    const ratio = loraBody.byteLength / fullBody.byteLength;
    console.log(
      `tiny test models: reader + query LoRA update ${loraBody.byteLength} bytes, full reader + query update ${fullBody.byteLength} bytes (${(100 * ratio).toFixed(2)} %)`,
    );
    expect(ratio).toBeLessThan(0.25);
  });

  it('retrieval reads merged query weights equal to the unmerged (training) forward; a tab builds the adapters from the global version', async () => {
    const questions = ['where does alice live?', 'who lives in paris?'];
    const base = await embedQueries(full, questions);
    // B = 0: the adapted query encoder embeds exactly as the base one.
    expect(await embedQueries(bundle, questions)).toEqual(base);
    for (const [name, v] of bundle.retriever.params.entries()) {
      if (name.endsWith('.lora_B.weight')) v.assign(tf.randomNormal(v.shape, 0, 0.2, 'float32', 6));
    }
    const merged = await embedQueries(bundle, questions);
    const batch = padTokenBatch(
      questions.map((q) => bundle.retrieverTokenizer.encode(q)),
      bundle.retrieverConfig.pad_token_id,
    );
    const unmergedTensor = bundle.retriever.embed('query', batch);
    const unmerged = (await unmergedTensor.data()) as Float32Array;
    tf.dispose([unmergedTensor, batch.inputIds, batch.attentionMask]);
    const flat = (rows: Float32Array[]) => Float32Array.from(rows.flatMap((r) => [...r]));
    expect(maxRelativeError(flat(merged), unmerged)).toBeLessThan(1e-5);
    expect(maxRelativeError(flat(merged), flat(base))).toBeGreaterThan(1e-3);

    const bytes = await bundle.exportGlobal();
    const readerOnly = await tinyBundle();
    readerOnly.enableLora(LORA);
    expect(() => readerOnly.applyGlobal(bytes, 0)).toThrow(/query_encoder\.lora\..*with queryTargets/);
    readerOnly.dispose();
    const tab = ModelBundle.fromGlobal(bundle, bytes, 0);
    expect(tab.lora).toEqual(QUERY_LORA);
    expect(tab.wireNames()).toEqual(bundle.wireNames());
    expect(flat(await embedQueries(tab, questions))).toEqual(flat(merged));
    tab.dispose();
  });

  it('the training-footprint estimate counts the query adapters as trained state (gradients, AdamW moments) and the frozen query base as held only', () => {
    const shape = { batchSize: 2, k: 2, passageLength: 32, targetLength: 8, queryLength: 8 };
    const trainable = selectTrainable(bundle.parts, trainableForWirePrefixes([READER_LORA_WIRE_PREFIX, QUERY_ENCODER_LORA_WIRE_PREFIX]));
    const readerAdapters = numel(t5LoraShapes(bundle.readerConfig, QUERY_LORA).values());
    const queryAdapters = numel(bertLoraShapes(bundle.retrieverConfig, { ...QUERY_LORA, targets: QUERY_LORA.queryTargets! }).values());
    const withRetriever = stepFootprint(bundle, trainable, shape, 'pdist', 'cpu');
    expect(withRetriever.parts.gradients).toBe(4 * (readerAdapters + queryAdapters));
    expect(withRetriever.parts.optimizerState).toBe(2 * 4 * (readerAdapters + queryAdapters));
    // Without a retriever loss the query adapters get no gradient: nothing of the query encoder is trained.
    expect(stepFootprint(bundle, trainable, shape, 'none', 'cpu').parts.gradients).toBe(4 * readerAdapters);
    const held = numel([...allParameters(bundle.parts).values()].map((v) => v.shape));
    expect(withRetriever.parts.weights).toBe(4 * held);

    // flan-t5-base + Contriever (hub shapes) at the CRAB recipe's step (1 × 4 × 128, PDist, wasm),
    // reader-only LoRA vs reader + query LoRA: the query adapters add their state and the retriever's step.
    const heldOf = (lora: LoraConfig): HeldParameter[] => [
      ...[...t5ParameterShapes(FLAN_T5_BASE)].map(([name, shape]) => ({ name, shape, trained: false })),
      ...[...t5LoraShapes(FLAN_T5_BASE, lora)].map(([name, shape]) => ({ name, shape, trained: true })),
      ...['query.', 'passage.'].flatMap((side) => [...bertParameterShapes(CONTRIEVER)].map(([name, shape]) => ({ name: side + name, shape, trained: false }))),
      ...(lora.queryTargets
        ? [...bertLoraShapes(CONTRIEVER, { ...lora, targets: lora.queryTargets })].map(([name, shape]) => ({ name: 'query.' + name, shape, trained: true }))
        : []),
    ];
    const step = {
      batchSize: 1,
      k: 4,
      passageLength: 128,
      targetLength: 32,
      queryLength: 32,
      backend: 'wasm' as const,
      reader: FLAN_T5_BASE,
      retriever: CONTRIEVER,
    };
    const readerOnly = estimateTrainingFootprint({ ...step, retrieverLoss: 'none', parameters: heldOf(LORA) });
    const both = estimateTrainingFootprint({ ...step, retrieverLoss: 'pdist', parameters: heldOf({ ...LORA, queryTargets: ['q', 'v'] }) });
    expect(both.parts.gradients - readerOnly.parts.gradients).toBe(4 * 12 * 2 * 12288);
    // Issue 20's 4 GiB tab: the query adapters and the retriever's step still fit it (estimate).
    expect(both.peakBytes).toBeLessThan(4 * 2 ** 30);
    const GiB = (n: number) => (n / 2 ** 30).toFixed(2);
    console.log(
      `flan-t5-base + contriever, 1×4×128 wasm: reader LoRA (no retriever loss) ${GiB(readerOnly.peakBytes)} GiB (${readerOnly.phase}); reader + query LoRA (pdist) ${GiB(both.peakBytes)} GiB (${both.phase})`,
    );
  });
});

const FACTS: PassageText[][] = [
  [
    { title: 'alice', text: 'alice lives in paris.' },
    { title: 'bob', text: 'bob lives in london.' },
  ],
  [
    { title: 'carol', text: 'carol lives in berlin.' },
    { title: 'david', text: 'david lives in madrid.' },
    { title: 'emma', text: 'emma lives in rome.' },
  ],
];
const qaOf = (facts: PassageText[]): QAPair[] =>
  facts.map((f) => ({ question: `where does ${f.title} live?`, answers: [f.text.split(' ').pop()!.replace('.', '')] }));

describe('a LoRA session through the real coordinator', () => {
  const dir = tempDir();
  let server: Awaited<ReturnType<typeof startServer>>;
  const bundles: ModelBundle[] = [];
  beforeAll(async () => {
    await initBackend('wasm'); // training steps, as test/corag/federated-client.test.ts
    server = await startServer({ dataDir: dir.path, random: seeded(5) });
    for (let i = 0; i < 2; i++) bundles.push(await tinyBundle());
  });
  afterAll(async () => {
    await server.app.close();
    dir.remove();
    for (const b of bundles) b.dispose();
  });

  it('refuses a LoRA session whose trained prefixes name more than the adapters', async () => {
    const anon = new CoragClient(server.url);
    await expect(
      anon.createSession({
        name: 'corag-lora-bad',
        models: { reader: 'tiny-t5', passageEncoder: 'p', embeddingDim: bundles[0].embeddingDim },
        training: { learningRate: 1e-2, loraRank: 4 },
        trainedPrefixes: ['reader.'],
      }),
    ).rejects.toMatchObject({ status: 400, code: 'invalid_lora_session' });
  });

  it('clients train and upload only adapters; the published version holds their FedAvg and the frozen weights unchanged', async () => {
    const anon = new CoragClient(server.url);
    const created = await anon.createSession({
      name: 'corag-lora',
      models: { reader: 'tiny-t5', passageEncoder: 'corag/tiny-contriever (random, seed 2)', embeddingDim: bundles[0].embeddingDim },
      training: { learningRate: 1e-2, localSteps: 2, passagesPerQuestion: 2, maxLength: 32, batchSize: 2, seed: 3, loraRank: 4, loraTargets: 'q,k,v,o' },
      roundPolicy: { minClients: 2, minUpdates: 2, deadlineSeconds: 120, autoStart: false },
      trainedPrefixes: [READER_LORA_WIRE_PREFIX],
    });
    const sid = created.session.id;
    const admin = anon.withToken(created.adminToken);
    // The organiser's initial version carries the adapters (A seeded, B = 0).
    const lora = loraConfigFromTraining(created.session.config.training)!;
    const organiser = await tinyBundle();
    organiser.enableLora(lora);
    const initial = await organiser.exportGlobal();
    organiser.dispose();
    expect((await admin.uploadModel(sid, initial)).version).toBe(0);

    const uploads: Uint8Array[] = [];
    const clients = await Promise.all(
      bundles.map((bundle, i) =>
        FederatedCoragClient.join(anon, created.joinCode, `client-${i}`, {
          bundle,
          qaPairs: qaOf(FACTS[i]),
          passageSource: (c, s) => new CoordinatorPassageSource(c, s),
          onEvent: (e: ClientEvent) => {
            if (e.type === 'uploaded') uploads.push(e.body);
          },
        }),
      ),
    );
    for (const [i, c] of clients.entries()) {
      c.bundle.enableLora(lora); // a client that contributes before its first round builds the adapters first
      await c.loadGlobal(0);
      await c.contributePassages(FACTS[i]);
    }
    const running = clients.map((c) => c.run({ maxRounds: 1 }));
    let info = await admin.openRound(sid);
    for (let t = 0; info.state !== 'closed' && info.state !== 'failed' && t < 600; t++) {
      await new Promise((res) => setTimeout(res, 100));
      info = await admin.round(sid, 1);
    }
    expect(info.failureReason).toBeNull();
    expect(info.state).toBe('closed');
    await Promise.all(running);

    const v0 = decodeModel(initial);
    const v1 = decodeModel(await admin.downloadModel(sid, 1));
    const adapterNames = [...v0.keys()].filter((n) => n.startsWith(READER_LORA_WIRE_PREFIX));
    expect(adapterNames.length).toBe(t5LoraShapes(bundles[0].readerConfig, lora).size);
    const shapes = new Map(adapterNames.map((n) => [n, [...v0.get(n)!.shape]]));
    const updates = uploads.map((body) => decodeUpdate(body, shapes));
    expect(updates).toHaveLength(2);
    expect(updates.map((u) => u.numExamples).sort()).toEqual([2, 3]);
    for (const u of updates) expect([...u.deltas.keys()].sort()).toEqual([...adapterNames].sort());

    const expected = fedAvgExpected(
      v0,
      updates.map((u) => ({ n: u.numExamples, deltas: u.deltas as Map<string, NamedTensor> })),
    );
    for (const name of adapterNames) {
      const got = v1.get(name)!.data;
      const want = expected.get(name)!;
      let err = 0;
      for (let i = 0; i < want.length; i++) err = Math.max(err, Math.abs(got[i] - want[i]));
      expect(err, name).toBeLessThan(1e-6);
    }
    // Training moved the adapters (B left zero), and every other tensor is carried over bit for bit.
    const b = 'reader.lora.decoder.block.0.layer.1.EncDecAttention.v.lora_B.weight';
    expect(Math.max(...v1.get(b)!.data.map(Math.abs))).toBeGreaterThan(0);
    for (const [name, t] of v0) if (!name.startsWith(READER_LORA_WIRE_PREFIX)) expectIdenticalNumbers(v1.get(name)?.data, t.data, name);

    // An update that carries a frozen weight is refused: the session aggregates adapters only.
    const frozen = 'reader.encoder.block.0.layer.0.SelfAttention.q.weight';
    const smuggled = new Map<string, NamedTensor>([
      ...updates[0].deltas,
      [frozen, { shape: v0.get(frozen)!.shape, data: new Float32Array(v0.get(frozen)!.data.length) }],
    ]);
    const round2 = await admin.openRound(sid);
    const me = clients.find((c) => round2.participants.includes(c.clientId))!;
    await expect(me.client.uploadUpdate(sid, 2, encodeUpdate(smuggled, { round: 2, baseVersion: 1, numExamples: 1, metrics: {} }))).rejects.toMatchObject({
      status: 400,
      code: 'unknown_tensor',
    });
  });

  it("with loraQueryTargets, clients also train and upload the query encoder's adapters (retriever loss); the version holds the FedAvg of both sets, every other tensor unchanged", async () => {
    const anon = new CoragClient(server.url);
    const created = await anon.createSession({
      name: 'corag-query-lora',
      models: { reader: 'tiny-t5', passageEncoder: 'corag/tiny-contriever (random, seed 2)', embeddingDim: bundles[0].embeddingDim },
      training: {
        learningRate: 1e-2,
        retrieverLearningRate: 1e-2,
        localSteps: 1,
        passagesPerQuestion: 2,
        maxLength: 24,
        // Each client's weight is its QA pairs (2 and 3), capped by the coordinator at localSteps × batchSize.
        batchSize: 3,
        seed: 3,
        retrieverLoss: 'pdist',
        loraRank: 4,
        loraQueryTargets: 'q,k,v,o',
      },
      roundPolicy: { minClients: 2, minUpdates: 2, deadlineSeconds: 120, autoStart: false },
      trainedPrefixes: [READER_LORA_WIRE_PREFIX, QUERY_ENCODER_LORA_WIRE_PREFIX],
    });
    const sid = created.session.id;
    const admin = anon.withToken(created.adminToken);
    const lora = loraConfigFromTraining(created.session.config.training)!;
    expect(lora.queryTargets).toEqual(['q', 'k', 'v', 'o']);
    const organiser = await tinyBundle();
    organiser.enableLora(lora);
    const initial = await organiser.exportGlobal();
    organiser.dispose();
    await admin.uploadModel(sid, initial);

    const uploads: Uint8Array[] = [];
    const fresh = [await tinyBundle(), await tinyBundle()];
    bundles.push(...fresh); // disposed with the others
    const clients = await Promise.all(
      fresh.map((bundle, i) =>
        FederatedCoragClient.join(anon, created.joinCode, `query-client-${i}`, {
          bundle,
          qaPairs: qaOf(FACTS[i]),
          passageSource: (c, s) => new CoordinatorPassageSource(c, s),
          onEvent: (e: ClientEvent) => {
            if (e.type === 'uploaded') uploads.push(e.body);
          },
        }),
      ),
    );
    for (const [i, c] of clients.entries()) {
      c.bundle.enableLora(lora);
      await c.loadGlobal(0);
      await c.contributePassages(FACTS[i]);
    }
    const running = clients.map((c) => c.run({ maxRounds: 1 }));
    let info = await admin.openRound(sid);
    for (let t = 0; info.state !== 'closed' && info.state !== 'failed' && t < 600; t++) {
      await new Promise((res) => setTimeout(res, 100));
      info = await admin.round(sid, 1);
    }
    expect(info.failureReason).toBeNull();
    expect(info.state).toBe('closed');
    await Promise.all(running);

    const v0 = decodeModel(initial);
    const v1 = decodeModel(await admin.downloadModel(sid, 1));
    const isAdapter = (n: string) => n.startsWith(READER_LORA_WIRE_PREFIX) || n.startsWith(QUERY_ENCODER_LORA_WIRE_PREFIX);
    const adapterNames = [...v0.keys()].filter(isAdapter);
    const queryNames = adapterNames.filter((n) => n.startsWith(QUERY_ENCODER_LORA_WIRE_PREFIX));
    expect(queryNames).toHaveLength(bertLoraShapes(fresh[0].retrieverConfig, { ...lora, targets: lora.queryTargets! }).size);
    const shapes = new Map(adapterNames.map((n) => [n, [...v0.get(n)!.shape]]));
    const updates = uploads.map((body) => decodeUpdate(body, shapes));
    expect(updates).toHaveLength(2);
    for (const u of updates) expect([...u.deltas.keys()].sort()).toEqual([...adapterNames].sort());
    const expected = fedAvgExpected(
      v0,
      updates.map((u) => ({ n: u.numExamples, deltas: u.deltas as Map<string, NamedTensor> })),
    );
    for (const name of adapterNames) {
      const got = v1.get(name)!.data;
      const want = expected.get(name)!;
      let err = 0;
      for (let i = 0; i < want.length; i++) err = Math.max(err, Math.abs(got[i] - want[i]));
      expect(err, name).toBeLessThan(1e-6);
    }
    // The retriever loss moved the query adapters (B started at zero); the frozen query base and
    // the passage encoder are carried over bit for bit.
    const queryB = 'query_encoder.lora.encoder.layer.1.attention.self.value.lora_B.weight';
    expect(Math.max(...v1.get(queryB)!.data.map(Math.abs))).toBeGreaterThan(0);
    for (const [name, t] of v0) if (!isAdapter(name)) expectIdenticalNumbers(v1.get(name)?.data, t.data, name);
  });
});
