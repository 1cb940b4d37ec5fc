// Where the replica survives a reload: IndexedDB in browsers, nothing in Node (the
// process's memory is the replica; servers keep the durable copy).
//
// Three object stores: `records` (key `collection/key` → whole record state), `outbox`
// (write id → local change not yet acknowledged) and `meta` (`cursors`). Several tabs
// write the same database, so a stored record or cursor is merged with what is there,
// inside the same transaction, never overwritten: whatever order tabs flush in, the
// stored state only grows. An acknowledged write leaves the outbox in the same
// transaction that stores the record it changed.

/** What a flush writes. */
export interface PersistBatch {
  outboxPut: Array<[string, Uint8Array]>;
  outboxDelete: string[];
  records: Array<[string, Uint8Array | undefined]>;
  cursors: Uint8Array | undefined;
}

/** What is loaded at open. */
export interface Loaded {
  records: Uint8Array[];
  outbox: Uint8Array[];
  cursors: Uint8Array | undefined;
}

/** The merge functions of the WASM module. */
export interface Mergers {
  record(a: Uint8Array, b: Uint8Array): Uint8Array;
  cursors(a: Uint8Array, b: Uint8Array): Uint8Array;
}

/** Local storage of a replica. */
export interface Store {
  load(): Promise<Loaded>;
  write(batch: PersistBatch): Promise<void>;
  close(): void;
}

/** No persistence (Node, or `persist: false`). */
export class NoStore implements Store {
  async load(): Promise<Loaded> {
    return { records: [], outbox: [], cursors: undefined };
  }
  async write(): Promise<void> {}
  close(): void {}
}

function request<T>(req: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

/** The IndexedDB store of database `weft:<name>`. */
export class IndexedDbStore implements Store {
  private constructor(
    private readonly db: IDBDatabase,
    private readonly merge: Mergers,
  ) {}

  static async open(name: string, merge: Mergers): Promise<IndexedDbStore> {
    const req = indexedDB.open(`weft:${name}`, 1);
    req.onupgradeneeded = () => {
      const db = req.result;
      for (const store of ['records', 'outbox', 'meta']) {
        if (!db.objectStoreNames.contains(store)) db.createObjectStore(store);
      }
    };
    return new IndexedDbStore(await request(req), merge);
  }

  async load(): Promise<Loaded> {
    const tx = this.db.transaction(['records', 'outbox', 'meta'], 'readonly');
    const [records, outbox, cursors] = await Promise.all([
      request(tx.objectStore('records').getAll()),
      request(tx.objectStore('outbox').getAll()),
      request(tx.objectStore('meta').get('cursors')),
    ]);
    return { records, outbox, cursors };
  }

  write(batch: PersistBatch): Promise<void> {
    const tx = this.db.transaction(['records', 'outbox', 'meta'], 'readwrite');
    const done = new Promise<void>((resolve, reject) => {
      tx.oncomplete = () => resolve();
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error ?? new Error('IndexedDB transaction aborted'));
    });
    const outbox = tx.objectStore('outbox');
    for (const [id, bytes] of batch.outboxPut) outbox.put(bytes, id);
    for (const id of batch.outboxDelete) outbox.delete(id);
    const records = tx.objectStore('records');
    for (const [id, bytes] of batch.records) {
      if (bytes === undefined) {
        records.delete(id);
        continue;
      }
      // Read, merge, write — all inside this transaction, so no other tab interleaves.
      const existing = records.get(id);
      existing.onsuccess = () => {
        const stored = existing.result as Uint8Array | undefined;
        records.put(stored ? this.merge.record(stored, bytes) : bytes, id);
      };
    }
    if (batch.cursors) {
      const mine = batch.cursors;
      const meta = tx.objectStore('meta');
      const existing = meta.get('cursors');
      existing.onsuccess = () => {
        const stored = existing.result as Uint8Array | undefined;
        meta.put(stored ? this.merge.cursors(stored, mine) : mine, 'cursors');
      };
    }
    return done;
  }

  close(): void {
    this.db.close();
  }
}

/** Packs byte arrays as `[u32 little-endian length][bytes]...` for one call into WASM. */
export function pack(items: Uint8Array[]): Uint8Array {
  let total = 0;
  for (const item of items) total += 4 + item.byteLength;
  const out = new Uint8Array(total);
  const view = new DataView(out.buffer);
  let at = 0;
  for (const item of items) {
    view.setUint32(at, item.byteLength, true);
    out.set(item, at + 4);
    at += 4 + item.byteLength;
  }
  return out;
}
