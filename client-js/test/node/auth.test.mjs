// @weft/client against a server with JWT auth and row rules: a refused write rejects its
// promise with the server's code, a bad token shows as an `error` status with its code,
// a token function is called for each connection.
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { after, before, test } from 'node:test';

import { Weft, WeftError } from '../../dist/index.js';
import { eventually, startServer } from '../support/server.mjs';

const secret = 'client-js-test-secret-0123456789';
const b64 = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');

function token(claims) {
  const body = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({ exp: Math.floor(Date.now() / 1000) + 600, ...claims })}`;
  return `${body}.${createHmac('sha256', secret).update(body).digest('base64url')}`;
}

let server;
before(async () => {
  server = await startServer({
    dev: false,
    config: `[auth]
hs256_secret = "${secret}"

[collections.todos]
read = [{ role = "user", when = "owner == auth.sub" }]
write = [{ role = "user", when = "owner == auth.sub" }]
delete = [{ role = "user", when = "owner == auth.sub" }]
`,
  });
});
after(async () => {
  await server?.stop();
});

test('a write the rules refuse rejects its promise with Forbidden; allowed writes resolve', async (t) => {
  let calls = 0;
  const db = await Weft.open({ url: server.url, name: 'alice', token: () => (calls++, token({ sub: 'alice', roles: ['user'] })) });
  t.after(() => db.close());
  const errors = [];
  db.on('error', (e) => errors.push(e));
  const todos = db.collection('todos');
  await todos.put('mine', { title: 'mine', owner: 'alice' });
  await assert.rejects(todos.put('theirs', { title: 'not mine', owner: 'bob' }), (e) => {
    assert.ok(e instanceof WeftError);
    assert.equal(e.codeName, 'Forbidden');
    assert.equal(e.code, 9);
    assert.equal(e.retryable, false);
    return true;
  });
  assert.ok(errors.some((e) => e.codeName === 'Forbidden'), 'error listeners hear of the refusal');
  assert.ok(calls >= 1, 'the token function was called');
  // The refused write stays local only: the server never had it.
  const response = await fetch(`${server.url}/v1/collections/todos/records/theirs`, {
    headers: { authorization: `Bearer ${token({ sub: 'bob', roles: ['user'] })}` },
  });
  assert.equal(response.status, 404);
});

test('a bad token shows as an error status naming the code, on both transports', async (t) => {
  for (const transport of ['websocket', 'http']) {
    const db = await Weft.open({ url: server.url, name: `bad-${transport}`, token: 'not.a.jwt', transport });
    t.after(() => db.close());
    db.collection('todos');
    const status = await eventually(() => (db.status.state === 'error' ? db.status : undefined), 5000, `${transport} error status`);
    assert.equal(status.codeName, 'TokenInvalid', JSON.stringify(status));
    assert.equal(status.code, 20);
    await db.close();
  }
});
