import { describe, expect, it } from 'vitest';
import { chunkDocument, chunkText } from '../../src/retrieval/chunking';

const words = (n: number, prefix = 'w') => Array.from({ length: n }, (_, i) => `${prefix}${i}`);
/** A sentence of n words ending in a full stop, starting with a capital. */
const sentence = (n: number, tag: string) => `${['S' + tag, ...words(n - 1, tag)].join(' ')}.`;

describe('chunkText', () => {
  it('returns no passage for empty or whitespace-only text', () => {
    expect(chunkText('')).toEqual([]);
    expect(chunkText(' \n\t ')).toEqual([]);
  });

  it('cuts fixed windows of maxWords words when not sentence-aware', () => {
    const chunks = chunkText(words(250).join(' '), { maxWords: 100, minWords: 0, sentenceAware: false });
    expect(chunks.map((c) => c.words)).toEqual([100, 100, 50]);
    expect(chunks[1].text.split(' ')[0]).toBe('w100');
  });

  it('merges a trailing stub shorter than minWords into the previous passage', () => {
    const chunks = chunkText(words(210).join(' '), { maxWords: 100, minWords: 25, sentenceAware: false });
    expect(chunks.map((c) => c.words)).toEqual([100, 110]);
  });

  it('packs whole sentences and breaks between them', () => {
    const text = [0, 1, 2, 3, 4].map((i) => sentence(40, `t${i}`)).join(' ');
    const chunks = chunkText(text, { maxWords: 100 });
    expect(chunks.map((c) => c.words)).toEqual([80, 80, 40]);
    for (const c of chunks) expect(c.text.endsWith('.')).toBe(true);
  });

  it('cuts a sentence longer than maxWords into maxWords-word pieces', () => {
    const chunks = chunkText(`${sentence(150, 'long')} ${sentence(10, 'short')}`, { maxWords: 100 });
    expect(chunks.map((c) => c.words)).toEqual([100, 60]);
  });

  it('does not break after a full stop followed by a lower-case word', () => {
    const text = `${'a '.repeat(60)}e.g. lower ${'b '.repeat(30)}end.`;
    const chunks = chunkText(text, { maxWords: 100, minWords: 0 });
    expect(chunks).toHaveLength(1);
  });

  it('keeps the original substring and character offsets', () => {
    const text = '  Tesla was born in  Smiljan.\nHe moved to the U.S. in 1884!  ';
    const chunks = chunkText(text, { maxWords: 6, minWords: 0 });
    expect(chunks.map((c) => c.text)).toEqual(['Tesla was born in  Smiljan.', 'He moved to the U.S. in', '1884!']);
    for (const c of chunks) expect(text.slice(c.start, c.end)).toBe(c.text);
  });

  it('never produces an empty passage and covers every word once', () => {
    const text = Array.from({ length: 37 }, (_, i) => sentence(1 + ((i * 7) % 23), `x${i}`)).join('  ');
    const chunks = chunkText(text, { maxWords: 30 });
    expect(chunks.every((c) => c.words > 0 && c.text.trim() === c.text && c.text.length > 0)).toBe(true);
    expect(chunks.reduce((n, c) => n + c.words, 0)).toBe(text.split(/\s+/).filter(Boolean).length);
  });

  it('rejects non-positive maxWords and minWords above maxWords', () => {
    expect(() => chunkText('a', { maxWords: 0 })).toThrow(/maxWords/);
    expect(() => chunkText('a', { maxWords: 10, minWords: 11 })).toThrow(/minWords/);
  });
});

describe('chunkDocument', () => {
  it('gives every passage the document title', () => {
    const chunks = chunkDocument({ title: 'Nikola Tesla', text: words(150).join(' ') }, { sentenceAware: false, minWords: 0 });
    expect(chunks.map((c) => c.title)).toEqual(['Nikola Tesla', 'Nikola Tesla']);
  });
});
