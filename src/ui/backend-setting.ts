/**
 * The page's backend choice and its banner. In Automatic mode (the default) the embedding worker
 * measures each available backend once (src/model/backend-probe.ts) and both workers start the
 * fastest (src/model/backend-choice.ts); the "Backend" setting (kept in localStorage, applied on
 * reload) or a `?backend=` URL parameter overrides the measurement.
 */
import {
  backendHeadline,
  BACKEND_SETTINGS,
  chooseBackend,
  formatProbes,
  parseBackendSetting,
  type BackendChoice,
  type BackendName,
  type BackendSetting,
} from '../model/backend-choice';
import { parseBackendName, type BackendReport } from '../model/backend';
import type { BackendProbe } from '../model/backend-choice';
import { h } from './dom';

export const BACKEND_SETTING_KEY = 'corag.backend';
const PROBE_TIMEOUT_MS = 30_000;

const SETTING_LABELS: Record<BackendSetting, string> = { auto: 'Automatic (fastest measured)', webgpu: 'WebGPU', wasm: 'WebAssembly', cpu: 'CPU (JavaScript)' };

export function readBackendSetting(): BackendSetting {
  try {
    return parseBackendSetting(localStorage.getItem(BACKEND_SETTING_KEY));
  } catch {
    return 'auto';
  }
}

/** The `?backend=` URL parameter, if any (an unknown name is an error, as before). */
function urlBackend(): BackendName | undefined {
  const forced = new URLSearchParams(location.search).get('backend');
  return forced ? parseBackendName(forced) : undefined;
}

/** Decides the backend order: the URL parameter, else the setting, else `probe` (run only then). */
export async function decideBackend(probe: (candidates: BackendName[]) => Promise<BackendProbe[]>): Promise<BackendChoice> {
  const url = urlBackend();
  const setting = readBackendSetting();
  if (url || setting !== 'auto') return chooseBackend([], setting, url);
  const candidates: BackendName[] = 'gpu' in navigator ? ['webgpu', 'wasm', 'cpu'] : ['wasm', 'cpu'];
  // A probe that never answers (a wedged driver) must not keep the page from starting.
  const timeout = new Promise<BackendProbe[]>((ok) =>
    setTimeout(() => ok(candidates.map((name) => ({ name, ok: false, error: `not measured within ${PROBE_TIMEOUT_MS / 1000} s` }))), PROBE_TIMEOUT_MS),
  );
  return chooseBackend(await Promise.race([probe(candidates), timeout]), 'auto');
}

/** What runs, how it was chosen, the measured rates, and the setting to change it. */
export function backendBanner(report: BackendReport, choice: BackendChoice): HTMLElement {
  const headline = backendHeadline(report);
  const gpu = report.name === 'webgpu' && !report.software;
  let how: string;
  if (choice.by === 'url') how = `chosen with ?backend=${report.name} in the address.`;
  else if (choice.by === 'setting') how = `set in the Backend setting (Automatic measures each backend and takes the fastest).`;
  else how = `the fastest here of ${formatProbes(choice.probes)}.`;
  const fellBack = report.fallbackReason ? ` ${choice.order[0]} did not start (${report.fallbackReason}).` : '';
  const note = gpu ? ' Models run on your GPU.' : report.name === 'webgpu' ? ' This adapter is a software rasteriser on the CPU, not a GPU.' : '';

  const setting = readBackendSetting();
  const select = h(
    'select',
    { id: 'backend-setting', 'aria-label': 'Backend' },
    ...BACKEND_SETTINGS.map((s) => h('option', { value: s, ...(s === setting ? { selected: true } : {}) }, SETTING_LABELS[s])),
  );
  select.addEventListener('change', () => {
    localStorage.setItem(BACKEND_SETTING_KEY, (select as HTMLSelectElement).value);
    location.reload();
  });
  const ok = gpu || (report.name === 'wasm' && (report.threads ?? 1) > 1 && !report.fallbackReason);
  return h(
    'div',
    { class: `banner ${ok ? 'ok' : 'warn'}`, id: 'backend-banner', role: 'status', 'data-backend': report.name },
    h('strong', { id: 'backend-name' }, headline),
    ` — ${how}${fellBack}${note} `,
    h('label', { class: 'backend-setting' }, 'Backend ', select),
  );
}
