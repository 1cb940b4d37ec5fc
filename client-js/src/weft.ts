// The database handle: one WASM replica, its local persistence, tab sharing, sync
// transport, live queries and per-write promises.

import { Collection, toQueryJson } from './collection.js';
import { WeftError } from './errors.js';
import type { ReplicaEvent } from './events.js';
import { IndexedDbStore, NoStore, pack, unpack, type Loaded, type PersistBatch, type Store } from './persistence.js';
import { Sync, serverUrls, type TransportHost } from './transport.js';
import type { Doc, OpenOptions, QueryInput, Row, SyncStatus } from './types.js';
import { WeftReplica, loadReplicaModule } from './wasm.js';

type Listener<T> = (value: T) => void;

interface Pending {
  resolve: () => void;
  reject: (error: WeftError) => void;
  promise: Promise<void>;
}

/** Loads a list in one call; if that fails, item by item, skipping (and naming) the
 * damaged ones. Returns the problems found. */
function loadEach(items: Uint8Array[], load: (packed: Uint8Array) => unknown, what: string): string[] {
  try {
    load(pack(items));
    return [];
  } catch {
    const problems: string[] = [];
    items.forEach((item, index) => {
      try {
        load(pack([item]));
      } catch (error) {
        problems.push(`${what} ${index} of ${items.length} is damaged and was skipped: ${String(error)}`);
      }
    });
    return problems;
  }
}

/** Loads what storage holds. Damaged data never stops the database from opening: a
 * damaged record or snapshot is skipped and its sync cursors dropped, so the server
 * sends every record again (merging is idempotent); a damaged unsent write is reported
 * as lost. Returns the problems found, and whether records were lost (sync again). */
function loadStored(replica: WeftReplica, loaded: Loaded): { problems: string[]; resync: boolean } {
  const problems: string[] = [];
  if (loaded.snapshot) {
    try {
      replica.load_records(loaded.snapshot);
    } catch (error) {
      problems.push(`the stored snapshot is damaged and was skipped: ${String(error)}`);
    }
  }
  problems.push(...loadEach(loaded.records, (p) => replica.load_records(p), 'stored record'));
  const recordsIntact = problems.length === 0;
  problems.push(...loadEach(loaded.outbox, (p) => replica.load_outbox(p), 'unsent write'));
  if (loaded.cursors && recordsIntact) {
    try {
      replica.import_cursors(loaded.cursors);
    } catch (error) {
      problems.push(`stored sync cursors are damaged; everything is fetched again: ${String(error)}`);
    }
  } else if (loaded.cursors) {
    problems.push('stored sync cursors dropped because stored records were damaged: everything is fetched again');
  } else if (!recordsIntact) {
    problems.push('sync cursors dropped: everything is fetched again');
  }
  return { problems, resync: !recordsIntact };
}

/** Two batches as one, the later one's entries winning. */
function mergeBatches(first: PersistBatch, later: PersistBatch): PersistBatch {
  const records = new Map(first.records);
  for (const [id, bytes] of later.records) records.set(id, bytes);
  return {
    outboxPut: [...first.outboxPut, ...later.outboxPut],
    outboxDelete: [...first.outboxDelete, ...later.outboxDelete],
    records: [...records],
    cursors: later.cursors ?? first.cursors,
  };
}

/** Wait before retrying a failed IndexedDB write. */
const PERSIST_RETRY_MS = 1000;

/** Per-record storage entries that trigger a compaction into the snapshot. */
const COMPACT_AFTER_ENTRIES = 1000;

function randomNodeId(): string {
  const bytes = new Uint8Array(8);
  crypto.getRandomValues(bytes);
  if (bytes.every((b) => b === 0)) bytes[7] = 1;
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** A local-first database: reads and writes are local; sync runs in the background. */
export class Weft implements TransportHost {
  /** Damaged stored data found while opening (skipped, never fatal; also logged). */
  openProblems: string[] = [];
  /** Where opening spent its time: WASM module, reading storage, loading the replica. */
  openTimings = { moduleMs: 0, readMs: 0, loadMs: 0, records: 0 };
  /** The WASM replica (exposed for tools and tests). */
  readonly replica: WeftReplica;
  private readonly store: Store;
  private readonly channel: BroadcastChannel | undefined;
  private readonly sync: Sync | undefined;
  private readonly collections = new Map<string, Collection>();
  private readonly subscribed = new Set<string>();
  private readonly pending = new Map<string, Pending>();
  private readonly live = new Map<number, Listener<Row[]>>();
  private readonly statusListeners = new Set<Listener<SyncStatus>>();
  private readonly errorListeners = new Set<Listener<WeftError>>();
  private readonly caughtUp = new Set<string>();
  private syncedWaiters: Array<() => void> = [];
  private readonly tokenOption: OpenOptions['token'];
  private current: SyncStatus;
  private link: 'websocket' | 'http' | null = null;
  private lastError: WeftError | undefined;
  private acked: string[] = [];
  private outboxPut: Array<[string, Uint8Array]> = [];
  private flushScheduled = false;
  private flushing: Promise<void> = Promise.resolve();
  private liveScheduled = false;
  private closed = false;
  private everDown = false;
  /** A batch whose write failed, retried with the next one. */
  private failed: PersistBatch | undefined;
  /** Per-record entries in storage (roughly: this tab's writes and what it loaded). */
  private storedEntries = 0;

  private constructor(replica: WeftReplica, store: Store, options: OpenOptions) {
    this.replica = replica;
    this.store = store;
    this.tokenOption = options.token;
    this.current = { state: options.url ? 'connecting' : 'offline', transport: null, pendingWrites: 0 };
    const name = options.name ?? 'weft';
    if ((options.shareTabs ?? true) && typeof BroadcastChannel !== 'undefined') {
      this.channel = new BroadcastChannel(`weft:${name}`);
      this.channel.onmessage = (message: MessageEvent) => this.fromTab(message.data);
      // In Node an open channel would keep the process alive.
      (this.channel as unknown as { unref?: () => void }).unref?.();
    }
    if (options.url) {
      this.sync = new Sync(this, serverUrls(options.url), options.transport ?? 'auto', options.pollIntervalMs ?? 1000);
    }
  }

  /** Opens (or creates) the local database `name`, loads what it persisted, and starts
   * syncing with `url` if given. Resolves once local data is readable. */
  static async open(options: OpenOptions = {}): Promise<Weft> {
    const t0 = performance.now();
    await loadReplicaModule();
    const t1 = performance.now();
    const replica = new WeftReplica(randomNodeId());
    const name = options.name ?? 'weft';
    const persist = (options.persist ?? true) && typeof indexedDB !== 'undefined';
    const store: Store = persist
      ? await IndexedDbStore.open(name, {
          record: (a, b) => WeftReplica.merge_stored(a, b),
          cursors: (a, b) => WeftReplica.merge_cursors(a, b),
        })
      : new NoStore();
    const loaded = await store.load();
    const t2 = performance.now();
    const { problems, resync } = loadStored(replica, loaded);
    for (const problem of problems) console.warn(`weft: ${problem}`);
    // The stored cursors would let the next session skip what was lost: forget them.
    if (resync) await store.dropCursors();
    // Loading is not a change to persist again.
    replica.take_dirty().free();
    const db = new Weft(replica, store, options);
    db.openProblems = problems;
    db.openTimings = { moduleMs: t1 - t0, readMs: t2 - t1, loadMs: performance.now() - t2, records: loaded.records.length };
    // A damaged snapshot is rewritten soon (from what loaded, plus the re-sync).
    db.storedEntries = resync ? COMPACT_AFTER_ENTRIES : loaded.records.length;
    db.current.pendingWrites = replica.pending_writes();
    db.sync?.start();
    db.maybeCompact();
    return db;
  }

  /** A collection handle. With `where`, only matching records are synced to this
   * replica (a subscription shape). */
  collection<T extends Doc = Doc>(name: string, options: { where?: Record<string, unknown> } = {}): Collection<T> {
    let collection = this.collections.get(name);
    if (!collection) {
      collection = new Collection(this, name);
      this.collections.set(name, collection);
    }
    this.ensureSubscribed(name, options.where);
    return collection as unknown as Collection<T>;
  }

  /** Runs a query over any collection: SQL text, or `{collection, ...}` JSON. */
  async query<T extends Doc = Doc>(input: QueryInput & ({ collection: string } | string)): Promise<Row<T>[]> {
    const json = await toQueryJson(input, undefined);
    return this.rows<T>(this.replica.query(json));
  }

  /** The current sync status. */
  get status(): SyncStatus {
    return { ...this.current };
  }

  /** Listens to status changes (`status`) or errors not tied to a write (`error`);
   * returns the function that stops listening. */
  on(event: 'status', listener: Listener<SyncStatus>): () => void;
  on(event: 'error', listener: Listener<WeftError>): () => void;
  on(event: 'status' | 'error', listener: Listener<SyncStatus> | Listener<WeftError>): () => void {
    const set = (event === 'status' ? this.statusListeners : this.errorListeners) as Set<unknown>;
    set.add(listener);
    return () => set.delete(listener);
  }

  /** Resolves when everything written so far is stored locally (IndexedDB). */
  async persisted(): Promise<void> {
    this.schedulePersist();
    await Promise.resolve();
    await this.flushing;
  }

  /** Resolves when the server has acknowledged every local write made so far. */
  whenSynced(): Promise<void> {
    if (this.replica.pending_writes() === 0) return Promise.resolve();
    return new Promise((resolve) => this.syncedWaiters.push(resolve));
  }

  /** Stops syncing and closes local storage (persisting what is pending first). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.sync?.close();
    await this.persisted();
    this.channel?.close();
    this.store.close();
  }

  // ----- used by Collection -------------------------------------------------------

  /** @internal */
  ensureSubscribed(name: string, where?: Record<string, unknown>): void {
    if (!this.sync || (this.subscribed.has(name) && !where)) return;
    this.subscribed.add(name);
    this.replica.subscribe(name, where ? JSON.stringify(where) : undefined);
    this.sync.flush();
  }

  /** @internal A local write was made: share, persist and send it; returns its promise. */
  wrote(id: string): Promise<void> {
    const changes = this.replica.take_local_changes();
    for (let i = 0; i < changes.length; i++) {
      const bytes = changes.bytes(i);
      const changeId = changes.id(i);
      if (!bytes || !changeId) continue;
      this.outboxPut.push([changeId, bytes]);
      this.channel?.postMessage({ type: 'change', id: changeId, bytes });
    }
    changes.free();
    let settle: Omit<Pending, 'promise'> | undefined;
    const acknowledged = new Promise<void>((resolve, reject) => {
      settle = { resolve, reject };
    });
    if (settle) this.pending.set(id, { ...settle, promise: acknowledged });
    // Handled here so an ignored rejected write does not crash Node; callers that await
    // the promise still see the rejection, and `error` listeners hear of it.
    acknowledged.catch(() => undefined);
    this.afterChange();
    this.sync?.flush();
    if (!this.sync) {
      // A local-only database has no server to acknowledge: stored locally is final.
      void this.persisted().then(() => this.settle(id));
    }
    return acknowledged;
  }

  /** @internal Reports an error not tied to a write to the `error` listeners. */
  reportError(error: unknown): void {
    this.emitError(error instanceof WeftError ? error : new WeftError(String(error)));
  }

  /** @internal */
  rows<T extends Doc>(json: string): Row<T>[] {
    const rows = JSON.parse(json) as Array<{ key: string; doc: T }>;
    return rows.map(({ key, doc }) => ({ ...doc, id: key }) as Row<T>);
  }

  /** @internal Starts a live query; calls `listener` now and on every change. */
  watch(queryJson: string, listener: Listener<Row[]>): () => void {
    const id = this.replica.watch(queryJson);
    this.live.set(id, listener);
    listener(this.rows(this.replica.live_rows(id) ?? '[]'));
    return () => {
      this.live.delete(id);
      this.replica.unwatch(id);
    };
  }

  // ----- TransportHost ------------------------------------------------------------

  /** @internal */
  async token(): Promise<string | undefined> {
    const token = this.tokenOption;
    return typeof token === 'function' ? await token() : token;
  }

  /** @internal */
  linkUp(transport: 'websocket' | 'http'): void {
    this.link = transport;
    this.lastError = undefined;
    this.updateStatus();
  }

  /** @internal */
  linkDown(reason: string): void {
    this.link = null;
    this.everDown = true;
    this.caughtUp.clear();
    if (!this.lastError) this.current.message = reason;
    this.updateStatus();
  }

  /** @internal Handles the events of a server frame or exchange. */
  events(events: ReplicaEvent[]): void {
    for (const event of events) {
      switch (event.type) {
        case 'ack':
          for (const id of event.writes) this.settle(id);
          // Other tabs stored these writes in their outbox store too: let them drop them.
          if (event.writes.length) this.channel?.postMessage({ type: 'acked', ids: event.writes });
          break;
        case 'rejected': {
          const error = new WeftError(event.message, event.code, event.codeName, event.retryable);
          for (const id of event.writes) this.settle(id, error);
          this.emitError(error);
          break;
        }
        case 'caughtUp':
          this.caughtUp.add(event.collection);
          break;
        case 'error': {
          const error = new WeftError(event.message, event.code, event.codeName, event.retryable);
          // Retryable closes (overload, shutdown, timeouts) just reconnect; others
          // (token, version) stay until a connection succeeds.
          if (event.fatal && !event.retryable) this.lastError = error;
          this.emitError(error);
          break;
        }
      }
    }
    this.afterChange();
  }

  // ----- internals ----------------------------------------------------------------

  private settle(id: string, error?: WeftError): void {
    this.acked.push(id);
    const pending = this.pending.get(id);
    if (!pending) return;
    this.pending.delete(id);
    if (error) pending.reject(error);
    else pending.resolve();
  }

  private emitError(error: WeftError): void {
    for (const listener of this.errorListeners) listener(error);
  }

  private fromTab(data: unknown): void {
    const message = data as { type?: string; id?: string; bytes?: Uint8Array; ids?: unknown };
    if (message?.type === 'acked' && Array.isArray(message.ids)) {
      // Deleted from the outbox store with this tab's next flush (and never put, if the
      // put is still pending).
      this.acked.push(...message.ids.filter((id): id is string => typeof id === 'string'));
      this.schedulePersist();
      return;
    }
    if (message?.type !== 'change' || !(message.bytes instanceof Uint8Array) || typeof message.id !== 'string') return;
    // Stored in this tab's outbox store too (same key: no duplicate), so the change
    // still reaches the server if its own tab closes before storing or sending it. Its
    // tab deletes the entry on ack; a leftover is pushed again later, harmlessly.
    this.outboxPut.push([message.id, message.bytes]);
    try {
      this.replica.apply_shared(message.bytes);
    } catch (error) {
      this.emitError(new WeftError(`change from another tab refused: ${String(error)}`));
      return;
    }
    this.afterChange();
  }

  /** Something changed: notify live queries, persist, refresh the status. */
  private afterChange(): void {
    this.scheduleLive();
    this.schedulePersist();
    this.updateStatus();
  }

  private scheduleLive(): void {
    if (this.liveScheduled) return;
    this.liveScheduled = true;
    queueMicrotask(() => {
      this.liveScheduled = false;
      for (const id of this.replica.take_live_changed()) {
        const listener = this.live.get(id);
        if (listener) listener(this.rows(this.replica.live_rows(id) ?? '[]'));
      }
    });
  }

  private schedulePersist(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    queueMicrotask(() => {
      this.flushScheduled = false;
      const batch = this.takeBatch();
      if (!batch) return;
      // A big batch (a catch-up): one snapshot is far cheaper than thousands of
      // read-merge-writes. The outbox part follows in a later transaction, as always
      // after the records it covers are stored; if the snapshot fails, the records are
      // written one by one instead.
      const big = batch.records.length >= COMPACT_AFTER_ENTRIES;
      if (big) this.storedEntries = 0;
      else this.storedEntries += batch.records.length;
      let write: PersistBatch = big ? { ...batch, records: [] } : batch;
      this.flushing = this.flushing
        .then(async () => {
          if (big) {
            try {
              await this.compactNow();
            } catch (error) {
              write = batch;
              this.emitError(new WeftError(`local storage compaction failed: ${String(error)}`));
            }
          }
          await this.store.write(write);
        })
        .catch((error) => {
          // Nothing of a failed batch is lost: it goes in front of the next one.
          this.failed = this.failed ? mergeBatches(this.failed, write) : write;
          this.emitError(new WeftError(`local persistence failed (will retry): ${String(error)}`));
          if (!this.closed) setTimeout(() => this.schedulePersist(), PERSIST_RETRY_MS);
        });
      this.maybeCompact();
    });
  }

  /** Folds per-record entries into the snapshot once there are enough of them that
   * reading them one by one would slow the next open. */
  private maybeCompact(): void {
    if (this.storedEntries < COMPACT_AFTER_ENTRIES) return;
    this.storedEntries = 0;
    this.flushing = this.flushing
      .then(() => this.compactNow())
      .catch((error) => this.emitError(new WeftError(`local storage compaction failed: ${String(error)}`)));
  }

  private compactNow(): Promise<void> {
    return this.store.compact(
      (packed) => {
        // Damaged entries are dropped by the compaction (the snapshot replaces them).
        for (const problem of loadEach(unpack(packed), (p) => this.replica.load_records(p), 'stored record')) {
          this.emitError(new WeftError(problem));
        }
        this.scheduleLive();
      },
      () => this.replica.export_records(),
    );
  }

  private takeBatch(): PersistBatch | undefined {
    const dirty = this.replica.take_dirty();
    const records: PersistBatch['records'] = [];
    for (let i = 0; i < dirty.length; i++) {
      const id = dirty.id(i);
      if (id) records.push([id, dirty.bytes(i)]);
    }
    dirty.free();
    const acked = new Set(this.acked);
    // A write acknowledged before it was ever stored needs neither put nor delete.
    const outboxPut = this.outboxPut.filter(([id]) => !acked.has(id));
    const batch: PersistBatch = {
      outboxPut,
      outboxDelete: this.acked,
      records,
      cursors: records.length > 0 ? this.replica.export_cursors() : undefined,
    };
    this.outboxPut = [];
    this.acked = [];
    const retried = this.failed ? mergeBatches(this.failed, batch) : batch;
    this.failed = undefined;
    const empty = !retried.outboxPut.length && !retried.outboxDelete.length && !retried.records.length;
    return empty ? undefined : retried;
  }

  private updateStatus(): void {
    const pendingWrites = this.replica.pending_writes();
    let next: SyncStatus;
    if (this.lastError) {
      const { code, codeName, message } = this.lastError;
      next = { state: 'error', transport: this.link, pendingWrites, code, codeName, message };
    } else if (!this.sync) {
      next = { state: 'offline', transport: null, pendingWrites };
    } else if (!this.link) {
      const state = this.everDown ? 'offline' : 'connecting';
      next = { state, transport: null, pendingWrites, message: this.current.message };
    } else {
      const behind = [...this.subscribed].some((c) => !this.caughtUp.has(c));
      next = { state: pendingWrites > 0 || behind ? 'syncing' : 'connected', transport: this.link, pendingWrites };
    }
    if (pendingWrites === 0 && this.syncedWaiters.length > 0) {
      const waiters = this.syncedWaiters;
      this.syncedWaiters = [];
      for (const resolve of waiters) resolve();
    }
    const before = this.current;
    this.current = next;
    if (before.state !== next.state || before.transport !== next.transport || before.pendingWrites !== next.pendingWrites) {
      for (const listener of this.statusListeners) listener({ ...next });
    }
  }
}
