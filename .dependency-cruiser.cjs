/**
 * The layers of the code base (docs/ARCHITECTURE.md "Layers"), checked by `npm run lint:layers`
 * (part of `npm test`). An inner layer never imports an outer one:
 *
 *   util, text  →  model  →  federated, retrieval, ingest  →  corag  →  crab, pretrain
 *     →  platform (Node and browser adapters)  →  apps: server, ui, workers, scripts, bench
 *
 * Node built-ins are allowed in src/ only under src/platform/node: everything else in src/ also
 * runs in a browser tab or a worker.
 */
const SRC_LAYERS = {
  util: ['util'],
  text: ['text', 'util'],
  model: ['model', 'text', 'util'],
  federated: ['federated', 'model', 'text', 'util'],
  retrieval: ['retrieval', 'model', 'text', 'util'],
  ingest: ['ingest', 'retrieval', 'text', 'util'],
  corag: ['corag', 'federated', 'retrieval', 'ingest', 'model', 'text', 'util'],
  crab: ['crab', 'pretrain', 'corag', 'federated', 'retrieval', 'ingest', 'model', 'text', 'util'],
  pretrain: ['pretrain', 'crab', 'corag', 'federated', 'retrieval', 'ingest', 'model', 'text', 'util'],
  platform: ['platform', 'crab', 'pretrain', 'corag', 'federated', 'retrieval', 'ingest', 'model', 'text', 'util'],
};

const layerRules = Object.entries(SRC_LAYERS).map(([layer, allowed]) => ({
  name: `layer-${layer}`,
  comment: `src/${layer} may import only src/{${allowed.join(',')}}`,
  severity: 'error',
  from: { path: `^src/${layer}/` },
  to: { path: '^(src|server|workers|scripts|bench|test)/', pathNot: `^src/(${allowed.join('|')})/` },
}));

module.exports = {
  forbidden: [
    ...layerRules,
    {
      name: 'ui-no-server',
      comment: 'the web app talks to the coordinator over HTTP only; worker APIs are imported as types',
      severity: 'error',
      from: { path: '^src/ui/' },
      to: { path: '^(server|scripts|bench|test)/' },
    },
    {
      name: 'ui-workers-types-only',
      comment: 'the UI reaches the workers through comlink: it may import their API types, never their code',
      severity: 'error',
      from: { path: '^src/ui/' },
      to: { path: '^workers/', dependencyTypesNot: ['type-only'] },
    },
    {
      name: 'workers-no-server',
      severity: 'error',
      from: { path: '^workers/' },
      to: { path: '^(server|scripts|bench|test|src/ui)/' },
    },
    {
      name: 'server-no-ui',
      comment: 'the coordinator never loads browser code',
      severity: 'error',
      from: { path: '^server/' },
      to: { path: '^(src/ui|src/platform/browser|workers|scripts|bench|test)/' },
    },
    {
      name: 'node-builtins-only-in-platform-node',
      comment: 'everything in src/ but src/platform/node also runs in browsers',
      severity: 'error',
      from: { path: '^src/', pathNot: '^src/platform/node/' },
      to: { dependencyTypes: ['core'] },
    },
    {
      name: 'no-circular',
      comment: 'import cycles between files make load order matter',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^(node_modules|dist|public)/' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    // Vite asset imports (`?url`, `?worker`) and CSS are not code dependencies.
    moduleSystems: ['es6', 'cjs'],
  },
};
