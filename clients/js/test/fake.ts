// An in-memory stand-in for the hub: a WebSocket constructor whose sockets
// record what the SDK sends and let a test play the server's part (open,
// reply, push, close). Nothing here touches the network or real time.
import type { CloseEventLike, MessageEventLike, WebSocketConstructor, WebSocketLike } from "../src/env.js";

/** A command as the SDK sent it. */
export interface SentCommand {
  id: number;
  method: string;
  params?: Record<string, unknown>;
}

/** The default connect result, as in docs/protocol.md §6.1. */
export function connectResult(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    client: "c-1",
    user: "42",
    version: "0.0.0-test",
    ping_interval_ms: 20_000,
    pong_timeout_ms: 20_000,
    max_message_size: 65_536,
    ...overrides,
  };
}

/** One fake socket: the client's side is the WebSocketLike API, the rest is the server's. */
export class FakeSocket implements WebSocketLike {
  readonly url: string;
  readonly protocols: string | string[] | undefined;
  /** Every command the client sent, in order. */
  readonly sent: SentCommand[] = [];
  /** Set when the client called close(). */
  closedByClient: { code: number | undefined; reason: string | undefined } | null = null;
  onopen: ((event: unknown) => void) | null = null;
  onmessage: ((event: MessageEventLike) => void) | null = null;
  onclose: ((event: CloseEventLike) => void) | null = null;
  onerror: ((event: unknown) => void) | null = null;
  private read = 0;

  constructor(url: string, protocols?: string | string[]) {
    this.url = url;
    this.protocols = protocols;
  }

  send(data: string): void {
    if (this.closedByClient !== null) throw new Error("send after close");
    this.sent.push(JSON.parse(data) as SentCommand);
  }

  close(code?: number, reason?: string): void {
    this.closedByClient = { code, reason };
  }

  // ---- the server's side ----

  /** The handshake succeeded. */
  open(): void {
    this.onopen?.({});
  }

  /** Sends a raw text message to the client. */
  sendText(text: string): void {
    this.onmessage?.({ data: text });
  }

  /** Sends a JSON message to the client. */
  deliver(message: Record<string, unknown>): void {
    this.sendText(JSON.stringify(message));
  }

  /** Replies to a command with a result. */
  reply(command: SentCommand, result: Record<string, unknown> = {}): void {
    this.deliver({ id: command.id, result });
  }

  /** Replies to a command with an error. */
  replyError(command: SentCommand, code: number, message = "error", temporary?: boolean): void {
    const error: Record<string, unknown> = { code, message };
    if (temporary !== undefined) error.temporary = temporary;
    this.deliver({ id: command.id, error });
  }

  /** Sends a push. */
  push(kind: string, fields: Record<string, unknown> = {}): void {
    this.deliver({ push: kind, ...fields });
  }

  /** The server (or the network) closed the connection. */
  serverClose(code: number, reason = ""): void {
    this.onclose?.({ code, reason });
  }

  /** Commands sent since the last call to `take`/`next`. */
  take(): SentCommand[] {
    const out = this.sent.slice(this.read);
    this.read = this.sent.length;
    return out;
  }

  /** The next unread command; fails if there is none or it has another method. */
  next(method?: string): SentCommand {
    const command = this.sent[this.read];
    if (command === undefined) throw new Error(`expected a command${method ? ` ${method}` : ""}, none was sent`);
    if (method !== undefined && command.method !== method) {
      throw new Error(`expected ${method}, got ${JSON.stringify(command)}`);
    }
    this.read++;
    return command;
  }

  /** Opens, reads the connect command and answers it. Returns the connect command. */
  accept(result: Record<string, unknown> = {}): SentCommand {
    this.open();
    const connect = this.next("connect");
    this.reply(connect, connectResult(result));
    return connect;
  }
}

/** A fake hub: hand `hub.WebSocket` to the Client; every socket it makes is in `hub.sockets`. */
export class FakeHub {
  readonly sockets: FakeSocket[] = [];
  readonly WebSocket: WebSocketConstructor;

  constructor() {
    const sockets = this.sockets;
    this.WebSocket = class extends FakeSocket {
      constructor(url: string, protocols?: string | string[]) {
        super(url, protocols);
        sockets.push(this);
      }
    };
  }

  /** The newest socket. */
  get last(): FakeSocket {
    const socket = this.sockets[this.sockets.length - 1];
    if (socket === undefined) throw new Error("no socket was opened");
    return socket;
  }
}
