/**
 * Text <-> token ids with Hugging Face's own tokenizer implementation (`@huggingface/tokenizers`),
 * loaded from the same `tokenizer.json` + `tokenizer_config.json` that transformers uses, so ids
 * match the reference models: T5 (SentencePiece Unigram, appends `</s>`) and BERT (WordPiece,
 * `[CLS] ... [SEP]`). Batches come out as flat Int32Arrays ready for tf.tensor2d.
 */
import { Tokenizer } from '@huggingface/tokenizers';
import { type ModelSource } from './checkpoint/source';

export class TokenizerError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TokenizerError';
  }
}

export interface EncodeOptions {
  /** Add the model's special tokens (T5: trailing `</s>`; BERT: `[CLS]`/`[SEP]`). Default true. */
  addSpecialTokens?: boolean;
  /** Keep at most this many ids; the special tokens are kept and the text is cut (as HF's truncation=True). */
  maxLength?: number;
}

export interface BatchEncodeOptions extends EncodeOptions {
  /** `longest` pads to the longest row (default); `max_length` pads every row to maxLength. */
  padding?: 'longest' | 'max_length';
}

/** A padded batch, row-major [batchSize, length]; padding is on the right. */
export interface EncodedBatch {
  readonly inputIds: Int32Array;
  /** 1 for real tokens, 0 for padding. */
  readonly attentionMask: Int32Array;
  readonly batchSize: number;
  readonly length: number;
  /** Number of real (unpadded) tokens in each row. */
  readonly lengths: number[];
}

export interface DecodeOptions {
  /** Drop `<pad>`, `</s>`, `[CLS]`, ... from the text. Default true. */
  skipSpecialTokens?: boolean;
}

/** The special-token names a tokenizer_config.json may give, as strings or AddedToken objects. */
function tokenName(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (value && typeof value === 'object' && typeof (value as { content?: unknown }).content === 'string') {
    return (value as { content: string }).content;
  }
  return undefined;
}

function asObject(json: unknown, what: string): Record<string, unknown> {
  if (json === null || typeof json !== 'object' || Array.isArray(json)) throw new TokenizerError(`${what} must be a JSON object`);
  return json as Record<string, unknown>;
}

export class TextTokenizer {
  readonly padId: number;
  /** End of sequence (T5 `</s>`) when the tokenizer has one. */
  readonly eosId: number | undefined;
  /** Special ids the post-processor puts before and after a single text. */
  private readonly prefix: number[];
  private readonly suffix: number[];

  private constructor(
    private readonly tokenizer: Tokenizer,
    config: Record<string, unknown>,
    source: string,
  ) {
    const idOf = (name: string | undefined): number | undefined => (name === undefined ? undefined : tokenizer.token_to_id(name));
    const padId = idOf(tokenName(config.pad_token)) ?? idOf('<pad>') ?? idOf('[PAD]');
    if (padId === undefined) throw new TokenizerError(`${source}: the tokenizer defines no padding token (pad_token in tokenizer_config.json)`);
    this.padId = padId;
    this.eosId = idOf(tokenName(config.eos_token)) ?? idOf('</s>');
    // The special-token template (TemplateProcessing in tokenizer.json) is fixed for single texts:
    // read it off one encoding so truncation can cut the text and keep the specials.
    const probe = 'a';
    const body = tokenizer.encode(probe, { add_special_tokens: false }).ids;
    const full = tokenizer.encode(probe, { add_special_tokens: true }).ids;
    const at = findSubarray(full, body);
    if (at < 0) throw new TokenizerError(`${source}: cannot locate the text inside its special-token template`);
    this.prefix = full.slice(0, at);
    this.suffix = full.slice(at + body.length);
  }

  /** From parsed `tokenizer.json` and (optional) `tokenizer_config.json`. */
  static fromJson(tokenizerJson: unknown, tokenizerConfig: unknown = {}, source = 'tokenizer'): TextTokenizer {
    const json = asObject(tokenizerJson, `${source}: tokenizer.json`);
    const config = asObject(tokenizerConfig ?? {}, `${source}: tokenizer_config.json`);
    if (json.model === null || typeof json.model !== 'object') {
      throw new TokenizerError(`${source}: tokenizer.json has no "model" section (not a Hugging Face tokenizers file?)`);
    }
    let tokenizer: Tokenizer;
    try {
      tokenizer = new Tokenizer(json, config);
    } catch (e) {
      throw new TokenizerError(`${source}: cannot build the tokenizer from tokenizer.json: ${(e as Error).message}`);
    }
    return new TextTokenizer(tokenizer, config, source);
  }

  /** Number of special ids a single encoded text carries (T5: 1, BERT: 2). */
  get numSpecialTokens(): number {
    return this.prefix.length + this.suffix.length;
  }

  /** Vocabulary size including added tokens (T5: 32,100 — the embedding has 32,128 rows). */
  get vocabSize(): number {
    return this.tokenizer.get_vocab(true).size;
  }

  tokenToId(token: string): number | undefined {
    return this.tokenizer.token_to_id(token);
  }

  idToToken(id: number): string | undefined {
    return this.tokenizer.id_to_token(id);
  }

  encode(text: string, options: EncodeOptions = {}): number[] {
    const addSpecial = options.addSpecialTokens ?? true;
    const body = this.tokenizer.encode(text, { add_special_tokens: false }).ids;
    const specials = addSpecial ? this.numSpecialTokens : 0;
    let keep = body.length;
    if (options.maxLength !== undefined) {
      if (!Number.isInteger(options.maxLength) || options.maxLength < specials) {
        throw new TokenizerError(`maxLength ${options.maxLength} leaves no room for the ${specials} special tokens`);
      }
      keep = Math.min(keep, options.maxLength - specials);
    }
    const kept = body.slice(0, keep);
    return addSpecial ? [...this.prefix, ...kept, ...this.suffix] : kept;
  }

  encodeBatch(texts: readonly string[], options: BatchEncodeOptions = {}): EncodedBatch {
    if (options.padding === 'max_length' && options.maxLength === undefined) {
      throw new TokenizerError('padding "max_length" needs maxLength');
    }
    const rows = texts.map((t) => this.encode(t, options));
    const lengths = rows.map((r) => r.length);
    const length = options.padding === 'max_length' ? options.maxLength! : Math.max(0, ...lengths);
    const inputIds = new Int32Array(rows.length * length).fill(this.padId);
    const attentionMask = new Int32Array(rows.length * length);
    rows.forEach((row, i) => {
      inputIds.set(row, i * length);
      attentionMask.fill(1, i * length, i * length + row.length);
    });
    return { inputIds, attentionMask, batchSize: rows.length, length, lengths };
  }

  decode(ids: ArrayLike<number>, options: DecodeOptions = {}): string {
    return this.tokenizer.decode(Array.from(ids), { skip_special_tokens: options.skipSpecialTokens ?? true });
  }
}

function findSubarray(haystack: readonly number[], needle: readonly number[]): number {
  outer: for (let i = 0; i + needle.length <= haystack.length; i++) {
    for (let j = 0; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

function parseJsonFile(bytes: Uint8Array, what: string): unknown {
  try {
    return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (e) {
    throw new TokenizerError(`${what} is not valid JSON (${(e as Error).message})`);
  }
}

/** Loads `tokenizer.json` (required) and `tokenizer_config.json` (optional) from a model source. */
export async function loadTokenizer(source: ModelSource): Promise<TextTokenizer> {
  const where = source.describe();
  const [json, config] = await Promise.all([source.fetchFile('tokenizer.json'), source.fetchFile('tokenizer_config.json')]);
  if (!json) {
    throw new TokenizerError(`tokenizer missing: ${where} has no tokenizer.json (slow-tokenizer files like spiece.model or vocab.txt alone are not supported)`);
  }
  return TextTokenizer.fromJson(parseJsonFile(json, `${where}: tokenizer.json`), config ? parseJsonFile(config, `${where}: tokenizer_config.json`) : {}, where);
}
