// React bindings: a context for the database, `useQuery` for live query results and
// `useSyncStatus` for the status line. React is an optional peer dependency.

import { createContext, createElement, useContext, useEffect, useMemo, useState, type ReactNode } from 'react';

import type { QueryInput, Row, Doc, SyncStatus } from './types.js';
import type { Weft } from './weft.js';

const WeftContext = createContext<Weft | null>(null);

/** Makes `db` available to `useWeft`, `useQuery` and `useSyncStatus` below it. */
export function WeftProvider(props: { db: Weft; children?: ReactNode }) {
  return createElement(WeftContext.Provider, { value: props.db }, props.children);
}

/** The database of the nearest `WeftProvider`. */
export function useWeft(): Weft {
  const db = useContext(WeftContext);
  if (!db) throw new Error('useWeft: no <WeftProvider db={...}> above this component');
  return db;
}

/** The live result of a query on `collection`; re-renders when it changes. The query
 * is compared by value, so an inline object literal does not restart it. */
export function useQuery<T extends Doc = Doc>(collection: string, query: QueryInput = {}): Row<T>[] {
  const db = useWeft();
  const key = typeof query === 'string' ? query : JSON.stringify(query);
  // The first render already shows local data (object queries run synchronously), so
  // a mounted list does not flash its empty state.
  const [rows, setRows] = useState<Row<T>[]>(() => db.collection<T>(collection).peek(query));
  // Keyed on the query's text, not its identity: `key` stands for `query`.
  const stableQuery = useMemo(() => query, [key]);
  useEffect(() => db.collection<T>(collection).subscribe(stableQuery, setRows), [db, collection, stableQuery]);
  return rows;
}

/** The sync status; re-renders when it changes. */
export function useSyncStatus(): SyncStatus {
  const db = useWeft();
  const [status, setStatus] = useState<SyncStatus>(db.status);
  useEffect(() => {
    setStatus(db.status);
    return db.on('status', setStatus);
  }, [db]);
  return status;
}
