/**
 * Where model files come from. A checkpoint is a set of named files (`config.json`,
 * `model.safetensors`, `tokenizer.json`, ...) and a ModelSource fetches them by name, whether
 * they sit in a local folder (Node), under a URL base, or in a Hugging Face hub repository.
 * This module has no Node APIs: the folder source lives in src/platform/node and is passed in.
 */

/** Bytes received so far and, when the server said (content-length), the total. */
export type ProgressCallback = (loadedBytes: number, totalBytes: number | undefined) => void;

export interface ModelSource {
  /** Human-readable location, used in every error message about this source's files. */
  describe(): string;
  /** The file's bytes, or null when it does not exist (HTTP 404, missing file). Other failures throw. */
  fetchFile(name: string, onProgress?: ProgressCallback): Promise<Uint8Array | null>;
}

export class ModelSourceError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ModelSourceError';
  }
}

/**
 * Checks that a file name stays inside the model's folder: relative, `/`-separated, no `..`,
 * no empty segments. Names come from untrusted places (a shard index), so every source calls this.
 */
export function checkFileName(name: string): string {
  const segments = name.split('/');
  if (name.length === 0 || name.includes('\\') || name.includes('\0') || segments.some((s) => s === '' || s === '.' || s === '..')) {
    throw new ModelSourceError(`invalid model file name ${JSON.stringify(name)}: expected a relative path inside the model folder`);
  }
  return name;
}

type FetchFn = typeof fetch;

export interface HttpSourceOptions {
  /** Injected fetch (tests, auth wrappers); defaults to the global one. */
  fetch?: FetchFn;
  /** Extra request headers, e.g. `Authorization: Bearer hf_...` for gated hub repositories. */
  headers?: Record<string, string>;
}

/** GET one URL; null on 404; streams the body so progress can be reported. */
async function httpGet(url: string, options: HttpSourceOptions, onProgress?: ProgressCallback): Promise<Uint8Array | null> {
  const fetchFn = options.fetch ?? globalThis.fetch;
  let response: Response;
  try {
    response = await fetchFn(url, { headers: options.headers });
  } catch (e) {
    throw new ModelSourceError(`GET ${url} failed: ${(e as Error).message}`);
  }
  if (response.status === 404) {
    await response.body?.cancel();
    return null;
  }
  if (!response.ok) {
    await response.body?.cancel();
    throw new ModelSourceError(`GET ${url} failed with HTTP ${response.status}${response.statusText ? ' ' + response.statusText : ''}`);
  }
  const lengthHeader = response.headers.get('content-length');
  const total = lengthHeader !== null && /^\d+$/.test(lengthHeader) ? Number(lengthHeader) : undefined;
  if (!response.body) {
    const bytes = new Uint8Array(await response.arrayBuffer());
    onProgress?.(bytes.byteLength, total);
    return bytes;
  }
  return readBody(response.body, url, total, onProgress);
}

/**
 * Reads a response body chunk by chunk. With a known length the bytes go straight into one
 * buffer (no second copy of a multi-hundred-megabyte checkpoint); otherwise chunks are joined.
 */
async function readBody(body: ReadableStream<Uint8Array>, url: string, total: number | undefined, onProgress?: ProgressCallback): Promise<Uint8Array> {
  const reader = body.getReader();
  const chunks: Uint8Array[] = [];
  const out = total !== undefined ? new Uint8Array(total) : undefined;
  let loaded = 0;
  onProgress?.(0, total);
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (out) {
      if (loaded + value.byteLength > out.byteLength) {
        await reader.cancel();
        throw new ModelSourceError(`GET ${url}: body is longer than its content-length ${total}`);
      }
      out.set(value, loaded);
    } else {
      chunks.push(value);
    }
    loaded += value.byteLength;
    onProgress?.(loaded, total);
  }
  if (out) {
    if (loaded !== out.byteLength) {
      throw new ModelSourceError(`GET ${url}: connection ended after ${loaded} of ${total} bytes`);
    }
    return out;
  }
  const joined = new Uint8Array(loaded);
  let offset = 0;
  for (const c of chunks) {
    joined.set(c, offset);
    offset += c.byteLength;
  }
  return joined;
}

function withTrailingSlash(url: string): string {
  return url.endsWith('/') ? url : url + '/';
}

/**
 * `{base}{name}` with each path segment percent-encoded, so a name can never be read as a URL of
 * its own (`data:...`, `file:...`) or leave the base.
 */
function fileUrl(base: URL, name: string): string {
  return base.href + checkFileName(name).split('/').map(encodeURIComponent).join('/');
}

/** Files under a URL base: `{base}/{name}`. */
export function urlModelSource(baseUrl: string, options: HttpSourceOptions = {}): ModelSource {
  let base: URL;
  try {
    base = new URL(withTrailingSlash(baseUrl));
  } catch {
    throw new ModelSourceError(`invalid model URL ${JSON.stringify(baseUrl)}`);
  }
  if (base.protocol !== 'http:' && base.protocol !== 'https:') {
    throw new ModelSourceError(`model URL ${JSON.stringify(baseUrl)} must be http(s)`);
  }
  return {
    describe: () => base.href,
    fetchFile: (name, onProgress) => httpGet(fileUrl(base, name), options, onProgress),
  };
}

export const DEFAULT_HUB_ENDPOINT = 'https://huggingface.co';

export interface HubSourceOptions extends HttpSourceOptions {
  /** Hub base URL (a mirror, or a local test server); default https://huggingface.co. */
  endpoint?: string;
  /** Branch, tag or commit; default "main". */
  revision?: string;
}

/**
 * The hub's repository id rules: `name` or `org/name`, each part letters, digits, `-`, `_`, `.`,
 * not starting or ending with `-`/`.`, no `--` or `..`, at most 96 characters.
 */
const HUB_ID_PART = /^(?![-.])(?!.*(--|\.\.))[A-Za-z0-9_.-]{1,96}(?<![-.])$/;

export function isHubModelId(id: string): boolean {
  const parts = id.split('/');
  return (parts.length === 1 || parts.length === 2) && parts.every((p) => HUB_ID_PART.test(p));
}

/** A Hugging Face hub repository: `{endpoint}/{id}/resolve/{revision}/{file}`. */
export function hubModelSource(modelId: string, options: HubSourceOptions = {}): ModelSource {
  if (!isHubModelId(modelId)) {
    throw new ModelSourceError(`invalid Hugging Face model id ${JSON.stringify(modelId)}: expected "org/name" (letters, digits, "-", "_", ".")`);
  }
  const revision = options.revision ?? 'main';
  if (revision.length === 0 || revision.split('/').some((s) => s === '' || s === '.' || s === '..')) {
    throw new ModelSourceError(`invalid hub revision ${JSON.stringify(revision)}`);
  }
  const endpoint = withTrailingSlash(options.endpoint ?? DEFAULT_HUB_ENDPOINT);
  const base = urlModelSource(`${endpoint}${modelId}/resolve/${encodeURIComponent(revision)}/`, options);
  return {
    describe: () => `${modelId}@${revision} (${endpoint.replace(/\/$/, '')})`,
    fetchFile: (name, onProgress) => base.fetchFile(name, onProgress),
  };
}

export interface ResolveSourceOptions extends HubSourceOptions {
  /** Opens a local folder; only Node has one (src/platform/node/folder-source.ts). */
  openFolder?: (path: string) => ModelSource;
}

/**
 * Maps what a user types to a source: `./path`, `../path`, `/abs` -> local folder;
 * `http(s)://...` -> URL base; `org/name` -> Hugging Face hub.
 */
export function resolveModelSource(spec: string, options: ResolveSourceOptions = {}): ModelSource {
  const s = spec.trim();
  if (/^https?:\/\//i.test(s)) return urlModelSource(s, options);
  if (s.startsWith('./') || s.startsWith('../') || s.startsWith('/') || s === '.' || s === '..') {
    if (!options.openFolder) {
      throw new ModelSourceError(`"${s}" is a local folder, which can only be read in Node; give a URL or a hub id here`);
    }
    return options.openFolder(s);
  }
  if (isHubModelId(s)) return hubModelSource(s, options);
  throw new ModelSourceError(
    `cannot tell where model "${spec}" is: use ./folder or /absolute/folder, an http(s):// URL, or a hub id like "google/flan-t5-small"`,
  );
}
