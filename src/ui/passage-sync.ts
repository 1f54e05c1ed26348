/**
 * The passages page's background work, apart from its DOM: embedding the stored passages that lack
 * an embedding from the session's passage encoder (in batches, each committed to IndexedDB before
 * the next), and bringing the session store in line with the sharing choices (withdraw what was
 * made private, contribute what is to be contributed). Each runs one pass at a time; a request
 * during a pass runs one more pass after it, so nothing asked for is lost and no two passes race
 * on the same stored passages. A failure is reported and the next request tries again.
 */
import * as Comlink from 'comlink';
import { errorText, type AppContext } from './context';
import { describeProgress, ProgressMeter } from './progress';

/** What the sync tells the page. */
export interface PassageSyncHooks {
  /** The embedding progress: fraction done and what to say. */
  readonly progress: (fraction: number, label: string) => void;
  /** Re-reads the stored passages into the page (after each committed change). */
  readonly refresh: () => Promise<void>;
}

/**
 * `run` one pass at a time: a call during a pass asks for one more pass after it and resolves
 * false at once (the running call does the work); the call that ran the passes resolves true.
 */
export function coalesced(run: () => Promise<void>): () => Promise<boolean> {
  let running = false;
  let again = false;
  const go = async (): Promise<boolean> => {
    if (running) {
      again = true;
      return false;
    }
    running = true;
    again = false;
    try {
      await run();
    } finally {
      running = false;
    }
    if (again) await go();
    return true;
  };
  return go;
}

const passagesWord = (n: number) => (n === 1 ? '1 passage' : `${n} passages`);

export class PassageSync {
  private readonly embedPasses: () => Promise<boolean>;
  private readonly syncPasses: () => Promise<boolean>;

  constructor(
    private readonly ctx: AppContext,
    private readonly hooks: PassageSyncHooks,
  ) {
    this.embedPasses = coalesced(async () => {
      const session = ctx.store.state.session;
      if (!session) return;
      try {
        await this.embedOnce(session.config.models.passageEncoder);
      } catch (e) {
        ctx.store.notify('error', `Embedding stopped: ${errorText(e)}. Stored passages are kept; it resumes next time.`);
      }
    });
    this.syncPasses = coalesced(async () => {
      const s = ctx.store.state;
      if (!s.session || !s.model?.ready) return;
      await this.withdrawOnce(s.session.id);
      await this.contributeOnce(s.session.id);
    });
  }

  /** Embeds every stored passage without an embedding (once both workers' models are ready), then syncs. */
  async embedPending(): Promise<void> {
    const s = this.ctx.store.state;
    if (!s.model?.ready || !s.embedderReady || !s.session) return;
    if (await this.embedPasses()) await this.syncWithSessionStore();
  }

  /**
   * Brings the session store in line with the sharing choices: withdraws contributed passages now
   * marked private, sends embedded passages marked "contribute" it does not have yet.
   */
  async syncWithSessionStore(): Promise<void> {
    await this.syncPasses();
  }

  private async embedOnce(encoder: string): Promise<void> {
    const { db } = this.ctx;
    const pending = (await db.allPassages()).filter((p) => !p.embedding || p.encoder !== encoder);
    if (pending.length === 0) return;
    this.hooks.progress(0, `Embedding ${passagesWord(pending.length)} …`);
    const meter = new ProgressMeter();
    const batch = 64;
    for (let i = 0; i < pending.length; i += batch) {
      const slice = pending.slice(i, i + batch);
      const rows = await this.ctx.embed.embed(
        slice.map((p) => ({ title: p.title, text: p.text })),
        Comlink.proxy((done: number) => {
          const est = meter.estimate(i + done, pending.length);
          this.hooks.progress(est.fraction, `Embedding ${describeProgress(est, 'passages')}`);
        }),
      );
      // Each batch is committed before the next is embedded; a full disk stops here, earlier batches kept.
      await db.updatePassages(slice.map((p, j) => ({ id: p.id, change: { embedding: rows[j], encoder } })));
    }
    this.hooks.progress(1, `Embedded ${describeProgress(meter.estimate(pending.length, pending.length), 'passages')}`);
    await this.hooks.refresh();
  }

  private async withdrawOnce(sessionId: string): Promise<void> {
    const { db, store } = this.ctx;
    const pending = (await db.allPassages()).filter((p) => p.share === 'private' && p.contributedAs?.sessionId === sessionId);
    if (pending.length === 0) return;
    try {
      const results = await this.ctx.train.withdraw(pending.map((p) => p.contributedAs!.id));
      await db.updatePassages(pending.map((p) => ({ id: p.id, change: { contributedAs: undefined } })));
      const kept = results.filter((r) => r.outcome === 'kept').length;
      const taken = pending.length - kept;
      const parts = [
        ...(taken ? [`${passagesWord(taken)} taken out of the session store`] : []),
        ...(kept
          ? [`${passagesWord(kept)} made private here ${kept === 1 ? 'stays' : 'stay'} in the session store: another participant contributed the same text`]
          : []),
      ];
      store.notify('ok', `${parts.join('; ')}.`);
    } catch (e) {
      store.notify(
        'error',
        `Withdrawing passages from the session store failed: ${errorText(e)}. They are private in this tab; withdrawing is tried again next time.`,
      );
    }
    await this.hooks.refresh();
  }

  private async contributeOnce(sessionId: string): Promise<void> {
    const { db, store } = this.ctx;
    const pending = (await db.allPassages()).filter((p) => p.share === 'contribute' && p.embedding && p.contributedAs?.sessionId !== sessionId);
    if (pending.length === 0) return;
    try {
      const results = await this.ctx.train.contribute(pending.map((p) => ({ title: p.title, text: p.text, embedding: p.embedding! })));
      try {
        await db.updatePassages(pending.map((p, i) => ({ id: p.id, change: { contributedAs: { sessionId, id: results[i].id } } })));
      } catch (e) {
        store.notify('error', errorText(e));
      }
      const dup = results.filter((r) => r.duplicate).length;
      store.notify(
        'ok',
        `Contributed ${passagesWord(pending.length)} to the session store${dup ? ` (${dup === 1 ? '1 was' : `${dup} were`} already there)` : ''}.`,
      );
    } catch (e) {
      store.notify('error', `Contributing failed: ${errorText(e)}. The passages stay in this tab and are sent again next time.`);
    }
    await this.hooks.refresh();
  }
}
