/**
 * The page's state in one place, with change notification. Views render from it; the worker
 * events and user actions update it. Everything durable also lives in IndexedDB (BrowserStore):
 * this object is only what the page shows now.
 */
import type { TrainProgress } from '../corag/local-training';
import type { RoundInfo, SessionInfo } from '../federated/protocol';
import type { BackendReport } from '../model/backend';
import type { PassageEncoderReport } from '../corag/passage-encoder-choice';
import type { RoundRecord, StoredCredentials } from '../../workers/protocol';

export type Notice = { readonly id: number; readonly kind: 'error' | 'info' | 'ok'; readonly text: string };

export interface AppState {
  backend?: BackendReport;
  credentials?: StoredCredentials;
  session?: SessionInfo;
  round?: RoundInfo | null;
  online: boolean;
  /** The peer the tab's requests moved to when the page's coordinator stopped answering (undefined: the page's own). */
  coordinator?: string;
  connectionMessage?: string;
  model?: { version: number; loaded: number; total?: number; ready: boolean };
  /**
   * The embedding worker holds the session's passage encoder. It loads after the training
   * worker's model (`model.ready`), so passages are embedded only once this is true.
   */
  embedderReady?: boolean;
  /** Which engine embeds passages (tfjs or ONNX Runtime) and why, once the embedding worker has loaded. */
  passageEncoder?: PassageEncoderReport;
  participating: boolean;
  qaCount: number;
  /** Current round's loss per step. */
  loss: Array<{ step: number; loss: number }>;
  training?: { round: number; progress?: TrainProgress };
  /** One entry per round: the latest word on its update ('retrying' until it lands or is refused). */
  uploads: Array<{ round: number; status: 'uploaded' | 'refused' | 'retrying' | 'failed'; detail: string }>;
  /** Questions the session handed this tab when it took part without its own (shard number, counts). */
  handedOut?: { questions: number; shard?: number; evaluation: number };
  history: RoundRecord[];
  passages: number;
  notices: Notice[];
}

type Listener = (state: AppState) => void;

export class Store {
  readonly state: AppState = { online: false, participating: false, qaCount: 0, loss: [], uploads: [], history: [], passages: 0, notices: [] };
  private readonly listeners = new Set<Listener>();
  private nextNotice = 1;
  private scheduled = false;

  update(change: (s: AppState) => void): void {
    change(this.state);
    // Coalesce bursts (training progress, embedding batches) into one render per frame.
    if (this.scheduled) return;
    this.scheduled = true;
    requestAnimationFrame(() => {
      this.scheduled = false;
      for (const l of this.listeners) l(this.state);
    });
  }

  subscribe(listener: Listener): () => void {
    this.listeners.add(listener);
    listener(this.state);
    return () => this.listeners.delete(listener);
  }

  notify(kind: Notice['kind'], text: string): void {
    const id = this.nextNotice++;
    this.update((s) => {
      s.notices = [...s.notices.slice(-4), { id, kind, text }];
    });
    if (kind !== 'error') setTimeout(() => this.dismiss(id), 8000);
  }

  dismiss(id: number): void {
    this.update((s) => {
      s.notices = s.notices.filter((n) => n.id !== id);
    });
  }
}
