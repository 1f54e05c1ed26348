/** What every view gets: the page state, the durable store, the two workers and the app's base URL. */
import type * as Comlink from 'comlink';
import type { EmbedWorkerApi } from '../../workers/embed.worker';
import type { TrainWorkerApi } from '../../workers/train.worker';
import type { CoragClient } from '../federated/client';
import type { BrowserStore } from '../platform/browser/idb-store';
import type { Store } from './state';

export interface AppContext {
  readonly store: Store;
  readonly db: BrowserStore;
  readonly embed: Comlink.Remote<EmbedWorkerApi>;
  readonly train: Comlink.Remote<TrainWorkerApi>;
  /** The coordinator's origin + '/', where the app, its static files and the API live. */
  readonly appBase: string;
  /**
   * The coordinator API for the page's own calls (organiser controls, the dashboard's details):
   * the page's coordinator, failing over to the peers it advertises (src/federated/rejoin.ts), so
   * they work while that process is down and a peer is up. No token: add one with withToken.
   */
  api(): Promise<CoragClient>;
  /** Joins with a code (or resumes the stored session) and loads the model in both workers. */
  connect(joinCode: string | undefined, name: string): Promise<void>;
  /** Forgets this tab's session (passages stay). */
  leave(): Promise<void>;
}

/** A mounted view: its element and a render of the current state. */
export interface View {
  readonly root: HTMLElement;
  update(): void;
  dispose?(): void;
}

export function errorText(e: unknown): string {
  const m = (e as Error)?.message ?? String(e);
  // Comlink re-throws worker errors with their message; drop noise before the colon chain.
  return m.replace(/^Error: /, '');
}
