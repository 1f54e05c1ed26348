import { defineConfig } from 'vite';

// The web app (index.html → src/ui/main.ts, workers/) is built into dist/ and served by the
// coordinator (server/main.ts). public/ (tokenizers, demo data, demo checkpoints) is copied as is.
// Cross-origin isolation (as server/app.ts serves the app): the wasm backend's threads need SharedArrayBuffer.
const isolation = { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp' };

export default defineConfig({
  root: '.',
  publicDir: 'public',
  build: { outDir: 'dist', target: 'es2022', sourcemap: true, chunkSizeWarningLimit: 4000 },
  worker: { format: 'es' },
  server: { headers: isolation },
  preview: { headers: isolation },
});
