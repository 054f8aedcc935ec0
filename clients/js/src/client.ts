import { Emitter } from "./emitter.js";
import { UnauthorizedError, VolleyError } from "./errors.js";
import {
  type TimerHandle,
  type Timers,
  type WebSocketConstructor,
  host,
  hostNow,
  hostTimers,
  utf8Length,
} from "./env.js";
import {
  type ConnectResult,
  DisconnectCode,
  type HistoryOptions,
  type HistoryResult,
  type Json,
  PATH,
  type PresenceResult,
  type PresenceStatsResult,
  type PublishResult,
  type RefreshResult,
  type ReplyError,
  SUBPROTOCOL,
  backoffDelay,
  closeAction,
  isTemporary,
} from "./protocol.js";
import { PollSocket } from "./longpoll.js";
import { SseSocket } from "./sse.js";
import { Subscription, type SubscriptionOptions } from "./subscription.js";
import {
  type FetchLike,
  TRANSPORTS,
  type TransportName,
  type TransportSocket,
  checkTransports,
  httpBase,
} from "./transport.js";
import { VERSION } from "./version.js";

/** The connection state of a {@link Client} (§14.8). */
export type ClientState = "disconnected" | "connecting" | "connected";

/** Why the SDK asks the application for a connection token. */
export interface TokenRequest {
  /** `"connect"` before a connection attempt, `"refresh"` before the session expires. */
  reason: "connect" | "refresh";
}

/**
 * Returns a connection token (a JWT from the application backend). Return
 * `null`, `undefined` or `""` when there is none, throw {@link UnauthorizedError}
 * when the user may not connect any more; any other exception is a temporary
 * failure, retried with backoff.
 */
export type GetToken = (request: TokenRequest) => Promise<string | null | undefined> | string | null | undefined;

/** Options of a {@link Client}. Every one is optional. */
export interface ClientOptions {
  /** A connection token to start with. Without it (and without `getToken`) the connection is anonymous. */
  token?: string;
  /**
   * Called for a token before the first connect when `token` is not given,
   * when the token has expired, after close codes 4400/4401, and to refresh
   * the session at 80 % of its lifetime (§14.7).
   */
  getToken?: GetToken;
  /** The WebSocket constructor. Default: the global `WebSocket` (browsers, Node 22+); pass one in Node 20. */
  WebSocket?: WebSocketConstructor;
  /**
   * The transports to try, in order (default `["websocket", "sse", "long-poll"]`).
   * The client moves to the next one when a connection attempt fails before
   * the connect reply: the transport did not open, no connect reply came
   * within `timeoutMs`, or it closed before the reply twice in a row. After a
   * session that was connected ends, it starts again from the first.
   */
  transports?: TransportName[];
  /**
   * The HTTP base of the SSE and long-polling endpoints (default: derived
   * from the URL: `wss://host/connection/websocket` gives `https://host/connection`).
   */
  httpUrl?: string;
  /** The `fetch` of the SSE and long-polling transports (default: the global `fetch`). */
  fetch?: FetchLike;
  /** Client library name sent in `connect` (default `"volley-js"`). */
  name?: string;
  /** Client library version sent in `connect` (default: this SDK's version). */
  version?: string;
  /** Command timeout in milliseconds (default 10 000, §14.6). */
  timeoutMs?: number;
  /** Backoff base in milliseconds (default 500, §14.1). */
  backoffBaseMs?: number;
  /** Backoff cap in milliseconds (default 20 000, §14.1). */
  backoffCapMs?: number;
  /** Reconnect at once when the browser reports it is back online (default true). */
  reconnectOnOnline?: boolean;
  /** Random numbers in [0, 1) for the jitter (default `Math.random`). */
  random?: () => number;
  /** Timer functions (default: the host's `setTimeout`/`clearTimeout`). */
  timers?: Timers;
  /** A monotonic clock in milliseconds (default `performance.now`). */
  now?: () => number;
}

/** Payload of the `connecting` event. */
export interface ConnectingEvent {
  /** The close code that ended the previous connection (0 when `connect()` was called). */
  code: number;
  /** Why. */
  reason: string;
  /** The backoff attempt number n of the next try (§14.1); absent for the first try after `connect()`. */
  attempt?: number;
  /** The delay before the next try, in milliseconds; absent for the first try after `connect()`. */
  delayMs?: number;
  /** The transport the next try uses. */
  transport: TransportName;
}

/** Payload of the `connected` event. */
export interface ConnectedEvent {
  /** The client id of this connection. */
  client: string;
  /** The user id (`""` when anonymous). */
  user: string;
  /** The server's version. */
  version: string;
  /** Milliseconds until the session expires, when the token has an `exp`. */
  expiresInMs?: number;
  /** The transport this connection runs on. */
  transport: TransportName;
}

/** Payload of the `disconnected` event. */
export interface DisconnectedEvent {
  /** The WebSocket close code (or the disconnect code that ended the session). */
  code: number;
  /** Why. */
  reason: string;
  /** Whether the SDK reconnects by itself. */
  reconnect: boolean;
}

/** Payload of the client's `error` event: something failed that the SDK handles by itself. */
export interface ClientErrorEvent {
  /** Where: the transport, the connect command, the token callback, a refresh, or an unreadable message. */
  type: "transport" | "connect" | "token" | "refresh" | "protocol";
  /** What. */
  error: Error;
}

/** Payload of the `message` event: a `message` push from the application backend (§7.5). */
export interface MessageEvent {
  /** The payload. */
  data: Json;
}

/** Payload of the `state` event. */
export interface StateEvent {
  /** The new state. */
  state: ClientState;
  /** The state before. */
  previous: ClientState;
  /** The transport of the connection (`connected`) or of the next try (`connecting`); `null` when disconnected. */
  transport: TransportName | null;
}

/** The events of a {@link Client}. */
export interface ClientEvents {
  /** Every state change. */
  state: StateEvent;
  /** A connection attempt is starting or scheduled. */
  connecting: ConnectingEvent;
  /** The connect reply arrived. */
  connected: ConnectedEvent;
  /** A session ended; `reconnect` says whether the SDK reconnects by itself. */
  disconnected: DisconnectedEvent;
  /** A failure the SDK handles by itself (reported for logs and UI). */
  error: ClientErrorEvent;
  /** A `message` push. */
  message: MessageEvent;
}

/** A reply handler: exactly one of the two callbacks is called, synchronously when the reply arrives. */
export interface ReplyHandler {
  /** The command succeeded. */
  result(result: Record<string, unknown>): void;
  /** The command failed (server error, timeout, disconnect, too large). */
  error(error: VolleyError): void;
}

interface Pending {
  method: string;
  handler: ReplyHandler;
  timer: TimerHandle;
}

interface Queued {
  method: string;
  params: Record<string, unknown> | undefined;
  handler: ReplyHandler;
  timer: TimerHandle;
  deadline: number;
}

/** One connection (a WebSocket or a fallback session) and the commands waiting on it. */
interface Transport {
  ws: TransportSocket;
  name: TransportName;
  /** The socket opened (a WebSocket's handshake, a fallback's session id). */
  opened: boolean;
  /** No connect reply came within the command timeout. */
  timedOut: boolean;
  /** The connect command was answered, with an error (the transport works; the server refused). */
  refused: boolean;
  nextId: number;
  pending: Map<number, Pending>;
  connected: boolean;
  maxMessageSize: number;
  pingIntervalMs: number;
  pongTimeoutMs: number;
  pingInFlight: boolean;
  /** Armed from the socket's creation until the connect reply: kills an attempt that hangs. */
  attemptTimer: TimerHandle | undefined;
  idleTimer: TimerHandle | undefined;
}

interface DisconnectAdvice {
  code: number;
  reason: string;
}

const CONNECT_FAILED_CODE = 1006;

/**
 * A connection to a Volley hub that stays connected: it reconnects with
 * backoff, resubscribes with recovery and refreshes its token, following
 * §14 of docs/protocol.md.
 *
 * ```ts
 * const client = new Client("wss://rt.example.com/connection/websocket", { getToken });
 * const sub = client.subscribe("chat:lobby", { presence: true });
 * sub.on("publication", (p) => console.log(p.data));
 * client.connect();
 * ```
 */
export class Client extends Emitter<ClientEvents> {
  /** The WebSocket URL. */
  readonly url: string;
  /** The HTTP base of the SSE and long-polling transports. */
  readonly httpUrl: string;
  /** The transports tried, in order. */
  readonly transports: readonly TransportName[];
  private readonly WebSocketImpl: WebSocketConstructor | undefined;
  private readonly fetchImpl: FetchLike | undefined;
  private readonly options: ClientOptions;
  private readonly timers: Timers;
  private readonly now: () => number;
  private readonly random: () => number;
  private readonly timeoutMs: number;
  private readonly backoffBaseMs: number;
  private readonly backoffCapMs: number;

  private stateValue: ClientState = "disconnected";
  private conn: Transport | null = null;
  private readonly subs = new Map<string, Subscription>();
  private queue: Queued[] = [];
  private attempts = 0;
  private attemptSeq = 0;
  /** Index in `transports` of the connection or of the next try. */
  private transportIndex = 0;
  /** Consecutive attempts on this transport that opened and closed before the connect reply. */
  private closedBeforeReply = 0;
  private reconnectTimer: TimerHandle | undefined;
  private refreshTimer: TimerHandle | undefined;
  private drainTimer: TimerHandle | undefined;
  private token: string | undefined;
  private tokenNeeded = false;
  private expiresAt: number | undefined;
  private notBefore = 0;
  private advice: DisconnectAdvice | undefined;
  private lastClose: DisconnectAdvice = { code: 0, reason: "" };
  private clientId = "";
  private userId = "";
  private onlineListener: (() => void) | undefined;

  /**
   * Makes a client for `url` (default: `/connection/websocket` on the page's
   * host, for pages served by the hub). It does not connect until `connect()`.
   */
  constructor(url?: string, options: ClientOptions = {}) {
    super();
    this.url = url ?? defaultUrl();
    this.transports = checkTransports(options.transports ?? TRANSPORTS);
    this.httpUrl = options.httpUrl ?? httpBase(this.url);
    this.WebSocketImpl = options.WebSocket ?? host.WebSocket;
    if (this.WebSocketImpl === undefined && this.transports.includes("websocket")) {
      throw new TypeError("volley: no WebSocket implementation here; pass the WebSocket option");
    }
    this.fetchImpl = options.fetch ?? hostFetch();
    if (this.fetchImpl === undefined && this.transports.some((name) => name !== "websocket")) {
      throw new TypeError("volley: no fetch here for the sse and long-poll transports; pass the fetch option");
    }
    this.options = options;
    this.timers = options.timers ?? hostTimers;
    this.now = options.now ?? hostNow;
    this.random = options.random ?? Math.random;
    this.timeoutMs = options.timeoutMs ?? 10_000;
    this.backoffBaseMs = options.backoffBaseMs ?? 500;
    this.backoffCapMs = options.backoffCapMs ?? 20_000;
    this.token = options.token === "" ? undefined : options.token;
  }

  /** The connection state. */
  get state(): ClientState {
    return this.stateValue;
  }

  /**
   * The transport of the connection (when connected) or of the next try
   * (when connecting); `null` when disconnected.
   */
  get transport(): TransportName | null {
    return this.stateValue === "disconnected" ? null : this.currentTransport();
  }

  /** The client id of the current connection (`""` when not connected). */
  get client(): string {
    return this.clientId;
  }

  /** The user id of the current connection (`""` when anonymous or not connected). */
  get user(): string {
    return this.userId;
  }

  /** Starts connecting (no-op unless disconnected). The SDK then stays connected until `disconnect()`. */
  connect(): void {
    if (this.stateValue !== "disconnected") return;
    this.attempts = 0;
    this.notBefore = 0;
    this.transportIndex = 0;
    this.closedBeforeReply = 0;
    this.listenOnline();
    this.setState("connecting");
    this.emit("connecting", { code: 0, reason: "connect called", transport: this.currentTransport() });
    void this.startAttempt();
  }

  /** Closes the connection (1000) and stops reconnecting. Subscriptions are kept and resume on `connect()`. */
  disconnect(): void {
    if (this.stateValue === "disconnected") return;
    this.stop(1000, "disconnect called");
  }

  /**
   * Makes a subscription to `channel` without subscribing yet. Throws if the
   * client already has a subscription to that channel (see `getSubscription`).
   */
  newSubscription(channel: string, options: SubscriptionOptions = {}): Subscription {
    if (this.subs.has(channel)) {
      throw new Error(`volley: already have a subscription to ${channel}`);
    }
    const sub = new Subscription(this, channel, options, {
      timers: this.timers,
      now: this.now,
      random: this.random,
      backoffBaseMs: this.backoffBaseMs,
      backoffCapMs: this.backoffCapMs,
    });
    this.subs.set(channel, sub);
    return sub;
  }

  /** `newSubscription` (or the existing subscription) followed by `subscribe()`. */
  subscribe(channel: string, options: SubscriptionOptions = {}): Subscription {
    const sub = this.subs.get(channel) ?? this.newSubscription(channel, options);
    sub.subscribe();
    return sub;
  }

  /** The subscription to `channel`, if any. */
  getSubscription(channel: string): Subscription | undefined {
    return this.subs.get(channel);
  }

  /** Every subscription of this client. */
  subscriptions(): Subscription[] {
    return [...this.subs.values()];
  }

  /** Unsubscribes and forgets the subscription. */
  removeSubscription(sub: Subscription): void {
    sub.unsubscribe();
    if (this.subs.get(sub.channel) === sub) this.subs.delete(sub.channel);
  }

  /**
   * Publishes `data` to `channel` (the client must be subscribed to it).
   * Never retried automatically (§14.6): a `"disconnected"` or `"timeout"`
   * failure means the outcome is unknown.
   */
  publish(channel: string, data: Json): Promise<PublishResult> {
    return this.call<PublishResult>("publish", { channel, data });
  }

  /** The channel's current subscribers (§6.6). */
  presence(channel: string): Promise<PresenceResult> {
    return this.call<PresenceResult>("presence", { channel });
  }

  /** The channel's subscriber counts (§6.7). */
  presenceStats(channel: string): Promise<PresenceStatsResult> {
    return this.call<PresenceStatsResult>("presence_stats", { channel });
  }

  /** The channel's retained publications (§6.8). */
  history(channel: string, options: HistoryOptions = {}): Promise<HistoryResult> {
    const params: Record<string, unknown> = { channel };
    if (options.limit !== undefined) params.limit = options.limit;
    if (options.since !== undefined) params.since = options.since;
    if (options.reverse === true) params.reverse = true;
    return this.call<HistoryResult>("history", params);
  }

  /** An application-level round trip; resolves with the round-trip time in milliseconds. */
  async ping(): Promise<number> {
    const started = this.now();
    await this.call("ping", undefined);
    return this.now() - started;
  }

  /**
   * Sends a command and resolves with its result. While the client is
   * connecting the command waits in a queue, bounded by its timeout; when it
   * is disconnected the promise rejects at once.
   */
  call<T>(method: string, params: Record<string, unknown> | undefined): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.command(method, params, {
        result: (result) => resolve(result as T),
        error: reject,
      });
    });
  }

  /** Like `call`, with synchronous callbacks (used by subscriptions, whose replies must be handled in order). */
  command(method: string, params: Record<string, unknown> | undefined, handler: ReplyHandler): void {
    const transport = this.conn;
    if (this.stateValue === "connected" && transport !== null && transport.connected) {
      this.send(transport, method, params, handler, this.timeoutMs);
      return;
    }
    if (this.stateValue === "disconnected") {
      handler.error(new VolleyError("disconnected", `${method}: client is disconnected`));
      return;
    }
    const item: Queued = { method, params, handler, timer: undefined, deadline: this.now() + this.timeoutMs };
    item.timer = this.timers.setTimeout(() => {
      this.queue = this.queue.filter((q) => q !== item);
      handler.error(new VolleyError("timeout", `${method}: not connected within ${this.timeoutMs} ms`));
    }, this.timeoutMs);
    this.queue.push(item);
  }

  /** Sends a command only if connected now; otherwise reports `"disconnected"` (used for resubscription). */
  commandNow(method: string, params: Record<string, unknown> | undefined, handler: ReplyHandler): void {
    const transport = this.conn;
    if (this.stateValue === "connected" && transport !== null && transport.connected) {
      this.send(transport, method, params, handler, this.timeoutMs);
    } else {
      handler.error(new VolleyError("disconnected", `${method}: not connected`));
    }
  }

  // ---- connection attempts ------------------------------------------------------------

  private async startAttempt(): Promise<void> {
    const seq = ++this.attemptSeq;
    this.reconnectTimer = undefined;
    const getToken = this.options.getToken;
    const expired = this.expiresAt !== undefined && this.now() >= this.expiresAt;
    if (this.tokenNeeded || (getToken !== undefined && (this.token === undefined || expired))) {
      if (getToken === undefined) {
        this.stop(this.lastClose.code, this.lastClose.reason);
        return;
      }
      let token: string | null | undefined;
      try {
        token = await getToken({ reason: "connect" });
      } catch (error) {
        if (seq !== this.attemptSeq || this.stateValue !== "connecting") return;
        if (error instanceof UnauthorizedError) {
          this.emit("error", { type: "token", error });
          this.stop(DisconnectCode.Unauthorized, error.message);
          return;
        }
        this.emit("error", { type: "token", error: asError(error) });
        this.scheduleReconnect(this.lastClose.code, "getToken failed", false);
        return;
      }
      if (seq !== this.attemptSeq || this.stateValue !== "connecting") return;
      if (token === null || token === undefined || token === "") {
        if (this.tokenNeeded) {
          this.stop(this.lastClose.code, this.lastClose.reason);
          return;
        }
        this.token = undefined;
      } else {
        this.token = token;
        this.expiresAt = undefined;
      }
      this.tokenNeeded = false;
    }
    this.openTransport();
  }

  private openTransport(): void {
    const name = this.currentTransport();
    let ws: TransportSocket;
    try {
      ws = this.newSocket(name);
    } catch (error) {
      this.emit("error", { type: "transport", error: asError(error) });
      this.attemptFailed(CONNECT_FAILED_CODE, `${name} could not start`);
      return;
    }
    const t: Transport = {
      ws,
      name,
      opened: false,
      timedOut: false,
      refused: false,
      nextId: 1,
      pending: new Map(),
      connected: false,
      maxMessageSize: Number.MAX_SAFE_INTEGER,
      pingIntervalMs: 20_000,
      pongTimeoutMs: 20_000,
      pingInFlight: false,
      attemptTimer: undefined,
      idleTimer: undefined,
    };
    this.conn = t;
    this.advice = undefined;
    t.attemptTimer = this.timers.setTimeout(() => {
      t.attemptTimer = undefined;
      t.timedOut = true;
      this.transportDead(t, "connect timeout");
    }, this.timeoutMs);
    ws.onopen = () => {
      if (this.conn !== t) return;
      t.opened = true;
      this.sendConnect(t);
    };
    ws.onmessage = (event) => {
      if (this.conn === t) this.receive(t, event.data);
    };
    ws.onclose = (event) => {
      if (this.conn === t) this.transportClosed(t, event.code, event.reason, false);
    };
    ws.onerror = () => {
      if (this.conn === t) {
        this.emit("error", { type: "transport", error: new Error(`${name} error`) });
      }
    };
  }

  private newSocket(name: TransportName): TransportSocket {
    const fetchImpl = this.fetchImpl as FetchLike;
    switch (name) {
      case "websocket":
        return new (this.WebSocketImpl as WebSocketConstructor)(this.url, [SUBPROTOCOL]);
      case "sse":
        return new SseSocket(this.httpUrl, fetchImpl, this.timers);
      case "long-poll":
        return new PollSocket(this.httpUrl, fetchImpl, this.timers);
    }
  }

  private currentTransport(): TransportName {
    return this.transports[this.transportIndex] ?? (this.transports[0] as TransportName);
  }

  /**
   * An attempt failed before the connect reply in a way that says this
   * transport does not get through: try the next one at once; after the last
   * one, start again from the first with backoff.
   */
  private attemptFailed(code: number, reason: string): void {
    this.closedBeforeReply = 0;
    if (this.transportIndex + 1 < this.transports.length) {
      this.transportIndex += 1;
      this.scheduleReconnect(code, reason, true, false);
      return;
    }
    this.transportIndex = 0;
    this.scheduleReconnect(code, reason, false);
  }

  private sendConnect(t: Transport): void {
    const params: Record<string, unknown> = {};
    if (this.token !== undefined) params.token = this.token;
    params.name = this.options.name ?? "volley-js";
    params.version = this.options.version ?? VERSION;
    // No command timeout of its own: the attempt timer covers the whole attempt.
    this.send(t, "connect", params, {
      result: (result) => this.connected(t, result as unknown as ConnectResult),
      error: (error) => {
        if (error.kind === "server") t.refused = true;
        this.emit("error", { type: "connect", error });
        if (error.code === 101 || error.code === 109) this.tokenNeeded = true;
        // The server closes the WebSocket next; its close code decides (§6.1).
      },
    }, undefined);
  }

  private connected(t: Transport, result: ConnectResult): void {
    if (t.attemptTimer !== undefined) this.timers.clearTimeout(t.attemptTimer);
    t.attemptTimer = undefined;
    t.connected = true;
    t.maxMessageSize = positive(result.max_message_size, Number.MAX_SAFE_INTEGER);
    t.ws.setMaxMessageSize?.(t.maxMessageSize);
    t.pingIntervalMs = positive(result.ping_interval_ms, 20_000);
    t.pongTimeoutMs = positive(result.pong_timeout_ms, 20_000);
    this.attempts = 0;
    this.notBefore = 0;
    this.closedBeforeReply = 0;
    this.clientId = typeof result.client === "string" ? result.client : "";
    this.userId = typeof result.user === "string" ? result.user : "";
    this.scheduleRefresh(t, result.expires_in_ms);
    this.setState("connected");
    const event: ConnectedEvent = {
      client: this.clientId,
      user: this.userId,
      version: String(result.version ?? ""),
      transport: t.name,
    };
    if (typeof result.expires_in_ms === "number") event.expiresInMs = result.expires_in_ms;
    this.emit("connected", event);
    if (this.conn !== t) return; // a listener disconnected
    this.armIdle(t);
    for (const sub of this.subs.values()) sub.clientConnected();
    const queued = this.queue;
    this.queue = [];
    for (const item of queued) {
      this.timers.clearTimeout(item.timer);
      if (this.conn !== t || !t.connected) {
        item.handler.error(new VolleyError("disconnected", `${item.method}: connection lost`));
        continue;
      }
      this.send(t, item.method, item.params, item.handler, Math.max(1, item.deadline - this.now()));
    }
  }

  private scheduleReconnect(code: number, reason: string, immediate: boolean, counts = true): void {
    const attempt = this.attempts;
    if (counts) this.attempts += 1;
    const jitter = immediate ? 0 : backoffDelay(attempt, this.backoffBaseMs, this.backoffCapMs, this.random);
    const delay = Math.max(jitter, this.notBefore - this.now(), 0);
    this.emit("connecting", { code, reason, attempt, delayMs: delay, transport: this.currentTransport() });
    if (this.stateValue !== "connecting") return; // a listener disconnected
    this.reconnectTimer = this.timers.setTimeout(() => void this.startAttempt(), delay);
  }

  // ---- receiving ----------------------------------------------------------------------

  private receive(t: Transport, data: unknown): void {
    if (typeof data !== "string") {
      this.emit("error", { type: "protocol", error: new Error("binary message ignored") });
      return;
    }
    let message: unknown;
    try {
      message = JSON.parse(data);
    } catch (error) {
      this.emit("error", { type: "protocol", error: asError(error) });
      return;
    }
    if (typeof message !== "object" || message === null || Array.isArray(message)) return;
    const m = message as Record<string, unknown>;
    if (t.connected) this.armIdle(t);
    if (m.id !== undefined) {
      const id = m.id;
      const pending = typeof id === "number" ? t.pending.get(id) : undefined;
      if (pending === undefined || typeof id !== "number") return; // a reply to nothing we wait for
      t.pending.delete(id);
      if (pending.timer !== undefined) this.timers.clearTimeout(pending.timer);
      if (typeof m.error === "object" && m.error !== null) {
        const error = m.error as ReplyError;
        pending.handler.error(VolleyError.fromReply(error, isTemporary(error)));
      } else {
        const result = typeof m.result === "object" && m.result !== null ? m.result : {};
        pending.handler.result(result as Record<string, unknown>);
      }
      return;
    }
    if (typeof m.push === "string") this.push(t, m.push, m);
  }

  private push(t: Transport, kind: string, m: Record<string, unknown>): void {
    switch (kind) {
      case "publication":
      case "join":
      case "leave":
      case "unsubscribe": {
        if (typeof m.channel !== "string") return;
        this.subs.get(m.channel)?.handlePush(kind, m);
        return;
      }
      case "message":
        this.emit("message", { data: (m.data ?? null) as Json });
        return;
      case "disconnect": {
        const code = typeof m.code === "number" ? m.code : 0;
        const reason = typeof m.reason === "string" ? m.reason : "";
        this.advice = { code, reason };
        const after = typeof m.reconnect_after_ms === "number" && m.reconnect_after_ms > 0 ? m.reconnect_after_ms : 0;
        this.notBefore = Math.max(this.notBefore, this.now() + after);
        if (code === DisconnectCode.Shutdown) {
          // Drain (§14.2): keep using the connection, leave it after the advised delay.
          if (this.drainTimer !== undefined) this.timers.clearTimeout(this.drainTimer);
          this.drainTimer = this.timers.setTimeout(() => {
            this.drainTimer = undefined;
            if (this.conn !== t) return;
            this.closeSocket(t, 1000, "server draining");
            this.transportClosed(t, DisconnectCode.Shutdown, reason, true);
          }, after);
        }
        return;
      }
      default:
        return; // unknown push kinds are ignored (§3.4)
    }
  }

  // ---- sending ------------------------------------------------------------------------

  private send(
    t: Transport,
    method: string,
    params: Record<string, unknown> | undefined,
    handler: ReplyHandler,
    timeoutMs: number | undefined,
  ): void {
    const id = t.nextId++;
    const command: Record<string, unknown> = { id, method };
    if (params !== undefined) command.params = params;
    let frame: string;
    try {
      frame = JSON.stringify(command);
    } catch (error) {
      handler.error(new VolleyError("too_large", `${method}: params are not JSON: ${asError(error).message}`));
      return;
    }
    const size = utf8Length(frame);
    if (size > t.maxMessageSize) {
      handler.error(
        new VolleyError("too_large", `${method}: ${size} bytes is over the server's limit of ${t.maxMessageSize}`),
      );
      return;
    }
    const pending: Pending = { method, handler, timer: undefined };
    if (timeoutMs !== undefined) {
      pending.timer = this.timers.setTimeout(() => {
        if (t.pending.get(id) !== pending) return;
        t.pending.delete(id);
        handler.error(new VolleyError("timeout", `${method}: no reply within ${timeoutMs} ms`));
        // A server that does not answer in time is not healthy (§14.6).
        this.transportDead(t, `${method} timed out`);
      }, timeoutMs);
    }
    t.pending.set(id, pending);
    try {
      t.ws.send(frame);
    } catch (error) {
      this.emit("error", { type: "transport", error: asError(error) });
      this.transportDead(t, "send failed");
    }
  }

  // ---- liveness and refresh -----------------------------------------------------------

  private armIdle(t: Transport): void {
    if (t.idleTimer !== undefined) this.timers.clearTimeout(t.idleTimer);
    t.idleTimer = this.timers.setTimeout(() => {
      t.idleTimer = undefined;
      if (this.conn !== t || t.pingInFlight) return;
      // Nothing received for ping_interval_ms: ask (§14.5). No reply within pong_timeout_ms is a dead connection.
      t.pingInFlight = true;
      this.send(
        t,
        "ping",
        undefined,
        {
          result: () => {
            t.pingInFlight = false;
          },
          error: () => {
            t.pingInFlight = false;
          },
        },
        t.pongTimeoutMs,
      );
    }, t.pingIntervalMs);
  }

  private scheduleRefresh(t: Transport, expiresInMs: number | undefined): void {
    if (this.refreshTimer !== undefined) this.timers.clearTimeout(this.refreshTimer);
    this.refreshTimer = undefined;
    if (typeof expiresInMs !== "number") {
      this.expiresAt = undefined;
      return;
    }
    this.expiresAt = this.now() + expiresInMs;
    if (this.options.getToken === undefined) return; // nothing to refresh with: the server's 4400 will tell
    this.refreshTimer = this.timers.setTimeout(() => void this.refresh(t, 0), Math.floor(expiresInMs * 0.8));
  }

  private async refresh(t: Transport, attempt: number): Promise<void> {
    this.refreshTimer = undefined;
    const getToken = this.options.getToken;
    if (this.conn !== t || !t.connected || getToken === undefined) return;
    let token: string | null | undefined;
    try {
      token = await getToken({ reason: "refresh" });
    } catch (error) {
      if (this.conn !== t) return;
      this.emit("error", { type: "refresh", error: asError(error) });
      if (!(error instanceof UnauthorizedError)) this.retryRefresh(t, attempt);
      return;
    }
    if (this.conn !== t || !t.connected) return;
    if (token === null || token === undefined || token === "") {
      this.emit("error", { type: "refresh", error: new Error("getToken returned no token for refresh") });
      return;
    }
    const fresh = token;
    this.send(
      t,
      "refresh",
      { token: fresh },
      {
        result: (result) => {
          this.token = fresh;
          this.scheduleRefresh(t, (result as RefreshResult).expires_in_ms);
        },
        error: (error) => {
          if (error.kind === "disconnected" || error.kind === "timeout") return;
          this.emit("error", { type: "refresh", error });
          // 101/109: ask for another token; 100/110 (temporary): again later; others: give up.
          if (error.code === 101 || error.code === 109 || error.temporary) this.retryRefresh(t, attempt);
        },
      },
      this.timeoutMs,
    );
  }

  private retryRefresh(t: Transport, attempt: number): void {
    if (this.conn !== t || this.expiresAt === undefined) return;
    const delay = backoffDelay(attempt, this.backoffBaseMs, this.backoffCapMs, this.random);
    if (this.now() + delay >= this.expiresAt) return; // too late: the server's 4400 leads to a reconnect
    this.refreshTimer = this.timers.setTimeout(() => void this.refresh(t, attempt + 1), delay);
  }

  // ---- ending connections -------------------------------------------------------------

  /** The connection is unusable (timeout, liveness): close it and reconnect as after 1006 (§14.5). */
  private transportDead(t: Transport, reason: string): void {
    if (this.conn !== t) return;
    this.closeSocket(t, 1000, reason);
    this.transportClosed(t, CONNECT_FAILED_CODE, reason, false);
  }

  private closeSocket(t: Transport, code: number, reason: string): void {
    const ws = t.ws;
    // No-ops rather than null: the `ws` package (Node) throws an uncaught "error"
    // event when a socket closed while still connecting has no error listener.
    const ignore = (): void => {};
    ws.onopen = ignore;
    ws.onmessage = ignore;
    ws.onclose = ignore;
    ws.onerror = ignore;
    try {
      ws.close(code, reason);
    } catch {
      // already closed
    }
  }

  private transportClosed(t: Transport, code: number, reason: string, immediate: boolean): void {
    if (this.conn !== t) return;
    const wasConnected = t.connected;
    this.endTransport(t, code, reason);
    if (this.advice !== undefined && this.advice.code === code && reason === "") reason = this.advice.reason;
    this.lastClose = { code, reason };
    const action = immediate ? "reconnect" : closeAction(code);
    if (action === "stop") {
      this.stop(code, reason);
      return;
    }
    if (action === "new-token") {
      this.tokenNeeded = true;
      this.token = undefined;
      if (this.options.getToken === undefined) {
        this.stop(code, reason);
        return;
      }
    }
    if (wasConnected) {
      // Every new session tries the transports from the first again (back to the WebSocket when it works again).
      this.transportIndex = 0;
      this.closedBeforeReply = 0;
      this.setState("connecting");
      this.emit("disconnected", { code, reason, reconnect: true });
      if (this.stateValue !== "connecting") return; // a listener disconnected
    }
    if (!wasConnected && !immediate && action === "reconnect") {
      // Failed before the connect reply: did this transport get through at all?
      // (An error reply came through: the server refused, the transport is fine.)
      if (!t.refused && (!t.opened || t.timedOut || ++this.closedBeforeReply >= 2)) {
        this.attemptFailed(code, reason);
        return;
      }
    }
    this.scheduleReconnect(code, reason, immediate);
  }

  /** Forgets the transport: fails its commands, stops its timers, tells the subscriptions. */
  private endTransport(t: Transport, code: number, reason: string): void {
    this.conn = null;
    t.connected = false;
    if (t.attemptTimer !== undefined) this.timers.clearTimeout(t.attemptTimer);
    if (t.idleTimer !== undefined) this.timers.clearTimeout(t.idleTimer);
    t.attemptTimer = undefined;
    t.idleTimer = undefined;
    for (const timer of [this.refreshTimer, this.drainTimer]) {
      if (timer !== undefined) this.timers.clearTimeout(timer);
    }
    this.refreshTimer = undefined;
    this.drainTimer = undefined;
    this.clientId = "";
    const pending = [...t.pending.values()];
    t.pending.clear();
    for (const p of pending) {
      if (p.timer !== undefined) this.timers.clearTimeout(p.timer);
      p.handler.error(new VolleyError("disconnected", `${p.method}: connection closed (${code} ${reason})`));
    }
    for (const sub of this.subs.values()) sub.clientDisconnected(code, reason);
  }

  /** Ends everything and stays disconnected. */
  private stop(code: number, reason: string): void {
    this.attemptSeq++;
    if (this.reconnectTimer !== undefined) this.timers.clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    const t = this.conn;
    if (t !== null) {
      this.closeSocket(t, 1000, reason);
      this.endTransport(t, code, reason);
    } else {
      for (const sub of this.subs.values()) sub.clientDisconnected(code, reason);
    }
    const queued = this.queue;
    this.queue = [];
    for (const item of queued) {
      this.timers.clearTimeout(item.timer);
      item.handler.error(new VolleyError("disconnected", `${item.method}: client disconnected`));
    }
    this.unlistenOnline();
    this.setState("disconnected");
    this.emit("disconnected", { code, reason, reconnect: false });
  }

  private setState(state: ClientState): void {
    const previous = this.stateValue;
    if (previous === state) return;
    this.stateValue = state;
    this.emit("state", { state, previous, transport: this.transport });
  }

  private listenOnline(): void {
    if (this.options.reconnectOnOnline === false || host.addEventListener === undefined) return;
    if (this.onlineListener !== undefined) return;
    this.onlineListener = () => {
      // Back online: try at once (n = 0), but never before the server's advice allows (§14.1).
      if (this.stateValue !== "connecting" || this.reconnectTimer === undefined) return;
      if (this.now() < this.notBefore) return;
      this.timers.clearTimeout(this.reconnectTimer);
      this.reconnectTimer = undefined;
      this.attempts = 0;
      this.transportIndex = 0;
      this.closedBeforeReply = 0;
      void this.startAttempt();
    };
    host.addEventListener("online", this.onlineListener);
  }

  private unlistenOnline(): void {
    if (this.onlineListener !== undefined && host.removeEventListener !== undefined) {
      host.removeEventListener("online", this.onlineListener);
    }
    this.onlineListener = undefined;
  }
}

function positive(value: unknown, fallback: number): number {
  return typeof value === "number" && value > 0 ? value : fallback;
}

function asError(value: unknown): Error {
  return value instanceof Error ? value : new Error(String(value));
}

function hostFetch(): FetchLike | undefined {
  const f = (globalThis as { fetch?: FetchLike }).fetch;
  // Called unbound, a browser's fetch throws "Illegal invocation".
  return f === undefined ? undefined : (url, init) => f.call(globalThis, url, init);
}

function defaultUrl(): string {
  const location = host.location;
  if (location === undefined) {
    throw new TypeError("volley: no URL given and no page location to derive one from");
  }
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}${PATH}`;
}
