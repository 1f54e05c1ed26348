/**
 * Writes a Hugging Face `config.json` with the JSON types transformers declares. Recent
 * transformers validate config fields by type and refuse `"initializer_factor": 1` ("expected
 * float, got int"), but JSON.stringify writes the number 1.0 as `1`: JavaScript has one number
 * type, so which fields are floats has to be known. The caller names them; everything else is
 * written as JSON.stringify would. Also the one place that defines where CoRAG's own settings go:
 * under a single `corag` key, so the top level holds only fields transformers knows.
 */

/** The key our non-Hugging-Face settings live under in config.json. */
export const CORAG_CONFIG_KEY = 'corag';

/** A finite number written so that Python's json reads a float: always with a decimal point. */
export function formatJsonFloat(value: number, field: string): string {
  if (!Number.isFinite(value)) throw new Error(`config field "${field}" must be a finite number, got ${value}`);
  const text = JSON.stringify(value);
  if (text.includes('.')) return text;
  const e = text.indexOf('e');
  return e < 0 ? `${text}.0` : `${text.slice(0, e)}.0${text.slice(e)}`;
}

/**
 * `config` as pretty-printed JSON text (2-space indent, trailing newline), with the top-level
 * fields in `floatFields` written as floats. Non-number values of float fields are refused.
 */
export function hfConfigJsonText(config: Record<string, unknown>, floatFields: ReadonlySet<string>): string {
  const lines: string[] = [];
  for (const [key, value] of Object.entries(config)) {
    if (value === undefined) continue;
    let text: string;
    if (floatFields.has(key) && value !== null) {
      if (typeof value !== 'number') throw new Error(`config field "${key}" must be a number, got ${JSON.stringify(value)}`);
      text = formatJsonFloat(value, key);
    } else {
      text = JSON.stringify(value, null, 2).replace(/\n/g, '\n  ');
    }
    lines.push(`  ${JSON.stringify(key)}: ${text}`);
  }
  return lines.length ? `{\n${lines.join(',\n')}\n}\n` : '{}\n';
}

/**
 * Our settings as found in a config.json: the object under `corag`, uninterpreted. The model
 * layer only carries it (so that it round-trips on export); what the settings mean, and whether
 * they are valid, is src/corag/checkpoint-policy.ts's business.
 */
export type CoragSection = Readonly<Record<string, unknown>>;

/**
 * Names this project wrote at the top level of config.json before the `corag` key existed
 * (checkpoints exported before session 10). Reading such a file lifts them under `corag`
 * untouched, so the policy parser sees one layout and a re-export writes the current one.
 */
const LEGACY_TOP_LEVEL_CORAG_NAMES = ['copy_decoding_weight', 'answer_rerank', 'hybrid_keyword_weight'] as const;

/**
 * The `corag` section of a parsed config.json (undefined when there is none), with legacy
 * top-level settings lifted into it; a value under `corag` wins over a stale top-level copy.
 * Only its shape is checked here: it must be an object.
 */
export function coragSection(json: Record<string, unknown>, onError: (message: string) => Error = (m) => new Error(m)): CoragSection | undefined {
  const ours = json[CORAG_CONFIG_KEY];
  if (ours !== undefined && ours !== null && (typeof ours !== 'object' || Array.isArray(ours))) {
    throw onError(`config field "${CORAG_CONFIG_KEY}" must be an object, got ${JSON.stringify(ours)}`);
  }
  const section: Record<string, unknown> = {};
  for (const name of LEGACY_TOP_LEVEL_CORAG_NAMES) if (json[name] !== undefined && json[name] !== null) section[name] = json[name];
  Object.assign(section, ours ?? {});
  return Object.keys(section).length > 0 ? section : undefined;
}
