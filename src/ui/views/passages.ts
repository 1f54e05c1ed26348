/**
 * Passages page: add files (drop or picker) or the app's demo passages, see them chunked, embedded
 * (progress: count, rate, ETA) and stored in this tab; per file, keep it private or contribute it
 * to the session's store. Every step commits to IndexedDB before the next starts, so a reload
 * resumes where it stopped.
 */
import { h, progressBar, replace } from '../dom';
import { errorText, type AppContext, type View } from '../context';
import { type IngestProblem, describeProblem, extension, IngestError, ingestFile, MAX_FILE_BYTES, SUPPORTED_EXTENSIONS, formatBytes } from '../ingest';
import { ingestPdf } from '../ingest-pdf';
import { loadPdfJs } from '../../platform/browser/pdfjs';
import { describeProgress, ProgressMeter } from '../progress';
import type { ShareChoice, StoredPassage } from '../../platform/browser/idb-store';
import * as Comlink from 'comlink';

interface FileSummary {
  file: string;
  total: number;
  embedded: number;
  contributed: number;
  share: ShareChoice;
}

/**
 * The demo passages (SQuAD-derived, public/demo/NOTICE.md) are added as if the user had picked a
 * file of this name, so they are parsed, stored, embedded and shared exactly like an upload.
 */
export const DEMO_PASSAGES_FILE = 'demo-passages.jsonl';
const DEMO_PASSAGES_PATH = 'demo/passages.jsonl';

function summarize(passages: readonly StoredPassage[], sessionId: string | undefined): FileSummary[] {
  const byFile = new Map<string, FileSummary>();
  for (const p of passages) {
    const f = byFile.get(p.file) ?? { file: p.file, total: 0, embedded: 0, contributed: 0, share: p.share };
    f.total++;
    if (p.embedding) f.embedded++;
    if (p.contributedAs && p.contributedAs.sessionId === sessionId) f.contributed++;
    if (p.share === 'contribute') f.share = 'contribute';
    byFile.set(p.file, f);
  }
  return [...byFile.values()];
}

export function passagesView(ctx: AppContext): View {
  const { store, db } = ctx;
  // One embedding pass and one contribution pass at a time; a request during a pass runs another after it.
  let embedding = false;
  let embedAgain = false;
  let contributing = false;
  let contributeAgain = false;
  const input = h('input', { type: 'file', id: 'file-input', multiple: true, accept: SUPPORTED_EXTENSIONS.join(','), class: 'visually-hidden' });
  const defaultShare = h('select', { id: 'default-share' },
    h('option', { value: 'private' }, 'Keep private (only this tab)'),
    h('option', { value: 'contribute' }, 'Contribute to the session'));
  const drop = h('div', { class: 'dropzone', id: 'dropzone', tabindex: 0, role: 'button', 'aria-describedby': 'drop-help' },
    h('strong', {}, 'Drop files here'), ' or ', h('label', { for: 'file-input', class: 'linklike' }, 'choose files'),
    h('p', { id: 'drop-help', class: 'muted small' }, `${SUPPORTED_EXTENSIONS.join(', ')} — up to ${formatBytes(MAX_FILE_BYTES)} each. .jsonl: one {"title","text"} per line. Text is split into ~100-word passages.`));
  const demoButton = h('button', { type: 'button', class: 'ghost', id: 'demo-passages' }, 'Add the demo passages');
  const embedBar = progressBar('Embedding passages');
  embedBar.root.hidden = true;
  const problems = h('div', { class: 'problems', 'aria-live': 'polite' });
  const table = h('div', { class: 'files' });

  const refresh = async () => {
    const all = await db.allPassages();
    store.update((s) => { s.passages = all.length; });
    renderFiles(summarize(all, store.state.credentials?.sessionId));
  };

  function renderFiles(files: FileSummary[]) {
    if (files.length === 0) {
      replace(table, h('p', { class: 'muted' }, 'No passages yet. Add a file to build your personal store.'));
      return;
    }
    const rows = files.map((f) => {
      const select = h('select', { 'aria-label': `Sharing for ${f.file}` },
        h('option', { value: 'private', selected: f.share === 'private' }, 'Private'),
        h('option', { value: 'contribute', selected: f.share === 'contribute' }, 'Contribute'));
      select.addEventListener('change', async () => {
        const ids = (await db.allPassages()).filter((p) => p.file === f.file).map((p) => ({ id: p.id, change: { share: select.value as ShareChoice } }));
        await guard(() => db.updatePassages(ids));
        await refresh();
        void contributePending();
      });
      const remove = h('button', { type: 'button', class: 'ghost small', 'aria-label': `Remove ${f.file} from this tab` }, 'Remove');
      remove.addEventListener('click', async () => {
        await db.deleteFile(f.file);
        store.notify('info', `Removed ${f.file} from this tab${f.contributed ? ' (its contributed passages stay in the session store)' : ''}.`);
        await refresh();
      });
      return h('tr', {},
        h('th', { scope: 'row' }, f.file),
        h('td', { class: 'num' }, f.total),
        h('td', { class: 'num' }, f.embedded === f.total ? '✓' : `${f.embedded}/${f.total}`),
        h('td', {}, select),
        h('td', { class: 'num' }, f.contributed),
        h('td', {}, remove));
    });
    replace(table, h('table', { class: 'table', id: 'files-table' },
      h('caption', { class: 'visually-hidden' }, 'Your files'),
      h('thead', {}, h('tr', {}, ...['File', 'Passages', 'Embedded', 'Sharing', 'Contributed', ''].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, ...rows)));
  }

  async function guard<T>(write: () => Promise<T>): Promise<T | undefined> {
    try {
      return await write();
    } catch (e) {
      store.notify('error', errorText(e));
      return undefined;
    }
  }

  /** "2 lines" / "1 page": what a file's problems skipped. */
  function skipped(problems: readonly IngestProblem[]): string {
    const unit = problems[0]?.page !== undefined ? 'page' : 'line';
    return `${problems.length} ${unit}${problems.length > 1 ? 's' : ''}`;
  }

  async function addFiles(files: readonly File[]) {
    for (const file of files) {
      try {
        // Refuse an oversized file before reading it into memory.
        if (file.size > MAX_FILE_BYTES) throw new IngestError(file.name, `the file is ${formatBytes(file.size)}, over the ${formatBytes(MAX_FILE_BYTES)} limit; split it into smaller files`);
        const bytes = new Uint8Array(await file.arrayBuffer());
        const result = extension(file.name) === '.pdf' ? await ingestPdf(file.name, bytes, await loadPdfJs()) : ingestFile(file.name, bytes);
        const share = defaultShare.value as ShareChoice;
        const ids = await guard(() => db.addPassages(result.passages.map((p) => ({ ...p, share }))));
        if (!ids) continue;
        if (result.problems.length) {
          replace(problems, h('div', { class: 'notice warn', role: 'status' },
            h('strong', {}, `${file.name}: ${skipped(result.problems)} skipped`),
            h('ul', {}, ...result.problems.slice(0, 5).map((p) => h('li', {}, describeProblem(p))))));
        }
        store.notify('ok', `${file.name}: ${ids.length} passages stored${result.problems.length ? `, ${skipped(result.problems)} skipped` : ''}.`);
      } catch (e) {
        const msg = e instanceof IngestError ? e.message : `${file.name}: the file could not be read (${errorText(e)})`;
        store.notify('error', msg);
      }
    }
    await refresh();
    await embedPending();
  }

  /** Embeds every stored passage without an embedding, in batches committed one by one. */
  async function embedPending(): Promise<void> {
    const session = store.state.session;
    if (!store.state.model?.ready || !session) return;
    if (embedding) {
      embedAgain = true;
      return;
    }
    embedding = true;
    embedAgain = false;
    try {
      await embedOnce(session.config.models.passageEncoder);
    } catch (e) {
      store.notify('error', `Embedding stopped: ${errorText(e)}. Stored passages are kept; it resumes next time.`);
    } finally {
      embedding = false;
    }
    if (embedAgain) return embedPending();
    await contributePending();
  }

  async function embedOnce(encoder: string): Promise<void> {
    const pending = (await db.allPassages()).filter((p) => !p.embedding || p.encoder !== encoder);
    if (pending.length === 0) return;
    embedBar.root.hidden = false;
    const meter = new ProgressMeter();
    const batch = 64;
    for (let i = 0; i < pending.length; i += batch) {
      const slice = pending.slice(i, i + batch);
      const rows = await ctx.embed.embed(slice.map((p) => ({ title: p.title, text: p.text })), Comlink.proxy((done: number) => {
        const est = meter.estimate(i + done, pending.length);
        embedBar.set(est.fraction, `Embedding ${describeProgress(est, 'passages')}`);
      }));
      // Each batch is committed before the next is embedded; a full disk stops here, earlier batches kept.
      await db.updatePassages(slice.map((p, j) => ({ id: p.id, change: { embedding: rows[j], encoder } })));
    }
    embedBar.set(1, `Embedded ${describeProgress(meter.estimate(pending.length, pending.length), 'passages')}`);
    await refresh();
  }

  /** Sends embedded passages of files marked "contribute" that this session does not have yet. */
  async function contributePending(): Promise<void> {
    const s = store.state;
    if (!s.session || !s.model?.ready) return;
    if (contributing) {
      contributeAgain = true;
      return;
    }
    contributing = true;
    contributeAgain = false;
    try {
      await contributeOnce(s.session.id);
    } finally {
      contributing = false;
    }
    if (contributeAgain) return contributePending();
  }

  async function contributeOnce(sessionId: string): Promise<void> {
    const pending = (await db.allPassages()).filter((p) => p.share === 'contribute' && p.embedding && p.contributedAs?.sessionId !== sessionId);
    if (pending.length === 0) return;
    try {
      const results = await ctx.train.contribute(pending.map((p) => ({ title: p.title, text: p.text, embedding: p.embedding! })));
      await guard(() => db.updatePassages(pending.map((p, i) => ({ id: p.id, change: { contributedAs: { sessionId, id: results[i].id } } }))));
      const dup = results.filter((r) => r.duplicate).length;
      store.notify('ok', `Contributed ${pending.length} passages to the session store${dup ? ` (${dup === 1 ? '1 was' : `${dup} were`} already there)` : ''}.`);
    } catch (e) {
      store.notify('error', `Contributing failed: ${errorText(e)}. The passages stay in this tab and are sent again next time.`);
    }
    await refresh();
  }

  demoButton.addEventListener('click', async () => {
    // Disabled until stored and embedded, so a double click does not add the file twice.
    demoButton.disabled = true;
    try {
      const res = await fetch(new URL(DEMO_PASSAGES_PATH, ctx.appBase));
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      const file = new File([await res.blob()], DEMO_PASSAGES_FILE, { type: 'application/jsonl' });
      await addFiles([file]);
    } catch (e) {
      store.notify('error', `Could not load the demo passages: ${errorText(e)}`);
    } finally {
      demoButton.disabled = false;
    }
  });
  input.addEventListener('change', () => {
    void addFiles([...(input.files ?? [])]);
    input.value = '';
  });
  drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    drop.classList.remove('over');
    void addFiles([...(e.dataTransfer?.files ?? [])]);
  });
  drop.addEventListener('keydown', (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); input.click(); } });

  const root = h('div', { class: 'page' },
    h('section', { class: 'card stack', 'aria-labelledby': 'add-title' },
      h('h2', { id: 'add-title' }, 'Add passages'),
      h('div', { class: 'row' }, h('label', { for: 'default-share' }, 'New files are'), defaultShare),
      drop, input,
      h('div', { class: 'row' }, demoButton,
        h('span', { class: 'muted small' }, `${DEMO_PASSAGES_FILE}: Wikipedia paragraphs from SQuAD (CC BY-SA 4.0), to try the app without files of your own.`)),
      embedBar.root, problems),
    h('section', { class: 'card stack', 'aria-labelledby': 'files-title' }, h('h2', { id: 'files-title' }, 'Your files'), table));

  void refresh();
  let lastReady = false;
  return {
    root,
    update() {
      const ready = !!store.state.model?.ready;
      if (ready && !lastReady) void embedPending();
      lastReady = ready;
    },
  };
}
