/**
 * The pretraining recipe: model sizes, data preparation and optimisation settings, read from a
 * JSON config file (configs/pretrain/*.json). Every field has a default; given fields are checked.
 */

export interface PretrainConfig {
  readonly seed: number;
  readonly data: {
    /** DPR psgs_w100-style TSV (relative to the config file's folder or absolute); '' to skip. */
    readonly dprPassages: string;
    /** SQuAD v1.1 JSON whose paragraph texts (contexts only) are used; '' to skip. */
    readonly squadParagraphs: string;
    readonly maxWords: number;
    readonly mlmPerPassage: number;
    readonly clozePerPassage: number;
    /** See PrepareOptions.clozeContextWords (0: plain cloze targets). */
    readonly clozeContextWords: number;
    /** See PrepareOptions.questionStyleShare (0: verbatim cloze questions only). */
    readonly questionStyleShare: number;
    /** See PrepareOptions.questionGenerator: 'cloze' (default) or 'typed'. */
    readonly questionGenerator: 'cloze' | 'typed';
  };
  readonly reader: {
    readonly d_model: number;
    readonly d_kv: number;
    readonly num_heads: number;
    readonly d_ff: number;
    readonly num_layers: number;
    readonly num_decoder_layers: number;
  };
  readonly retriever: {
    readonly hidden_size: number;
    readonly num_hidden_layers: number;
    readonly num_attention_heads: number;
    readonly intermediate_size: number;
  };
  readonly steps: number;
  readonly lr: number;
  readonly warmupSteps: number;
  readonly weightDecay: number;
  readonly clipNorm: number;
  /** Reader examples (questions) per step. */
  readonly readerBatch: number;
  /** Retrieved passages per question fed to FiD (k). */
  readonly passagesPerQuestion: number;
  /** Fixed per-passage reader input length (question + passage, truncated, padded). */
  readonly readerMaxLength: number;
  /**
   * 0: each passage enters the reader whole (truncated to readerMaxLength). N > 0: a cloze
   * question's own passage enters as an N-token window holding the answer (at a random place in
   * the window): a shorter, cheaper input with the same copying task, for early training on CPU.
   */
  readonly readerPassageWindow: number;
  /**
   * With readerPassageWindow N: false (as before) the other retrieved passages enter whole; true,
   * each enters as a random N-token window too, so the passage holding the answer cannot be told
   * from the others by its length — all rows look alike, as at answering time.
   */
  readonly windowEveryPassage: boolean;
  /**
   * false (Atlas): a masked-span example's own passage is never among its passages, so the spans
   * must be inferred. true: it is put in (as for cloze), so the reader fills every span by finding
   * it in the passage — several copy lookups per example, the dense signal under which a small
   * transformer learns the lookup (docs/lab/PRETRAINING.md, "Session 4"). With readerPassageWindow N
   * the source enters as N tokens starting a little before the first masked span.
   */
  readonly mlmWithSource: boolean;
  readonly targetMaxLength: number;
  readonly queryMaxLength: number;
  /** Passages per step for the contrastive (random-crop) objective. */
  readonly contrastiveBatch: number;
  readonly cropMaxLength: number;
  /** Detached key embeddings kept from earlier steps as extra negatives. */
  readonly queueSize: number;
  readonly contrastiveTemperature: number;
  /** Weight of the reader's FiD loss in the total loss (0: a retriever-only phase). */
  readonly readerWeight: number;
  /** Weight of the random-crop contrastive loss (0: off). */
  readonly contrastiveWeight: number;
  /** Weight of the Perplexity Distillation loss in the total loss. */
  readonly pdistWeight: number;
  /**
   * Weight of the inverse cloze task (ORQA): each example's query (a cloze question or a masked
   * window, made from a passage) against the step's source passages, in-batch negatives. 0: off.
   */
  readonly ictWeight: number;
  /**
   * Weight of copy-attention supervision (src/model/t5/copy-attention.ts): head
   * `copyAttentionHead` of the reader's last decoder layer is trained to attend, at each target
   * token, to where the passages hold that token (src/pretrain/copy-alignment.ts), so the reader
   * learns to locate answers without first discovering the lookup from the token loss. 0: off.
   */
  readonly copyAttentionWeight: number;
  readonly copyAttentionHead: number;
  /** How many heads, from copyAttentionHead on, are supervised (all alike; the loss is their mean). */
  readonly copyAttentionHeads: number;
  /**
   * A fresh or continued run (not a resumed one) first adds `previousTokenBias` to the encoder's
   * relative position bias of heads 0 … previousTokenHeads−1 for the key 1 … n positions back
   * (src/model/t5/previous-token-bias.ts): with copy-attention supervision, the prior under
   * which locating answers is learnt quickly. 0 heads: weights as initialised or loaded.
   */
  readonly previousTokenHeads: number;
  readonly previousTokenBias: number;
  /**
   * Written into the exported reader's config.json as `corag.copy_decoding_weight`: the share of the
   * answer-token probability the app and CRAB give to the copy pointer when decoding
   * (src/model/t5/copy-decoding.ts). For readers trained with copy-attention supervision. 0: not written.
   */
  readonly copyDecodingWeight: number;
  /**
   * Written into the exported retriever's config.json as `corag.hybrid_keyword_weight`: the weight of
   * BM25's ranking when the app fuses it with this retriever's (src/corag/hybrid-retrieval.ts),
   * chosen on CRAB-mini train questions (`eval-pretrained --retrieval-only --split train
   * --keyword-weights …`). 0: not written (equal shares).
   */
  readonly hybridKeywordWeight: number;
  /** Re-embed every passage with the (still training) encoder after this many steps. */
  readonly reindexEvery: number;
  readonly indexMaxLength: number;
  readonly checkpointEveryMinutes: number;
  readonly logEvery: number;
}

export const DEFAULT_PRETRAIN_CONFIG: PretrainConfig = {
  seed: 1234,
  data: {
    dprPassages: '',
    squadParagraphs: '',
    maxWords: 100,
    mlmPerPassage: 2,
    clozePerPassage: 4,
    clozeContextWords: 0,
    questionStyleShare: 0,
    questionGenerator: 'cloze',
  },
  reader: { d_model: 192, d_kv: 32, num_heads: 6, d_ff: 512, num_layers: 3, num_decoder_layers: 3 },
  retriever: { hidden_size: 128, num_hidden_layers: 4, num_attention_heads: 4, intermediate_size: 512 },
  steps: 3000,
  lr: 1e-3,
  warmupSteps: 200,
  weightDecay: 0.01,
  clipNorm: 1.0,
  readerBatch: 8,
  passagesPerQuestion: 4,
  readerMaxLength: 192,
  readerPassageWindow: 0,
  windowEveryPassage: false,
  mlmWithSource: false,
  targetMaxLength: 24,
  queryMaxLength: 64,
  contrastiveBatch: 32,
  cropMaxLength: 64,
  queueSize: 256,
  contrastiveTemperature: 0.05,
  readerWeight: 1,
  contrastiveWeight: 1,
  pdistWeight: 1,
  ictWeight: 0,
  copyAttentionWeight: 0,
  copyAttentionHead: 0,
  copyAttentionHeads: 1,
  previousTokenHeads: 0,
  previousTokenBias: 5,
  copyDecodingWeight: 0,
  hybridKeywordWeight: 0,
  reindexEvery: 200,
  indexMaxLength: 160,
  checkpointEveryMinutes: 3,
  logEvery: 20,
};

type Obj = Record<string, unknown>;

function merge(defaults: Obj, given: Obj, path: string): Obj {
  const out: Obj = { ...defaults };
  for (const [k, v] of Object.entries(given)) {
    if (k === '$comment' && typeof v === 'string') continue; // a note for people, as in CRAB configs
    if (!(k in defaults)) throw new Error(`pretrain config: unknown field "${path}${k}"`);
    const d = defaults[k];
    if (d !== null && typeof d === 'object') {
      if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Error(`pretrain config: "${path}${k}" must be an object`);
      out[k] = merge(d as Obj, v as Obj, `${path}${k}.`);
    } else {
      if (typeof v !== typeof d) throw new Error(`pretrain config: "${path}${k}" must be a ${typeof d}, got ${JSON.stringify(v)}`);
      if (typeof v === 'number' && !(Number.isFinite(v) && v >= 0)) throw new Error(`pretrain config: "${path}${k}" must be a non-negative number, got ${v}`);
      out[k] = v;
    }
  }
  return out;
}

/** Fills defaults into a parsed config JSON and checks every given field's type. */
export function parsePretrainConfig(json: unknown): PretrainConfig {
  if (json === null || typeof json !== 'object' || Array.isArray(json)) throw new Error('pretrain config: expected a JSON object');
  const c = merge(DEFAULT_PRETRAIN_CONFIG as unknown as Obj, json as Obj, '') as unknown as PretrainConfig;
  for (const k of [
    'steps',
    'readerBatch',
    'passagesPerQuestion',
    'contrastiveBatch',
    'reindexEvery',
    'readerMaxLength',
    'targetMaxLength',
    'queryMaxLength',
    'cropMaxLength',
    'indexMaxLength',
  ] as const) {
    if (!Number.isInteger(c[k]) || c[k] <= 0) throw new Error(`pretrain config: "${k}" must be a positive integer, got ${c[k]}`);
  }
  if (!Number.isInteger(c.copyAttentionHead) || c.copyAttentionHead >= c.reader.num_heads) {
    throw new Error(
      `pretrain config: "copyAttentionHead" must be one of the reader's ${c.reader.num_heads} heads (0 … ${c.reader.num_heads - 1}), got ${c.copyAttentionHead}`,
    );
  }
  if (!Number.isInteger(c.copyAttentionHeads) || c.copyAttentionHeads < 1 || c.copyAttentionHead + c.copyAttentionHeads > c.reader.num_heads) {
    throw new Error(
      `pretrain config: "copyAttentionHeads" must be 1 … ${c.reader.num_heads - c.copyAttentionHead} (heads from copyAttentionHead on), got ${c.copyAttentionHeads}`,
    );
  }
  if (!['cloze', 'typed'].includes(c.data.questionGenerator))
    throw new Error(`pretrain config: "data.questionGenerator" must be "cloze" or "typed", got ${JSON.stringify(c.data.questionGenerator)}`);
  if (c.data.questionStyleShare > 1) throw new Error(`pretrain config: "data.questionStyleShare" must be in [0, 1], got ${c.data.questionStyleShare}`);
  if (c.copyDecodingWeight > 1) throw new Error(`pretrain config: "copyDecodingWeight" must be in [0, 1], got ${c.copyDecodingWeight}`);
  if (c.readerWeight === 0 && c.contrastiveWeight === 0 && c.ictWeight === 0) {
    throw new Error('pretrain config: every objective weight is 0 (readerWeight, contrastiveWeight, ictWeight): nothing would train');
  }
  return c;
}
