/**
 * What the SDK needs from its host (browser or Node 20), typed here so that
 * the SDK compiles without the DOM or Node type libraries and so that tests
 * can inject every piece.
 *
 * @module
 */

/** A timer handle, as returned by `setTimeout`. */
export type TimerHandle = unknown;

/** The timer functions the SDK uses; inject fakes in tests. */
export interface Timers {
  /** Calls `fn` after `ms` milliseconds. */
  setTimeout(fn: () => void, ms: number): TimerHandle;
  /** Cancels a timer from `setTimeout`. */
  clearTimeout(handle: TimerHandle): void;
}

/** The close event the SDK reads. */
export interface CloseEventLike {
  code: number;
  reason: string;
}

/** The message event the SDK reads. */
export interface MessageEventLike {
  data: unknown;
}

/**
 * An event handler property of {@link WebSocketLike}: the SDK assigns it, the
 * socket calls it with its own event object (the DOM's `MessageEvent`, the `ws`
 * package's `WebSocket.MessageEvent`, ...), which carries at least what `E`
 * describes. It is declared through a method so that TypeScript compares its
 * parameter bivariantly: a socket whose handler property names a richer event
 * type (every real one does) is accepted, without a cast.
 */
export type EventHandler<E> = { handle(event: E): void }["handle"] | null;

/** The subset of the WHATWG `WebSocket` the SDK uses. */
export interface WebSocketLike {
  /** Sends a text message. */
  send(data: string): void;
  /** Starts the closing handshake. */
  close(code?: number, reason?: string): void;
  /** Negotiated subprotocol. */
  readonly protocol?: string;
  /** Set by the SDK: the handshake succeeded. */
  onopen: EventHandler<unknown>;
  /** Set by the SDK: a message arrived. */
  onmessage: EventHandler<MessageEventLike>;
  /** Set by the SDK: the connection closed. */
  onclose: EventHandler<CloseEventLike>;
  /** Set by the SDK: the connection failed. */
  onerror: EventHandler<unknown>;
}

/**
 * A `WebSocket` constructor: the browser's, Node 22's global, the `ws`
 * package's (Node 20), or a test fake. Each of these type-checks as it is.
 */
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

interface HostGlobals {
  setTimeout?: (fn: () => void, ms: number) => TimerHandle;
  clearTimeout?: (handle: TimerHandle) => void;
  WebSocket?: WebSocketConstructor;
  TextEncoder?: new () => { encode(s: string): Uint8Array };
  performance?: { now(): number };
  atob?: (s: string) => string;
  queueMicrotask?: (fn: () => void) => void;
  location?: { protocol: string; host: string };
  addEventListener?: (type: string, listener: () => void) => void;
  removeEventListener?: (type: string, listener: () => void) => void;
}

/** The host's globals, typed. */
export const host = globalThis as unknown as HostGlobals;

/** Timers that call the host's `setTimeout` at call time (so fake timers installed later still apply). */
export const hostTimers: Timers = {
  setTimeout: (fn, ms) => (host.setTimeout as (fn: () => void, ms: number) => TimerHandle)(fn, ms),
  clearTimeout: (handle) => (host.clearTimeout as (handle: TimerHandle) => void)(handle),
};

/** A monotonic clock in milliseconds when the host has one, else the wall clock. */
export function hostNow(): number {
  return host.performance !== undefined ? host.performance.now() : Date.now();
}

let encoder: { encode(s: string): Uint8Array } | undefined;

/** The UTF-8 length of `text` in bytes. */
export function utf8Length(text: string): number {
  if (host.TextEncoder !== undefined) {
    encoder ??= new host.TextEncoder();
    return encoder.encode(text).length;
  }
  let bytes = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) bytes += 1;
    else if (c < 0x800) bytes += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
      bytes += 4;
      i++;
    } else bytes += 3;
  }
  return bytes;
}

/** The `exp` claim of a JWT in milliseconds since the epoch, or `undefined` when absent or unreadable. */
export function jwtExpiryMs(token: string): number | undefined {
  const payload = token.split(".")[1];
  if (payload === undefined || host.atob === undefined) return undefined;
  try {
    const base64 = payload.replace(/-/g, "+").replace(/_/g, "/");
    const claims: unknown = JSON.parse(host.atob(base64 + "=".repeat((4 - (base64.length % 4)) % 4)));
    if (typeof claims === "object" && claims !== null && typeof (claims as { exp?: unknown }).exp === "number") {
      return (claims as { exp: number }).exp * 1000;
    }
  } catch {
    return undefined;
  }
  return undefined;
}

/** Rethrows `error` outside the caller's stack, where the host reports it as uncaught. */
export function reportLater(error: unknown): void {
  const raise = (): void => {
    throw error;
  };
  if (host.queueMicrotask !== undefined) host.queueMicrotask(raise);
  else if (host.setTimeout !== undefined) host.setTimeout(raise, 0);
}
