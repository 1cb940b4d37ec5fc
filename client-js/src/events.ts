// The replica's events as typed objects: the JSON array `handle` and `exchange_response`
// return is parsed here, once, and everything else switches on `event.type`. The shapes
// mirror wasm/src/events.rs. Protocol rules (which codes are retryable, what they are
// called) come from the Rust core through the module, never from lists kept here.

import type { Doc } from './types.js';
import { error_codes } from './wasm.js';

/** What every event with a protocol error code carries. */
export interface CodedEvent {
  /** The protocol error code (docs/protocol.md). */
  code: number;
  /** The code's name, e.g. `Forbidden`, `TokenExpired`. */
  codeName: string;
  /** Whether sending the same thing again later can succeed (the core's rule). */
  retryable: boolean;
  /** The server's explanation. */
  message: string;
}

/** The server accepted the hello. */
export interface ConnectedEvent {
  type: 'connected';
  /** The server node, in hex. */
  node: string;
}

/** A batch of local writes is durable on the server. */
export interface AckEvent {
  type: 'ack';
  /** Number of changes in the batch. */
  count: number;
  /** The write ids it covers. */
  writes: string[];
}

/** The server refused a batch for good (retryable refusals are resent, not reported). */
export interface RejectedEvent extends CodedEvent {
  type: 'rejected';
  /** The write ids refused. */
  writes: string[];
}

/** Records of a collection changed because of remote changes. */
export interface ChangesEvent {
  type: 'changes';
  collection: string;
  /** How many records changed (the keys stay inside the module). */
  count: number;
}

/** Records left a subscription's view; their local copies were dropped. */
export interface RemovedEvent {
  type: 'removed';
  collection: string;
  keys: string[];
}

/** A subscription finished catching up. */
export interface CaughtUpEvent {
  type: 'caughtUp';
  collection: string;
}

/** A merkle reconciliation of a collection finished. */
export interface ReconciledEvent {
  type: 'reconciled';
  collection: string;
}

/** The answer to a one-shot server query. */
export interface QueryResultEvent {
  type: 'queryResult';
  requestId: number;
  rows: Doc[];
  /** Where the next page starts (JSON text), or `null` on the last page. */
  next: string | null;
}

/** An error not tied to a batch; `fatal`: the connection ends with it. */
export interface ServerErrorEvent extends CodedEvent {
  type: 'error';
  fatal: boolean;
}

/** An event of a newer core this package does not know yet, by its Rust debug text. */
export interface OtherEvent {
  type: 'other';
  debug: string;
}

/** Every event the replica produces, told apart by `type`. */
export type ReplicaEvent =
  | ConnectedEvent
  | AckEvent
  | RejectedEvent
  | ChangesEvent
  | RemovedEvent
  | CaughtUpEvent
  | ReconciledEvent
  | QueryResultEvent
  | ServerErrorEvent
  | OtherEvent;

/** Reads the events JSON a replica call returned. */
export function parseEvents(json: string): ReplicaEvent[] {
  return JSON.parse(json) as ReplicaEvent[];
}

/** A known error code as the core describes it. */
export interface ErrorCodeInfo {
  code: number;
  codeName: string;
  retryable: boolean;
}

let codeTable: Map<number, ErrorCodeInfo> | undefined;

/** What the core says of `code`, or `undefined` for a code it does not know. Needs the
 * replica module loaded (it is, once a database is open). */
export function errorCodeInfo(code: number): ErrorCodeInfo | undefined {
  codeTable ??= new Map((JSON.parse(error_codes()) as ErrorCodeInfo[]).map((info) => [info.code, info]));
  return codeTable.get(code);
}

/** The `error` event for a refusal that arrived as an HTTP error body rather than a
 * frame: named and judged by the core's table (an unknown code is not retryable). */
export function httpErrorEvent(code: number, codeName: string, message: string): ServerErrorEvent {
  const known = errorCodeInfo(code);
  return {
    type: 'error',
    code,
    codeName: known?.codeName ?? codeName,
    retryable: known?.retryable ?? false,
    message,
    fatal: true,
  };
}
