import { describe, expect, it } from 'vitest';
import { IngestError, ingestFile, MAX_FILE_BYTES, stripMarkdown } from '../../src/ingest/files';

const bytes = (s: string) => new TextEncoder().encode(s);
const words = (n: number, w = 'word') => Array.from({ length: n }, (_, i) => `${w}${i}`).join(' ');

describe('ingestFile', () => {
  it('chunks a .txt file into ~100-word passages titled after the file', () => {
    const r = ingestFile('my_notes-2024.txt', bytes(words(250)));
    expect(r.passages.map((p) => p.text.split(' ').length)).toEqual([100, 100, 50]); // a tail is merged only below 25 words
    expect(r.passages.every((p) => p.title === 'my notes 2024' && p.file === 'my_notes-2024.txt')).toBe(true);
    expect(r.problems).toEqual([]);
  });

  it('reads jsonl title/text lines, chunks each, and reports a line without text by number while keeping the others', () => {
    const text = [
      JSON.stringify({ title: 'A', text: 'alpha beta' }),
      JSON.stringify({ title: 'B' }),
      '',
      'not json',
      JSON.stringify({ title: 'C', text: words(130) }),
    ].join('\n');
    const r = ingestFile('docs.jsonl', bytes(text));
    expect(r.passages.map((p) => p.title)).toEqual(['A', 'C', 'C']);
    expect(r.problems.map((p) => p.line)).toEqual([2, 4]);
    expect(r.problems[0].message).toMatch(/no "text"/);
    expect(r.problems[1].message).toMatch(/not valid JSON/);
  });

  it('refuses files that are not UTF-8, too large, of another type, or without any text', () => {
    expect(() => ingestFile('scan.txt', new Uint8Array([0xff, 0xfe, 0x81]))).toThrow(/not UTF-8/);
    expect(() => ingestFile('big.txt', new Uint8Array(11), { maxBytes: 10 })).toThrow(/over the 10 B limit/);
    expect(() => ingestFile('setup.exe', bytes('MZ'))).toThrow(/unsupported file type "\.exe"/);
    expect(() => ingestFile('empty.md', bytes('  \n'))).toThrow(IngestError);
    expect(() => ingestFile('bad.jsonl', bytes('{"title":"x"}\n'))).toThrow(/no passage found.*line 1: no "text"/);
    expect(MAX_FILE_BYTES).toBe(20 * 2 ** 20);
  });

  it('drops markdown markup but keeps link text and words', () => {
    expect(stripMarkdown('# Title\n> quote **bold** [link](http://x) ![img](a.png)\n```js\ncode()\n```\n- item')).toBe('Title\nquote bold link img\nitem');
    const r = ingestFile('readme.md', bytes('# Heading\nSome *text* with a [link](http://example.com).'));
    expect(r.passages[0].text).toContain('Some *text* with a link.');
  });
});
