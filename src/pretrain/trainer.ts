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
 */
import * as tf from '@tensorflow/tfjs-core';
import { bertParameterShapes, type BertConfig } from '../model/bert/config';
import { paramsFromStore } from '../model/bert/model';
import { contrieverEmbed } from '../model/contriever';
import { inBatchContrastiveLoss, perplexityDistillationLoss } from '../model/losses';
import { AdamW } from '../model/optimizer';
import { ParameterStore } from '../model/params';
import { parseSafetensors, readTensor, writeSafetensors, type TensorToWrite } from '../model/safetensors';
import { t5ParameterShapes, type T5Config } from '../model/t5/config';
import { fidEncode } from '../model/t5/fid';
import { allowedPositions, copyAttentionLoss } from '../model/t5/copy-attention';
import { copyAlignment } from './copy-alignment';
import { addPreviousTokenBias, ENCODER_RELATIVE_BIAS } from '../model/t5/previous-token-bias';
import { IGNORE_INDEX, meanTokenCrossEntropy } from '../model/t5/loss';
import { rowSequenceLosses } from '../model/t5/row-scores';
import { T5Model } from '../model/t5/model';
import { tinyBertWeights, tinyT5Weights, type TinyWeights } from '../model/tiny';
import type { PretrainConfig } from './config';
import type { PretrainData, PreparedExample } from './data';
import { randomCrop } from './examples';
import { Rng } from './rng';
import { readerT5Config, retrieverBertConfig } from './model-configs';
import { answerWindow, randomWindow, spanWindow } from './windows';

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

/** A cursor over a fixed set of items in a per-epoch shuffled order derived from (seed, epoch). */
export interface DataPosition {
  readonly epoch: number;
  readonly cursor: number;
}

export interface PretrainerState {
  readonly step: number;
  readonly rng: number;
  readonly examples: DataPosition;
  readonly passages: DataPosition;
  readonly indexedAtStep: number;
}

export interface PretrainCheckpoint {
  /** Weights (`reader.*`, `retriever.*`), queue and passage index, float32. */
  readonly weights: Uint8Array;
  /** AdamW state (AdamW.saveState). */
  readonly optimizer: Uint8Array;
  /** PretrainerState as JSON. */
  readonly state: string;
}

interface ReaderInputs {
  readonly ids: tf.Tensor2D;
  readonly mask: tf.Tensor2D;
  readonly labels: tf.Tensor2D;
  /** [B, T, k·L] copy alignments of each target token (only with copyAttentionWeight > 0). */
  readonly copyAllowed?: tf.Tensor3D;
}

function storeOf(weights: TinyWeights): ParameterStore {
  const store = new ParameterStore();
  for (const [name, t] of weights) store.set(name, tf.tensor(t.data, t.shape, 'float32'));
  return store;
}

/** The reader's store with the config's previous-token prior added (a no-op with 0 heads). */
function withPreviousTokenBias(reader: ParameterStore, t5: T5Config, config: PretrainConfig): ParameterStore {
  if (config.previousTokenHeads === 0) return reader;
  const current = reader.get(ENCODER_RELATIVE_BIAS);
  const values = Float32Array.from(current.dataSync());
  addPreviousTokenBias(values, t5, config.previousTokenHeads, config.previousTokenBias);
  reader.set(ENCODER_RELATIVE_BIAS, tf.tensor(values, current.shape, 'float32'));
  return reader;
}

function seedFor(seed: number, stream: number, epoch: number): number {
  return (Math.imul(seed, 0x9e3779b1) ^ Math.imul(stream + 1, 0x85ebca6b) ^ Math.imul(epoch + 1, 0xc2b2ae35)) | 0;
}

const EXAMPLE_STREAM = 1;
const PASSAGE_STREAM = 2;

export class Pretrainer {
  readonly readerConfig: T5Config;
  readonly retrieverConfig: BertConfig;
  readonly reader: T5Model;
  private readonly trainable = new Map<string, tf.Variable>();
  private readonly optimizer: AdamW;
  private rng: Rng;
  private stepCount = 0;
  private examplePos: DataPosition = { epoch: 0, cursor: 0 };
  private passagePos: DataPosition = { epoch: 0, cursor: 0 };
  private orders = new Map<string, number[]>();
  /** [n, dim] detached key embeddings of earlier steps (owned). */
  private queue: tf.Tensor2D | null = null;
  /** [passages, dim] passage embeddings (owned). */
  private index: tf.Tensor2D | null = null;
  private indexedAtStep = -1;

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
    this.rng = new Rng(config.seed);
  }

  /**
   * A fresh run: weights initialised as transformers does (seeded), or taken over from `initial`
   * (e.g. an exported checkpoint of an earlier run: continued pretraining with a new optimizer).
   * The stores in `initial` are owned by the trainer from then on.
   */
  static create(config: PretrainConfig, data: PretrainData, initial?: { reader: ParameterStore; retriever: ParameterStore }): Pretrainer {
    const t5 = readerT5Config(config, data.readerVocabSize, { pad: data.special.readerPad, eos: data.special.readerEos });
    const bert = retrieverBertConfig(config, data.retrieverVocabSize, data.special.retrieverPad);
    if (initial) {
      for (const [store, shapes, what] of [
        [initial.reader, t5ParameterShapes(t5), 'reader'],
        [initial.retriever, bertParameterShapes(bert), 'retriever'],
      ] as const) {
        for (const [name, shape] of shapes) {
          if (!store.has(name) || !tf.util.arraysEqual(store.get(name).shape, shape))
            throw new Error(`initial ${what} weights do not fit the config: "${name}" should be [${shape}]`);
        }
      }
      return new Pretrainer(config, data, withPreviousTokenBias(initial.reader, t5, config), initial.retriever);
    }
    return new Pretrainer(
      config,
      data,
      withPreviousTokenBias(storeOf(tinyT5Weights(t5, config.seed)), t5, config),
      storeOf(tinyBertWeights(bert, config.seed + 1)),
    );
  }

  /** Continues a run from `saveCheckpoint` output; the next step is the one that would have followed. */
  static resume(config: PretrainConfig, data: PretrainData, checkpoint: PretrainCheckpoint): Pretrainer {
    const file = parseSafetensors(checkpoint.weights, 'pretrain checkpoint weights');
    const reader = new ParameterStore();
    const retriever = new ParameterStore();
    let queue: tf.Tensor2D | null = null;
    let index: tf.Tensor2D | null = null;
    for (const name of file.tensors.keys()) {
      const { shape, data: values } = readTensor(file, name);
      const t = tf.tensor(Float32Array.from(values as Float32Array), shape, 'float32');
      if (name.startsWith('reader.')) reader.set(name.slice(7), t);
      else if (name.startsWith('retriever.')) retriever.set(name.slice(10), t);
      else if (name === '__queue__') queue = t as tf.Tensor2D;
      else if (name === '__index__') index = t as tf.Tensor2D;
      else throw new Error(`pretrain checkpoint: unexpected tensor "${name}"`);
    }
    const trainer = new Pretrainer(config, data, reader, retriever);
    trainer.optimizer.loadState(checkpoint.optimizer);
    const state = JSON.parse(checkpoint.state) as PretrainerState;
    trainer.stepCount = state.step;
    trainer.rng = Rng.fromState(state.rng);
    trainer.examplePos = state.examples;
    trainer.passagePos = state.passages;
    trainer.indexedAtStep = state.indexedAtStep;
    trainer.queue = queue;
    trainer.index = index;
    return trainer;
  }

  get step(): number {
    return this.stepCount;
  }

  /** Number of scalar parameters of reader and retriever. */
  get numParameters(): { reader: number; retriever: number } {
    return { reader: this.readerParams.numel(), retriever: this.retrieverParams.numel() };
  }

  private order(stream: number, epoch: number, n: number): number[] {
    const key = `${stream}:${epoch}`;
    let o = this.orders.get(key);
    if (!o) {
      this.orders.clear();
      o = new Rng(seedFor(this.config.seed, stream, epoch)).permutation(n);
      this.orders.set(key, o);
    }
    return o;
  }

  /** The next `count` items of a per-epoch shuffled order, advancing `pos`. */
  private take(stream: number, pos: DataPosition, n: number, count: number): { items: number[]; pos: DataPosition } {
    let { epoch, cursor } = pos;
    const items: number[] = [];
    while (items.length < count) {
      if (cursor >= n) {
        epoch++;
        cursor = 0;
      }
      items.push(this.order(stream, epoch, n)[cursor++]);
    }
    return { items, pos: { epoch, cursor } };
  }

  private bertRow(ids: readonly number[], maxLength: number): number[] {
    const { retrieverCls, retrieverSep } = this.data.special;
    return [retrieverCls, ...ids.slice(0, maxLength - 2), retrieverSep];
  }

  /** Fixed-shape [rows, length] BERT batch (same shapes every step: one compiled GPU program each). */
  private bertBatch(rows: readonly number[][], length: number): { inputIds: tf.Tensor2D; attentionMask: tf.Tensor2D } {
    const ids = new Int32Array(rows.length * length).fill(this.data.special.retrieverPad);
    const mask = new Int32Array(rows.length * length);
    rows.forEach((r, i) => {
      ids.set(r.slice(0, length), i * length);
      mask.fill(1, i * length, i * length + Math.min(length, r.length));
    });
    return { inputIds: tf.tensor2d(ids, [rows.length, length], 'int32'), attentionMask: tf.tensor2d(mask, [rows.length, length], 'int32') };
  }

  private embed(rows: readonly number[][], length: number): tf.Tensor2D {
    const batch = this.bertBatch(rows, length);
    try {
      return contrieverEmbed(this.retrieverConfig, paramsFromStore(this.retrieverParams), batch);
    } finally {
      tf.dispose([batch.inputIds, batch.attentionMask]);
    }
  }

  /** Re-embeds every passage with the current encoder (no gradient). */
  reindex(batchSize = 128): void {
    const passages = this.data.passages;
    const parts: tf.Tensor2D[] = [];
    for (let i = 0; i < passages.length; i += batchSize) {
      const rows = passages.slice(i, i + batchSize).map((p) => this.bertRow(p.retrieverIds, this.config.indexMaxLength));
      while (rows.length < batchSize) rows.push(rows[0]); // fixed shape; extra rows dropped below
      const e = this.embed(rows, this.config.indexMaxLength);
      parts.push(tf.tidy(() => tf.slice(e, [0, 0], [Math.min(batchSize, passages.length - i), -1])));
      e.dispose();
    }
    this.index?.dispose();
    this.index = tf.tidy(() => tf.concat(parts, 0)) as tf.Tensor2D;
    tf.dispose(parts);
    this.indexedAtStep = this.stepCount;
  }

  /**
   * Top-k passages per example from the current index: for masked spans the source passage is
   * excluded (unless `mlmWithSource`); for cloze questions it is put in (replacing the k-th) when
   * retrieval missed it.
   */
  private async retrieve(examples: readonly PreparedExample[]): Promise<number[][]> {
    const k = this.config.passagesPerQuestion;
    const queries = this.embed(
      examples.map((e) => this.bertRow(e.retrieverQuery, this.config.queryMaxLength)),
      this.config.queryMaxLength,
    );
    const top = tf.tidy(() => tf.topk(tf.matMul(queries, this.index!, false, true), Math.min(k + 1, this.data.passages.length)).indices);
    const ids = (await top.data()) as Int32Array;
    const width = top.shape[1]!;
    tf.dispose([queries, top]);
    return examples.map((ex, i) => {
      const ranked = Array.from(ids.subarray(i * width, (i + 1) * width));
      const others = ranked.filter((p) => p !== ex.passage);
      if (ex.kind === 'mlm' && !this.config.mlmWithSource) return others.slice(0, k);
      return ranked.slice(0, k).includes(ex.passage) ? ranked.slice(0, k) : [...others.slice(0, k - 1), ex.passage];
    });
  }

  private readerInputs(examples: readonly PreparedExample[], retrieved: readonly number[][]): ReaderInputs {
    const { readerMaxLength: L, targetMaxLength: T, passagesPerQuestion: k } = this.config;
    const { readerPad, readerEos } = this.data.special;
    const ids = new Int32Array(examples.length * k * L).fill(readerPad);
    const mask = new Int32Array(examples.length * k * L);
    const labels = new Int32Array(examples.length * T).fill(IGNORE_INDEX);
    const alignments: number[][][] = [];
    examples.forEach((ex, b) => {
      const rows: number[][] = [];
      retrieved[b].forEach((p, j) => {
        const source = p === ex.passage && this.config.readerPassageWindow > 0;
        const passageIds =
          source && ex.kind === 'cloze'
            ? answerWindow(this.data.passages[p].readerIds, ex.target, this.config.readerPassageWindow, this.rng)
            : source && ex.kind === 'mlm' && ex.anchor
              ? spanWindow(this.data.passages[p].readerIds, ex.anchor, this.config.readerPassageWindow)
              : this.config.windowEveryPassage && this.config.readerPassageWindow > 0
                ? randomWindow(this.data.passages[p].readerIds, this.config.readerPassageWindow, this.rng)
                : this.data.passages[p].readerIds;
        const row = [...ex.readerQuery, ...passageIds].slice(0, L - 1);
        row.push(readerEos);
        ids.set(row, (b * k + j) * L);
        mask.fill(1, (b * k + j) * L, (b * k + j) * L + row.length);
        rows.push(row);
      });
      const target = ex.target.length > T ? [...ex.target.slice(0, T - 1), readerEos] : ex.target;
      labels.set(target, b * T);
      if (this.config.copyAttentionWeight > 0) {
        const queryLength = Math.min(ex.readerQuery.length, L - 1);
        alignments.push(
          copyAlignment(
            target,
            rows.map((r) => ({ ids: r, passageStart: queryLength, passageEnd: r.length - 1 })),
            ex.readerQuery,
            L,
          ),
        );
      }
    });
    return {
      ids: tf.tensor2d(ids, [examples.length * k, L], 'int32'),
      mask: tf.tensor2d(mask, [examples.length * k, L], 'int32'),
      labels: tf.tensor2d(labels, [examples.length, T], 'int32'),
      copyAllowed: this.config.copyAttentionWeight > 0 ? tf.tensor3d(allowedPositions(alignments, T, k * L), [examples.length, T, k * L]) : undefined,
    };
  }

  /** Reader CE of each example's target given each retrieved passage alone: [B, k], no gradient. */
  private perPassageLoss(ids: tf.Tensor2D, mask: tf.Tensor2D, labels: tf.Tensor2D): tf.Tensor2D {
    const k = this.config.passagesPerQuestion;
    return tf.tidy(() => {
      const [rows] = ids.shape;
      const tiled = tf.reshape(tf.tile(tf.expandDims(labels, 1), [1, k, 1]), [rows, labels.shape[1]]);
      // One example's k rows at a time per example in the batch (src/model/t5/row-scores.ts).
      return tf.reshape(rowSequenceLosses(this.reader, ids, mask, tiled, rows / k), [rows / k, k]) as tf.Tensor2D;
    });
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
    const stale = this.index === null || (this.retrieverTrains && this.stepCount - this.indexedAtStep >= config.reindexEvery);
    if (useReader && stale) this.reindex();
    const ex = this.take(EXAMPLE_STREAM, this.examplePos, data.examples.length, config.readerBatch);
    const ps = useContrastive ? this.take(PASSAGE_STREAM, this.passagePos, data.passages.length, config.contrastiveBatch) : { items: [], pos: this.passagePos };
    const examples = ex.items.map((i) => data.examples[i]);
    const cropLen = config.cropMaxLength;
    const cropsA = ps.items.map((p) => this.bertRow(randomCrop(data.passages[p].retrieverIds, this.rng, 0.1, 0.5, cropLen - 2), cropLen));
    const cropsB = ps.items.map((p) => this.bertRow(randomCrop(data.passages[p].retrieverIds, this.rng, 0.1, 0.5, cropLen - 2), cropLen));

    const owned: tf.Tensor[] = [];
    const keep = <T extends tf.Tensor>(t: T): T => (owned.push(t), t);
    const bertBatch = (rows: readonly number[][], length: number) => {
      const b = this.bertBatch(rows, length);
      owned.push(b.inputIds, b.attentionMask);
      return b;
    };
    let reader: { inputs: ReaderInputs; passageLoss?: tf.Tensor2D; passageEmb?: tf.Tensor3D } | null = null;
    if (useReader) {
      const retrieved = await this.retrieve(examples);
      const inputs = this.readerInputs(examples, retrieved);
      owned.push(inputs.ids, inputs.mask, inputs.labels, ...(inputs.copyAllowed ? [inputs.copyAllowed] : []));
      reader = { inputs };
      if (usePdist) {
        reader.passageLoss = keep(this.perPassageLoss(inputs.ids, inputs.mask, inputs.labels));
        reader.passageEmb = keep(
          tf.tidy(() =>
            tf.reshape(tf.gather(this.index!, tf.tensor1d(retrieved.flat(), 'int32')), [examples.length, config.passagesPerQuestion, -1]),
          ) as tf.Tensor3D,
        );
      }
    }
    const queryBatch =
      usePdist || useIct
        ? bertBatch(
            examples.map((e) => this.bertRow(e.retrieverQuery, config.queryMaxLength)),
            config.queryMaxLength,
          )
        : null;
    // Inverse cloze task: each example's query should find the passage it was made from among the
    // step's source passages (in-batch negatives).
    const ictPassages = [...new Set(examples.map((e) => e.passage))];
    const ictBatch = useIct
      ? bertBatch(
          ictPassages.map((p) => this.bertRow(data.passages[p].retrieverIds, config.indexMaxLength)),
          config.indexMaxLength,
        )
      : null;
    const batchA = useContrastive ? bertBatch(cropsA, cropLen) : null;
    const batchB = useContrastive ? bertBatch(cropsB, cropLen) : null;
    const bert = paramsFromStore(this.retrieverParams);

    const parts: { reader?: tf.Scalar; contrastive?: tf.Scalar; pdist?: tf.Scalar; ict?: tf.Scalar; copy?: tf.Scalar } = {};
    let keys: tf.Tensor2D | null = null;
    const varList = [...this.trainable].filter(([name]) => (name.startsWith('reader.') ? useReader : this.retrieverTrains)).map(([, v]) => v);
    const { value, grads } = tf.variableGrads(() => {
      const terms: tf.Scalar[] = [];
      const q = queryBatch ? contrieverEmbed(this.retrieverConfig, bert, queryBatch) : null;
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
        const a = contrieverEmbed(this.retrieverConfig, bert, batchA);
        const b = contrieverEmbed(this.retrieverConfig, bert, batchB);
        const negatives = this.queue ? tf.concat([b, this.queue], 0) : b;
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
        const p = contrieverEmbed(this.retrieverConfig, bert, ictBatch);
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

    if (keys) {
      // Newest keys first; the oldest fall off the end of the queue.
      const k: tf.Tensor2D = keys;
      const queued = tf.tidy(() => {
        const all = this.queue ? tf.concat([k, this.queue], 0) : k;
        return tf.slice(all, [0, 0], [Math.min(all.shape[0], config.queueSize), -1]) as tf.Tensor2D;
      });
      this.queue?.dispose();
      this.queue = config.queueSize > 0 ? queued : (queued.dispose(), null);
    }
    tf.dispose([value, ...Object.values(grads), ...Object.values(parts), ...(keys ? [keys] : []), ...owned]);

    this.examplePos = ex.pos;
    this.passagePos = ps.pos;
    this.stepCount++;
    return { step: this.stepCount, ...losses, lr: report.lr };
  }

  async saveCheckpoint(): Promise<PretrainCheckpoint> {
    const tensors = new Map<string, TensorToWrite>();
    for (const [prefix, store] of [
      ['reader.', this.readerParams],
      ['retriever.', this.retrieverParams],
    ] as const) {
      for (const [name, v] of store.entries()) tensors.set(prefix + name, { dtype: 'F32', shape: v.shape, data: (await v.data()) as Float32Array });
    }
    if (this.queue) tensors.set('__queue__', { dtype: 'F32', shape: this.queue.shape, data: (await this.queue.data()) as Float32Array });
    if (this.index) tensors.set('__index__', { dtype: 'F32', shape: this.index.shape, data: (await this.index.data()) as Float32Array });
    const state: PretrainerState = {
      step: this.stepCount,
      rng: this.rng.state,
      examples: this.examplePos,
      passages: this.passagePos,
      indexedAtStep: this.indexedAtStep,
    };
    return { weights: writeSafetensors(tensors, { format: 'corag-pretrain' }), optimizer: await this.optimizer.saveState(), state: JSON.stringify(state) };
  }

  dispose(): void {
    this.readerParams.dispose();
    this.retrieverParams.dispose();
    this.optimizer.dispose();
    this.queue?.dispose();
    this.index?.dispose();
    this.queue = this.index = null;
  }
}
