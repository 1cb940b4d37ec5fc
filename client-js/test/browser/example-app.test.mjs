// The example app in headless Chromium against a real `weft serve`: live sync between
// contexts, offline writes surviving a reload, HTTP fallback with WebSockets blocked,
// tabs sharing changes with the server down. Also writes docs/images/todo-example.png
// from what the first test saw.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { addTodo, launch, openApp, titles } from '../support/browser.mjs';
import { eventually, startServer } from '../support/server.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '../../..');
const staticDir = join(root, 'examples/todo/dist');
const screenshot = join(root, 'docs/images/todo-example.png');

let browser;
before(async () => {
  assert.ok(existsSync(join(staticDir, 'index.html')), 'build the example first: scripts/build-web.sh');
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

async function records(url) {
  const response = await fetch(`${url}/v1/collections/todos`);
  const json = await response.json();
  return json.records ?? json;
}

test('an edit in one browser context appears in another within 1 s', async (t) => {
  const server = await startServer({ staticDir });
  t.after(() => server.stop());
  const alice = await browser.newContext({ viewport: { width: 720, height: 640 } });
  const bob = await browser.newContext();
  t.after(() => Promise.all([alice.close(), bob.close()]));
  const a = await openApp(alice, server.url);
  const b = await openApp(bob, server.url);
  await a.locator('[data-testid=status][data-state=connected]').waitFor();
  await b.locator('[data-testid=status][data-state=connected]').waitFor();

  for (const title of ['Buy oat milk', 'Book train to Lyon', 'Water the plants']) {
    const started = Date.now();
    await addTodo(a, title);
    await b.locator('[data-testid=title]', { hasText: title }).waitFor({ timeout: 1000 });
    t.diagnostic(`"${title}" shown in the other context after ${Date.now() - started} ms`);
  }
  // Complete one in b: a sees it within 1 s, and the live counts follow.
  await b.locator('[data-testid=todo]', { hasText: 'Book train' }).locator('input[type=checkbox]').check();
  await a.locator('[data-testid=todo].done', { hasText: 'Book train' }).waitFor({ timeout: 1000 });
  await a.locator('[data-testid=count-done]', { hasText: '1' }).waitFor({ timeout: 1000 });
  assert.equal(await a.locator('[data-testid=count-active]').textContent(), '2');
  assert.deepEqual(await titles(a), await titles(b));

  // The screenshot in docs/ is what this test saw.
  await a.locator('[data-testid=status][data-state=connected]').waitFor();
  mkdirSync(dirname(screenshot), { recursive: true });
  await a.screenshot({ path: screenshot });
});

test('offline: writes survive a reload while offline, then converge when back online', async (t) => {
  const server = await startServer({ staticDir });
  t.after(() => server.stop());
  const traveller = await browser.newContext();
  const other = await browser.newContext();
  t.after(() => Promise.all([traveller.close(), other.close()]));
  let page = await openApp(traveller, server.url, { waitForOffline: true });
  const watcher = await openApp(other, server.url);
  await addTodo(page, 'Online before the trip');
  await watcher.locator('[data-testid=title]', { hasText: 'Online before the trip' }).waitFor();

  await traveller.setOffline(true);
  await page.locator('[data-testid=status][data-state=offline]').waitFor({ timeout: 15_000 });
  await addTodo(page, 'Written on the plane');
  await addTodo(page, 'Also offline');
  await page.locator('[data-testid=todo]', { hasText: 'Online before the trip' }).locator('input[type=checkbox]').check();
  await page.evaluate(() => window.weft.persisted());

  await page.reload(); // still offline: the service worker serves the app, IndexedDB the data
  await page.waitForFunction(() => window.weft !== undefined);
  await page.locator('[data-testid=title]', { hasText: 'Written on the plane' }).waitFor();
  assert.deepEqual(await titles(page), ['Online before the trip', 'Written on the plane', 'Also offline']);
  assert.equal(await page.locator('[data-testid=todo].done').count(), 1);
  assert.match(await page.locator('[data-testid=status]').textContent(), /3 unsent/);
  // Nothing reached the server yet.
  await watcher.waitForTimeout(300);
  assert.deepEqual(await titles(watcher), ['Online before the trip']);

  await traveller.setOffline(false);
  await page.locator('[data-testid=status][data-state=connected]').waitFor({ timeout: 15_000 });
  await watcher.locator('[data-testid=title]', { hasText: 'Also offline' }).waitFor({ timeout: 5000 });
  await watcher.locator('[data-testid=todo].done', { hasText: 'Online before the trip' }).waitFor();
  assert.deepEqual(await titles(watcher), await titles(page));
  const stored = JSON.stringify(await records(server.url));
  assert.ok(stored.includes('Written on the plane') && stored.includes('Also offline'), stored);
});

test('with WebSockets blocked, sync falls back to HTTP', async (t) => {
  const server = await startServer({ staticDir });
  t.after(() => server.stop());
  const blocked = await browser.newContext();
  const normal = await browser.newContext();
  t.after(() => Promise.all([blocked.close(), normal.close()]));
  await blocked.routeWebSocket(/.*/, (ws) => ws.close({ code: 1008, reason: 'blocked by test proxy' }));
  const b = await openApp(blocked, server.url);
  const n = await openApp(normal, server.url);
  await eventually(() => b.evaluate(() => window.weft.status.transport === 'http'), 10_000, 'HTTP fallback');
  await addTodo(b, 'Sent over POST /v1/sync');
  await n.locator('[data-testid=title]', { hasText: 'Sent over POST /v1/sync' }).waitFor({ timeout: 5000 });
  await addTodo(n, 'Pushed to the WebSocket client');
  await b.locator('[data-testid=title]', { hasText: 'Pushed to the WebSocket client' }).waitFor({ timeout: 5000 });
  await b.locator('[data-testid=status][data-state=connected]').waitFor({ timeout: 5000 });
  assert.equal(await b.evaluate(() => window.weft.status.transport), 'http');
});

test('two tabs of one context share changes while the server is down', async (t) => {
  const server = await startServer({ staticDir });
  const context = await browser.newContext();
  t.after(() => context.close());
  const first = await openApp(context, server.url);
  const second = await openApp(context, server.url);
  await addTodo(first, 'Seen by both tabs');
  await second.locator('[data-testid=title]', { hasText: 'Seen by both tabs' }).waitFor();

  await server.stop({ keepData: true });
  await first.locator('[data-testid=status][data-state=offline]').waitFor({ timeout: 10_000 });
  await addTodo(first, 'Written with the server down');
  await second.locator('[data-testid=title]', { hasText: 'Written with the server down' }).waitFor({ timeout: 1000 });
  await second.locator('[data-testid=todo]', { hasText: 'Written with the server down' }).locator('input[type=checkbox]').check();
  await first.locator('[data-testid=todo].done', { hasText: 'Written with the server down' }).waitFor({ timeout: 1000 });

  // Back up: both tabs' writes reach the server.
  const again = await startServer({ staticDir, dataDir: server.dataDir, port: server.port });
  t.after(() => again.stop());
  await first.locator('[data-testid=status][data-state=connected]').waitFor({ timeout: 15_000 });
  await second.locator('[data-testid=status][data-state=connected]').waitFor({ timeout: 15_000 });
  await eventually(async () => JSON.stringify(await records(again.url)).includes('"done":true'), 5000, 'server copy');
  // Every write acknowledged: no tab leaves an outbox entry behind in the shared store.
  const outboxEntries = () =>
    first.evaluate(async () => {
      await window.weft.persisted();
      const db = await new Promise((resolve) => (indexedDB.open('weft:todo-example').onsuccess = (e) => resolve(e.target.result)));
      const count = await new Promise((resolve) => (db.transaction('outbox').objectStore('outbox').count().onsuccess = (e) => resolve(e.target.result)));
      db.close();
      return count;
    });
  await eventually(async () => (await outboxEntries()) === 0, 5000, 'an empty outbox store');
});

test('a large synced collection is stored as a snapshot and reloads offline intact', async (t) => {
  const server = await startServer({ staticDir });
  t.after(() => server.stop());
  const { Weft } = await import('../../dist/index.js');
  const seeder = await Weft.open({ url: server.url, name: 'seeder' });
  const todos = seeder.collection('todos');
  for (let n = 0; n < 1500; n++) todos.put(`seed-${String(n).padStart(4, '0')}`, { title: `Seeded ${n}`, done: n % 2 === 0, created: n });
  await seeder.whenSynced();
  await seeder.close();

  const context = await browser.newContext();
  t.after(() => context.close());
  const page = await openApp(context, server.url, { waitForOffline: true });
  await page.locator('[data-testid=count-all]', { hasText: '1500' }).waitFor({ timeout: 15_000 });
  await addTodo(page, 'One more, stored per record');
  await page.evaluate(() => window.weft.persisted());
  await context.setOffline(true);
  await page.reload();
  await page.waitForFunction(() => window.weft !== undefined);
  await page.locator('[data-testid=count-all]', { hasText: '1501' }).waitFor();
  assert.equal(await page.locator('[data-testid=count-done]').textContent(), '750');
  const timings = await page.evaluate(() => window.weft.openTimings);
  t.diagnostic(`reopened 1,501 records: ${JSON.stringify(timings)}`);
});

test('damaged IndexedDB data is skipped with a named problem and re-synced from the server', async (t) => {
  const server = await startServer({ staticDir });
  t.after(() => server.stop());
  const context = await browser.newContext();
  t.after(() => context.close());
  const page = await openApp(context, server.url);
  await addTodo(page, 'Survives damaged storage');
  await page.locator('[data-testid=status][data-state=connected]').waitFor();
  await page.evaluate(() => window.weft.persisted());
  // Damage every stored record, the snapshot and the cursors, as a disk error or a
  // foreign script might.
  await page.evaluate(async () => {
    await window.weft.close();
    const db = await new Promise((resolve, reject) => {
      const req = indexedDB.open('weft:todo-example');
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    });
    const tx = db.transaction(['records', 'meta'], 'readwrite');
    const records = tx.objectStore('records');
    const keys = await new Promise((resolve) => (records.getAllKeys().onsuccess = (e) => resolve(e.target.result)));
    for (const key of keys) records.put(new Uint8Array([0x93, 0xc1, 0xff]), key);
    tx.objectStore('meta').put(new Uint8Array([1, 2, 3]), 'snapshot');
    await new Promise((resolve) => (tx.oncomplete = resolve));
    db.close();
  });
  await page.reload();
  await page.waitForFunction(() => window.weft !== undefined);
  const problems = await page.evaluate(() => window.weft.openProblems);
  assert.ok(problems.some((p) => /snapshot is damaged/.test(p)), JSON.stringify(problems));
  assert.ok(problems.some((p) => /stored record 0 of \d+ is damaged/.test(p)), JSON.stringify(problems));
  // Opened anyway, and the server sends the record again.
  await page.locator('[data-testid=title]', { hasText: 'Survives damaged storage' }).waitFor({ timeout: 5000 });
  await page.locator('[data-testid=status][data-state=connected]').waitFor();
});
