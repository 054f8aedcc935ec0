/**
 * The `volley.v1` wire protocol: message shapes, constants and the close-code
 * rule, as specified in docs/protocol.md (§17 is the source of these types).
 *
 * @module
 */

/** Any JSON value. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** The WebSocket subprotocol this SDK speaks. */
export const SUBPROTOCOL = "volley.v1";

/** The hub's WebSocket path. */
export const PATH = "/connection/websocket";

/** One connection's presence in a channel (§4.1). */
export interface ClientInfo {
  /** The connection's client id. */
  client: string;
  /** The user id (`""` for an anonymous connection). */
  user: string;
  /** The `info` claim of the connection token. */
  conn_info?: Json;
  /** The `info` claim of the subscription token. */
  chan_info?: Json;
}

/** One message of a channel (§4.2). */
export interface Publication {
  /** Position in the channel's stream; present when the channel keeps history. */
  offset?: number;
  /** The payload, exactly as published. */
  data: Json;
  /** The publisher, when a client published it. */
  info?: ClientInfo;
}

/** A position in a channel's stream (§4.3). */
export interface StreamPosition {
  /** Identifies one unbroken stream; compare for equality only. */
  epoch: string;
  /** Offset of a publication in that stream; 0 is "before the first". */
  offset: number;
}

/** The result of `connect` (§6.1). */
export interface ConnectResult {
  client: string;
  user: string;
  version: string;
  ping_interval_ms: number;
  pong_timeout_ms: number;
  max_message_size: number;
  expires_in_ms?: number;
}

/** The result of `refresh` (§6.2). */
export interface RefreshResult {
  expires_in_ms?: number;
}

/** The result of `subscribe` (§6.3). */
export interface SubscribeResult {
  recoverable: boolean;
  epoch?: string;
  offset?: number;
  recovered: boolean;
  publications: Publication[];
  join_leave: boolean;
  presence?: ClientInfo[];
}

/** The result of `publish` (§6.5): the new publication's position when the channel keeps history. */
export interface PublishResult {
  epoch?: string;
  offset?: number;
}

/** The result of `presence` (§6.6). */
export interface PresenceResult {
  clients: ClientInfo[];
}

/** The result of `presence_stats` (§6.7). */
export interface PresenceStatsResult {
  num_clients: number;
  num_users: number;
}

/** Parameters of `history` (§6.8), without the channel. */
export interface HistoryOptions {
  /** At most this many publications (0: only the current position). */
  limit?: number;
  /** Start after (or, with `reverse`, before) this position. */
  since?: StreamPosition;
  /** Newest first. */
  reverse?: boolean;
}

/** The result of `history` (§6.8). */
export interface HistoryResult {
  epoch: string;
  offset: number;
  publications: Publication[];
}

/** The `error` object of a failed reply (§3.2). */
export interface ReplyError {
  code: number;
  message: string;
  temporary?: boolean;
}

/** Error codes of replies (§12). */
export const ErrorCode = {
  Internal: 100,
  Unauthorized: 101,
  UnknownChannel: 102,
  PermissionDenied: 103,
  MethodNotFound: 104,
  AlreadySubscribed: 105,
  LimitExceeded: 106,
  BadRequest: 107,
  NotAvailable: 108,
  TokenExpired: 109,
  TooManyRequests: 110,
  NotSubscribed: 111,
  TooManyChannels: 112,
  UnrecoverablePosition: 113,
} as const;

/** Disconnect codes (§13), also the WebSocket close codes. */
export const DisconnectCode = {
  Reconnect: 4000,
  Shutdown: 4001,
  SlowConsumer: 4002,
  ConnectTimeout: 4003,
  InsufficientState: 4005,
  ConnectionLimit: 4006,
  RateLimited: 4007,
  TokenExpired: 4400,
  Unauthorized: 4401,
  BadRequest: 4500,
  Forbidden: 4501,
} as const;

/** What a client does after a close (§13). */
export type CloseAction = "reconnect" | "new-token" | "stop";

/** What to do after a WebSocket close with `code`, by the rules of §13 (the `onClose` of §17). */
export function closeAction(code: number): CloseAction {
  if (code >= 4000 && code <= 4399) return "reconnect";
  if (code >= 4400 && code <= 4499) return "new-token";
  if (code >= 4500 && code <= 4999) return "stop";
  if (code === 1000 || code === 1002 || code === 1003 || code === 1007) return "stop";
  return "reconnect";
}

/** Whether a failed reply with this error may succeed when retried later (§12). */
export function isTemporary(error: ReplyError): boolean {
  if (error.code === 100 || error.code === 106 || error.code === 110) return true;
  return error.temporary === true;
}

/**
 * The "full jitter" backoff of §14.1: a uniformly random delay in
 * `[0, min(cap, base × 2^attempt))`, `random` returning a number in `[0, 1)`.
 */
export function backoffDelay(attempt: number, baseMs: number, capMs: number, random: () => number): number {
  const ceiling = Math.min(capMs, baseMs * 2 ** Math.min(Math.max(attempt, 0), 40));
  return Math.floor(random() * ceiling);
}
