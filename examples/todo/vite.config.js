import { defineConfig } from 'vite';

// Lists every built file in precache.json so the service worker (public/sw.js) can
// cache the whole app at install: the app then reloads with the network off.
const precacheList = {
  name: 'weft-precache-list',
  generateBundle(_options, bundle) {
    const files = Object.keys(bundle).map((name) => `/${name}`);
    this.emitFile({ type: 'asset', fileName: 'precache.json', source: JSON.stringify(files) });
  },
};

export default defineConfig({
  plugins: [precacheList],
  // @weft/client is linked from ../../client-js, which has its own React for its tests:
  // one React in the bundle.
  resolve: { dedupe: ['react', 'react-dom'] },
  build: { outDir: 'dist', emptyOutDir: true, target: 'es2022' },
});
