// Browser figures of @weft/client in headless Chromium against a real `weft serve`:
//   apply   time the replica spends applying 10,000 synced records: the catch-up's frames
//           replayed into a fresh replica (the figure), and inside the live catch-up
//           (server competing for the same 2 cores), and the catch-up wall time
//   open    time to open the persisted replica from IndexedDB and render the first query
// Usage: npm run bench:browser  (WEFT_BENCH_RECORDS, WEFT_BENCH_RUNS to change the size)
import { launch } from '../test/support/browser.mjs';
import { startServer } from '../test/support/server.mjs';
import { Weft } from '../dist/index.js';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const records = Number(process.env.WEFT_BENCH_RECORDS ?? 10_000);
const runs = Number(process.env.WEFT_BENCH_RUNS ?? 5);
const staticDir = join(dirname(fileURLToPath(import.meta.url)), '..');

const server = await startServer({ staticDir });
try {
  // Seed the server through the Node client (batches of 500 per push).
  const seeder = await Weft.open({ url: server.url, name: 'seed' });
  const items = seeder.collection('items');
  for (let n = 0; n < records; n++) {
    items.put(`item-${String(n).padStart(6, '0')}`, { n, title: `Item number ${n}`, done: n % 3 === 0, tags: ['a', 'b'] });
  }
  await seeder.whenSynced();
  await seeder.close();

  const browser = await launch();
  const results = { apply: [], replay: [], wall: [], persist: [], open: [] };
  for (let run = 0; run < runs; run++) {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`${server.url}/bench/bench.html`);
    await page.waitForFunction(() => typeof window.benchOpen === 'function');
    const name = `bench-${run}`;
    const synced = await page.evaluate(([n, u]) => window.benchSync(n, u, 'items'), [name, server.url]);
    if (synced.count !== records) throw new Error(`synced ${synced.count} of ${records} records`);
    if (synced.replayed !== records) throw new Error(`replayed ${synced.replayed} of ${records} records`);
    // A new page of the same context: IndexedDB kept, nothing in memory.
    const reopened = await context.newPage();
    reopened.on('console', (message) => process.env.WEFT_BENCH_VERBOSE && console.log('  open phases:', message.text()));
    await reopened.goto(`${server.url}/bench/bench.html`);
    await reopened.waitForFunction(() => typeof window.benchOpen === 'function');
    await page.close();
    const opened = await reopened.evaluate(([n, u]) => window.benchOpen(n, u, 'items'), [name, server.url]);
    if (opened.count !== records) throw new Error(`reopened ${opened.count} of ${records} records`);
    results.apply.push(synced.applyMs);
    results.replay.push(synced.replayMs);
    results.wall.push(synced.wallMs);
    results.persist.push(synced.persistMs);
    results.open.push(opened.ms);
    await context.close();
  }
  await browser.close();
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const fmt = (xs) => `median ${median(xs).toFixed(1)} ms (runs: ${xs.map((x) => x.toFixed(1)).join(', ')})`;
  console.log(`records: ${records}, runs: ${runs}, Chromium ${browser.version?.() ?? ''}`);
  console.log(`apply ${records} synced records (frames replayed into a fresh replica, server idle): ${fmt(results.replay)}`);
  console.log(`apply ${records} synced records during the live catch-up (server busy on the same 2 cores): ${fmt(results.apply)}`);
  console.log(`catch-up wall time (subscribe → connected, incl. network and server): ${fmt(results.wall)}`);
  console.log(`persist ${records} records to IndexedDB (background): ${fmt(results.persist)}`);
  console.log(`open persisted replica + first query rendered: ${fmt(results.open)}`);
} finally {
  await server.stop();
}
