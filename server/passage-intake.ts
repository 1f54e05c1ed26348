/**
 * Contributed passages pass through here before they reach the store (server/passages.ts), because
 * the coordinator must not trust client-computed embeddings: one embedding of norm 2.8e30 made a
 * passage top-1 for every query (issue 17). With the session's frozen passage encoder
 * (server/passage-encoder.ts) the intake
 * - refuses embeddings whose norm lies far beyond what the encoder produces (NORM_BOUNDS × the
 *   largest norm over REFERENCE_TEXTS, measured once per encoder) and recomputes every one above
 *   that largest norm;
 * - recomputes a sample of every batch (all of a client's first batch, up to firstBatchChecks; then
 *   sampleFraction of each batch; every batch in full once a client was caught) and refuses the whole
 *   batch, naming the passage, when one recomputed embedding disagrees beyond the tolerance;
 * - enforces the per-client and per-session passage quotas (inside the store's transaction).
 * Only NEW passages are checked: a duplicate of a stored passage keeps the stored embedding and
 * its own is discarded. Refusals leave the store as it was; a mismatch is remembered per client.
 * The tolerance comes from scripts/measure-passage-embeddings.ts (docs/COORDINATOR.md).
 * The coordinator's own contributions (the demo passages, `seed`) are embedded here too.
 */
import { randomInt } from 'node:crypto';
import type { PassageText } from '../src/corag/retrieve';
import { passagePolicyOf, type PassageInput, type PassagePolicy } from '../src/federated/protocol';
import { ApiError, badRequest } from './errors';
import { FrozenPassageEncoder, PassageEncoderError } from './passage-encoder';
import type { PassageQuota, PassageRecords, PassageStore } from './passages';
import type { SessionConfig } from '../src/federated/protocol';

/**
 * Recomputed and received embeddings must agree this well. Measured on the 347 demo passages with
 * the pretrained demo encoder (docs/lab/passage-embeddings-demo.json, scripts/measure-passage-embeddings.ts):
 * honest recomputations differ by relative L2 ≤ 2.5e-7 across backends (cpu vs wasm, float32) and
 * ≤ 2.4e-4 when a tab rounds the embedding to float16 (cosine ≥ 0.99999997), while the embedding of
 * the closest OTHER passage differs by relative L2 ≥ 4.1e-3 (median 1.5e-2) — with cosine as high as
 * 0.99999: this encoder's embeddings share a large common component, so cosine 0.999 or an error of
 * 1e-2 would let most passages carry another passage's embedding. 1e-3 sits 4× above the float16
 * rounding error and 4× below the closest forgery.
 */
export const EMBEDDING_TOLERANCE = { minCosine: 0.99999, maxRelativeL2: 1e-3 } as const;
/**
 * Norm bounds, as multiples of the largest norm the encoder gives REFERENCE_TEXTS: above
 * VERIFY_ABOVE an embedding is always recomputed (whatever the sample), above REFUSE_ABOVE (or
 * non-finite) it is refused without computing anything. The demo encoder's norms span 19.002–19.009
 * over the demo passages and the reference texts alike, so an honest embedding is rarely above 1×.
 */
export const NORM_BOUNDS = { verifyAbove: 1, refuseAbove: 4 } as const;
/** Who the coordinator's own contributions are credited to (client ids are 12 characters). */
export const COORDINATOR_CONTRIBUTOR = 'coordinator';
/** How long an encoder that could not be loaded is reported as such before another try. */
const RETRY_FAILED_LOAD_MS = 60_000;

/**
 * Texts spanning what a passage can look like (prose, lists, numbers, code, other scripts, a single
 * character, one word repeated to the 512-token limit): the largest norm the encoder gives any of
 * them sets the norm bound.
 */
export const REFERENCE_TEXTS: readonly PassageText[] = [
  {
    title: 'Super Bowl 50',
    text: 'Super Bowl 50 was an American football game to determine the champion of the National Football League (NFL) for the 2015 season.',
  },
  {
    title: 'Photosynthesis',
    text: "Photosynthesis is a process used by plants and other organisms to convert light energy into chemical energy that can later be released to fuel the organisms' activities.",
  },
  { title: '', text: 'a' },
  { title: '', text: '?' },
  { title: '', text: '1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 1999 2024 3.14159 42' },
  { title: 'Shopping list', text: '- eggs\n- flour\n- milk\n- 2 kg potatoes\n- olive oil' },
  { title: 'code', text: 'function f(x) { return x * x + 1; } for (let i = 0; i < 10; i++) console.log(f(i));' },
  { title: 'Warszawa', text: 'Warszawa jest stolicą Polski i największym miastem kraju. 東京は日本の首都です。 Москва — столица России.' },
  { title: '', text: Array.from({ length: 600 }, () => 'the').join(' ') },
  { title: '', text: Array.from({ length: 600 }, () => '!').join(' ') },
  { title: 'URL', text: 'https://example.org/a/b?c=d&e=f#g mailto:someone@example.org' },
  { title: 'Long', text: Array.from({ length: 40 }, (_, i) => `Sentence ${i} says something different about topic number ${i * 7}.`).join(' ') },
];

export function embeddingAgreement(received: ArrayLike<number>, recomputed: ArrayLike<number>): { cosine: number; relativeL2: number } {
  let dot = 0;
  let rr = 0;
  let cc = 0;
  let diff = 0;
  for (let i = 0; i < recomputed.length; i++) {
    const a = received[i];
    const b = recomputed[i];
    dot += a * b;
    rr += a * a;
    cc += b * b;
    diff += (a - b) * (a - b);
  }
  const cosine = rr > 0 && cc > 0 ? dot / Math.sqrt(rr * cc) : rr === cc ? 1 : 0;
  return { cosine, relativeL2: Math.sqrt(diff) / Math.max(Math.sqrt(cc), 1e-30) };
}

export function agrees(a: { cosine: number; relativeL2: number }): boolean {
  return a.cosine >= EMBEDDING_TOLERANCE.minCosine && a.relativeL2 <= EMBEDDING_TOLERANCE.maxRelativeL2;
}

/** Passage quotas of a policy, as the store enforces them. */
export function quotaOf(policy: PassagePolicy, forClient: boolean): PassageQuota {
  return {
    session: { maxPassages: policy.maxPassagesPerSession, maxBytes: policy.maxBytesPerSession },
    ...(forClient ? { client: { maxPassages: policy.maxPassagesPerClient, maxBytes: policy.maxBytesPerClient } } : {}),
  };
}

/** How many of `n` new passages a batch has recomputed. */
export function checksFor(policy: PassagePolicy, n: number, history: { batches: number; mismatches: number }): number {
  if (n === 0 || policy.embeddingCheck === 'off') return 0;
  if (policy.embeddingCheck === 'all' || history.mismatches > 0) return n;
  if (history.batches === 0) return Math.min(n, policy.firstBatchChecks);
  return Math.min(n, Math.max(policy.minSampleChecks, Math.ceil(policy.sampleFraction * n)));
}

interface LoadedEncoder {
  readonly encoder: FrozenPassageEncoder;
  /** The largest norm the encoder gives REFERENCE_TEXTS. */
  readonly referenceMaxNorm: number;
}

interface EncoderSlot {
  readonly key: string;
  readonly loading: Promise<LoadedEncoder>;
  failedAt?: number;
}

export interface PassageIntakeDeps {
  readonly passages: PassageStore;
  /** Where each client's check history is kept (the passage records: shared by every coordinator process). */
  readonly checks: Pick<PassageRecords, 'checkHistory' | 'recordCheck'>;
  config(sessionId: string): Promise<SessionConfig>;
  /** The newest model version an admin installed (the frozen passage encoder's weights), if any. */
  encoderVersion(sessionId: string): Promise<number | undefined>;
  /** A model version's bytes (fetched from the blob store when this process lacks them). */
  readModel(sessionId: string, version: number): Promise<Uint8Array>;
}

export class PassageIntake {
  private readonly encoders = new Map<string, EncoderSlot>();
  /** Encoder work runs one batch at a time: a flood of batches queues instead of starving the loop. */
  private work: Promise<unknown> = Promise.resolve();

  /** `random`: which passages a batch has recomputed must be unpredictable to the sender. */
  constructor(
    private readonly deps: PassageIntakeDeps,
    private readonly random: () => number = () => randomInt(2 ** 47) / 2 ** 47,
  ) {}

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.work.then(fn, fn);
    this.work = next.catch(() => undefined);
    return next;
  }

  /**
   * The session's passage encoder, loaded once (again after an admin installs a new model: the
   * encoder comes from the newest version not produced by a round). Throws PassageEncoderError.
   */
  async encoder(sessionId: string): Promise<LoadedEncoder> {
    // Both lookups first: from here on nothing awaits, so two callers share one slot.
    const version = await this.deps.encoderVersion(sessionId);
    const { models } = await this.deps.config(sessionId);
    if (version === undefined) throw new PassageEncoderError('the session has no global model yet, so its passage encoder has no weights');
    const key = `${version}`;
    const slot = this.encoders.get(sessionId);
    if (slot && slot.key === key && (slot.failedAt === undefined || Date.now() - slot.failedAt < RETRY_FAILED_LOAD_MS)) return slot.loading;
    if (slot && slot.failedAt === undefined)
      void slot.loading.then(
        (l) => l.encoder.dispose(),
        () => undefined,
      );
    const loading = this.serial(async () => {
      const encoder = await FrozenPassageEncoder.load(models.passageEncoder, await this.deps.readModel(sessionId, version), models.embeddingDim);
      const norms = (await encoder.embed(REFERENCE_TEXTS)).map((e) => Math.hypot(...e));
      const referenceMaxNorm = Math.max(...norms);
      return { encoder, referenceMaxNorm };
    });
    const next: EncoderSlot = { key, loading };
    loading.catch(() => {
      next.failedAt = Date.now();
    });
    this.encoders.set(sessionId, next);
    return loading;
  }

  /** `k` distinct indexes of [0, n), uniformly. */
  private sample(n: number, k: number): number[] {
    const idx = Array.from({ length: n }, (_, i) => i);
    for (let i = 0; i < k; i++) {
      const j = i + Math.floor(this.random() * (n - i));
      [idx[i], idx[j]] = [idx[j], idx[i]];
    }
    return idx.slice(0, k).sort((a, b) => a - b);
  }

  /** A client's batch: validated, checked against the frozen encoder, within quota, then stored. */
  async add(sessionId: string, clientId: string, inputs: readonly PassageInput[]): Promise<Array<{ id: number; duplicate: boolean }>> {
    const config = await this.deps.config(sessionId);
    const policy = passagePolicyOf(config);
    const prepared = this.deps.passages.validate(config.models, inputs);
    if (policy.embeddingCheck !== 'off') {
      const known = await this.deps.passages.existingHashes(
        sessionId,
        prepared.map((p) => p.hash),
      );
      const fresh = prepared.map((p, index) => ({ ...p, index })).filter((p, i, all) => !known.has(p.hash) && all.findIndex((q) => q.hash === p.hash) === i);
      if (fresh.length > 0) {
        let loaded: LoadedEncoder;
        try {
          loaded = await this.encoder(sessionId);
        } catch (e) {
          if (!(e instanceof PassageEncoderError)) throw e;
          throw new ApiError(
            503,
            'passage_encoder_unavailable',
            `the coordinator cannot check contributed embeddings for this session, so it accepts none: ${e.message}. The session owner can fix the model, or create the session with passages.embeddingCheck "off" if every participant is trusted.`,
            { 'retry-after': '60' },
          );
        }
        const refuseAbove = NORM_BOUNDS.refuseAbove * loaded.referenceMaxNorm;
        const verifyAbove = NORM_BOUNDS.verifyAbove * loaded.referenceMaxNorm;
        const outliers = new Set<number>();
        for (const [i, p] of fresh.entries()) {
          const norm = Math.hypot(...p.embedding);
          if (!(norm <= refuseAbove)) {
            throw badRequest(
              'embedding_norm_out_of_range',
              `passages[${p.index}] ("${p.title.slice(0, 80)}"): embedding norm ${norm.toPrecision(3)} is far beyond what this session's passage encoder produces (its largest reference norm is ${loaded.referenceMaxNorm.toPrecision(4)}); the whole batch was refused, nothing was stored`,
            );
          }
          if (norm > verifyAbove) outliers.add(i);
        }
        const checks = checksFor(policy, fresh.length, await this.deps.checks.checkHistory(sessionId, clientId));
        const sampled = new Set([...this.sample(fresh.length, checks), ...outliers]);
        const chosen = [...sampled].sort((a, b) => a - b).map((i) => fresh[i]);
        const recomputed = await this.serial(() => loaded.encoder.embed(chosen.map((p) => ({ title: p.title, text: p.text }))));
        for (const [j, p] of chosen.entries()) {
          const a = embeddingAgreement(p.embedding, recomputed[j]);
          if (!agrees(a)) {
            await this.deps.checks.recordCheck(sessionId, clientId, 'mismatches');
            throw badRequest(
              'embedding_mismatch',
              `passages[${p.index}] ("${p.title.slice(0, 80)}"): the embedding is not what this session's passage encoder computes for its text (cosine ${a.cosine.toFixed(4)}, relative L2 error ${a.relativeL2.toExponential(2)}; accepted: cosine ≥ ${EMBEDDING_TOLERANCE.minCosine} and error ≤ ${EMBEDDING_TOLERANCE.maxRelativeL2}); the whole batch was refused, nothing was stored, and this client's later batches are checked in full`,
            );
          }
        }
      }
      const results = await this.deps.passages.add(sessionId, config.models, clientId, inputs, quotaOf(policy, true));
      if (fresh.length > 0) await this.deps.checks.recordCheck(sessionId, clientId, 'batches');
      return results;
    }
    return await this.deps.passages.add(sessionId, config.models, clientId, inputs, quotaOf(policy, true));
  }

  /**
   * The coordinator contributes `passages` itself, embedded with the session's frozen encoder, in
   * batches committed one by one (a restart resumes: passages already stored are not embedded
   * again). Returns what was added and how long embedding took.
   */
  async seed(
    sessionId: string,
    passages: readonly PassageText[],
    onProgress?: (done: number, total: number) => void,
  ): Promise<{ added: number; alreadyStored: number; seconds: number }> {
    const config = await this.deps.config(sessionId);
    const { contentHash } = await import('./passages');
    const known = await this.deps.passages.existingHashes(
      sessionId,
      passages.map((p) => contentHash(p.title, p.text)),
    );
    const todo = passages.filter((p) => !known.has(contentHash(p.title, p.text)));
    const started = performance.now();
    let added = 0;
    if (todo.length > 0) {
      const { encoder } = await this.encoder(sessionId);
      const batch = 32;
      for (let i = 0; i < todo.length; i += batch) {
        const slice = todo.slice(i, i + batch);
        const rows = await this.serial(() => encoder.embed(slice));
        const inputs = slice.map((p, j) => ({ title: p.title, text: p.text, embedding: Array.from(rows[j]), encoder: config.models.passageEncoder }));
        added += (await this.deps.passages.add(sessionId, config.models, COORDINATOR_CONTRIBUTOR, inputs, quotaOf(passagePolicyOf(config), false))).filter(
          (r) => !r.duplicate,
        ).length;
        onProgress?.(i + slice.length, todo.length);
      }
    }
    return { added, alreadyStored: passages.length - todo.length, seconds: (performance.now() - started) / 1000 };
  }

  dispose(): void {
    for (const slot of this.encoders.values())
      void slot.loading.then(
        (l) => l.encoder.dispose(),
        () => undefined,
      );
    this.encoders.clear();
  }
}
