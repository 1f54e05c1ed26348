/**
 * The embedding worker: passages → Contriever passage-encoder embeddings, in batches, with
 * progress, off the page's thread. The passage encoder is frozen in every session, so one bundle
 * (any version) serves for the whole session.
 */
import * as Comlink from 'comlink';
import type { ModelBundle } from '../src/corag/model-bundle';
import { embedPassages, type PassageText } from '../src/corag/retrieve';
import type { SessionInfo } from '../src/federated/protocol';
import type { BackendName, BackendReport } from '../src/model/backend';
import { BrowserStore } from '../src/platform/browser/idb-store';
import { buildBundle, startBackend, type SessionAccess } from './runtime';

let bundle: ModelBundle | undefined;
let loadedFor: string | undefined;
let abort: AbortController | undefined;

const api = {
  init(preference: BackendName[]): Promise<BackendReport> {
    return startBackend(preference);
  },

  /** Loads the session's encoder from `version` (IndexedDB cache first). */
  async load(access: SessionAccess, session: SessionInfo, version: number): Promise<void> {
    const key = `${access.sessionId}/${session.config.models.passageEncoder}`;
    if (bundle && loadedFor === key) return;
    const store = await BrowserStore.open();
    try {
      const next = await buildBundle(access, session, version, store);
      bundle?.dispose();
      bundle = next;
      loadedFor = key;
    } finally {
      store.close();
    }
  },

  /** Embeddings of `passages` (title + text, as the store expects); `onProgress(done, total)` per batch. */
  async embed(passages: PassageText[], onProgress: (done: number, total: number) => void): Promise<Float32Array[]> {
    if (!bundle) throw new Error('the embedding model is not loaded yet: join a session first');
    abort = new AbortController();
    try {
      const rows = await embedPassages(bundle, passages, { batchSize: 16, onProgress, signal: abort.signal });
      // Own copies: the rows are views into one buffer, which would be cloned once per row.
      return rows.map((r) => r.slice());
    } finally {
      abort = undefined;
    }
  },

  cancel(): void {
    abort?.abort(new Error('embedding cancelled'));
  },
};

export type EmbedWorkerApi = typeof api;
Comlink.expose(api);
