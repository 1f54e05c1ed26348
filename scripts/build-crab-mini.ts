/**
 * Builds CRAB offline and deterministically (docs/CRAB.md has the recipe and the sizes; the
 * builder itself is src/platform/node/crab-mini-builder.ts).
 *
 *   npx tsx scripts/build-crab-mini.ts [--squad FILE] [--out DIR] [--seed N] [--clients N]
 *       [--shots 16,32,64] [--dev-per-client N] [--test-per-client N] [--words 100]
 *       [--demo DIR] [--demo-articles N] [--demo-qa N]
 *   npx tsx scripts/build-crab-mini.ts --data-dir DIR [--out DIR] ...   (NQ-open + DPR psgs_w100)
 */
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { CrabConfig } from '../src/crab/build';
import { buildCrabMini, DEFAULT_OUT, REPO } from '../src/platform/node/crab-mini-builder';

function main(): void {
  const { values } = parseArgs({
    options: {
      squad: { type: 'string' },
      'data-dir': { type: 'string' },
      out: { type: 'string' },
      seed: { type: 'string' },
      clients: { type: 'string' },
      shots: { type: 'string' },
      'dev-per-client': { type: 'string' },
      'test-per-client': { type: 'string' },
      words: { type: 'string' },
      demo: { type: 'string' },
      'demo-articles': { type: 'string', default: '4' },
      'demo-qa': { type: 'string', default: '150' },
    },
  });
  const int = (name: string, v: string | undefined) => {
    if (v === undefined) return undefined;
    if (!/^\d+$/.test(v)) throw new Error(`--${name} must be a non-negative integer, got ${v}`);
    return Number(v);
  };
  const config: Partial<CrabConfig> = {};
  const set = <K extends keyof CrabConfig>(key: K, value: CrabConfig[K] | undefined) => value !== undefined && (config[key] = value);
  set('seed', int('seed', values.seed));
  set('clients', int('clients', values.clients));
  set('devPerClient', int('dev-per-client', values['dev-per-client']));
  set('testPerClient', int('test-per-client', values['test-per-client']));
  set(
    'shots',
    values.shots?.split(',').map((s) => int('shots', s.trim())!),
  );
  const started = Date.now();
  const { manifest, manifestSha256 } = buildCrabMini({
    squad: values.squad,
    dataDir: values['data-dir'],
    out: resolve(values.out ?? (values['data-dir'] ? resolve(REPO, 'results/cache/crab') : DEFAULT_OUT)),
    config,
    words: int('words', values.words),
    demo: values.demo
      ? { dir: resolve(values.demo), articles: int('demo-articles', values['demo-articles'])!, maxQa: int('demo-qa', values['demo-qa'])! }
      : undefined,
    log: (line) => console.log(line),
  });
  console.log(JSON.stringify({ ...manifest.stats, trainingStores: undefined, manifestSha256, seconds: (Date.now() - started) / 1000 }));
}

try {
  main();
} catch (e) {
  console.error(`build-crab-mini: ${(e as Error).message}`);
  process.exit(1);
}
