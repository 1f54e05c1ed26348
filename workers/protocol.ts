/** Types the page and the workers exchange (plain structured-clone data). */
import type { TrainProgress } from '../src/corag/local-training';
import type { ServerEvent } from '../src/federated/protocol';
import type { TrainingFailure } from '../src/corag/training-errors';

/** Where a question retrieves from: the tab's own store, the session's shared store, or both. */
export type { RetrievalScope } from '../src/corag/retrieve';

/** What a tab keeps of its join (src/federated/rejoin.ts): a reload resumes this client. */
export type { TabCredentials as StoredCredentials } from '../src/federated/rejoin';

/** This tab's view of one finished round: the new global version evaluated on its QA pairs. */
export interface RoundRecord {
  readonly round: number;
  readonly version: number;
  readonly em?: number;
  readonly f1?: number;
  /** Mean token NLL of the gold answers (src/corag/evaluate.ts answerNll): lower is better. */
  readonly nll?: number;
  readonly examples: number;
  /** Example-weighted training loss the coordinator reports for the round. */
  readonly loss?: number;
}

export type TrainWorkerEvent =
  | { readonly type: 'server'; readonly event: ServerEvent }
  | { readonly type: 'connection'; readonly online: boolean; readonly message?: string }
  | { readonly type: 'model'; readonly version: number; readonly cached: boolean; readonly loaded: number; readonly total?: number; readonly ready?: boolean }
  | { readonly type: 'round-training'; readonly round: number }
  | { readonly type: 'training'; readonly round: number; readonly progress: TrainProgress }
  | { readonly type: 'uploaded'; readonly round: number; readonly bytes: number; readonly numExamples: number }
  | { readonly type: 'upload-refused'; readonly round: number; readonly code: string; readonly message: string }
  | { readonly type: 'upload-retrying'; readonly round: number; readonly attempt: number; readonly delayMs: number; readonly message: string }
  | { readonly type: 'evaluated'; readonly record: RoundRecord }
  /** This tab's part in a round failed (what, and what to do); says nothing about the connection's state. */
  | { readonly type: 'round-failed'; readonly failure: TrainingFailure }
  | { readonly type: 'notice'; readonly kind: 'error' | 'info'; readonly text: string }
  /** The page's coordinator stopped answering: requests go to the peer at `url` now. */
  | { readonly type: 'coordinator'; readonly url: string };

export interface AskResult {
  readonly answer: string;
  /** The answer was restricted to a span quoted from the passages. */
  readonly extractive?: boolean;
  /** The passages came from dense + keyword (BM25) search fused (src/corag/hybrid-retrieval.ts). */
  readonly hybrid?: boolean;
  /** The quoted answer was chosen among this many of the reader's best spans (src/corag/answer-rerank.ts). */
  readonly rerankedFrom?: number;
  readonly passages: ReadonlyArray<{ title: string; text: string; score: number; source: string; attention: number }>;
  readonly millis: number;
  readonly version: number | null;
}
