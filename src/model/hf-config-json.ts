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
 * A setting of ours from a parsed config.json: under `corag` (current layout) or, for checkpoints
 * written before it existed (the shipped demo models), at the top level. Returns the value and the
 * field path to name in errors.
 */
export function coragSetting(
  json: Record<string, unknown>,
  name: string,
  onError: (message: string) => Error = (m) => new Error(m),
): { value: unknown; field: string } {
  const ours = json[CORAG_CONFIG_KEY];
  if (ours !== undefined && ours !== null) {
    if (typeof ours !== 'object' || Array.isArray(ours)) throw onError(`config field "${CORAG_CONFIG_KEY}" must be an object, got ${JSON.stringify(ours)}`);
    const value = (ours as Record<string, unknown>)[name];
    if (value !== undefined) return { value, field: `${CORAG_CONFIG_KEY}.${name}` };
  }
  return { value: json[name], field: name };
}
