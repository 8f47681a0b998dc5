import { svelte } from '@sveltejs/vite-plugin-svelte';
import { defineConfig } from 'vitest/config';

// The server under development; `npm run dev` proxies the API to it.
const target = process.env.ACTORCHAT_DEV_TARGET ?? 'http://127.0.0.1:3000';

export default defineConfig({
  plugins: [svelte()],
  server: {
    proxy: {
      '/ws': { target, ws: true },
      '/calc': { target },
      '/api': { target },
      '/metrics': { target },
      '/healthz': { target },
      '/test.html': { target },
    },
  },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    // dist/ is committed and embedded in the server binary: keep it small and
    // byte-reproducible (content hashes only, no source maps, no timestamps).
    sourcemap: false,
    reportCompressedSize: false,
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
  },
  test: {
    include: ['src/**/*.test.ts'],
    environment: 'node',
  },
});
