// The typed boundary stays typed: no source file of the package reads events by
// substring matching of their JSON, or keeps its own copy of a protocol rule (error code
// numbers or names); events are parsed once (src/events.ts) and codes are judged by what
// the Rust core says (`retryable`, the module's code table). Needs no server.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { test } from 'node:test';

import { error_codes, loadReplicaModule } from '../../dist/wasm.js';

const srcDir = new URL('../../src/', import.meta.url);

/** Comments may name codes in prose; only code counts. */
function withoutComments(text) {
  return text
    .replace(/\/\*[\s\S]*?\*\//g, (comment) => comment.replace(/[^\n]/g, ' '))
    .replace(/(^|[^:'"`\\])\/\/.*$/gm, '$1');
}

const rules = [
  // Event JSON text inside a string literal: `includes('"type":"connected"')` and kin.
  { what: 'event JSON matched as text (switch on event.type instead)', pattern: /['`][^'`\n]*"type"|\\"type\\"/ },
  // A list of code numbers: `[11, 15, 17, 18].includes(code)`, `new Set([11, 15])`.
  { what: 'a list of numbers tested for membership', pattern: /\[\s*\d+(\s*,\s*\d+)+\s*\]\s*\.\s*(includes|indexOf|some)\b|new Set\(\s*\[\s*\d+\s*,/ },
  // `code === 18`, `18 !== error.code`, `case 11:` (0, "no code", is allowed).
  { what: 'an error code compared with a number', pattern: /\bcode\s*[!=<>]=?=?\s*[1-9]\d*\b|\b[1-9]\d*\s*[!=<>]=?=?\s*[\w.?]*\bcode\b|\bcase\s+[1-9]\d*\s*:/ },
];

function problems(file, text, codeNames) {
  const found = [];
  withoutComments(text)
    .split('\n')
    .forEach((line, index) => {
      for (const { what, pattern } of rules) {
        if (pattern.test(line)) found.push(`${file}:${index + 1}: ${what}: ${line.trim()}`);
      }
      for (const name of codeNames) {
        if (new RegExp(`['"\`]${name}['"\`]`).test(line)) {
          found.push(`${file}:${index + 1}: the code name ${name} spelled out (use codeName/retryable from the core): ${line.trim()}`);
        }
      }
    });
  return found;
}

async function codeNames() {
  await loadReplicaModule();
  return JSON.parse(error_codes()).map((info) => info.codeName);
}

test('the rules catch the substring matching and the copied code list they replaced', async () => {
  const names = await codeNames();
  const old = [
    `if (!this.up && events.includes('"type":"connected"')) {`,
    `return events.includes('"type":"changes"') && !events.includes('"type":"caughtUp"');`,
    `if (event.fatal && ![11, 15, 17, 18].includes(error.code)) this.lastError = error;`,
    `const retry = new Set([11, 15]);`,
    `if (error.code === 18) reconnect();`,
    `if (event.codeName === 'Unavailable') reconnect();`,
  ];
  for (const line of old) {
    assert.notDeepEqual(problems('old.ts', line, names), [], `not caught: ${line}`);
  }
  const fine = [
    `if (events.some((event) => event.type === 'connected')) {`,
    `let code = 0;`,
    `// Retryable closes (Unavailable, RateLimited) just reconnect: see 'Forbidden'.`,
    `const url = 'http://host'; // "type":"x"`,
  ];
  for (const line of fine) {
    assert.deepEqual(problems('fine.ts', line, names), [], `flagged: ${line}`);
  }
});

test('no source file matches event JSON as text or copies error codes', async () => {
  const names = await codeNames();
  assert.ok(names.includes('Forbidden') && names.length >= 24, `code table: ${names}`);
  const files = readdirSync(srcDir).filter((name) => name.endsWith('.ts'));
  assert.ok(files.includes('events.ts') && files.length >= 8, `sources: ${files}`);
  const found = files.flatMap((file) => problems(`src/${file}`, readFileSync(new URL(file, srcDir), 'utf8'), names));
  assert.deepEqual(found, []);
});
