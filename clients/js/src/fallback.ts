/**
 * What the two HTTP fallback transports share (docs/protocol.md,
 * "Transports"): a session id given by the server, commands sent by
 * `POST /send` one request at a time (what queued up meanwhile goes in the
 * next one, one command per line, retried with the same `seq` after a network
 * failure), `DELETE /session` on close, and the close code: the one of the
 * last `disconnect` push, else 1006.
 *
 * @module
 */
import type { CloseEventLike, EventHandler, MessageEventLike, Timers } from "./env.js";
import { host, utf8Length } from "./env.js";
import type { FetchLike, ResponseLike, TransportSocket } from "./transport.js";

/** A network failure of a request is retried this many times (with the same `seq` or `ack`) before the session is given up. */
export const RETRIES = 3;

/** The delay before retry n (1-based) of a failed request, in milliseconds. */
export function retryDelayMs(retry: number): number {
  return 250 * 2 ** (retry - 1);
}

interface AbortControllerLike {
  readonly signal: unknown;
  abort(): void;
}

/** A fallback session: the WebSocket-shaped side the client drives, and the sending half. */
export abstract class FallbackSocket implements TransportSocket {
  onopen: EventHandler<unknown> = null;
  onmessage: EventHandler<MessageEventLike> = null;
  onclose: EventHandler<CloseEventLike> = null;
  onerror: EventHandler<unknown> = null;

  /** The session id, once the server gave it. */
  protected session: string | undefined;
  /** Set by `close()` or when the session ended: no more callbacks, no more requests. */
  protected closed = false;
  /** Cancels the requests in flight. */
  protected readonly signal: unknown;
  private readonly controller: AbortControllerLike | undefined;
  private lastDisconnect: CloseEventLike | undefined;
  private readonly outbox: string[] = [];
  private sending = false;
  private seq = 0;
  private maxBody = Number.MAX_SAFE_INTEGER;

  /** `base` is the HTTP base (`http[s]://host/connection`). */
  protected constructor(
    protected readonly base: string,
    protected readonly fetchImpl: FetchLike,
    protected readonly timers: Timers,
  ) {
    const Controller = (host as { AbortController?: new () => AbortControllerLike }).AbortController;
    this.controller = Controller === undefined ? undefined : new Controller();
    this.signal = this.controller?.signal;
  }

  /** Queues one command; it goes out in the next POST. */
  send(data: string): void {
    if (this.closed) throw new Error("send on a closed session");
    this.outbox.push(data);
    if (!this.sending) void this.flush();
  }

  /** Ends the session: cancels the requests in flight and tells the server (`DELETE /session`). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.controller?.abort();
    this.release();
  }

  /** See {@link TransportSocket.setMaxMessageSize}. */
  setMaxMessageSize(bytes: number): void {
    this.maxBody = bytes;
  }

  /** The server gave the session id: the transport is open. */
  protected opened(session: string): void {
    if (this.closed) return;
    this.session = session;
    this.onopen?.({});
    if (this.outbox.length > 0 && !this.sending) void this.flush();
  }

  /** One server message (a JSON text). */
  protected deliver(text: string): void {
    if (this.closed) return;
    // The close code is the one of the last disconnect push (§7.6): look for one cheaply.
    if (text.includes('"disconnect"')) {
      try {
        const m = JSON.parse(text) as Record<string, unknown>;
        if (m.push === "disconnect" && typeof m.code === "number") {
          this.lastDisconnect = { code: m.code, reason: typeof m.reason === "string" ? m.reason : "" };
        }
      } catch {
        // the client reports unreadable messages
      }
    }
    this.onmessage?.({ data: text });
  }

  /** The server ended the session: close with the last disconnect push's code, else 1006. */
  protected ended(why: string): void {
    if (this.closed) return;
    this.closed = true;
    this.controller?.abort();
    this.onclose?.(this.lastDisconnect ?? { code: 1006, reason: why });
  }

  /** The session failed (network, unexpected status): an error, then close 1006. */
  protected fail(why: string): void {
    if (this.closed) return;
    this.onerror?.({ message: why });
    this.ended(why);
    this.release();
  }

  /** Tells the server the session is over (best effort: it also times out on its own). */
  private release(): void {
    const session = this.session;
    if (session === undefined) return;
    this.fetchImpl(`${this.base}/session?session=${encodeURIComponent(session)}`, { method: "DELETE" }).then(
      () => {},
      () => {},
    );
  }

  /** `fetch` that resolves with `undefined` when the session was closed meanwhile (the request was aborted). */
  protected async request(url: string, init: Parameters<FetchLike>[1]): Promise<ResponseLike | undefined> {
    const response = await this.fetchImpl(url, { ...init, signal: this.signal, cache: "no-store" });
    return this.closed ? undefined : response;
  }

  /** Waits `ms` on the client's timers. */
  protected sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.timers.setTimeout(resolve, ms));
  }

  /** Sends what is queued, one POST at a time, until the queue is empty. */
  private async flush(): Promise<void> {
    if (this.session === undefined) return; // sent once the session exists
    this.sending = true;
    try {
      while (this.outbox.length > 0 && !this.closed) {
        const count = this.batch();
        const body = this.outbox.slice(0, count).join("\n");
        this.seq += 1;
        const url = `${this.base}/send?session=${encodeURIComponent(this.session)}&seq=${this.seq}`;
        if (!(await this.post(url, body))) return;
        this.outbox.splice(0, count);
      }
    } finally {
      this.sending = false;
    }
  }

  /** How many queued commands fit in one POST (at least one: the client checked each against the limit). */
  private batch(): number {
    let size = utf8Length(this.outbox[0] as string);
    let count = 1;
    while (count < this.outbox.length) {
      const next = size + 1 + utf8Length(this.outbox[count] as string);
      if (next > this.maxBody) break;
      size = next;
      count++;
    }
    return count;
  }

  /** One POST, retried after network failures; whether it was accepted (204). */
  private async post(url: string, body: string): Promise<boolean> {
    for (let retry = 0; ; retry++) {
      let response: ResponseLike | undefined;
      try {
        response = await this.request(url, { method: "POST", headers: { "Content-Type": "text/plain" }, body });
      } catch (error) {
        if (this.closed) return false;
        if (retry >= RETRIES) {
          this.fail(`send failed: ${String(error)}`);
          return false;
        }
        await this.sleep(retryDelayMs(retry + 1));
        if (this.closed) return false;
        continue;
      }
      if (response === undefined) return false;
      if (response.status === 204 || response.ok) return true;
      this.fail(`send: HTTP ${response.status}`);
      return false;
    }
  }
}
