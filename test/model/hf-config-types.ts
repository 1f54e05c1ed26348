/**
 * Checks config.json text against the JSON types Hugging Face transformers declares
 * (test/fixtures/hf-config-types.json), reading the raw text: JSON.parse cannot tell 1 from 1.0.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

type Kind = 'int' | 'float' | 'str' | 'bool' | 'null' | 'list' | 'dict';
interface TypeTable {
  common: Record<string, Kind[]>;
  t5: Record<string, Kind[]>;
  bert: Record<string, Kind[]>;
}

export const HF_CONFIG_TYPES: TypeTable = JSON.parse(readFileSync(fileURLToPath(new URL('../fixtures/hf-config-types.json', import.meta.url)), 'utf8'));

/** The raw text of each top-level value of a JSON object, by key, in order. */
export function topLevelRawValues(text: string): Map<string, string> {
  const out = new Map<string, string>();
  let i = text.indexOf('{');
  if (i < 0) throw new Error('not a JSON object');
  i++;
  const skipWs = () => {
    while (i < text.length && /\s/.test(text[i])) i++;
  };
  const readString = (): string => {
    const start = i;
    i++;
    while (text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
    i++;
    return JSON.parse(text.slice(start, i));
  };
  for (;;) {
    skipWs();
    if (text[i] === '}') return out;
    if (text[i] === ',') {
      i++;
      skipWs();
    }
    const key = readString();
    skipWs();
    if (text[i] !== ':') throw new Error(`expected ":" after "${key}"`);
    i++;
    skipWs();
    const start = i;
    let depth = 0;
    while (i < text.length) {
      const c = text[i];
      if (c === '"') {
        readString();
        continue;
      }
      if (c === '{' || c === '[') depth++;
      else if (c === '}' || c === ']') {
        if (depth === 0) break;
        depth--;
      } else if (c === ',' && depth === 0) break;
      i++;
    }
    out.set(key, text.slice(start, i).trim());
  }
}

export function jsonKind(raw: string): Kind | 'number with exponent but no decimal point' {
  if (raw.startsWith('"')) return 'str';
  if (raw === 'true' || raw === 'false') return 'bool';
  if (raw === 'null') return 'null';
  if (raw.startsWith('[')) return 'list';
  if (raw.startsWith('{')) return 'dict';
  if (/^-?\d+$/.test(raw)) return 'int';
  if (/^-?\d+\.\d+([eE][-+]?\d+)?$/.test(raw)) return 'float';
  if (/^-?\d+[eE][-+]?\d+$/.test(raw)) return 'number with exponent but no decimal point';
  throw new Error(`not a JSON value: ${raw}`);
}

/**
 * Every problem with a config.json text for `model` (t5 | bert): a top-level field of the wrong
 * JSON type, or a key transformers does not declare (besides the single "corag" key). Empty: fine.
 */
export function hfConfigTypeProblems(text: string, model: 't5' | 'bert'): string[] {
  const problems: string[] = [];
  for (const [key, raw] of topLevelRawValues(text)) {
    if (key === 'corag') {
      if (jsonKind(raw) !== 'dict') problems.push(`"corag" must be an object, got ${raw}`);
      continue;
    }
    const allowed = HF_CONFIG_TYPES[model][key] ?? HF_CONFIG_TYPES.common[key];
    if (!allowed) {
      problems.push(`"${key}" is not a ${model === 't5' ? 'T5Config' : 'BertConfig'} field (our own settings belong under "corag")`);
      continue;
    }
    const kind = jsonKind(raw);
    if (!allowed.includes(kind as Kind)) problems.push(`"${key}" expected ${allowed.join(' | ')}, got ${kind} (${raw})`);
  }
  return problems;
}
