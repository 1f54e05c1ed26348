import { defineConfig } from 'vite';

// The web app (index.html → src/ui/main.ts, workers/) is built into dist/ and served by the
// coordinator (server/main.ts). public/ (tokenizers, demo data, demo checkpoints) is copied as is.
export default defineConfig({
  root: '.',
  publicDir: 'public',
  build: { outDir: 'dist', target: 'es2022', sourcemap: true, chunkSizeWarningLimit: 4000 },
  worker: { format: 'es' },
});
