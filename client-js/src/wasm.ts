// Loads the WASM modules: the replica (always) and the SQL translator (on first use).
// Browsers fetch the .wasm next to the glue; Node reads it from disk.
import initReplica, { WeftReplica, EncodedList, error_codes } from '../wasm/weft_wasm.js';

export { WeftReplica, EncodedList, error_codes };

const isNode = typeof process !== 'undefined' && !!process.versions?.node && typeof window === 'undefined';

// Callers spell `new URL('<literal>', import.meta.url)` so bundlers (Vite, webpack) see
// the .wasm files and ship them.
async function source(url: URL): Promise<URL | Uint8Array> {
  if (!isNode) return url;
  // A variable specifier keeps bundlers from pulling a Node built-in into browser code.
  const fsModule = 'node:fs/promises';
  const fs = await import(/* @vite-ignore */ fsModule);
  return new Uint8Array(await fs.readFile(url));
}

let replicaReady: Promise<unknown> | undefined;

/** Loads the replica module once per page or process. */
export function loadReplicaModule(): Promise<unknown> {
  replicaReady ??= source(new URL('../wasm/weft_wasm_bg.wasm', import.meta.url)).then((module_or_path) => initReplica({ module_or_path }));
  return replicaReady;
}

type SqlModule = { sqlToQuery(sql: string): string };
let sqlReady: Promise<SqlModule> | undefined;

/** Loads the SQL module (≈ 0.5 MB gzipped) the first time SQL text is used. */
export function loadSqlModule(): Promise<SqlModule> {
  sqlReady ??= (async () => {
    const glue = await import('../wasm/weft_sql.js');
    await glue.default({ module_or_path: await source(new URL('../wasm/weft_sql_bg.wasm', import.meta.url)) });
    return glue as unknown as SqlModule;
  })();
  return sqlReady;
}
