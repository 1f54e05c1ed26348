/**
 * The frozen passage encoder alone: what a tab's embedding worker needs of a session's global
 * model. Building the whole ModelBundle there would hold the reader and the query encoder too
 * (for flan-t5-base + Contriever, ~1 GB of weights the worker never reads); this takes only the
 * `passage_encoder.*` tensors of a global version. The passage encoder is frozen in every
 * session, so any version gives the same embeddings.
 *
 * Two engines behind one `embed` (./passage-encoder-choice.ts decides): our tfjs graph, or the
 * same weights written as an ONNX graph (src/model/bert/onnx-graph.ts) on ONNX Runtime Web, kept
 * only when it embeds probe passages like tfjs within ONNX_GATE_MAX_RELATIVE_DIFF. Once ONNX is
 * kept the tfjs weights are freed, so a tab never holds the encoder twice after loading.
 */
import * as tf from '@tensorflow/tfjs-core';
import { decodeModel } from '../federated/codec';
import { PASSAGE_ENCODER_WIRE_PREFIX } from '../federated/protocol';
import type { BackendReport } from '../model/backend';
import { bertParameterShapes, type BertConfig } from '../model/bert/config';
import { OnnxContrieverEncoder } from '../model/bert/onnx-encoder';
import { contrieverOnnxModel, type BertWeights } from '../model/bert/onnx-graph';
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
   * The ONNX model to hold against tfjs (default: contrieverOnnxModel of the same weights).
   * Tests pass other bytes or weights to see the gate refuse them.
   */
  readonly onnxModel?: (config: BertConfig, weights: BertWeights) => Uint8Array;
  /** Where the refusal of ONNX is said (default console.warn). */
  readonly warn?: (message: string) => void;
}

export class PassageEncoder {
  private constructor(
    readonly config: BertConfig,
    readonly tokenizer: TextTokenizer,
    private readonly tfjs: Contriever | undefined,
    private readonly onnx: OnnxContrieverEncoder | undefined,
    readonly report: PassageEncoderReport,
  ) {}

  /** tfjs only: the passage encoder of global version `version` (its serialized bytes); other tensors are not materialised. */
  static fromGlobal(config: BertConfig, tokenizer: TextTokenizer, bytes: Uint8Array, version: number, backend = tf.getBackend()): PassageEncoder {
    const retriever = tfjsContriever(config, passageEncoderWeights(config, bytes, version));
    return new PassageEncoder(config, tokenizer, retriever, undefined, { engine: 'tfjs', setting: 'tfjs', detail: `tfjs (${backend})`, why: 'tfjs only' });
  }

  /**
   * The passage encoder of global version `version` on the engine `options` decide. When ONNX is
   * wanted, its graph is written from the same weights, run next to tfjs on the probe passages,
   * and kept only within ONNX_GATE_MAX_RELATIVE_DIFF; any failure keeps tfjs, with the reason in
   * the report. ONNX Runtime must be configured first (configureOrt).
   */
  static async load(config: BertConfig, tokenizer: TextTokenizer, bytes: Uint8Array, version: number, options: PassageEncoderOptions): Promise<PassageEncoder> {
    const weights = passageEncoderWeights(config, bytes, version);
    const tfjs = tfjsContriever(config, weights);
    const tfjsDetail = `tfjs (${options.backend.name})`;
    const wanted = onnxWanted(options.setting, options.backend);
    const base = { setting: options.setting, why: wanted.why };
    if (!wanted.build) return new PassageEncoder(config, tokenizer, tfjs, undefined, { ...base, engine: 'tfjs', detail: tfjsDetail });

    const started = performance.now();
    let onnx: OnnxContrieverEncoder | undefined;
    let gateRelativeDiff: number | undefined;
    try {
      const writeModel = () =>
        (options.onnxModel ?? contrieverOnnxModel)(config, (name) => {
          const w = weights.get(name);
          if (!w) throw new Error(`no weights for "${name}"`);
          return w;
        });
      // Not kept in a variable: the model bytes (as large as the weights) are garbage once ORT holds its copy.
      onnx = await OnnxContrieverEncoder.create(config, writeModel());
      const ids = GATE_PROBE_PASSAGES.map((t) => tokenizer.encode(t, { maxLength: Math.min(GATE_PROBE_MAX_LENGTH, config.max_position_embeddings) }));
      const reference = await tfjsBatchEmbedder(tfjs, 'passage')(ids);
      gateRelativeDiff = maxRowRelativeDifference(await onnx.embedTokens(ids), reference, config.hidden_size);
      if (!(gateRelativeDiff <= ONNX_GATE_MAX_RELATIVE_DIFF))
        throw new Error(
          `its embeddings of the probe passages differ from tfjs's by ${gateRelativeDiff.toExponential(2)} relative (allowed ${ONNX_GATE_MAX_RELATIVE_DIFF})`,
        );
    } catch (e) {
      await onnx?.dispose().catch(() => undefined);
      const fallbackReason = (e as Error).message;
      (options.warn ?? console.warn)(`passage encoder: ONNX Runtime not used, tfjs embeds passages: ${fallbackReason}`);
      return new PassageEncoder(config, tokenizer, tfjs, undefined, {
        ...base,
        engine: 'tfjs',
        detail: tfjsDetail,
        fallbackReason,
        ...(gateRelativeDiff !== undefined ? { gateRelativeDiff } : {}),
      });
    }
    tfjs.dispose();
    return new PassageEncoder(config, tokenizer, undefined, onnx, {
      ...base,
      engine: 'onnx',
      detail: ortDescription(),
      gateRelativeDiff,
      onnxSetupSeconds: (performance.now() - started) / 1000,
    });
  }

  get engine(): 'tfjs' | 'onnx' {
    return this.report.engine;
  }

  private batchEmbedder(): BatchEmbedder {
    if (this.onnx) return (sequences) => this.onnx!.embedTokens(sequences);
    if (this.tfjs) return tfjsBatchEmbedder(this.tfjs, 'passage');
    throw new Error('the passage encoder was disposed');
  }

  /** Embeddings of passages (title + text, as the store expects), in input order. */
  embed(passages: readonly PassageText[], options: EmbedOptions = {}): Promise<Float32Array[]> {
    return embedTextsWith(
      { tokenizer: this.tokenizer, hidden: this.config.hidden_size, maxPositions: this.config.max_position_embeddings, embedBatch: this.batchEmbedder() },
      passages.map(passageRetrieverText),
      options,
    );
  }

  /** The tfjs engine's parameter count (0 once ONNX runs: tfjs holds nothing then). */
  tfjsParameterCount(): number {
    return this.tfjs ? this.tfjs.params.numel() : 0;
  }

  async dispose(): Promise<void> {
    this.tfjs?.dispose();
    await this.onnx?.dispose();
  }
}
