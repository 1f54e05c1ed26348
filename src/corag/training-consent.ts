/**
 * Privacy by default for training: a session may ask (`training.retrievalSource`) that tabs
 * retrieve from their PRIVATE passages while training, and the weight update a tab uploads is then
 * derived from them. That happens only with the participant's explicit consent in the page
 * (a per-tab checkbox, off by default); without it a tab trains on the shared store only, or does
 * not take part when the session trains on private passages alone. Pure functions: the training
 * worker applies them, the training view shows their explanation before the user takes part.
 */
import { parseTrainingConfig, type TrainingRecord } from '../federated/protocol';
import type { RetrievalScope } from './retrieve';

/** The retrieval source a session asks tabs to train with ('shared' when unset or unknown). */
export function requestedTrainingScope(training: TrainingRecord): RetrievalScope {
  return parseTrainingConfig(training).retrievalSource ?? 'shared';
}

export interface TrainingScopeDecision {
  /** What this tab retrieves from while training; null: it does not take part. */
  readonly scope: RetrievalScope | null;
  /** The session asked for private passages and the tab does not use them (no consent). */
  readonly withheld: boolean;
  /** One sentence for the page. */
  readonly explanation: string;
}

/** What this tab trains on, given what the session asks and whether the participant agreed. */
export function trainingScopeWithConsent(requested: RetrievalScope, consentToPrivate: boolean): TrainingScopeDecision {
  if (requested === 'shared') {
    return {
      scope: 'shared',
      withheld: false,
      explanation: "Training retrieves from the session's shared store only (passages participants contributed); your private passages are not used.",
    };
  }
  if (consentToPrivate) {
    return {
      scope: requested,
      withheld: false,
      explanation:
        requested === 'yours'
          ? 'Training retrieves from your private passages: the weight update this tab sends is derived from them (their text is never sent).'
          : 'Training retrieves from your private passages and the shared store: the weight update this tab sends is derived from both (private text is never sent).',
    };
  }
  return requested === 'both'
    ? {
        scope: 'shared',
        withheld: true,
        explanation: 'This session asks to also train on your private passages. Without your consent this tab trains on the shared store only.',
      }
    : {
        scope: null,
        withheld: true,
        explanation: "This session trains on each participant's private passages only. This tab takes part only if you allow it to use your private passages.",
      };
}

/** sessionStorage key of a tab's consent for one session (per tab, gone when the tab closes). */
export const consentKey = (sessionId: string): string => `corag-private-training-consent:${sessionId}`;
