import { defineConfig } from 'vite';

// The web app (src/ui) is built into dist/ and served by the coordinator.
export default defineConfig({
  root: '.',
  publicDir: 'public',
  build: { outDir: 'dist', target: 'es2022', sourcemap: true },
  worker: { format: 'es' },
});
