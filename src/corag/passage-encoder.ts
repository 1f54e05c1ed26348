/**
 * The frozen passage encoder alone: what a tab's embedding worker needs of a session's global
 * model. Building the whole ModelBundle there would hold the reader and the query encoder too
 * (for flan-t5-base + Contriever, ~1 GB of weights the worker never reads); this takes only the
 * `passage_encoder.*` tensors of a global version. The passage encoder is frozen in every
 * session, so any version gives the same embeddings.
 *
 * Two engines behind one `embed` (./passage-encoder-choice.ts decides): our tfjs graph, or the
 * same weights written as an ONNX graph (src/model/bert/onnx-graph.ts) on ONNX Runtime Web, kept
 * only when it embeds probe passages like tfjs within ONNX_GATE_MAX_RELATIVE_DIFF. tfjs embeds
 * from the start; the ONNX engine is built and gated in the background (for bert-base that takes
 * tens of seconds) and takes over at the next batch once it passes. Then the tfjs weights are
 * freed, so a tab holds the encoder twice only while the build runs.
 */
import * as tf from '@tensorflow/tfjs-core';
import { decodeModel } from '../federated/codec';
import { PASSAGE_ENCODER_WIRE_PREFIX } from '../federated/protocol';
import type { BackendReport } from '../model/backend';
import { bertParameterShapes, type BertConfig } from '../model/bert/config';
import { OnnxContrieverEncoder } from '../model/bert/onnx-encoder';
import { contrieverOnnxModelInSlices, type BertWeights } from '../model/bert/onnx-graph';
import { Contriever, PASSAGE_PREFIX } from '../model/contriever';
import { ortDescription } from '../model/onnx/ort-runtime';
import { ParameterStore } from '../model/params';
import type { TextTokenizer } from '../model/tokenizer';
import {
  GATE_PROBE_MAX_LENGTH,
  GATE_PROBE_PASSAGES,
  maxRowRelativeDifference,
  ONNX_GATE_MAX_RELATIVE_DIFF,
  onnxWanted,
  type PassageEncoderReport,
  type PassageEncoderSetting,
} from './passage-encoder-choice';
import { embedTextsWith, passageRetrieverText, tfjsBatchEmbedder, type BatchEmbedder, type EmbedOptions, type PassageText } from './retrieve';

/** The `passage_encoder.*` tensors of a global version under canonical BERT names, shapes checked against `config`. */
export function passageEncoderWeights(config: BertConfig, bytes: Uint8Array, version: number): Map<string, Float32Array> {
  const global = decodeModel(bytes, `global model v${version}`);
  const weights = new Map<string, Float32Array>();
  for (const [name, shape] of bertParameterShapes(config)) {
    const t = global.get(PASSAGE_ENCODER_WIRE_PREFIX + name);
    if (!t) throw new Error(`global model v${version} lacks tensor "${PASSAGE_ENCODER_WIRE_PREFIX + name}"`);
    if (!tf.util.arraysEqual([...t.shape], [...shape]))
      throw new Error(`global model v${version}: "${PASSAGE_ENCODER_WIRE_PREFIX + name}" has shape [${t.shape}] but the retriever config implies [${shape}]`);
    weights.set(name, t.data);
  }
  return weights;
}

function tfjsContriever(config: BertConfig, weights: ReadonlyMap<string, Float32Array>): Contriever {
  const params = new ParameterStore();
  try {
    for (const [name, shape] of bertParameterShapes(config)) params.set(PASSAGE_PREFIX + name, tf.tensor(weights.get(name)!, shape, 'float32'), false);
    return new Contriever(config, params, ['passage']);
  } catch (e) {
    params.dispose();
    throw e;
  }
}

export interface PassageEncoderOptions {
  readonly setting: PassageEncoderSetting;
  /** The tfjs backend running in this worker (decides `auto`, names tfjs in the report). */
  readonly backend: Pick<BackendReport, 'name' | 'software'>;
  /**
   * The ONNX model to hold against tfjs (default: contrieverOnnxModelInSlices of the same
   * weights). Tests pass other bytes or weights to see the gate refuse them.
   */
  readonly onnxModel?: (config: BertConfig, weights: BertWeights) => Uint8Array | Promise<Uint8Array>;
  /** Where the refusal of ONNX is said (default console.warn). */
  readonly warn?: (message: string) => void;
  /** Told every new report: ONNX took over after the gate, or was refused (tfjs stays). */
  readonly onReport?: (report: PassageEncoderReport) => void;
}

/** Shortest slice of graph writing between two turns of the thread (see buildTurnMs). */
const MIN_BUILD_SLICE_MS = 25;

/** Hands the thread to whatever else waits (a macrotask, so timers and messages run too). */
const nextTask = () => new Promise<void>((resolve) => setTimeout(resolve, 0));

export class PassageEncoder {
  private tfjs: Contriever | undefined;
  private onnx: OnnxContrieverEncoder | undefined;
  private current: PassageEncoderReport;
  /** tfjs batches running now: tfjs is freed after the switch only when none is. */
  private tfjsInFlight = 0;
  /** How long the last tfjs batch took: the background build gets as long a slice in turn. */
  private lastTfjsBatchMs = 0;
  private readonly counts = { tfjs: 0, onnx: 0 };
  private disposed = false;
  /**
   * Settles (never rejects) with the report once the background ONNX build has ended: ONNX kept
   * and embedding, or refused with tfjs embedding. At once when ONNX was not wanted.
   */
  readonly settled: Promise<PassageEncoderReport>;

  private constructor(
    readonly config: BertConfig,
    readonly tokenizer: TextTokenizer,
    tfjs: Contriever,
    report: PassageEncoderReport,
    build?: (encoder: PassageEncoder) => Promise<PassageEncoderReport>,
  ) {
    this.tfjs = tfjs;
    this.current = report;
    this.settled = build ? build(this) : Promise.resolve(report);
  }

  /** tfjs only: the passage encoder of global version `version` (its serialized bytes); other tensors are not materialised. */
  static fromGlobal(config: BertConfig, tokenizer: TextTokenizer, bytes: Uint8Array, version: number, backend = tf.getBackend()): PassageEncoder {
    const retriever = tfjsContriever(config, passageEncoderWeights(config, bytes, version));
    return new PassageEncoder(config, tokenizer, retriever, { engine: 'tfjs', setting: 'tfjs', detail: `tfjs (${backend})`, why: 'tfjs only' });
  }

  /** `fromWeights` with the `passage_encoder.*` tensors of global version `version` (its serialized bytes). */
  static load(config: BertConfig, tokenizer: TextTokenizer, bytes: Uint8Array, version: number, options: PassageEncoderOptions): Promise<PassageEncoder> {
    return Promise.resolve().then(() => PassageEncoder.fromWeights(config, tokenizer, passageEncoderWeights(config, bytes, version), options));
  }

  /**
   * The passage encoder on tfjs, ready to embed now; when `options` want ONNX, its engine is built
   * in the background: the graph written from the same weights (in slices, taking turns with
   * tfjs's batches on this thread), its session created, and the probe passages run through both.
   * Within ONNX_GATE_MAX_RELATIVE_DIFF, the next batch runs on ONNX and tfjs is freed; otherwise
   * tfjs stays, with the reason in the report. `settled` says when. ONNX Runtime must be
   * configured first (configureOrt).
   */
  static fromWeights(config: BertConfig, tokenizer: TextTokenizer, weights: ReadonlyMap<string, Float32Array>, options: PassageEncoderOptions): PassageEncoder {
    const tfjs = tfjsContriever(config, weights);
    const wanted = onnxWanted(options.setting, options.backend);
    const report: PassageEncoderReport = { setting: options.setting, why: wanted.why, engine: 'tfjs', detail: `tfjs (${options.backend.name})` };
    if (!wanted.build) return new PassageEncoder(config, tokenizer, tfjs, report);
    return new PassageEncoder(config, tokenizer, tfjs, { ...report, building: true }, (encoder) => encoder.buildOnnx(weights, options));
  }

  get engine(): 'tfjs' | 'onnx' {
    return this.current.engine;
  }

  /** What embeds now and why (changes once, when a background build ends). */
  get report(): PassageEncoderReport {
    return this.current;
  }

  /** Passages embedded so far by each engine. */
  passagesByEngine(): { readonly tfjs: number; readonly onnx: number } {
    return { ...this.counts };
  }

  /** The slice the background build writes before handing the thread back: as long as tfjs's last batch took (equal turns). */
  private buildTurnMs(): number {
    return Math.max(MIN_BUILD_SLICE_MS, this.lastTfjsBatchMs);
  }

  private async buildOnnx(weights: ReadonlyMap<string, Float32Array>, options: PassageEncoderOptions): Promise<PassageEncoderReport> {
    const { config } = this;
    const base = { setting: this.current.setting, why: this.current.why };
    const started = performance.now();
    let onnx: OnnxContrieverEncoder | undefined;
    let gateRelativeDiff: number | undefined;
    const stillWanted = () => {
      if (this.disposed) throw new Error('the passage encoder was disposed while ONNX Runtime was prepared');
    };
    try {
      // load() returns first, so the caller's first batch can start on tfjs before any of this.
      await nextTask();
      const bertWeights: BertWeights = (name) => {
        const w = weights.get(name);
        if (!w) throw new Error(`no weights for "${name}"`);
        return w;
      };
      const ids = GATE_PROBE_PASSAGES.map((t) => this.tokenizer.encode(t, { maxLength: Math.min(GATE_PROBE_MAX_LENGTH, config.max_position_embeddings) }));
      stillWanted();
      const reference = await this.tfjsBatch(ids);
      // Not kept in a variable: the model bytes (as large as the weights) are garbage once ORT holds its copy.
      const model = options.onnxModel
        ? await options.onnxModel(config, bertWeights)
        : await contrieverOnnxModelInSlices(config, bertWeights, nextTask, () => this.buildTurnMs());
      stillWanted();
      // Creating the session is one call into ORT's wasm: it holds this thread until done (see docs/PERFORMANCE.md).
      onnx = await OnnxContrieverEncoder.create(config, model);
      stillWanted();
      gateRelativeDiff = maxRowRelativeDifference(await onnx.embedTokens(ids), reference, config.hidden_size);
      if (!(gateRelativeDiff <= ONNX_GATE_MAX_RELATIVE_DIFF))
        throw new Error(
          `its embeddings of the probe passages differ from tfjs's by ${gateRelativeDiff.toExponential(2)} relative (allowed ${ONNX_GATE_MAX_RELATIVE_DIFF})`,
        );
      stillWanted();
    } catch (e) {
      await onnx?.dispose().catch(() => undefined);
      if (this.disposed) return this.current;
      const fallbackReason = (e as Error).message;
      (options.warn ?? console.warn)(`passage encoder: ONNX Runtime not used, tfjs embeds passages: ${fallbackReason}`);
      return this.settle(
        {
          ...base,
          engine: 'tfjs',
          detail: this.current.detail,
          fallbackReason,
          ...(gateRelativeDiff !== undefined ? { gateRelativeDiff } : {}),
        },
        options,
      );
    }
    // The switch: the next batch runs on ONNX; tfjs is freed as soon as no batch runs on it.
    this.onnx = onnx;
    this.freeTfjsOnceIdle();
    return this.settle(
      {
        ...base,
        engine: 'onnx',
        detail: ortDescription(),
        gateRelativeDiff,
        onnxSetupSeconds: (performance.now() - started) / 1000,
        tfjsPassagesBeforeSwitch: this.counts.tfjs,
      },
      options,
    );
  }

  private settle(report: PassageEncoderReport, options: PassageEncoderOptions): PassageEncoderReport {
    this.current = report;
    options.onReport?.(report);
    return report;
  }

  private freeTfjsOnceIdle(): void {
    if (this.onnx && this.tfjsInFlight === 0) {
      this.tfjs?.dispose();
      this.tfjs = undefined;
    }
  }

  private async tfjsBatch(sequences: readonly (readonly number[])[]): Promise<Float32Array> {
    if (!this.tfjs) throw new Error('the passage encoder was disposed');
    this.tfjsInFlight++;
    const t0 = performance.now();
    try {
      return await tfjsBatchEmbedder(this.tfjs, 'passage')(sequences);
    } finally {
      this.lastTfjsBatchMs = performance.now() - t0;
      this.tfjsInFlight--;
      this.freeTfjsOnceIdle();
    }
  }

  /** One batch on whichever engine embeds now, decided per batch: a build that ends mid-call switches the rest. */
  private readonly embedBatch: BatchEmbedder = async (sequences) => {
    if (this.onnx) {
      const rows = await this.onnx.embedTokens(sequences);
      this.counts.onnx += sequences.length;
      return rows;
    }
    const rows = await this.tfjsBatch(sequences);
    this.counts.tfjs += sequences.length;
    // While ONNX is built on this thread, each tfjs batch gives the build its turn afterwards
    // (not before: the first batch starts at once).
    if (this.current.building) await nextTask();
    return rows;
  };

  /** Embeddings of passages (title + text, as the store expects), in input order. */
  embed(passages: readonly PassageText[], options: EmbedOptions = {}): Promise<Float32Array[]> {
    if (this.disposed) return Promise.reject(new Error('the passage encoder was disposed'));
    return embedTextsWith(
      { tokenizer: this.tokenizer, hidden: this.config.hidden_size, maxPositions: this.config.max_position_embeddings, embedBatch: this.embedBatch },
      passages.map(passageRetrieverText),
      options,
    );
  }

  /** The tfjs engine's parameter count (0 once ONNX runs: tfjs holds nothing then). */
  tfjsParameterCount(): number {
    return this.tfjs ? this.tfjs.params.numel() : 0;
  }

  /** Frees both engines; a background build still running ends without switching (and frees its session). */
  async dispose(): Promise<void> {
    this.disposed = true;
    this.tfjs?.dispose();
    this.tfjs = undefined;
    const onnx = this.onnx;
    this.onnx = undefined;
    await onnx?.dispose();
  }
}
