/**
 * Parsers for the open-domain QA data formats CRAB can be built from. They run anywhere (no Node
 * APIs): JSON-lines and TSV readers take an iterable of lines, so Node can stream a 13 GB
 * psgs_w100.tsv line by line (src/platform/node/crab-files.ts) and the browser can pass
 * `splitLines(text)`. Every record is validated; bad input raises DataFormatError naming the
 * source and the line (or, for SQuAD's single JSON document, the path of the bad field).
 */
import type { Passage, QAPair } from './types';

export class DataFormatError extends Error {
  constructor(
    readonly source: string,
    readonly location: string,
    readonly problem: string,
  ) {
    super(`${source}:${location}: ${problem}`);
    this.name = 'DataFormatError';
  }
}

/** Lines of a text file, "\n" or "\r\n" separated; a final newline does not add an empty line. */
export function splitLines(text: string): string[] {
  const lines = text.split(/\r?\n/);
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  return lines;
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'string' ? `the string ${JSON.stringify(value.slice(0, 40))}` : `a ${typeof value}`;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

// ---------------------------------------------------------------------------------------------
// JSON lines

/** Parses each non-blank line as JSON and hands it, with its 1-based line number, to `record`. */
function* jsonLines<T>(lines: Iterable<string>, source: string, record: (value: unknown, line: number) => T): Generator<T> {
  let line = 0;
  for (const raw of lines) {
    line++;
    const text = line === 1 ? raw.replace(/^\uFEFF/, '') : raw;
    if (text.trim() === '') continue;
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (e) {
      throw new DataFormatError(source, String(line), `not valid JSON (${(e as Error).message})`);
    }
    yield record(value, line);
  }
}

function requireString(value: unknown, field: string, source: string, at: string, allowEmpty = false): string {
  if (typeof value !== 'string') throw new DataFormatError(source, at, `"${field}" must be a string, got ${describe(value)}`);
  if (!allowEmpty && value.trim() === '') throw new DataFormatError(source, at, `"${field}" is empty`);
  return value;
}

function requireAnswerList(value: unknown, field: string, source: string, at: string): string[] {
  if (!Array.isArray(value) || value.length === 0) {
    throw new DataFormatError(source, at, `"${field}" must be a non-empty array of strings, got ${describe(value)}`);
  }
  return value.map((a, i) => requireString(a, `${field}[${i}]`, source, at));
}

function optionalId(record: Record<string, unknown>, source: string, at: string): string | undefined {
  const id = record._id ?? record.id;
  if (id === undefined) return undefined;
  if (typeof id === 'number' && Number.isFinite(id)) return String(id);
  return requireString(id, record._id !== undefined ? '_id' : 'id', source, at);
}

export interface JsonlSourceOptions {
  /** Name used in error messages and, for records without an id, in generated ids. */
  source: string;
}

/**
 * NQ-open jsonl: `{"question": ..., "answer": [...]}` a line (extra fields are ignored). NQ-open
 * has no ids; a QA pair's id is `${source}:${line}`.
 */
export function* readNqOpenJsonl(lines: Iterable<string>, { source }: JsonlSourceOptions): Generator<QAPair> {
  yield* qaLines(lines, source, 'answer');
}

/** Generic QA jsonl: `{"question": ..., "answers": [...]}` with an optional `id` (else `${source}:${line}`). */
export function* readQaJsonl(lines: Iterable<string>, { source }: JsonlSourceOptions): Generator<QAPair> {
  yield* qaLines(lines, source, 'answers');
}

/** QA pairs from jsonl lines whose answer list is under `answerField` (NQ-open: answer; ours: answers). */
function qaLines(lines: Iterable<string>, source: string, answerField: 'answer' | 'answers'): Generator<QAPair> {
  return jsonLines(lines, source, (value, line) => {
    const at = String(line);
    if (!isRecord(value)) throw new DataFormatError(source, at, `expected a JSON object, got ${describe(value)}`);
    return {
      id: optionalId(value, source, at) ?? `${source}:${line}`,
      question: requireString(value.question, 'question', source, at),
      answers: requireAnswerList(value[answerField], answerField, source, at),
    };
  });
}

/**
 * BEIR / DPR-style passage jsonl: `{"title": ..., "text": ...}` with an optional `_id` (BEIR) or
 * `id`; without one the id is `${source}:${line}`. A missing title is allowed (empty).
 */
export function* readPassagesJsonl(lines: Iterable<string>, { source }: JsonlSourceOptions): Generator<Passage> {
  yield* jsonLines(lines, source, (value, line) => {
    const at = String(line);
    if (!isRecord(value)) throw new DataFormatError(source, at, `expected a JSON object, got ${describe(value)}`);
    return {
      id: optionalId(value, source, at) ?? `${source}:${line}`,
      title: value.title === undefined ? '' : requireString(value.title, 'title', source, at, true),
      text: requireString(value.text, 'text', source, at),
    };
  });
}

// ---------------------------------------------------------------------------------------------
// DPR psgs_w100.tsv

/**
 * Splits tab-separated records the way Python's csv module reads them (the module DPR wrote its
 * file with): a field that starts with `"` is quoted, `""` inside it is one `"`, and a quoted
 * field may contain tabs and newlines (the record then continues on the next line). A `"` inside
 * an unquoted field is literal. Yields each record's fields with the line it starts on.
 */
export function* readTsvRecords(lines: Iterable<string>, source: string): Generator<{ fields: string[]; line: number }> {
  let lineNumber = 0;
  let fields: string[] = [];
  let field = '';
  let inQuotes = false;
  let startLine = 0;
  for (const raw of lines) {
    lineNumber++;
    const line = lineNumber === 1 ? raw.replace(/^\uFEFF/, '') : raw;
    if (inQuotes) field += '\n';
    else {
      startLine = lineNumber;
      fields = [];
      field = '';
    }
    let fieldStart = !inQuotes;
    for (let i = 0; i < line.length; i++) {
      const ch = line[i];
      if (inQuotes) {
        if (ch !== '"') field += ch;
        else if (line[i + 1] === '"') {
          field += '"';
          i++;
        } else {
          inQuotes = false;
          const next = line[i + 1];
          if (next !== undefined && next !== '\t') {
            throw new DataFormatError(source, String(lineNumber), `unexpected character after a closing quote in field ${fields.length + 1}`);
          }
        }
      } else if (ch === '\t') {
        fields.push(field);
        field = '';
        fieldStart = true;
      } else if (ch === '"' && fieldStart) {
        inQuotes = true;
        fieldStart = false;
      } else {
        field += ch;
        fieldStart = false;
      }
    }
    if (!inQuotes) {
      fields.push(field);
      yield { fields, line: startLine };
    }
  }
  if (inQuotes) throw new DataFormatError(source, String(startLine), 'quoted field is never closed');
}

/**
 * DPR's psgs_w100.tsv: a header `id<TAB>text<TAB>title`, then one passage a record. Blank lines
 * are rejected (DPR's file has none), as are records without exactly three fields.
 */
export function* readDprPassagesTsv(lines: Iterable<string>, { source }: JsonlSourceOptions): Generator<Passage> {
  let header = true;
  for (const { fields, line } of readTsvRecords(lines, source)) {
    const at = String(line);
    if (header) {
      if (fields.join('\t') !== 'id\ttext\ttitle') {
        throw new DataFormatError(source, at, `expected the header "id<TAB>text<TAB>title", got ${JSON.stringify(fields.join('\t').slice(0, 60))}`);
      }
      header = false;
      continue;
    }
    if (fields.length !== 3) throw new DataFormatError(source, at, `expected 3 tab-separated fields (id, text, title), got ${fields.length}`);
    const [id, text, title] = fields;
    if (id.trim() === '') throw new DataFormatError(source, at, 'empty passage id');
    if (text.trim() === '') throw new DataFormatError(source, at, `passage ${id} has empty text`);
    yield { id, text, title };
  }
  if (header) throw new DataFormatError(source, '1', 'empty file: expected the header "id<TAB>text<TAB>title"');
}

// ---------------------------------------------------------------------------------------------
// SQuAD v1.1

export interface SquadAnswer {
  text: string;
  /** Character offset of the answer in the paragraph's context. */
  start: number;
}

export interface SquadQuestion {
  id: string;
  question: string;
  answers: SquadAnswer[];
}

export interface SquadParagraph {
  context: string;
  qas: SquadQuestion[];
}

export interface SquadArticle {
  title: string;
  paragraphs: SquadParagraph[];
}

/**
 * Turns JSON.parse's "at position N" into a line number when the engine reports one (V8 does for
 * most errors, not for every unexpected token); otherwise the location is the whole document.
 */
function jsonErrorLocation(text: string, message: string): string {
  const line = /line (\d+)/.exec(message);
  if (line) return line[1];
  const position = /position (\d+)/.exec(message);
  if (!position) return 'document';
  return String(text.slice(0, Number(position[1])).split('\n').length);
}

/**
 * SQuAD v1.1 json (`{"data": [{"title", "paragraphs": [{"context", "qas": [{"id", "question",
 * "answers": [{"text", "answer_start"}]}]}]}]}`), validated field by field; errors name the path
 * of the bad field (e.g. `data[3].paragraphs[2].qas[0].answers`). Each answer must be the
 * context's substring at answer_start, as in the official file.
 */
export function parseSquadJson(text: string, { source }: JsonlSourceOptions): SquadArticle[] {
  let root: unknown;
  try {
    root = JSON.parse(text.replace(/^\uFEFF/, ''));
  } catch (e) {
    const message = (e as Error).message;
    throw new DataFormatError(source, jsonErrorLocation(text, message), `not valid JSON (${message})`);
  }
  if (!isRecord(root) || !Array.isArray(root.data)) throw new DataFormatError(source, 'data', 'expected an object with a "data" array');
  const ids = new Set<string>();
  return root.data.map((article, a) => {
    const at = `data[${a}]`;
    if (!isRecord(article) || !Array.isArray(article.paragraphs)) throw new DataFormatError(source, at, 'expected {"title", "paragraphs": [...]}');
    const title = requireString(article.title, 'title', source, at);
    const paragraphs = article.paragraphs.map((paragraph, p) => {
      const pat = `${at}.paragraphs[${p}]`;
      if (!isRecord(paragraph) || !Array.isArray(paragraph.qas)) throw new DataFormatError(source, pat, 'expected {"context", "qas": [...]}');
      const context = requireString(paragraph.context, 'context', source, pat);
      const qas = paragraph.qas.map((qa, q) => {
        const qat = `${pat}.qas[${q}]`;
        if (!isRecord(qa) || !Array.isArray(qa.answers) || qa.answers.length === 0) {
          throw new DataFormatError(source, qat, 'expected {"id", "question", "answers": [non-empty]}');
        }
        const id = requireString(qa.id, 'id', source, qat);
        if (ids.has(id)) throw new DataFormatError(source, qat, `duplicate question id ${id}`);
        ids.add(id);
        const answers = qa.answers.map((answer, i) => {
          const aat = `${qat}.answers[${i}]`;
          if (!isRecord(answer)) throw new DataFormatError(source, aat, 'expected {"text", "answer_start"}');
          const answerText = requireString(answer.text, 'text', source, aat);
          const start = answer.answer_start;
          if (typeof start !== 'number' || !Number.isInteger(start) || start < 0) {
            throw new DataFormatError(source, aat, `"answer_start" must be a non-negative integer, got ${describe(start)}`);
          }
          if (context.slice(start, start + answerText.length) !== answerText) {
            throw new DataFormatError(source, aat, `answer ${JSON.stringify(answerText)} is not at offset ${start} of the context`);
          }
          return { text: answerText, start };
        });
        return { id, question: requireString(qa.question, 'question', source, qat), answers };
      });
      return { context, qas };
    });
    return { title, paragraphs };
  });
}
