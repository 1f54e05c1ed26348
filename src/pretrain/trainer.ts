/**
 * The pretraining loop (centralised, one process): each step trains
 * - the retriever (one BERT encoder used for queries and passages, as Contriever pretrains it)
 *   with the random-crop contrastive loss: two independent crops of a passage are positives,
 *   the other crops of the batch and a queue of earlier steps' (detached) crops are negatives;
 * - the reader (T5 FiD) on masked-span and cloze examples over k passages retrieved from the
 *   current index (the source passage is left out for masked spans, as Atlas does, and put in for
 *   cloze questions, so the reader learns to copy answers out of passages);
 * - the retriever again by Perplexity Distillation: the reader scores each retrieved passage
 *   alone (no gradient) and the query embedding is pulled towards that distribution.
 * One AdamW updates both models from the summed loss. The passage index is rebuilt every
 * `reindexEvery` steps, because the passage encoder keeps changing.
 *
 * All state needed to continue bit-exactly (weights, optimizer moments, RNG, data positions,
 * queue, index) is saved by `saveCheckpoint` and restored by `Pretrainer.resume`.
 *
 * This file composes one step out of its parts, each in its own module: the retriever's batches
 * (retriever-encoder.ts), the passage index and its top-k rule (passage-index.ts), the reader's
 * FiD rows and windows (reader-inputs.ts), the Perplexity Distillation teacher
 * (perplexity-distillation.ts), the contrastive key queue (key-queue.ts), the data order
 * (data-order.ts), the starting weights (initial-weights.ts) and the checkpoint (checkpoint.ts).
 */
import * as tf from '@tensorflow/tfjs-core';
import type { BertConfig } from '../model/bert/config';
import { inBatchContrastiveLoss, perplexityDistillationLoss } from '../model/losses';
import { AdamW } from '../model/optimizer';
import type { ParameterStore } from '../model/params';
import type { T5Config } from '../model/t5/config';
import { fidEncode } from '../model/t5/fid';
import { copyAttentionLoss } from '../model/t5/copy-attention';
import { meanTokenCrossEntropy } from '../model/t5/loss';
import { T5Model } from '../model/t5/model';
import { readPretrainCheckpoint, writePretrainCheckpoint, type PretrainCheckpoint } from './checkpoint';
import type { PretrainConfig } from './config';
import type { PretrainData } from './data';
import { EpochOrders, EXAMPLE_STREAM, PASSAGE_STREAM, type DataPosition } from './data-order';
import { randomCrop } from './examples';
import { initialStores, type ModelStores } from './initial-weights';
import { KeyQueue } from './key-queue';
import { readerT5Config, retrieverBertConfig } from './model-configs';
import { PassageIndex } from './passage-index';
import { perPassageLoss } from './perplexity-distillation';
import { readerInputs, type ReaderInputs } from './reader-inputs';
import { RetrieverEncoder } from './retriever-encoder';
import { Rng } from './rng';

export interface StepLosses {
  readonly step: number;
  /** FiD token cross-entropy over the step's masked-span and cloze examples. */
  readonly reader: number;
  /** Random-crop contrastive loss. */
  readonly contrastive: number;
  /** Perplexity Distillation KL. */
  readonly pdist: number;
  /** Inverse-cloze contrastive loss (query → its source passage). NaN when an objective is off. */
  readonly ict: number;
  /** Copy-attention supervision loss. NaN when off. */
  readonly copy: number;
  readonly lr: number;
}

export class Pretrainer {
  readonly readerConfig: T5Config;
  readonly retrieverConfig: BertConfig;
  readonly reader: T5Model;
  /** The retriever (one encoder for queries, passages and crops) over `retrieverParams`. */
  private readonly retriever: RetrieverEncoder;
  /** The passages the reader retrieves from, as of the last rebuild. */
  readonly passageIndex: PassageIndex;
  private readonly queue: KeyQueue;
  private readonly trainable = new Map<string, tf.Variable>();
  private readonly optimizer: AdamW;
  private readonly orders: EpochOrders;
  private rng: Rng;
  private stepCount = 0;
  private examplePos: DataPosition = { epoch: 0, cursor: 0 };
  private passagePos: DataPosition = { epoch: 0, cursor: 0 };

  private constructor(
    readonly config: PretrainConfig,
    readonly data: PretrainData,
    /** Reader parameters by HF T5 name (owned). */
    readonly readerParams: ParameterStore,
    /** Retriever (BERT) parameters by HF BERT name (owned). */
    readonly retrieverParams: ParameterStore,
  ) {
    const { special } = data;
    this.readerConfig = readerT5Config(config, data.readerVocabSize, { pad: special.readerPad, eos: special.readerEos });
    this.retrieverConfig = retrieverBertConfig(config, data.retrieverVocabSize, special.retrieverPad);
    this.reader = new T5Model(this.readerConfig, readerParams);
    this.retriever = new RetrieverEncoder(this.retrieverConfig, retrieverParams, special);
    this.passageIndex = new PassageIndex(this.retriever, data.passages, config);
    this.queue = new KeyQueue(config.queueSize);
    for (const [n, v] of readerParams.entries()) this.trainable.set(`reader.${n}`, v);
    for (const [n, v] of retrieverParams.entries()) this.trainable.set(`retriever.${n}`, v);
    this.optimizer = new AdamW({
      lr: config.lr,
      warmupSteps: config.warmupSteps,
      totalSteps: config.steps,
      finalRatio: 0.1,
      weightDecay: config.weightDecay,
      clipNorm: config.clipNorm,
      noDecay: (n) => /layer_norm|LayerNorm|\.bias$/.test(n),
    });
    this.orders = new EpochOrders(config.seed);
    this.rng = new Rng(config.seed);
  }

  /**
   * A fresh run: weights initialised as transformers does (seeded), or taken over from `initial`
   * (e.g. an exported checkpoint of an earlier run: continued pretraining with a new optimizer).
   * The stores in `initial` are owned by the trainer from then on.
   */
  static create(config: PretrainConfig, data: PretrainData, initial?: ModelStores): Pretrainer {
    const t5 = readerT5Config(config, data.readerVocabSize, { pad: data.special.readerPad, eos: data.special.readerEos });
    const bert = retrieverBertConfig(config, data.retrieverVocabSize, data.special.retrieverPad);
    const { reader, retriever } = initialStores(config, t5, bert, initial);
    return new Pretrainer(config, data, reader, retriever);
  }

  /** Continues a run from `saveCheckpoint` output; the next step is the one that would have followed. */
  static resume(config: PretrainConfig, data: PretrainData, checkpoint: PretrainCheckpoint): Pretrainer {
    const { tensors, state } = readPretrainCheckpoint(checkpoint);
    const trainer = new Pretrainer(config, data, tensors.reader, tensors.retriever);
    trainer.optimizer.loadState(checkpoint.optimizer);
    trainer.stepCount = state.step;
    trainer.rng = Rng.fromState(state.rng);
    trainer.examplePos = state.examples;
    trainer.passagePos = state.passages;
    trainer.passageIndex.restore(tensors.index, state.indexedAtStep);
    trainer.queue.restore(tensors.queue);
    return trainer;
  }

  get step(): number {
    return this.stepCount;
  }

  /** Number of scalar parameters of reader and retriever. */
  get numParameters(): { reader: number; retriever: number } {
    return { reader: this.readerParams.numel(), retriever: this.retrieverParams.numel() };
  }

  /** Re-embeds every passage with the current encoder (no gradient). */
  reindex(batchSize = 128): void {
    this.passageIndex.rebuild(this.stepCount, batchSize);
  }

  /** Whether any objective trains the retriever (else its weights, and so the index, never change). */
  private get retrieverTrains(): boolean {
    const c = this.config;
    return c.contrastiveWeight > 0 || c.pdistWeight > 0 || c.ictWeight > 0;
  }

  /**
   * One training step on the next batches; returns the losses. An objective whose weight is 0 is
   * not computed at all (a reader-only or retriever-only phase costs only its own model's maths),
   * and a model no objective reaches gets no gradient and no update.
   */
  async trainStep(): Promise<StepLosses> {
    const { config, data } = this;
    const useReader = config.readerWeight > 0;
    const usePdist = useReader && config.pdistWeight > 0;
    const useContrastive = config.contrastiveWeight > 0;
    const useIct = config.ictWeight > 0;
    const index = this.passageIndex;
    const stale = index.tensor === null || (this.retrieverTrains && this.stepCount - index.indexedAtStep >= config.reindexEvery);
    if (useReader && stale) this.reindex();
    const ex = this.orders.take(EXAMPLE_STREAM, this.examplePos, data.examples.length, config.readerBatch);
    const ps = useContrastive
      ? this.orders.take(PASSAGE_STREAM, this.passagePos, data.passages.length, config.contrastiveBatch)
      : { items: [], pos: this.passagePos };
    const examples = ex.items.map((i) => data.examples[i]);
    const cropLen = config.cropMaxLength;
    const cropsA = ps.items.map((p) => this.retriever.row(randomCrop(data.passages[p].retrieverIds, this.rng, 0.1, 0.5, cropLen - 2), cropLen));
    const cropsB = ps.items.map((p) => this.retriever.row(randomCrop(data.passages[p].retrieverIds, this.rng, 0.1, 0.5, cropLen - 2), cropLen));

    const owned: tf.Tensor[] = [];
    const keep = <T extends tf.Tensor>(t: T): T => (owned.push(t), t);
    const bertBatch = (rows: readonly number[][], length: number) => {
      const b = this.retriever.batch(rows, length);
      owned.push(b.inputIds, b.attentionMask);
      return b;
    };
    let reader: { inputs: ReaderInputs; passageLoss?: tf.Tensor2D; passageEmb?: tf.Tensor3D } | null = null;
    if (useReader) {
      const retrieved = await index.retrieve(examples);
      const inputs = readerInputs(config, data, this.rng, examples, retrieved);
      owned.push(inputs.ids, inputs.mask, inputs.labels, ...(inputs.copyAllowed ? [inputs.copyAllowed] : []));
      reader = { inputs };
      if (usePdist) {
        reader.passageLoss = keep(perPassageLoss(this.reader, config.passagesPerQuestion, inputs.ids, inputs.mask, inputs.labels));
        reader.passageEmb = keep(index.embeddingsOf(retrieved));
      }
    }
    const queryBatch =
      usePdist || useIct
        ? bertBatch(
            examples.map((e) => this.retriever.row(e.retrieverQuery, config.queryMaxLength)),
            config.queryMaxLength,
          )
        : null;
    // Inverse cloze task: each example's query should find the passage it was made from among the
    // step's source passages (in-batch negatives).
    const ictPassages = [...new Set(examples.map((e) => e.passage))];
    const ictBatch = useIct
      ? bertBatch(
          ictPassages.map((p) => this.retriever.row(data.passages[p].retrieverIds, config.indexMaxLength)),
          config.indexMaxLength,
        )
      : null;
    const batchA = useContrastive ? bertBatch(cropsA, cropLen) : null;
    const batchB = useContrastive ? bertBatch(cropsB, cropLen) : null;

    const parts: { reader?: tf.Scalar; contrastive?: tf.Scalar; pdist?: tf.Scalar; ict?: tf.Scalar; copy?: tf.Scalar } = {};
    let keys: tf.Tensor2D | null = null;
    const varList = [...this.trainable].filter(([name]) => (name.startsWith('reader.') ? useReader : this.retrieverTrains)).map(([, v]) => v);
    const { value, grads } = tf.variableGrads(() => {
      const terms: tf.Scalar[] = [];
      const q = queryBatch ? this.retriever.embedBatch(queryBatch) : null;
      if (reader) {
        const { inputs } = reader;
        const fused = fidEncode(this.reader, inputs.ids, inputs.mask, config.passagesPerQuestion);
        const { hidden, crossAttentions } = this.reader.decode(this.reader.decoderInputs(inputs.labels), fused.hidden, fused.mask, {
          crossAttentions: !!inputs.copyAllowed,
        });
        parts.reader = tf.keep(meanTokenCrossEntropy(this.reader.logits(hidden), inputs.labels));
        terms.push(tf.mul(parts.reader, config.readerWeight));
        if (inputs.copyAllowed) {
          parts.copy = tf.keep(copyAttentionLoss(crossAttentions!.at(-1)!, inputs.copyAllowed, config.copyAttentionHead, config.copyAttentionHeads));
          terms.push(tf.mul(parts.copy, config.copyAttentionWeight));
        }
        if (usePdist) {
          parts.pdist = tf.keep(perplexityDistillationLoss(q!, reader.passageEmb!, reader.passageLoss!));
          terms.push(tf.mul(parts.pdist, config.pdistWeight));
        }
      }
      if (batchA && batchB) {
        const a = this.retriever.embedBatch(batchA);
        const b = this.retriever.embedBatch(batchB);
        const negatives = this.queue.negatives(b);
        parts.contrastive = tf.keep(
          inBatchContrastiveLoss(
            a,
            negatives,
            ps.items.map((_, i) => i),
            config.contrastiveTemperature,
          ),
        );
        terms.push(tf.mul(parts.contrastive, config.contrastiveWeight));
        keys = tf.keep(tf.clone(b));
      }
      if (ictBatch) {
        const p = this.retriever.embedBatch(ictBatch);
        parts.ict = tf.keep(
          inBatchContrastiveLoss(
            q!,
            p,
            examples.map((e) => ictPassages.indexOf(e.passage)),
            config.contrastiveTemperature,
          ),
        );
        terms.push(tf.mul(parts.ict, config.ictWeight));
      }
      if (terms.length === 0) throw new Error('pretrain config: every objective weight is 0');
      return (terms.length === 1 ? terms[0] : tf.addN(terms)) as tf.Scalar;
    }, varList);
    const named = new Map<string, tf.Tensor>();
    for (const [name, v] of this.trainable) if (grads[v.name]) named.set(name, grads[v.name]);
    const report = await this.optimizer.apply(this.trainable, named, { consumeGradients: true });
    const valueOf = async (t?: tf.Scalar) => (t ? (await t.data())[0] : NaN);
    const losses = {
      reader: await valueOf(parts.reader),
      contrastive: await valueOf(parts.contrastive),
      pdist: await valueOf(parts.pdist),
      ict: await valueOf(parts.ict),
      copy: await valueOf(parts.copy),
    };

    if (keys) this.queue.push(keys);
    tf.dispose([value, ...Object.values(grads), ...Object.values(parts), ...(keys ? [keys] : []), ...owned]);

    this.examplePos = ex.pos;
    this.passagePos = ps.pos;
    this.stepCount++;
    return { step: this.stepCount, ...losses, lr: report.lr };
  }

  async saveCheckpoint(): Promise<PretrainCheckpoint> {
    return writePretrainCheckpoint(
      { reader: this.readerParams, retriever: this.retrieverParams, queue: this.queue.tensor, index: this.passageIndex.tensor },
      await this.optimizer.saveState(),
      {
        step: this.stepCount,
        rng: this.rng.state,
        examples: this.examplePos,
        passages: this.passagePos,
        indexedAtStep: this.passageIndex.indexedAtStep,
      },
    );
  }

  dispose(): void {
    this.readerParams.dispose();
    this.retrieverParams.dispose();
    this.optimizer.dispose();
    this.queue.dispose();
    this.passageIndex.dispose();
  }
}
