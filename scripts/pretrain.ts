/**
 * npm run pretrain -- --config configs/pretrain/demo.json [--work .pretrain/demo] [--backend wasm|cpu|webgpu]
 *                     [--export public/models/demo] [--max-minutes N] [--stop-at-step N] [--prepare-only]
 *                     [--init-from DIR]  (a fresh run starting from DIR/reader + DIR/retriever weights)
 *
 * Prepares the corpus (trimmed tokenizers + token ids) into the work folder when it is not there
 * yet, then trains, resuming from the work folder's checkpoint when there is one. Ctrl-C (or
 * SIGTERM) stops after the current step with a checkpoint and the export; a second one (more than
 * 2 s later) quits at once. The npm script runs it as `node --import tsx`, not through the tsx
 * CLI: tsx relays a signal to its child and SIGKILLs it when the child does not acknowledge within
 * 30 ms, which a child busy in a training step never does — Ctrl-C then lost the final checkpoint.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { initBackend, parseBackendName } from '../src/model/backend';
import { loadPretrainConfig, preparePretrainWork, runPretraining } from '../src/platform/node/pretrain-runner';

function args(argv: string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) throw new Error(`unexpected argument "${a}"`);
    const next = argv[i + 1];
    if (next === undefined || next.startsWith('--')) out.set(a.slice(2), 'true');
    else {
      out.set(a.slice(2), next);
      i++;
    }
  }
  return out;
}

const opts = args(process.argv.slice(2));
if (opts.has('help') || !opts.has('config')) {
  console.log(
    'usage: npm run pretrain -- --config <file> [--work DIR] [--backend wasm|cpu|webgpu] [--export DIR] [--max-minutes N] [--stop-at-step N] [--init-from EXPORTED_DIR] [--prepare-only]',
  );
  process.exit(opts.has('help') ? 0 : 2);
}
const { config, baseDir } = loadPretrainConfig(opts.get('config')!);
const workDir = opts.get('work') ?? '.pretrain/work';
if (!existsSync(join(workDir, 'data.json.gz'))) preparePretrainWork(config, baseDir, new URL('../public/models/tokenizers', import.meta.url).pathname, workDir);
if (opts.has('prepare-only')) process.exit(0);
const backend = await initBackend(parseBackendName(opts.get('backend') ?? 'wasm'));
const num = (k: string) => (opts.has(k) ? Number(opts.get(k)) : undefined);
const stop = new AbortController();
// Ctrl-C reaches this process more than once (the terminal signals the whole process group and
// npm relays it too); while a step computes, all copies are handled in one burst when it ends.
// A repeat within DUPLICATE_SIGNAL_MS is that same Ctrl-C, not a request to quit at once.
const DUPLICATE_SIGNAL_MS = 2000;
let firstSignalAt = 0;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (stop.signal.aborted) {
      if (Date.now() - firstSignalAt > DUPLICATE_SIGNAL_MS) process.exit(130);
      return;
    }
    firstSignalAt = Date.now();
    console.log(`\n${signal}: stopping after this step (checkpoint${opts.has('export') ? ' and export' : ''}); send it again to quit at once`);
    stop.abort();
  });
}
await runPretraining(config, {
  workDir,
  exportDir: opts.get('export'),
  maxMinutes: num('max-minutes'),
  initFrom: opts.get('init-from'),
  stopAtStep: num('stop-at-step'),
  signal: stop.signal,
  backend: `${backend.name} (${backend.detail})`,
});
