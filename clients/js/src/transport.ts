/**
 * The transports a {@link Client} can carry `volley.v1` over, and what they
 * share: the names, the socket shape the client drives (the WebSocket's), the
 * HTTP base URL of the fallbacks and the `fetch` they use (docs/protocol.md,
 * "Transports").
 *
 * @module
 */
import type { WebSocketLike } from "./env.js";

/** A transport: a WebSocket, Server-Sent Events with commands by POST, or long-polling with commands by POST. */
export type TransportName = "websocket" | "sse" | "long-poll";

/** Every transport, in the default order of trial. */
export const TRANSPORTS: readonly TransportName[] = ["websocket", "sse", "long-poll"];

/**
 * What the client drives: a WebSocket, or a fallback session that behaves
 * like one (`onopen` once the session exists, one `onmessage` per server
 * message, one `onclose` when it ends, `send` one command).
 */
export interface TransportSocket extends WebSocketLike {
  /** The server's `max_message_size`, once known: a POST carrying several commands stays within it. */
  setMaxMessageSize?(bytes: number): void;
}

/** The response fields the fallbacks read (a subset of the WHATWG `Response`). */
export interface ResponseLike {
  /** Status 200–299. */
  readonly ok: boolean;
  /** The HTTP status. */
  readonly status: number;
  /** The body as a stream (read by the SSE transport). */
  readonly body: {
    getReader(): {
      read(): Promise<{ done: boolean; value?: Uint8Array }>;
      cancel(reason?: unknown): Promise<void>;
    };
  } | null;
  /** The whole body as text. */
  text(): Promise<string>;
}

/**
 * The request options the fallbacks pass to `fetch`: `headers` a record of
 * strings, `body` a string, `signal` an `AbortSignal`, `cache` `"no-store"`.
 * Typed loosely so that the DOM's `RequestInit` fits.
 */
export interface RequestInitLike {
  method?: string;
  headers?: unknown;
  body?: unknown;
  signal?: unknown;
  cache?: string;
}

/**
 * A `fetch` function: the host's (browsers, Node 18+) or a test fake. Declared
 * through a method so that the DOM's `fetch` type-checks as it is.
 */
export type FetchLike = { fetch(url: string, init?: RequestInitLike): Promise<ResponseLike> }["fetch"];

/**
 * The HTTP base of the fallback endpoints for the WebSocket URL `url`: the
 * scheme `ws`/`wss` becomes `http`/`https` and the last path segment
 * (`websocket`) is dropped, so `wss://h/connection/websocket` gives
 * `https://h/connection` (then `/sse`, `/poll`, `/send`, `/session`).
 */
export function httpBase(url: string): string {
  const match = /^(wss?|https?):\/\/([^/?#]*)([^?#]*)/i.exec(url);
  if (match === null) throw new TypeError(`volley: cannot derive an HTTP URL from ${JSON.stringify(url)}`);
  const scheme = (match[1] as string).toLowerCase();
  const http = scheme === "wss" || scheme === "https" ? "https" : "http";
  const path = (match[3] as string).replace(/\/[^/]*$/, "");
  return `${http}://${match[2] as string}${path}`;
}

/** Checks a `transports` option: a non-empty list of known names without repeats. */
export function checkTransports(list: readonly string[]): TransportName[] {
  if (list.length === 0) throw new TypeError("volley: the transports option is empty");
  const seen = new Set<string>();
  for (const name of list) {
    if (!(TRANSPORTS as readonly string[]).includes(name)) {
      throw new TypeError(`volley: unknown transport ${JSON.stringify(name)} (use ${TRANSPORTS.join(", ")})`);
    }
    if (seen.has(name)) throw new TypeError(`volley: transport ${JSON.stringify(name)} is listed twice`);
    seen.add(name);
  }
  return [...list] as TransportName[];
}
