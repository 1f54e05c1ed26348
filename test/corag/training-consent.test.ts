/**
 * Privacy by default (src/corag/training-consent.ts): a tab trains on private passages only when the
 * participant ticked the consent box; the explanation the page shows says what is used.
 */
import { describe, expect, it } from 'vitest';
import { consentKey, requestedTrainingScope, trainingScopeWithConsent } from '../../src/corag/training-consent';

describe('what a tab trains on', () => {
  it("reads the session's training.retrievalSource, falling back to the shared store for unset or unknown values", () => {
    expect(requestedTrainingScope({})).toBe('shared');
    expect(requestedTrainingScope({ retrievalSource: 'both' })).toBe('both');
    expect(requestedTrainingScope({ retrievalSource: 'yours' })).toBe('yours');
    expect(requestedTrainingScope({ retrievalSource: 'local' })).toBe('shared');
    expect(requestedTrainingScope({ retrievalSource: 1 })).toBe('shared');
  });

  it('never uses private passages without consent: "both" becomes the shared store, "yours" does not take part', () => {
    expect(trainingScopeWithConsent('shared', false)).toMatchObject({ scope: 'shared', withheld: false });
    expect(trainingScopeWithConsent('shared', true)).toMatchObject({ scope: 'shared', withheld: false });
    const both = trainingScopeWithConsent('both', false);
    expect(both).toMatchObject({ scope: 'shared', withheld: true });
    expect(both.explanation).toMatch(/without your consent this tab trains on the shared store only/i);
    const yours = trainingScopeWithConsent('yours', false);
    expect(yours).toMatchObject({ scope: null, withheld: true });
    expect(yours.explanation).toMatch(/only if you allow/);
  });

  it('uses private passages with consent, and says the update is derived from them', () => {
    expect(trainingScopeWithConsent('both', true)).toMatchObject({ scope: 'both', withheld: false });
    expect(trainingScopeWithConsent('yours', true)).toMatchObject({ scope: 'yours', withheld: false });
    expect(trainingScopeWithConsent('yours', true).explanation).toMatch(/derived from them/);
    expect(trainingScopeWithConsent('shared', false).explanation).toMatch(/private passages are not used/);
  });

  it('keeps consent per session', () => {
    expect(consentKey('a')).not.toBe(consentKey('b'));
  });
});
