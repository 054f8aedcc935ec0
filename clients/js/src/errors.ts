import type { ReplyError } from "./protocol.js";

/** Why an operation failed. */
export type VolleyErrorKind =
  /** The server answered with an error reply; see `code` and `temporary`. */
  | "server"
  /** No reply arrived within the command timeout. */
  | "timeout"
  /** The connection ended (or the client was disconnected) before the reply arrived. */
  | "disconnected"
  /** The encoded command is larger than the server's `max_message_size`; it was never sent. */
  | "too_large"
  /** The subscription is not active (for methods that need one). */
  | "not_subscribed";

/** The error every failed SDK promise rejects with. */
export class VolleyError extends Error {
  /** Why it failed. */
  readonly kind: VolleyErrorKind;
  /** The protocol error code (§12) when `kind` is `"server"`, otherwise 0. */
  readonly code: number;
  /** Whether retrying later unchanged may succeed. */
  readonly temporary: boolean;

  /** Makes an error of `kind` with a message, an optional code and temporary flag. */
  constructor(kind: VolleyErrorKind, message: string, code = 0, temporary = false) {
    super(message);
    this.name = "VolleyError";
    this.kind = kind;
    this.code = code;
    this.temporary = temporary;
  }

  /** The error of a failed reply. */
  static fromReply(error: ReplyError, temporary: boolean): VolleyError {
    return new VolleyError("server", `${error.message} (${error.code})`, error.code, temporary);
  }
}

/**
 * Thrown (or rejected) by a `getToken` callback to say "this client is not
 * allowed any more": the SDK then stops reconnecting (or gives up the
 * subscription) instead of retrying (§14.1).
 */
export class UnauthorizedError extends Error {
  /** Makes the error, with an optional message. */
  constructor(message = "unauthorized") {
    super(message);
    this.name = "UnauthorizedError";
  }
}
