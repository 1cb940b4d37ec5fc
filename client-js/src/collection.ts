// A collection handle: local writes (each returning a promise of the server's durable
// ack), local reads and queries, and live queries.

import { WeftError } from './errors.js';
import type { Doc, QueryInput, QuerySpec, Row } from './types.js';
import { loadSqlModule } from './wasm.js';
import type { Weft } from './weft.js';

/** Turns a query given as SQL text or as an object into the JSON form the replica runs. */
export async function toQueryJson(input: QueryInput | undefined, collection: string | undefined): Promise<string> {
  if (typeof input === 'string') {
    const sql = await loadSqlModule();
    let json: Record<string, unknown>;
    try {
      json = JSON.parse(sql.sqlToQuery(input));
    } catch (error) {
      throw new WeftError(error instanceof Error ? error.message : String(error));
    }
    if (collection && json.collection !== collection) {
      throw new WeftError(`SQL reads from ${String(json.collection)}, but this is collection ${collection}`);
    }
    return JSON.stringify(json);
  }
  return specJson(input ?? {}, collection);
}

function specJson(input: QuerySpec & { collection?: string }, collection: string | undefined): string {
  const { orderBy, order_by, ...rest } = input;
  const json: Record<string, unknown> = { ...rest, collection: collection ?? input.collection };
  const order = order_by ?? orderBy;
  if (order !== undefined) json.order_by = order;
  return JSON.stringify(json);
}

/** The records of one collection. */
export class Collection<T extends Doc = Doc> {
  /** @internal */
  constructor(
    private readonly db: Weft,
    /** The collection's name. */
    readonly name: string,
  ) {}

  private write(make: () => string): Promise<void> {
    let id: string;
    try {
      id = make();
    } catch (error) {
      // Bad input is refused before anything is written.
      const refused = Promise.reject(new WeftError(error instanceof Error ? error.message : String(error)));
      refused.catch(() => undefined);
      return refused;
    }
    return this.db.wrote(id);
  }

  /** Replaces record `id` with `doc`. Visible locally at once; the promise resolves
   * when the server has durably acknowledged the write (it may wait while offline). */
  put(id: string, doc: T): Promise<void> {
    return this.write(() => this.db.replica.put(this.name, id, JSON.stringify(doc)));
  }

  /** Sets the given top-level fields of record `id`, leaving the others. */
  update(id: string, fields: Partial<T>): Promise<void> {
    return this.write(() => this.db.replica.update(this.name, id, JSON.stringify(fields)));
  }

  /** Deletes record `id`. */
  delete(id: string): Promise<void> {
    return this.write(() => this.db.replica.delete(this.name, id));
  }

  /** Adds `by` to the counter field `field` (concurrent increments add up). */
  increment(id: string, field: string, by = 1): Promise<void> {
    return this.write(() => this.db.replica.increment(this.name, id, field, by));
  }

  /** Record `id` as stored locally, or `undefined`. */
  get(id: string): Row<T> | undefined {
    const json = this.db.replica.get(this.name, id);
    return json === undefined ? undefined : ({ ...JSON.parse(json), id } as Row<T>);
  }

  /** Runs a query on the local replica: `{where, orderBy, limit, ...}` or SQL text
   * (`SELECT ... FROM <this collection> ...`, parsed by a module loaded on first use). */
  async query(query: QueryInput = {}): Promise<Row<T>[]> {
    const json = await toQueryJson(query, this.name);
    return this.db.rows<T>(this.db.replica.query(json));
  }

  /** The current rows of an object query, synchronously (`[]` for SQL text, which
   * needs its module loaded first). */
  peek(query: QueryInput = {}): Row<T>[] {
    if (typeof query === 'string') return [];
    return this.db.rows<T>(this.db.replica.query(specJson(query, this.name)));
  }

  /** A live query: `callback` gets the rows now and again after every change that moves
   * them — local writes, synced changes and other tabs' writes alike. Returns the
   * function that stops it. */
  subscribe(query: QueryInput, callback: (rows: Row<T>[]) => void): () => void {
    let stop: (() => void) | undefined;
    let stopped = false;
    const start = (json: string) => {
      if (!stopped) stop = this.db.watch(json, callback as (rows: Row[]) => void);
    };
    if (typeof query === 'string') {
      toQueryJson(query, this.name).then(start, (error) => this.db.reportError(error));
    } else {
      start(specJson(query, this.name));
    }
    return () => {
      stopped = true;
      stop?.();
    };
  }
}
