/**
 * The page side of the browser harness: an entry publishes the functions a test may call.
 * The harness waits for `window.__corag` before the test starts, so call this once the page is
 * ready (after any top-level setup the functions need).
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- any function the page exposes, whatever its parameter types
export type PageApi = Record<string, (...args: any[]) => unknown>;

/** Publishes `api` as `window.__corag`; each call is also written on the page (for screenshots). */
export function exposeToTests(api: PageApi): void {
  const logged: PageApi = {};
  for (const [name, fn] of Object.entries(api)) {
    logged[name] = async (...args: unknown[]) => {
      const started = performance.now();
      try {
        const result = await fn(...args);
        showOnPage(`${name}: ok in ${(performance.now() - started).toFixed(0)} ms → ${summary(result)}`);
        return result;
      } catch (e) {
        showOnPage(`${name}: FAILED in ${(performance.now() - started).toFixed(0)} ms: ${(e as Error).message}`);
        throw e;
      }
    };
  }
  (globalThis as unknown as { __corag: PageApi }).__corag = logged;
}

function summary(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 300 ? text.slice(0, 300) + '…' : text;
}

function showOnPage(line: string): void {
  if (typeof document === 'undefined') return;
  const log = document.getElementById('log') ?? document.body.appendChild(document.createElement('pre'));
  log.textContent += line + '\n';
}

/** Fetches a file the harness serves and returns its bytes; names the URL when it fails. */
export async function fetchBytes(url: string): Promise<Uint8Array> {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`GET ${url}: ${response.status} ${response.statusText}`);
  return new Uint8Array(await response.arrayBuffer());
}
