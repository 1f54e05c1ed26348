/**
 * The embedding worker: passages → Contriever passage-encoder embeddings, in batches, with
 * progress, off the page's thread, on tfjs or ONNX Runtime Web (src/corag/passage-encoder.ts
 * chooses; `load` reports which: tfjs at first while ONNX is built in the background, then the
 * switch). The passage encoder is frozen in every session, so one encoder
 * (from any version) serves for the whole session; the worker holds it alone (src/corag/passage-encoder.ts),
 * not the reader and query encoder beside it.
 */
import * as Comlink from 'comlink';
import type { PassageEncoder } from '../src/corag/passage-encoder';
import type { PassageEncoderReport, PassageEncoderSetting } from '../src/corag/passage-encoder-choice';
import type { PassageText } from '../src/corag/retrieve';
import type { SessionInfo } from '../src/federated/protocol';
import type { BackendName, BackendReport } from '../src/model/backend';
import { BrowserStore } from '../src/platform/browser/idb-store';
import { buildPassageEncoder, startBackend, type SessionAccess } from './runtime';

let encoder: PassageEncoder | undefined;
let loadedFor: string | undefined;
let abort: AbortController | undefined;

const api = {
  init(preference: BackendName[]): Promise<BackendReport> {
    return startBackend(preference);
  },

  /**
   * Loads the session's passage encoder from `version` (IndexedDB cache first) on tfjs, ready to
   * embed; when `setting` allows ONNX Runtime, its engine is built in the background and takes
   * over once it passed the equality gate. Returns the report now; `onReport` hears the later one
   * (ONNX switched to, or refused).
   */
  async load(
    access: SessionAccess,
    session: SessionInfo,
    version: number,
    setting: PassageEncoderSetting = 'auto',
    onReport?: (report: PassageEncoderReport) => void,
  ): Promise<PassageEncoderReport> {
    const key = `${access.sessionId}/${session.config.models.passageEncoder}/${setting}`;
    if (encoder && loadedFor === key) {
      if (onReport && encoder.report.building) void encoder.settled.then(onReport);
      return encoder.report;
    }
    const store = await BrowserStore.open();
    try {
      const next = await buildPassageEncoder(access, session, version, store, setting, onReport);
      await encoder?.dispose();
      encoder = next;
      loadedFor = key;
      return next.report;
    } finally {
      store.close();
    }
  },

  /** Embeddings of `passages` (title + text, as the store expects); `onProgress(done, total)` per batch. */
  async embed(passages: PassageText[], onProgress: (done: number, total: number) => void): Promise<Float32Array[]> {
    if (!encoder) throw new Error('the embedding model is not loaded yet: join a session first');
    abort = new AbortController();
    try {
      const rows = await encoder.embed(passages, { batchSize: 16, onProgress, signal: abort.signal });
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
