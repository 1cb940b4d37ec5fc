/**
 * `@weft/client`: the Weft local-first database in browsers and Node.
 *
 * ```ts
 * const db = await Weft.open({ url: 'http://localhost:8080', name: 'todo' });
 * const todos = db.collection('todos');
 * todos.put('t1', { title: 'milk', done: false }); // local at once; resolves on server ack
 * todos.subscribe({ where: { eq: { done: false } }, orderBy: 'title' }, (rows) => render(rows));
 * ```
 */
export { Weft } from './weft.js';
export { Collection } from './collection.js';
export { WeftError } from './errors.js';
export { backoffMs, serverUrls } from './transport.js';
export type {
  AckEvent,
  CaughtUpEvent,
  ChangesEvent,
  CodedEvent,
  ConnectedEvent,
  OtherEvent,
  QueryResultEvent,
  ReconciledEvent,
  RejectedEvent,
  RemovedEvent,
  ReplicaEvent,
  ServerErrorEvent,
} from './events.js';
export type { Doc, OpenOptions, QueryInput, QuerySpec, Row, SortKey, SyncState, SyncStatus } from './types.js';
