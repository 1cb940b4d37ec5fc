// Moving frames between the replica and the server: a WebSocket session with reconnect
// and backoff, and `POST /v1/sync` polling when WebSockets do not get through (proxies,
// blocked upgrades). `auto` starts with the WebSocket and falls back to HTTP after two
// attempts that never opened; while polling it retries the WebSocket now and then.

import { httpErrorEvent, parseEvents, type ReplicaEvent } from './events.js';
import type { WeftReplica } from './wasm.js';

/** What a transport needs from the database. */
export interface TransportHost {
  readonly replica: WeftReplica;
  /** Handles the events a frame or exchange produced. */
  events(events: ReplicaEvent[]): void;
  /** The token for the next connection. */
  token(): Promise<string | undefined>;
  /** Link state changes: up (with which transport) or down (with why). */
  linkUp(transport: 'websocket' | 'http'): void;
  linkDown(reason: string): void;
}

type WsCtor = new (url: string) => WebSocket;

async function webSocketClass(): Promise<WsCtor> {
  if (typeof WebSocket !== 'undefined') return WebSocket;
  // Node 20 has no global WebSocket: use the `ws` package.
  const wsModule = 'ws';
  const ws = await import(/* @vite-ignore */ wsModule);
  return ws.WebSocket as unknown as WsCtor;
}

/** Backoff before reconnect attempt `n` (1-based): 250 ms doubling to 10 s, ±25 % jitter. */
export function backoffMs(attempt: number): number {
  const base = Math.min(10_000, 250 * 2 ** Math.max(0, attempt - 1));
  return base * (0.75 + Math.random() * 0.5);
}

/** Base URLs of a server given as http(s):// or ws(s)://. */
export function serverUrls(url: string): { http: string; ws: string } {
  const trimmed = url.replace(/\/+$/, '');
  const http = trimmed.replace(/^ws(s?):\/\//, 'http$1://');
  return { http, ws: http.replace(/^http(s?):\/\//, 'ws$1://') };
}

export class Sync {
  private ws: WebSocket | undefined;
  private mode: 'websocket' | 'http';
  private failedOpens = 0;
  private attempt = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private polling = false;
  private wake: (() => void) | undefined;
  private closed = false;
  private up = false;
  private drop: ((reason: string) => void) | undefined;
  private connecting = false;
  private readonly onOffline = () => this.drop?.('the browser went offline');
  private readonly onOnline = () => this.retryNow();

  constructor(
    private readonly host: TransportHost,
    private readonly url: { http: string; ws: string },
    private readonly choice: 'auto' | 'websocket' | 'http',
    private readonly pollIntervalMs: number,
  ) {
    this.mode = choice === 'http' ? 'http' : 'websocket';
  }

  start(): void {
    // A socket can stay "open" through a network change for a long time; the browser's
    // own offline/online signals make the status (and reconnect) immediate.
    if (typeof window !== 'undefined' && typeof window.addEventListener === 'function') {
      window.addEventListener('offline', this.onOffline);
      window.addEventListener('online', this.onOnline);
    }
    if (this.mode === 'http') void this.pollLoop();
    else void this.connect();
  }

  /** Local writes are waiting: send them now. */
  flush(): void {
    if (this.mode === 'websocket') this.pump();
    else this.wake?.();
  }

  close(): void {
    if (typeof window !== 'undefined' && typeof window.removeEventListener === 'function') {
      window.removeEventListener('offline', this.onOffline);
      window.removeEventListener('online', this.onOnline);
    }
    this.closed = true;
    clearTimeout(this.timer);
    this.wake?.();
    this.ws?.close(1000);
  }

  private pump(): void {
    const ws = this.ws;
    if (!ws || ws.readyState !== 1 || !this.host.replica) return;
    for (let frame = this.host.replica.next_frame(); frame; frame = this.host.replica.next_frame()) {
      ws.send(frame);
    }
  }

  private async connect(): Promise<void> {
    // One socket at a time: an `online` event during the awaits below must not start a second.
    if (this.closed || this.connecting || this.ws) return;
    this.connecting = true;
    let Ctor: WsCtor;
    let token: string | undefined;
    try {
      Ctor = await webSocketClass();
      token = await this.host.token();
    } catch (error) {
      this.connecting = false;
      this.lost(false, `could not start a connection: ${String(error)}`);
      return;
    }
    this.connecting = false;
    if (this.closed) return;
    let opened = false;
    let ws: WebSocket;
    try {
      ws = new Ctor(`${this.url.ws}/v1/ws`);
    } catch (error) {
      this.lost(false, String(error));
      return;
    }
    ws.binaryType = 'arraybuffer';
    this.ws = ws;
    ws.onopen = () => {
      opened = true;
      this.failedOpens = 0;
      ws.send(this.host.replica.hello(token));
    };
    ws.onmessage = (message: MessageEvent) => {
      if (!(message.data instanceof ArrayBuffer)) return;
      const events = parseEvents(this.host.replica.handle(new Uint8Array(message.data)));
      if (!this.up && events.some((event) => event.type === 'connected')) {
        // Backoff resets only once the server accepted the session: a server that
        // accepts sockets then refuses the hello is not retried every 250 ms.
        this.attempt = 0;
        this.up = true;
        this.host.linkUp('websocket');
      }
      this.host.events(events);
      this.pump();
    };
    let finished = false;
    const finish = (reason: string) => {
      if (finished) return;
      finished = true;
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      ws.close();
      // A stale socket's end must not disturb the session of a newer one.
      if (this.ws !== ws) return;
      this.ws = undefined;
      this.drop = undefined;
      this.lost(opened, reason);
    };
    this.drop = finish;
    ws.onclose = (event: CloseEvent) => finish(`WebSocket closed (${event.code}${event.reason ? `: ${event.reason}` : ''})`);
    ws.onerror = () => finish('WebSocket error');
  }

  private lost(opened: boolean, reason: string): void {
    this.host.replica.disconnected();
    if (this.up) {
      this.up = false;
    }
    this.host.linkDown(reason);
    if (this.closed) return;
    // Attempts made while the device is offline say nothing about WebSockets being blocked.
    const deviceOffline = typeof navigator !== 'undefined' && navigator.onLine === false;
    if (!opened && !deviceOffline) this.failedOpens += 1;
    if (this.choice === 'auto' && this.failedOpens >= 2) {
      this.mode = 'http';
      void this.pollLoop();
      return;
    }
    this.attempt += 1;
    this.timer = setTimeout(() => void this.connect(), backoffMs(this.attempt));
  }

  /** The network is back: reconnect now, starting again with the WebSocket. */
  private retryNow(): void {
    if (this.closed) return;
    this.attempt = 0;
    this.failedOpens = 0;
    if (this.mode === 'http') {
      if (this.choice === 'auto') this.mode = 'websocket';
      this.wake?.();
      return;
    }
    if (!this.ws) {
      clearTimeout(this.timer);
      void this.connect();
    }
  }

  /** One exchange; `undefined` when it failed, else whether to go again at once. */
  private async exchange(): Promise<boolean | undefined> {
    const token = await this.host.token();
    const body = this.host.replica.exchange_request(token);
    const headers: Record<string, string> = { 'content-type': 'application/msgpack' };
    if (token) headers.authorization = `Bearer ${token}`;
    let response: Response;
    try {
      response = await fetch(`${this.url.http}/v1/sync`, { method: 'POST', headers, body: body as Uint8Array<ArrayBuffer> });
    } catch (error) {
      // The request may or may not have reached the server: what it carried is pushed
      // again (merging is idempotent).
      this.host.replica.disconnected();
      this.up = false;
      this.host.linkDown(`HTTP sync failed: ${String(error)}`);
      return undefined;
    }
    if (!response.ok) {
      this.host.replica.disconnected();
      let message = `HTTP ${response.status}`;
      let code = 0;
      let codeName = '';
      try {
        const json = await response.json();
        message = json?.error?.message ?? message;
        code = json?.error?.code ?? 0;
        codeName = json?.error?.name ?? '';
      } catch {
        // Not JSON: keep the status line.
      }
      // A refused request ends the session as a fatal WebSocket error would; whether
      // it sticks as the `error` status depends on the code (tokens do, overload not).
      this.host.events([httpErrorEvent(code, codeName, message)]);
      this.up = false;
      this.host.linkDown(message);
      return undefined;
    }
    let events: ReplicaEvent[];
    try {
      events = parseEvents(this.host.replica.exchange_response(new Uint8Array(await response.arrayBuffer())));
    } catch (error) {
      // The body was cut or refused: what was pushed goes again next time.
      this.host.replica.disconnected();
      this.up = false;
      this.host.linkDown(`HTTP sync response refused: ${String(error)}`);
      return undefined;
    }
    if (!this.up) {
      this.up = true;
      this.host.linkUp('http');
    }
    this.host.events(events);
    // Not caught up yet (a long backlog): go again at once.
    return events.some((event) => event.type === 'changes') && !events.some((event) => event.type === 'caughtUp');
  }

  private async pollLoop(): Promise<void> {
    if (this.polling) return;
    this.polling = true;
    let rounds = 0;
    let failures = 0;
    while (!this.closed && this.mode === 'http') {
      let again: boolean | undefined = false;
      try {
        again = await this.exchange();
      } catch (error) {
        again = undefined;
        this.host.linkDown(String(error));
      }
      // Failed exchanges back off; successful ones poll at the set interval.
      failures = again === undefined ? failures + 1 : 0;
      rounds += 1;
      // While polling in `auto`, try the WebSocket again about every 30 polls.
      if (this.choice === 'auto' && rounds % 30 === 0) {
        this.mode = 'websocket';
        this.failedOpens = 0;
        break;
      }
      if (again) continue;
      const wait = failures > 0 ? backoffMs(failures) : this.pollIntervalMs;
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        this.timer = setTimeout(resolve, wait);
      });
      this.wake = undefined;
    }
    this.polling = false;
    this.up = false;
    if (!this.closed && this.mode === 'websocket') void this.connect();
  }
}
