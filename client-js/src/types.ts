/** A stored document: JSON values (bytes as `{"$bytes": "<base64>"}`). */
export type Doc = Record<string, unknown>;

/** A row of a query result: the record's key as `id`, then its fields. */
export type Row<T extends Doc = Doc> = T & { id: string };

/** A sort key: a field name (`"-created"` for descending) or an object. */
export type SortKey = string | { field: string; desc?: boolean; nulls?: 'first' | 'last' };

/** A query in the JSON form of docs/queries.md (`orderBy` is accepted for `order_by`). */
export interface QuerySpec {
  where?: Record<string, unknown>;
  orderBy?: SortKey | SortKey[];
  order_by?: SortKey | SortKey[];
  limit?: number;
  offset?: number;
  after?: { values: unknown[]; key: string };
  select?: string[];
}

/** What a query is given as: the JSON form, or SQL `SELECT` text. */
export type QueryInput = QuerySpec | string;

/** Connection state, as shown to users. */
export type SyncState = 'connecting' | 'connected' | 'syncing' | 'offline' | 'error';

/** The sync status, delivered with every `status` event. */
export interface SyncStatus {
  /** `connected`: up to date with the server; `syncing`: writes or catch-up pending. */
  state: SyncState;
  /** The transport in use (`null` while offline). */
  transport: 'websocket' | 'http' | null;
  /** Local writes the server has not acknowledged yet. */
  pendingWrites: number;
  /** Error code and message when `state` is `error`. */
  code?: number;
  codeName?: string;
  message?: string;
}

/** Options of {@link Weft.open}. */
export interface OpenOptions {
  /** The server: `http(s)://host:port` (or `ws(s)://`). Omit for a local-only database. */
  url?: string;
  /** A bearer token (JWT), or a function returning a fresh one before each connection. */
  token?: string | (() => string | Promise<string>);
  /** Local database name (IndexedDB database `weft:<name>`, BroadcastChannel name). */
  name?: string;
  /** Persist the replica and unsent writes in IndexedDB (default: where available). */
  persist?: boolean;
  /** `auto` (WebSocket, falling back to HTTP polling), `websocket`, or `http`. */
  transport?: 'auto' | 'websocket' | 'http';
  /** HTTP polling interval in ms (default 1000). */
  pollIntervalMs?: number;
  /** Share changes with other tabs of this origin over BroadcastChannel (default: true). */
  shareTabs?: boolean;
}
