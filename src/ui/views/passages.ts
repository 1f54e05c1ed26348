/**
 * Passages page: add files (drop or picker) or the app's demo passages, see them chunked, embedded
 * (progress: count, rate, ETA) and stored in this tab; per file or per passage, keep it private or
 * contribute it to the session's store. Making a contributed passage private again takes it back
 * out of the store (unless another participant contributed the same text). Every step commits to
 * IndexedDB before the next starts, so a reload resumes where it stopped, and the sync with the
 * session store (send what is to be contributed, withdraw what was made private) runs again until
 * it has succeeded.
 */
import { h, progressBar, replace } from '../dom';
import { errorText, type AppContext, type View } from '../context';
import {
  type IngestProblem,
  describeProblem,
  extension,
  IngestError,
  ingestFile,
  MAX_FILE_BYTES,
  refuseOversize,
  SUPPORTED_EXTENSIONS,
  formatBytes,
} from '../../ingest/files';
import { ingestPdf } from '../../ingest/pdf';
import { loadPdfJs } from '../../platform/browser/pdfjs';
import { describeProgress, ProgressMeter } from '../progress';
import type { ShareChoice, StoredPassage } from '../../platform/browser/idb-store';
import { PassageSync } from '../passage-sync';

interface FileSummary {
  file: string;
  total: number;
  embedded: number;
  contributed: number;
  /** 'mixed' when some passages are private and others contributed. */
  share: ShareChoice | 'mixed';
}

/** Passages listed for one file at most; the file's own setting covers the rest. */
const PASSAGE_LIST_LIMIT = 200;

/**
 * The demo passages (SQuAD-derived, public/demo/NOTICE.md) are added as if the user had picked a
 * file of this name, so they are parsed, stored, embedded and shared exactly like an upload.
 */
export const DEMO_PASSAGES_FILE = 'demo-passages.jsonl';
const DEMO_PASSAGES_PATH = 'demo/passages.jsonl';

/** What making a contributed passage private again does, said wherever the choice is made. */
export const WITHDRAW_NOTE =
  'Making a contributed passage private again withdraws your contribution: if another participant contributed the same text, it stays in the store until its last contributor withdraws it (models already trained keep what they learnt from it).';

function summarize(passages: readonly StoredPassage[], sessionId: string | undefined): FileSummary[] {
  const byFile = new Map<string, FileSummary>();
  for (const p of passages) {
    const f = byFile.get(p.file) ?? { file: p.file, total: 0, embedded: 0, contributed: 0, share: p.share };
    f.total++;
    if (p.embedding) f.embedded++;
    if (p.contributedAs && p.contributedAs.sessionId === sessionId) f.contributed++;
    if (p.share !== f.share) f.share = 'mixed';
    byFile.set(p.file, f);
  }
  return [...byFile.values()];
}

export function passagesView(ctx: AppContext): View {
  const { store, db } = ctx;
  /** The file whose passages are listed for per-passage sharing, if any. */
  let openFile: string | null = null;
  const passageList = h('section', { class: 'card stack', id: 'file-passages', 'aria-labelledby': 'file-passages-title' });
  passageList.hidden = true;
  const input = h('input', { type: 'file', id: 'file-input', multiple: true, accept: SUPPORTED_EXTENSIONS.join(','), class: 'visually-hidden' });
  const defaultShare = h(
    'select',
    { id: 'default-share' },
    h('option', { value: 'private' }, 'Keep private (only this tab)'),
    h('option', { value: 'contribute' }, 'Contribute to the session'),
  );
  const drop = h(
    'div',
    { class: 'dropzone', id: 'dropzone', tabindex: 0, role: 'button', 'aria-describedby': 'drop-help' },
    h('strong', {}, 'Drop files here'),
    ' or ',
    h('label', { for: 'file-input', class: 'linklike' }, 'choose files'),
    h(
      'p',
      { id: 'drop-help', class: 'muted small' },
      `${SUPPORTED_EXTENSIONS.join(', ')} — up to ${formatBytes(MAX_FILE_BYTES)} each. .jsonl: one {"title","text"} per line. Text is split into ~100-word passages.`,
    ),
  );
  const demoButton = h('button', { type: 'button', class: 'ghost', id: 'demo-passages' }, 'Add the demo passages');
  const embedBar = progressBar('Embedding passages');
  embedBar.root.hidden = true;
  const problems = h('div', { class: 'problems', 'aria-live': 'polite' });
  const table = h('div', { class: 'files' });

  // Embedding and the session-store sync run in the background (src/ui/passage-sync.ts).
  const sync = new PassageSync(ctx, {
    progress: (fraction, label) => {
      embedBar.root.hidden = false;
      embedBar.set(fraction, label);
    },
    refresh: () => refresh(),
  });

  const refresh = async () => {
    const all = await db.allPassages();
    store.update((s) => {
      s.passages = all.length;
    });
    const sessionId = store.state.credentials?.sessionId;
    renderFiles(summarize(all, sessionId));
    renderPassageList(
      all.filter((p) => p.file === openFile),
      sessionId,
    );
  };

  /** Sets the sharing choice of `passages`, then brings the session store in line with it. */
  async function setShare(passages: readonly StoredPassage[], share: ShareChoice): Promise<void> {
    await guard(() => db.updatePassages(passages.map((p) => ({ id: p.id, change: { share } }))));
    await refresh();
    void sync.syncWithSessionStore();
  }

  function renderPassageList(passages: readonly StoredPassage[], sessionId: string | undefined) {
    if (!openFile || passages.length === 0) {
      passageList.hidden = true;
      openFile = passages.length ? openFile : null;
      return;
    }
    passageList.hidden = false;
    const file = openFile;
    const items = passages.slice(0, PASSAGE_LIST_LIMIT).map((p) => {
      const box = h('input', {
        type: 'checkbox',
        checked: p.share === 'contribute',
        'aria-label': `Contribute "${p.title}" (passage ${p.id})`,
      }) as HTMLInputElement;
      box.addEventListener('change', () => void setShare([p], box.checked ? 'contribute' : 'private'));
      const inStore = p.contributedAs?.sessionId === sessionId;
      const snippet = p.text.length > 160 ? `${p.text.slice(0, 160)}…` : p.text;
      return h(
        'li',
        { class: 'passage-choice', 'data-passage': p.id },
        h('label', {}, box, h('span', {}, h('strong', {}, p.title || '(untitled)'), ' ', h('span', { class: 'muted small' }, snippet))),
        h('span', { class: `small ${inStore ? 'ok-text' : 'muted'}` }, inStore ? 'in the session store' : p.share === 'contribute' ? 'to be sent' : 'private'),
      );
    });
    const more =
      passages.length > PASSAGE_LIST_LIMIT
        ? [h('p', { class: 'muted small' }, `… and ${passages.length - PASSAGE_LIST_LIMIT} more passages: the file's Sharing setting applies to all of them.`)]
        : [];
    const close = h('button', { type: 'button', class: 'ghost small', id: 'close-file-passages' }, 'Close');
    close.addEventListener('click', () => {
      openFile = null;
      passageList.hidden = true;
    });
    replace(
      passageList,
      h('div', { class: 'row' }, h('h2', { id: 'file-passages-title' }, `Passages of ${file}`), close),
      h('p', { class: 'muted small' }, `Tick the passages to contribute to the session store; the others stay in this tab. ${WITHDRAW_NOTE}`),
      h('ul', { class: 'passage-list' }, ...items),
      ...more,
    );
  }

  function renderFiles(files: FileSummary[]) {
    if (files.length === 0) {
      replace(table, h('p', { class: 'muted' }, 'No passages yet. Add a file to build your personal store.'));
      return;
    }
    const rows = files.map((f) => {
      const select = h(
        'select',
        { 'aria-label': `Sharing for ${f.file}` },
        h('option', { value: 'private', selected: f.share === 'private' }, 'Private'),
        h('option', { value: 'contribute', selected: f.share === 'contribute' }, 'Contribute'),
        ...(f.share === 'mixed' ? [h('option', { value: 'mixed', selected: true, disabled: true }, 'Some passages')] : []),
      );
      select.addEventListener('change', async () => {
        await setShare(
          (await db.allPassages()).filter((p) => p.file === f.file),
          select.value as ShareChoice,
        );
      });
      const choose = h('button', { type: 'button', class: 'ghost small', 'aria-label': `Choose passages of ${f.file} one by one` }, 'Passages…');
      choose.addEventListener('click', async () => {
        openFile = f.file;
        await refresh();
        passageList.scrollIntoView?.({ block: 'nearest' });
      });
      const remove = h('button', { type: 'button', class: 'ghost small', 'aria-label': `Remove ${f.file} from this tab` }, 'Remove');
      remove.addEventListener('click', async () => {
        await db.deleteFile(f.file);
        store.notify('info', `Removed ${f.file} from this tab${f.contributed ? ' (its contributed passages stay in the session store)' : ''}.`);
        await refresh();
      });
      return h(
        'tr',
        {},
        h('th', { scope: 'row' }, f.file),
        h('td', { class: 'num' }, f.total),
        h('td', { class: 'num' }, f.embedded === f.total ? '✓' : `${f.embedded}/${f.total}`),
        h('td', {}, select, ' ', choose),
        h('td', { class: 'num' }, f.contributed),
        h('td', {}, remove),
      );
    });
    replace(
      table,
      h(
        'table',
        { class: 'table', id: 'files-table' },
        h('caption', { class: 'visually-hidden' }, 'Your files'),
        h('thead', {}, h('tr', {}, ...['File', 'Passages', 'Embedded', 'Sharing', 'Contributed', ''].map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody', {}, ...rows),
      ),
    );
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

  /** A PDF's text, page by page, with the progress bar showing pages read (count, rate, time left). */
  async function readPdf(name: string, bytes: Uint8Array) {
    const meter = new ProgressMeter();
    embedBar.root.hidden = false;
    embedBar.set(0, `Reading ${name} …`);
    return ingestPdf(name, bytes, await loadPdfJs(), {
      onPage: (done, total) => {
        const est = meter.estimate(done, total);
        embedBar.set(est.fraction, `Reading ${name}: ${describeProgress(est, 'pages')}`);
      },
    });
  }

  async function addFiles(files: readonly File[]) {
    for (const file of files) {
      try {
        // Refuse an oversized file before reading it into memory.
        refuseOversize(file.name, file.size);
        const bytes = new Uint8Array(await file.arrayBuffer());
        const result = extension(file.name) === '.pdf' ? await readPdf(file.name, bytes) : ingestFile(file.name, bytes);
        const share = defaultShare.value as ShareChoice;
        const ids = await guard(() => db.addPassages(result.passages.map((p) => ({ ...p, share }))));
        if (!ids) continue;
        if (result.problems.length) {
          replace(
            problems,
            h(
              'div',
              { class: 'notice warn', role: 'status' },
              h('strong', {}, `${file.name}: ${skipped(result.problems)} skipped`),
              h('ul', {}, ...result.problems.slice(0, 5).map((p) => h('li', {}, describeProblem(p)))),
            ),
          );
        }
        store.notify('ok', `${file.name}: ${ids.length} passages stored${result.problems.length ? `, ${skipped(result.problems)} skipped` : ''}.`);
      } catch (e) {
        const msg = e instanceof IngestError ? e.message : `${file.name}: the file could not be read (${errorText(e)})`;
        store.notify('error', msg);
      }
    }
    await refresh();
    await sync.embedPending();
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
  drop.addEventListener('dragover', (e) => {
    e.preventDefault();
    drop.classList.add('over');
  });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    drop.classList.remove('over');
    void addFiles([...(e.dataTransfer?.files ?? [])]);
  });
  drop.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' || e.key === ' ') {
      e.preventDefault();
      input.click();
    }
  });

  const root = h(
    'div',
    { class: 'page' },
    h(
      'section',
      { class: 'card stack', 'aria-labelledby': 'add-title' },
      h('h2', { id: 'add-title' }, 'Add passages'),
      h('div', { class: 'row' }, h('label', { for: 'default-share' }, 'New files are'), defaultShare),
      h(
        'p',
        { class: 'muted small', id: 'share-help' },
        `Private passages never leave this tab. Contributed ones are sent with their embedding to the session store, where every participant can retrieve them. ${WITHDRAW_NOTE}`,
      ),
      drop,
      input,
      h(
        'div',
        { class: 'row' },
        demoButton,
        h('span', { class: 'muted small' }, `${DEMO_PASSAGES_FILE}: Wikipedia paragraphs from SQuAD (CC BY-SA 4.0), to try the app without files of your own.`),
      ),
      embedBar.root,
      problems,
    ),
    h('section', { class: 'card stack', 'aria-labelledby': 'files-title' }, h('h2', { id: 'files-title' }, 'Your files'), table),
    passageList,
  );

  void refresh();
  let lastReady = false;
  return {
    root,
    update() {
      // Both workers' models: the embedder loads after the training worker's (state.ts).
      const ready = !!store.state.model?.ready && !!store.state.embedderReady;
      if (ready && !lastReady) void sync.embedPending();
      lastReady = ready;
    },
  };
}
