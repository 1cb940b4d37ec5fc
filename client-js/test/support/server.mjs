// Starts a real `weft serve` for a test: a fresh data directory, a free port, and waits
// for /health/ready. The binary comes from WEFT_BIN (scripts/test.sh sets it).
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';

export const weftBin = process.env.WEFT_BIN ?? join(homedir(), '.cache/weft/target/debug/weft');

export async function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/**
 * Starts a server. Options: `config` (TOML text), `staticDir`, `dev` (default true),
 * `dataDir` (reuse one, e.g. after a restart), `port`.
 */
export async function startServer(options = {}) {
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), 'weft-js-'));
  const port = options.port ?? (await freePort());
  const args = ['serve', '--data-dir', dataDir, '--listen', `127.0.0.1:${port}`];
  if (options.dev ?? true) args.push('--dev');
  if (options.staticDir) args.push('--static-dir', options.staticDir);
  if (options.config) {
    const path = join(dataDir, '..', `weft-js-${port}.toml`);
    writeFileSync(path, options.config);
    args.push('--config', path);
  }
  const child = spawn(weftBin, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, RUST_LOG: 'warn' } });
  let output = '';
  child.stdout.on('data', (d) => (output += d));
  child.stderr.on('data', (d) => (output += d));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`weft serve exited (${child.exitCode}):\n${output}`);
    try {
      const response = await fetch(`${url}/health/ready`);
      if (response.ok) break;
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline) throw new Error(`weft serve not ready after 20 s:\n${output}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    url,
    port,
    dataDir,
    output: () => output,
    async stop({ keepData = false } = {}) {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
      if (!keepData) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Polls `check` until it returns a truthy value or `ms` pass. */
export async function eventually(check, ms = 5000, what = 'condition') {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
