import { describe, expect, it } from 'vitest';
import { sessionModelSource } from '../../../src/platform/browser/session-bundle';

describe('where a tab reads a session model from', () => {
  const app = 'http://127.0.0.1:8787/';

  it('reads hub ids from the Hugging Face hub and URLs from themselves', () => {
    expect(sessionModelSource(app, 'google/flan-t5-base').describe()).toMatch(/^google\/flan-t5-base@main \(https:\/\/huggingface\.co/);
    expect(sessionModelSource(app, 'https://models.example.org/contriever/').describe()).toContain('https://models.example.org/contriever/');
  });

  it('reads app folders from the coordinator that served the page', () => {
    expect(sessionModelSource(app, 'models/demo/reader').describe()).toContain('http://127.0.0.1:8787/models/demo/reader/');
  });

  it('refuses paths that leave the app and other URL schemes', () => {
    expect(() => sessionModelSource(app, 'models/../../etc')).toThrow(/not a folder of this app/);
    expect(() => sessionModelSource(app, 'file:///etc/passwd')).toThrow(/not a folder of this app/);
  });
});
