// Keeps the app shell (HTML, JS, WASM, CSS) in the Cache Storage so the page reloads
// with the network off; data comes from IndexedDB, never from this cache. API calls
// (/v1/, /health/, /metrics) are never intercepted.
const CACHE = 'weft-todo-shell-v1';

self.addEventListener('install', (event) => {
  event.waitUntil(
    (async () => {
      const cache = await caches.open(CACHE);
      const files = await (await fetch('/precache.json', { cache: 'no-store' })).json();
      await cache.addAll(['/', ...files.filter((f) => f !== '/index.html')]);
      await self.skipWaiting();
    })(),
  );
});

self.addEventListener('activate', (event) => {
  event.waitUntil(
    (async () => {
      for (const key of await caches.keys()) if (key !== CACHE) await caches.delete(key);
      await self.clients.claim();
    })(),
  );
});

self.addEventListener('fetch', (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== 'GET' || url.origin !== self.location.origin) return;
  if (/^\/(v1|health|metrics)(\/|$)/.test(url.pathname)) return;
  // Network first (a new deploy shows at once), the cached shell when offline.
  event.respondWith(
    (async () => {
      const cache = await caches.open(CACHE);
      try {
        const response = await fetch(event.request);
        if (response.ok && response.status === 200) {
          // A full cache (quota) must not turn a good response into a failure.
          await cache.put(event.request, response.clone()).catch(() => undefined);
        }
        return response;
      } catch (error) {
        const cached = await cache.match(event.request, { ignoreSearch: true });
        if (cached) return cached;
        if (event.request.mode === 'navigate') {
          const shell = await cache.match('/');
          if (shell) return shell;
        }
        throw error;
      }
    })(),
  );
});
