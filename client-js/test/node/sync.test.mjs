// @weft/client in Node 20 against a real `weft serve`: convergence, acks, live queries,
// the HTTP transport, SQL, rejected writes, reconnect.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { Weft, WeftError } from '../../dist/index.js';
import { eventually, startServer } from '../support/server.mjs';

let server;
before(async () => {
  server = await startServer();
});
after(async () => {
  await server?.stop();
});

test('two clients converge over WebSockets and writes resolve on the durable ack', async () => {
  const a = await Weft.open({ url: server.url, name: 'a' });
  const b = await Weft.open({ url: server.url, name: 'b' });
  const todosA = a.collection('todos');
  const todosB = b.collection('todos');
  const ack = todosA.put('t1', { title: 'milk', done: false });
  // Local first: readable before any round trip.
  assert.equal(todosA.get('t1')?.title, 'milk');
  await ack;
  await todosB.update('t1', { done: true });
  await eventually(() => todosA.get('t1')?.done === true, 5000, 'b’s update at a');
  await eventually(() => todosB.get('t1')?.title === 'milk', 5000, 'a’s put at b');
  assert.deepEqual(todosA.get('t1'), todosB.get('t1'));
  // The server has it too.
  const stored = await (await fetch(`${server.url}/v1/collections/todos/records/t1`)).json();
  assert.equal(JSON.stringify(stored).includes('milk'), true);
  assert.equal(a.status.state, 'connected');
  assert.equal(a.status.transport, 'websocket');
  await a.close();
  await b.close();
});

test('live queries see local and synced changes; SQL text works where a query does', async () => {
  const a = await Weft.open({ url: server.url, name: 'live-a' });
  const b = await Weft.open({ url: server.url, name: 'live-b' });
  const seen = [];
  const stop = a.collection('tasks').subscribe({ where: { eq: { done: false } }, orderBy: 'title' }, (rows) => {
    seen.push(rows.map((r) => r.title));
  });
  await a.collection('tasks').put('x', { title: 'b-local', done: false });
  await b.collection('tasks').put('y', { title: 'a-remote', done: false });
  await eventually(() => JSON.stringify(seen.at(-1)) === JSON.stringify(['a-remote', 'b-local']), 5000, 'live rows');
  await b.collection('tasks').update('y', { done: true });
  await eventually(() => JSON.stringify(seen.at(-1)) === JSON.stringify(['b-local']), 5000, 'row leaving the query');
  stop();
  const rows = await a.collection('tasks').query("SELECT title FROM tasks WHERE title LIKE 'b%' ORDER BY title");
  assert.deepEqual(rows, [{ id: 'x', title: 'b-local' }]);
  await assert.rejects(a.collection('tasks').query('SELECT * FROM other'), /this is collection tasks/);
  await assert.rejects(a.collection('tasks').query('SELECT COUNT(*) FROM tasks'), /aggregates/);
  await a.close();
  await b.close();
});

test('the HTTP transport syncs both ways and acknowledges writes', async () => {
  const ws = await Weft.open({ url: server.url, name: 'ws' });
  const http = await Weft.open({ url: server.url, name: 'http', transport: 'http', pollIntervalMs: 100 });
  const notes = http.collection('notes');
  await notes.put('n1', { text: 'over http' });
  assert.equal(http.status.transport, 'http');
  const wsNotes = ws.collection('notes');
  await eventually(() => wsNotes.get('n1')?.text === 'over http', 5000, 'http write at ws client');
  await wsNotes.put('n2', { text: 'over ws' });
  await eventually(() => notes.get('n2')?.text === 'over ws', 5000, 'ws write at http client');
  await ws.close();
  await http.close();
});

test('bad input is refused with a message naming it, and nothing is written', async (t) => {
  const db = await Weft.open({ url: server.url, name: 'bad' });
  t.after(() => db.close());
  const c = db.collection('things');
  await assert.rejects(c.put('', { a: 1 }), (e) => e instanceof WeftError && /key/i.test(e.message));
  await assert.rejects(c.put('k', { '': 1 }), /field name/i);
  await assert.rejects(c.put('k', 'not an object'), /expected an object/);
  await assert.rejects(c.increment('k', 'n', 1.5), /whole number/);
  await assert.rejects(c.query({ where: { nope: {} } }), /unknown operator/);
  assert.equal(db.status.pendingWrites, 0);
  await db.close();
});

test('writes made while the server is down are sent when it comes back', async () => {
  const own = await startServer();
  const db = await Weft.open({ url: own.url, name: 'offline' });
  const errors = [];
  db.on('error', (e) => errors.push(e));
  const c = db.collection('todos');
  await c.put('before', { n: 1 });
  await own.stop({ keepData: true });
  await eventually(() => db.status.state === 'offline', 5000, 'offline status');
  // The server said goodbye with a retryable code: the status is offline, not error.
  const goodbye = errors.find((e) => e.codeName === 'Unavailable');
  assert.ok(goodbye?.retryable, `errors heard: ${errors.map((e) => `${e.codeName} ${e.retryable}`)}`);
  const later = c.put('during', { n: 2 });
  assert.equal(c.get('during')?.n, 2);
  assert.equal(db.status.pendingWrites, 1);
  const again = await startServer({ dataDir: own.dataDir, port: own.port });
  await later; // resolves once the reconnected session acknowledged it
  const record = await (await fetch(`${again.url}/v1/collections/todos/records/during`)).json();
  assert.equal(JSON.stringify(record).includes('"n":2'), true);
  await db.close();
  await again.stop();
});
