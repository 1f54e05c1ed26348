/**
 * End-to-end training smoke test: a tiny Fusion-in-Decoder reader and a Contriever retriever,
 * both random, trained jointly (reader: FiD token cross-entropy; retriever: Atlas's Perplexity
 * Distillation with the reader scoring each passage alone) on a toy copy task:
 *
 *   question  = key k;   passages = [k, a] (gold) and three [k', a'] with other keys;
 *   answer    = a (copy the answer token of the passage whose key matches the question).
 *
 * Success needs both models: the reader must learn to match keys and copy, and the retriever can
 * only learn to rank the gold passage first from the reader's per-passage perplexities.
 */
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../src/model/backend';
import { parseBertConfig } from '../../src/model/bert/config';
import { Contriever, PASSAGE_PREFIX, QUERY_PREFIX, padTokenBatch } from '../../src/model/contriever';
import { perplexityDistillationLoss } from '../../src/model/losses';
import { AdamW } from '../../src/model/optimizer';
import { ParameterStore } from '../../src/model/params';
import { parseT5Config } from '../../src/model/t5/config';
import { fidLoss } from '../../src/model/t5/fid';
import { sequenceCrossEntropy } from '../../src/model/t5/loss';
import { T5Model } from '../../src/model/t5/model';
import { tinyBertWeights, tinyT5Weights, type TinyWeights } from '../../src/model/tiny';
import { namedGradients, selectTrainable } from '../../src/model/trainable';
import { seededRandom as rng } from '../../src/util/random';

// Reader vocabulary: the question is the key token itself; a passage is `key answer`.
const PAD = 0,
  EOS = 1,
  SEP = 2;
const NUM_KEYS = 12,
  NUM_ANSWERS = 12;
const key = (i: number) => 3 + i;
const answer = (i: number) => 3 + NUM_KEYS + i;
const READER_VOCAB = 3 + NUM_KEYS + NUM_ANSWERS;
// Retriever vocabulary (a different tokenizer, as BERT's is from T5's): queries use their own
// tokens, so query and passage share no token and an untrained retriever ranks at chance.
const queryToken = (i: number) => 1 + i;
const passageKeyToken = (i: number) => 1 + NUM_KEYS + i;
const passageAnswerToken = (j: number) => 1 + 2 * NUM_KEYS + j;
const RETRIEVER_VOCAB = 1 + 2 * NUM_KEYS + NUM_ANSWERS;
const K = 4; // passages per question
const BATCH = 8;
const STEPS = 600;
const READER_LR = 3e-3;
const RETRIEVER_LR = 3e-2;

interface Example {
  /** Distinct keys of the K passages, and each passage's answer index. */
  readonly keys: number[];
  readonly answers: number[];
  /** Index of the passage whose key is the question (it holds the answer). */
  readonly gold: number;
}

function makeExample(rand: () => number): Example {
  const keys: number[] = [];
  while (keys.length < K) {
    const k = Math.floor(rand() * NUM_KEYS);
    if (!keys.includes(k)) keys.push(k);
  }
  return { keys, answers: keys.map(() => Math.floor(rand() * NUM_ANSWERS)), gold: Math.floor(rand() * K) };
}

const goldAnswer = (e: Example) => answer(e.answers[e.gold]);
const retrieverQuery = (e: Example) => [queryToken(e.keys[e.gold])];
const retrieverPassages = (e: Example) => e.keys.map((k, j) => [passageKeyToken(k), passageAnswerToken(e.answers[j])]);

/** Reader rows: `question SEP key answer EOS` per passage ([B·K, L]) and labels `answer EOS` ([B, 2]). */
function readerBatch(examples: readonly Example[]): { ids: tf.Tensor2D; mask: tf.Tensor2D; labels: tf.Tensor2D } {
  const rows = examples.flatMap((e) => e.keys.map((k, j) => [key(e.keys[e.gold]), SEP, key(k), answer(e.answers[j]), EOS]));
  return {
    ids: tf.tensor2d(rows, undefined, 'int32'),
    mask: tf.ones([rows.length, rows[0].length], 'int32') as tf.Tensor2D,
    labels: tf.tensor2d(
      examples.map((e) => [goldAnswer(e), EOS]),
      undefined,
      'int32',
    ),
  };
}

function toTensors(weights: TinyWeights, prefix = ''): [string, tf.Tensor][] {
  return [...weights].map(([name, t]) => [prefix + name, tf.tensor(t.data, t.shape, 'float32')]);
}

describe('joint FiD reader + Contriever training on a toy copy task', () => {
  let readerParams: ParameterStore;
  let reader: T5Model;
  let retriever: Contriever;

  beforeAll(async () => {
    // wasm: about 2.5x faster than cpu for these tiny ops (measured: 40 ms vs 100 ms a step).
    await initBackend('wasm');
    const t5Config = parseT5Config({
      model_type: 't5',
      vocab_size: READER_VOCAB,
      d_model: 32,
      d_kv: 8,
      d_ff: 64,
      num_layers: 2,
      num_decoder_layers: 1,
      num_heads: 4,
      relative_attention_num_buckets: 8,
      relative_attention_max_distance: 16,
      feed_forward_proj: 'gated-gelu',
      tie_word_embeddings: false,
      pad_token_id: PAD,
      eos_token_id: EOS,
      decoder_start_token_id: PAD,
    });
    readerParams = new ParameterStore(toTensors(tinyT5Weights(t5Config, 11)));
    reader = new T5Model(t5Config, readerParams);
    const bertConfig = parseBertConfig({
      model_type: 'bert',
      vocab_size: RETRIEVER_VOCAB,
      hidden_size: 32,
      num_hidden_layers: 1,
      num_attention_heads: 4,
      intermediate_size: 64,
      max_position_embeddings: 16,
      pad_token_id: PAD,
    });
    const bert = tinyBertWeights(bertConfig, 12, { initializerRange: 0.2 });
    retriever = new Contriever(bertConfig, new ParameterStore([...toTensors(bert, QUERY_PREFIX), ...toTensors(bert, PASSAGE_PREFIX)]));
  });
  afterAll(() => {
    readerParams.dispose();
    retriever.dispose();
  });

  /** Reader CE of each (question, passage) pair scored ALONE, no gradient: [B, K] (Atlas perplexity_score). */
  function perPassageLoss(examples: readonly Example[], batch: ReturnType<typeof readerBatch>): tf.Tensor2D {
    return tf.tidy(() => {
      const repeatedLabels = tf.tensor2d(
        examples.flatMap((e) => e.keys.map(() => [goldAnswer(e), EOS])),
        undefined,
        'int32',
      );
      const { logits } = reader.forward(batch.ids, batch.mask, repeatedLabels);
      return tf.reshape(sequenceCrossEntropy(logits, repeatedLabels), [examples.length, K]) as tf.Tensor2D;
    });
  }

  function retrieverRanksGoldFirst(examples: readonly Example[]): number {
    return tf.tidy(() => {
      const q = retriever.embedQueries(examples.map(retrieverQuery));
      const p = tf.reshape(retriever.embedPassages(examples.flatMap(retrieverPassages)), [examples.length, K, -1]);
      const best = tf.argMax(tf.squeeze(tf.matMul(p, tf.expandDims(q, 2)), [2]), 1).dataSync();
      return examples.filter((e, i) => best[i] === e.gold).length / examples.length;
    });
  }

  it('drives the reader loss near zero and teaches the retriever (PDist, query side) to rank the gold passage first', async () => {
    const started = performance.now();
    const rand = rng(2024);
    const evalRand = rng(99);
    const heldOut = Array.from({ length: 200 }, () => makeExample(evalRand));

    const rankBefore = retrieverRanksGoldFirst(heldOut);
    // Reader and query encoder train together on the summed loss (passage side frozen), each
    // with its own optimizer and learning rate, as Atlas's lr / lr_retriever.
    const parts = { reader: readerParams, retriever: retriever.params };
    const trainable = selectTrainable(parts, 'reader+query-encoder');
    const readerNames = new Set(selectTrainable(parts, 'reader').keys());
    const schedule = { warmupSteps: 20, totalSteps: STEPS, finalRatio: 0.1, weightDecay: 0, clipNorm: 1 };
    const readerOptimizer = new AdamW({ lr: READER_LR, ...schedule });
    const retrieverOptimizer = new AdamW({ lr: RETRIEVER_LR, ...schedule });
    const readerLosses: number[] = [];
    const retrieverLosses: number[] = [];
    let tensorsAfterFirstStep = 0;

    for (let step = 0; step < STEPS; step++) {
      const examples = Array.from({ length: BATCH }, () => makeExample(rand));
      const batch = readerBatch(examples);
      const goldCe = perPassageLoss(examples, batch);
      const passages = padTokenBatch(examples.flatMap(retrieverPassages), PAD);
      const queries = padTokenBatch(examples.map(retrieverQuery), PAD);
      let readerLoss!: tf.Scalar;
      let retrieverLoss!: tf.Scalar;
      const { loss, grads } = namedGradients(() => {
        // Both losses are summed, as Atlas adds reader_loss and retriever_loss before backward().
        readerLoss = tf.keep(fidLoss(reader, batch.ids, batch.mask, K, batch.labels));
        const q = retriever.embed('query', queries);
        const p = tf.reshape(retriever.embed('passage', passages), [BATCH, K, -1]) as tf.Tensor3D;
        retrieverLoss = tf.keep(perplexityDistillationLoss(q, p, goldCe));
        return tf.add(readerLoss, retrieverLoss) as tf.Scalar;
      }, trainable);
      const split = (reader: boolean) => new Map([...grads].filter(([name]) => readerNames.has(name) === reader));
      await readerOptimizer.apply(trainable, split(true));
      await retrieverOptimizer.apply(trainable, split(false));
      readerLosses.push((await readerLoss.data())[0]);
      retrieverLosses.push((await retrieverLoss.data())[0]);
      tf.dispose([
        loss,
        readerLoss,
        retrieverLoss,
        goldCe,
        batch.ids,
        batch.mask,
        batch.labels,
        passages.inputIds,
        passages.attentionMask,
        queries.inputIds,
        queries.attentionMask,
        ...grads.values(),
      ]);
      if (step === 0) tensorsAfterFirstStep = tf.memory().numTensors;
    }

    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const finalReaderLoss = mean(readerLosses.slice(-20));
    const rankAfter = retrieverRanksGoldFirst(heldOut);
    const seconds = (performance.now() - started) / 1000;
    console.log(
      JSON.stringify({
        reader_loss_first: mean(readerLosses.slice(0, 20)),
        reader_loss_last: finalReaderLoss,
        pdist_first: mean(retrieverLosses.slice(0, 20)),
        pdist_last: mean(retrieverLosses.slice(-20)),
        gold_first_before: rankBefore,
        gold_first_after: rankAfter,
        seconds,
      }),
    );

    expect(finalReaderLoss).toBeLessThan(0.05);
    expect(rankBefore).toBeLessThan(0.5); // chance is 1/K = 0.25
    expect(rankAfter).toBeGreaterThan(0.95);
    expect(tf.memory().numTensors).toBe(tensorsAfterFirstStep);
    readerOptimizer.dispose();
    retrieverOptimizer.dispose();
  }, 120_000);
});
