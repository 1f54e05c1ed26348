/**
 * The Contriever encoder as an ONNX Runtime Web session of ./onnx-graph.ts's model: token id
 * rows in, mean-pooled embeddings out, the same contract as ../contriever.ts's embedTokens
 * (right-padded with the config's pad id, attention mask 1 on real tokens).
 */
import { createOrtSession, int64Tensor, type OrtSession } from '../onnx/ort-runtime';
import type { BertConfig } from './config';
import { ONNX_ATTENTION_MASK, ONNX_EMBEDDINGS, ONNX_INPUT_IDS } from './onnx-graph';

export class OnnxContrieverEncoder {
  private constructor(
    readonly config: BertConfig,
    private readonly session: OrtSession,
  ) {}

  /** A session of `model` (bytes of contrieverOnnxModel for `config`); the bytes may be dropped afterwards. */
  static async create(config: BertConfig, model: Uint8Array): Promise<OnnxContrieverEncoder> {
    return new OnnxContrieverEncoder(config, await createOrtSession(model));
  }

  /** Embeddings of token id rows, row-major [rows × hidden_size]. */
  async embedTokens(sequences: readonly (readonly number[])[]): Promise<Float32Array> {
    if (sequences.length === 0) throw new Error('cannot embed an empty batch');
    const length = Math.max(...sequences.map((s) => s.length));
    if (length === 0) throw new Error('cannot embed a batch of empty token sequences');
    if (length > this.config.max_position_embeddings)
      throw new Error(`BERT input has ${length} tokens but max_position_embeddings is ${this.config.max_position_embeddings}`);
    const ids = new BigInt64Array(sequences.length * length).fill(BigInt(this.config.pad_token_id));
    const mask = new BigInt64Array(sequences.length * length);
    sequences.forEach((seq, row) => {
      seq.forEach((id, j) => (ids[row * length + j] = BigInt(id)));
      mask.fill(1n, row * length, row * length + seq.length);
    });
    const dims = [sequences.length, length];
    const feeds = { [ONNX_INPUT_IDS]: int64Tensor(ids, dims), [ONNX_ATTENTION_MASK]: int64Tensor(mask, dims) };
    const out = await this.session.run(feeds);
    const embeddings = out[ONNX_EMBEDDINGS];
    try {
      const data = embeddings.data;
      if (!(data instanceof Float32Array) || data.length !== sequences.length * this.config.hidden_size)
        throw new Error(`ONNX encoder: expected ${sequences.length} × ${this.config.hidden_size} float32 embeddings, got dims [${embeddings.dims}]`);
      return data;
    } finally {
      for (const t of Object.values(feeds)) t.dispose();
    }
  }

  dispose(): Promise<void> {
    return this.session.release();
  }
}
