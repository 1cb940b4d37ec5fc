// Where the replica survives a reload: IndexedDB in browsers, nothing in Node (the
// process's memory is the replica; servers keep the durable copy).
//
// Three object stores: `records` (key `collection/key` → whole record state, or a
// marker that the record left this replica's view), `outbox` (write id → local change
// not yet acknowledged) and `meta` (`cursors`, and `snapshot`: every record packed in
// one value). Several tabs write the same database, so a stored record or cursor is
// merged with what is there, inside the same transaction, never overwritten: whatever
// order tabs flush in, the stored state only grows. An acknowledged write leaves the
// outbox in a transaction after the one that stored the record it changed.
//
// Reading thousands of small values is what makes opening slow (≈ 10 µs each in
// Chromium), so `records` is compacted into `snapshot` once it holds enough entries:
// in one transaction every entry is merged into the replica, the replica's whole state
// becomes the new snapshot, and the entries are cleared. Entries written by other tabs
// are merged first, so nothing stored is dropped.

/** What a flush writes. */
export interface PersistBatch {
  outboxPut: Array<[string, Uint8Array]>;
  outboxDelete: string[];
  records: Array<[string, Uint8Array | undefined]>;
  cursors: Uint8Array | undefined;
}

/** What is loaded at open. */
export interface Loaded {
  snapshot: Uint8Array | undefined;
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
  /** Folds per-record entries into the snapshot: `absorb` merges them into the replica
   * (synchronously), `exportAll` returns the replica's whole packed state. */
  compact(absorb: (packed: Uint8Array) => void, exportAll: () => Uint8Array): Promise<void>;
  /** Forgets the stored sync cursors (stored records were damaged: sync from scratch). */
  dropCursors(): Promise<void>;
  close(): void;
}

/** No persistence (Node, or `persist: false`). */
export class NoStore implements Store {
  async load(): Promise<Loaded> {
    return { snapshot: undefined, records: [], outbox: [], cursors: undefined };
  }
  async write(): Promise<void> {}
  async compact(): Promise<void> {}
  async dropCursors(): Promise<void> {}
  close(): void {}
}

/** Merges a stored value with this tab's; a damaged stored value is replaced (throwing
 * here would abort the transaction, and every later one touching the same key). */
function mergeOrMine(merge: (a: Uint8Array, b: Uint8Array) => Uint8Array, stored: Uint8Array, mine: Uint8Array) {
  try {
    return merge(stored, mine);
  } catch {
    return mine;
  }
}

function completion(tx: IDBTransaction): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error ?? new Error('IndexedDB transaction aborted'));
  });
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
    const [snapshot, records, outbox, cursors] = await Promise.all([
      request(tx.objectStore('meta').get('snapshot')),
      request(tx.objectStore('records').getAll()),
      request(tx.objectStore('outbox').getAll()),
      request(tx.objectStore('meta').get('cursors')),
    ]);
    return { snapshot, records, outbox, cursors };
  }

  dropCursors(): Promise<void> {
    const tx = this.db.transaction(['meta'], 'readwrite');
    tx.objectStore('meta').delete('cursors');
    return completion(tx);
  }

  compact(absorb: (packed: Uint8Array) => void, exportAll: () => Uint8Array): Promise<void> {
    const tx = this.db.transaction(['records', 'meta'], 'readwrite');
    const done = completion(tx);
    const records = tx.objectStore('records');
    const entries = records.getAll();
    entries.onsuccess = () => {
      // Synchronous from here to the writes: the transaction stays open and no other
      // tab's write can land between reading the entries and clearing them.
      absorb(pack(entries.result as Uint8Array[]));
      tx.objectStore('meta').put(exportAll(), 'snapshot');
      records.clear();
    };
    return done;
  }

  write(batch: PersistBatch): Promise<void> {
    const tx = this.db.transaction(['records', 'outbox', 'meta'], 'readwrite');
    const done = completion(tx);
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
      // (The snapshot needs no merge: loading merges it with the entries.)
      const existing = records.get(id);
      existing.onsuccess = () => {
        const stored = existing.result as Uint8Array | undefined;
        records.put(stored ? mergeOrMine(this.merge.record, stored, bytes) : bytes, id);
      };
    }
    if (batch.cursors) {
      const mine = batch.cursors;
      const meta = tx.objectStore('meta');
      const existing = meta.get('cursors');
      existing.onsuccess = () => {
        const stored = existing.result as Uint8Array | undefined;
        meta.put(stored ? mergeOrMine(this.merge.cursors, stored, mine) : mine, 'cursors');
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

/** Splits a packed list back into its items (the inverse of {@link pack}). */
export function unpack(packed: Uint8Array): Uint8Array[] {
  const items: Uint8Array[] = [];
  const view = new DataView(packed.buffer, packed.byteOffset, packed.byteLength);
  for (let at = 0; at + 4 <= packed.byteLength; ) {
    const length = view.getUint32(at, true);
    items.push(packed.subarray(at + 4, at + 4 + length));
    at += 4 + length;
  }
  return items;
}
