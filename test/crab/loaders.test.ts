import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { DataFormatError, parseSquadJson, readDprPassagesTsv, readNqOpenJsonl, readPassagesJsonl, readQaJsonl, splitLines } from '../../src/crab/loaders';

const shared = (path: string) => new URL(`../../../shared/data/${path}`, import.meta.url);
const read = (path: string) => readFileSync(shared(path), 'utf8');

describe('NQ-open and QA jsonl', () => {
  it('reads {"question","answer"} lines with line-based ids and skips blank lines', () => {
    const qa = [...readNqOpenJsonl(['{"question": "q1", "answer": ["a", "b"]}', '', '{"question": "q2", "answer": ["c"], "extra": 1}'], { source: 'nq' })];
    expect(qa).toEqual([
      { id: 'nq:1', question: 'q1', answers: ['a', 'b'] },
      { id: 'nq:3', question: 'q2', answers: ['c'] },
    ]);
  });

  it('reads the shared NQ-open dev file (3,610 questions)', () => {
    const qa = [...readNqOpenJsonl(splitLines(read('nq-open/NQ-open.dev.jsonl')), { source: 'NQ-open.dev' })];
    expect(qa).toHaveLength(3610);
    expect(qa[0]).toEqual({
      id: 'NQ-open.dev:1',
      question: 'when was the last time anyone was on the moon',
      answers: ['14 December 1972 UTC', 'December 1972'],
    });
  });

  it('reports the line of invalid JSON or a bad field', () => {
    const lines = ['{"question": "q", "answer": ["a"]}', '{"question": "q", "answer": ["a"]}', '{"question": '];
    expect(() => [...readNqOpenJsonl(lines, { source: 'f.jsonl' })]).toThrow(/^f\.jsonl:3: not valid JSON/);
    expect(() => [...readNqOpenJsonl(['{"question": "q", "answer": []}'], { source: 'f' })]).toThrow(/f:1: "answer" must be a non-empty array/);
    expect(() => [...readNqOpenJsonl(['{"question": "q", "answers": ["a"]}'], { source: 'f' })]).toThrow(DataFormatError);
    expect(() => [...readQaJsonl(['[1]'], { source: 'f' })]).toThrow(/f:1: expected a JSON object, got an array/);
    expect(() => [...readQaJsonl(['{"question": " ", "answers": ["a"]}'], { source: 'f' })]).toThrow(/"question" is empty/);
  });

  it('reads {"question","answers"} with optional ids', () => {
    const qa = [...readQaJsonl(['{"id": 7, "question": "q", "answers": ["a"]}', '{"question": "r", "answers": ["b"]}'], { source: 's' })];
    expect(qa.map((q) => q.id)).toEqual(['7', 's:2']);
  });
});

describe('passage jsonl', () => {
  it('reads BEIR (_id) and DPR-style (id or none) passages', () => {
    const lines = ['{"_id": "doc1", "title": "T", "text": "body", "metadata": {}}', '{"id": 5, "text": "no title"}', '{"title": "", "text": "x"}'];
    expect([...readPassagesJsonl(lines, { source: 'c' })]).toEqual([
      { id: 'doc1', title: 'T', text: 'body' },
      { id: '5', title: '', text: 'no title' },
      { id: 'c:3', title: '', text: 'x' },
    ]);
    expect(() => [...readPassagesJsonl(['{"title": "t"}'], { source: 'c' })]).toThrow(/c:1: "text" must be a string/);
  });
});

describe('DPR psgs_w100.tsv', () => {
  it('reads csv-quoted fields: doubled quotes, tabs and newlines inside quotes', () => {
    const lines = [
      'id\ttext\ttitle',
      '1\t"He said ""hi""\tthere"\tGreeting',
      '2\t"first line',
      'second line"\t"Quoted ""Title"""',
      '3\tplain "inner" quote\tT',
    ];
    expect([...readDprPassagesTsv(lines, { source: 'p.tsv' })]).toEqual([
      { id: '1', text: 'He said "hi"\tthere', title: 'Greeting' },
      { id: '2', text: 'first line\nsecond line', title: 'Quoted "Title"' },
      { id: '3', text: 'plain "inner" quote', title: 'T' },
    ]);
  });

  it('reads the shared 1,000-passage sample', () => {
    const passages = [...readDprPassagesTsv(splitLines(read('wikipedia/psgs_w100.sample1000.tsv')), { source: 'psgs' })];
    expect(passages).toHaveLength(1000);
    expect(passages[0].id).toBe('0');
    expect(passages[0].text.startsWith('Evan Morris Evan L. Morris')).toBe(true);
    expect(passages.every((p) => p.text.split(/\s+/).length === 100)).toBe(true);
    expect(new Set(passages.map((p) => p.title)).size).toBe(472);
  });

  it('reports a bad header, a wrong field count, an empty text and an unclosed quote with line numbers', () => {
    const source = { source: 'p.tsv' };
    expect(() => [...readDprPassagesTsv(['id\ttitle\ttext'], source)]).toThrow(/p\.tsv:1: expected the header/);
    expect(() => [...readDprPassagesTsv(['id\ttext\ttitle', '1\tx\tT', '2\tonly two'], source)]).toThrow(/p\.tsv:3: expected 3 tab-separated fields/);
    expect(() => [...readDprPassagesTsv(['id\ttext\ttitle', '1\t \tT'], source)]).toThrow(/p\.tsv:2: passage 1 has empty text/);
    expect(() => [...readDprPassagesTsv(['id\ttext\ttitle', '1\t"open\tT', 'more'], source)]).toThrow(/p\.tsv:2: quoted field is never closed/);
    expect(() => [...readDprPassagesTsv(['id\ttext\ttitle', '1\t"a"b\tT'], source)]).toThrow(/p\.tsv:2: unexpected character after a closing quote/);
    expect(() => [...readDprPassagesTsv([], source)]).toThrow(/empty file/);
  });
});

describe('SQuAD v1.1 json', () => {
  it('reads the official dev set: 48 articles, 2,067 paragraphs, 10,570 questions', () => {
    const articles = parseSquadJson(read('squad/dev-v1.1.json'), { source: 'dev-v1.1.json' });
    expect(articles).toHaveLength(48);
    expect(articles.reduce((n, a) => n + a.paragraphs.length, 0)).toBe(2067);
    expect(articles.flatMap((a) => a.paragraphs.flatMap((p) => p.qas))).toHaveLength(10570);
    expect(articles[0].title).toBe('Super_Bowl_50');
    expect(articles[0].paragraphs[0].qas[0].answers[0]).toEqual({ text: 'Denver Broncos', start: 177 });
  });

  it('names the path of a bad field and the line of a JSON syntax error', () => {
    const doc = (answer: object) =>
      JSON.stringify({ data: [{ title: 'T', paragraphs: [{ context: 'abc def', qas: [{ id: 'q', question: 'Q?', answers: [answer] }] }] }] });
    expect(() => parseSquadJson(doc({ text: 'def', answer_start: 0 }), { source: 's' })).toThrow(
      /s:data\[0\]\.paragraphs\[0\]\.qas\[0\]\.answers\[0\]: answer "def" is not at offset 0/,
    );
    expect(() => parseSquadJson(doc({ text: 'def', answer_start: -1 }), { source: 's' })).toThrow(/"answer_start" must be a non-negative integer/);
    expect(parseSquadJson(doc({ text: 'def', answer_start: 4 }), { source: 's' })[0].paragraphs[0].qas[0].answers).toEqual([{ text: 'def', start: 4 }]);
    expect(() => parseSquadJson('{"data": [\n{"title": "t"', { source: 's' })).toThrow(/^s:2: not valid JSON/);
    expect(() => parseSquadJson('{"version": "1.1"}', { source: 's' })).toThrow(/s:data: expected an object with a "data" array/);
  });
});
