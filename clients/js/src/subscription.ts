import type { Client } from "./client.js";
import { Emitter } from "./emitter.js";
import { type TimerHandle, type Timers, jwtExpiryMs } from "./env.js";
import { UnauthorizedError, VolleyError } from "./errors.js";
import {
  type ClientInfo,
  type HistoryOptions,
  type HistoryResult,
  type Json,
  type PresenceResult,
  type PresenceStatsResult,
  type Publication,
  type PublishResult,
  type StreamPosition,
  type SubscribeResult,
  backoffDelay,
} from "./protocol.js";

/** The state of a {@link Subscription} (§14.8). */
export type SubscriptionState = "unsubscribed" | "subscribing" | "subscribed";

/**
 * Returns a subscription token for a private channel (`$...`). Throw
 * {@link UnauthorizedError} when the user may not subscribe; any other
 * exception is temporary and retried with backoff.
 */
export type GetSubscriptionToken = (request: { channel: string }) => Promise<string | null | undefined> | string | null | undefined;

/** Listeners that can be given with the subscription's options instead of calling `on`. */
export type SubscriptionHandlers = { [K in keyof SubscriptionEvents]?: (event: SubscriptionEvents[K]) => void };

/** Options of a {@link Subscription}. */
export interface SubscriptionOptions {
  /** Ask for a presence snapshot with every (re)subscription and keep `presenceList()` current with join/leave. */
  presence?: boolean;
  /** A subscription token for a private channel. */
  token?: string;
  /** Gets a subscription token for a private channel (when `token` is absent or expired, and after error 109). */
  getToken?: GetSubscriptionToken;
  /** Recover from this position on the first subscribe (e.g. one saved from an earlier page load). */
  since?: StreamPosition;
  /** Listeners to add now. */
  on?: SubscriptionHandlers;
}

/** Payload of `subscribing`. */
export interface SubscribingEvent {
  channel: string;
  /** Why: 0 when `subscribe()` was called, else the close or unsubscribe code. */
  code: number;
  reason: string;
}

/** Payload of `subscribed`. */
export interface SubscribedEvent {
  channel: string;
  /** The channel keeps history: publications have offsets and can be recovered. */
  recoverable: boolean;
  /** Recovery was asked for and every missed publication follows (as `publication` events, oldest first). */
  recovered: boolean;
  /**
   * Recovery was asked for. With `recovered: false` this means publications
   * may have been missed: reload the state derived from this channel (§10.4).
   */
  wasRecovering: boolean;
  /** The stream's epoch, when recoverable. */
  epoch?: string;
  /** The stream's top offset after this subscribe, when recoverable. */
  offset?: number;
  /** The channel sends join/leave. */
  joinLeave: boolean;
  /** The presence snapshot, when asked for and enabled. */
  presence?: ClientInfo[];
}

/** Payload of `unsubscribed`. */
export interface UnsubscribedEvent {
  channel: string;
  /** 0 when `unsubscribe()` was called; the unsubscribe push code (2500–2999); or the error code of a permanently failed subscribe. */
  code: number;
  reason: string;
}

/** Payload of `publication`. */
export interface PublicationEvent extends Publication {
  channel: string;
}

/** Payload of `join` and `leave`. */
export interface PresenceChangeEvent {
  channel: string;
  info: ClientInfo;
}

/** Payload of `presence`: the whole mirrored presence list after a change. */
export interface PresenceEvent {
  channel: string;
  clients: ClientInfo[];
}

/** Payload of `gap`: a publication skipped offsets; the SDK resubscribes with recovery (§11). */
export interface GapEvent {
  channel: string;
  /** The offset that should have come. */
  expected: number;
  /** The offset that came. */
  received: number;
}

/** Payload of the subscription's `error`. */
export interface SubscriptionErrorEvent {
  channel: string;
  /** `"subscribe"` for a failed subscribe (retried when temporary), `"token"` for a failed token callback. */
  type: "subscribe" | "token";
  error: Error;
}

/** The events of a {@link Subscription}. */
export interface SubscriptionEvents {
  state: { state: SubscriptionState; previous: SubscriptionState };
  subscribing: SubscribingEvent;
  subscribed: SubscribedEvent;
  unsubscribed: UnsubscribedEvent;
  publication: PublicationEvent;
  join: PresenceChangeEvent;
  leave: PresenceChangeEvent;
  presence: PresenceEvent;
  gap: GapEvent;
  error: SubscriptionErrorEvent;
}

/** What a subscription borrows from its client. */
export interface SubscriptionEnv {
  timers: Timers;
  now: () => number;
  random: () => number;
  backoffBaseMs: number;
  backoffCapMs: number;
}

/**
 * A subscription to one channel. It survives reconnections: after every
 * connect it subscribes again, recovering from its last position, and it
 * drops duplicates and detects gaps by offset (§10, §11, §14.3, §14.4).
 */
export class Subscription extends Emitter<SubscriptionEvents> {
  /** The channel. */
  readonly channel: string;
  private readonly client: Client;
  private readonly options: SubscriptionOptions;
  private readonly env: SubscriptionEnv;
  private stateValue: SubscriptionState = "unsubscribed";
  private wanted = false;
  private positionValue: StreamPosition | undefined;
  private recoverableValue = false;
  private generation = 0;
  /** The generation of the subscribe in flight (token fetch or command), if any. */
  private inflight: number | undefined;
  private retryTimer: TimerHandle | undefined;
  private retryAttempts = 0;
  private token: string | undefined;
  private tokenRetried = false;
  private readonly presenceMap = new Map<string, ClientInfo>();

  /** Made by {@link Client.newSubscription}. */
  constructor(client: Client, channel: string, options: SubscriptionOptions, env: SubscriptionEnv) {
    super();
    this.client = client;
    this.channel = channel;
    this.options = options;
    this.env = env;
    this.token = options.token;
    if (options.since !== undefined) {
      this.positionValue = { ...options.since };
      this.recoverableValue = true;
    }
    const handlers = options.on ?? {};
    for (const key of Object.keys(handlers) as (keyof SubscriptionEvents)[]) {
      const listener = handlers[key];
      if (listener !== undefined) this.on(key, listener as (event: SubscriptionEvents[typeof key]) => void);
    }
  }

  /** The subscription's state. */
  get state(): SubscriptionState {
    return this.stateValue;
  }

  /** The last position seen in the channel's stream (when recoverable). */
  get position(): StreamPosition | undefined {
    return this.positionValue === undefined ? undefined : { ...this.positionValue };
  }

  /** The mirrored presence list (with the `presence` option), one entry per subscribed connection. */
  presenceList(): ClientInfo[] {
    return [...this.presenceMap.values()];
  }

  /** Starts subscribing (now if the client is connected, else after its next connect). */
  subscribe(): void {
    if (this.wanted) return;
    this.wanted = true;
    this.retryAttempts = 0;
    this.tokenRetried = false;
    this.setState("subscribing");
    this.emit("subscribing", { channel: this.channel, code: 0, reason: "subscribe called" });
    if (this.client.state === "connected") void this.sendSubscribe();
  }

  /** Unsubscribes; the position is forgotten, so a later `subscribe()` starts fresh. */
  unsubscribe(): void {
    if (!this.wanted) return;
    this.wanted = false;
    this.generation++;
    this.clearRetry();
    const wasActive = this.stateValue !== "unsubscribed";
    this.positionValue = undefined;
    this.presenceMap.clear();
    this.setState("unsubscribed");
    if (this.client.state === "connected") {
      this.client.commandNow("unsubscribe", { channel: this.channel }, { result: () => {}, error: () => {} });
    }
    if (wasActive) this.emit("unsubscribed", { channel: this.channel, code: 0, reason: "unsubscribe called" });
  }

  /** Publishes to this channel; see {@link Client.publish}. */
  publish(data: Json): Promise<PublishResult> {
    return this.client.publish(this.channel, data);
  }

  /** The channel's subscribers; see {@link Client.presence}. */
  presence(): Promise<PresenceResult> {
    return this.client.presence(this.channel);
  }

  /** The channel's subscriber counts; see {@link Client.presenceStats}. */
  presenceStats(): Promise<PresenceStatsResult> {
    return this.client.presenceStats(this.channel);
  }

  /** The channel's retained publications; see {@link Client.history}. */
  history(options: HistoryOptions = {}): Promise<HistoryResult> {
    return this.client.history(this.channel, options);
  }

  // ---- called by the client -----------------------------------------------------------

  /** The client connected: subscribe again, recovering (§14.3). */
  clientConnected(): void {
    if (!this.wanted) return;
    // A `connected` listener may already have subscribed on this connection.
    if (this.inflight !== undefined && this.inflight === this.generation) return;
    this.clearRetry();
    void this.sendSubscribe();
  }

  /** The connection ended: wait for the next one. */
  clientDisconnected(code: number, reason: string): void {
    this.generation++;
    this.clearRetry();
    if (!this.wanted || this.stateValue === "subscribing") return;
    this.setState("subscribing");
    this.emit("subscribing", { channel: this.channel, code, reason });
  }

  /** A push for this channel. */
  handlePush(kind: string, m: Record<string, unknown>): void {
    // Pushes of an older subscription (before the reply of the current subscribe) are ignored (§11 rule 1).
    if (this.stateValue !== "subscribed") return;
    switch (kind) {
      case "publication":
        this.publication(m as unknown as Publication);
        return;
      case "join": {
        const info = m.info as ClientInfo | undefined;
        if (info === undefined || typeof info.client !== "string") return;
        const known = this.presenceMap.has(info.client);
        if (this.options.presence === true && !known) this.presenceMap.set(info.client, info);
        this.emit("join", { channel: this.channel, info });
        if (this.options.presence === true && !known) this.emitPresence();
        return;
      }
      case "leave": {
        const info = m.info as ClientInfo | undefined;
        if (info === undefined || typeof info.client !== "string") return;
        const known = this.presenceMap.delete(info.client);
        this.emit("leave", { channel: this.channel, info });
        if (known) this.emitPresence();
        return;
      }
      case "unsubscribe": {
        const code = typeof m.code === "number" ? m.code : 0;
        const reason = typeof m.reason === "string" ? m.reason : "";
        const again = typeof m.resubscribe === "boolean" ? m.resubscribe : code >= 2000 && code <= 2499;
        this.generation++;
        if (again) {
          this.setState("subscribing");
          this.emit("subscribing", { channel: this.channel, code, reason });
          void this.sendSubscribe();
        } else {
          this.wanted = false;
          this.presenceMap.clear();
          this.setState("unsubscribed");
          this.emit("unsubscribed", { channel: this.channel, code, reason });
        }
        return;
      }
      default:
        return;
    }
  }

  // ---- internals ----------------------------------------------------------------------

  private publication(p: Publication): void {
    const position = this.positionValue;
    if (typeof p.offset === "number" && position !== undefined && this.recoverableValue) {
      if (p.offset <= position.offset) return; // duplicate (§11)
      if (p.offset > position.offset + 1) {
        this.gap(position.offset + 1, p.offset);
        return;
      }
      position.offset = p.offset;
    }
    const event: PublicationEvent = { channel: this.channel, data: p.data ?? null };
    if (typeof p.offset === "number") event.offset = p.offset;
    if (p.info !== undefined) event.info = p.info;
    this.emit("publication", event);
  }

  /** Lost continuity (§11, §14.4): deliver nothing more, unsubscribe, then subscribe again with recovery. */
  private gap(expected: number, received: number): void {
    const generation = ++this.generation;
    this.setState("subscribing");
    this.emit("gap", { channel: this.channel, expected, received });
    this.emit("subscribing", { channel: this.channel, code: 0, reason: "gap in offsets" });
    const again = (): void => {
      if (generation === this.generation && this.wanted) void this.sendSubscribe();
    };
    this.client.commandNow("unsubscribe", { channel: this.channel }, { result: again, error: again });
  }

  private async sendSubscribe(): Promise<void> {
    const generation = ++this.generation;
    this.inflight = generation;
    const params: Record<string, unknown> = { channel: this.channel };
    if (this.channel.startsWith("$")) {
      let token = this.token;
      const expiry = token === undefined ? undefined : jwtExpiryMs(token);
      const getToken = this.options.getToken;
      if (getToken !== undefined && (token === undefined || (expiry !== undefined && expiry <= Date.now()))) {
        try {
          token = (await getToken({ channel: this.channel })) ?? undefined;
        } catch (error) {
          if (generation !== this.generation || !this.wanted) return;
          this.inflight = undefined;
          const err = error instanceof Error ? error : new Error(String(error));
          this.emit("error", { channel: this.channel, type: "token", error: err });
          if (error instanceof UnauthorizedError) this.fail(103, err.message);
          else this.retry(generation);
          return;
        }
        if (generation !== this.generation || !this.wanted) return;
        this.token = token === "" ? undefined : token;
      }
      if (this.token !== undefined) params.token = this.token;
    }
    if (this.client.state !== "connected") {
      this.inflight = undefined;
      return; // the next connect subscribes
    }
    const recovering = this.recoverableValue && this.positionValue !== undefined;
    if (recovering && this.positionValue !== undefined) {
      params.recover = true;
      params.epoch = this.positionValue.epoch;
      params.offset = this.positionValue.offset;
    }
    if (this.options.presence === true) params.presence = true;
    this.client.commandNow("subscribe", params, {
      result: (result) => this.subscribed(generation, result as unknown as SubscribeResult, recovering),
      error: (error) => this.subscribeFailed(generation, error),
    });
  }

  private subscribed(generation: number, r: SubscribeResult, wasRecovering: boolean): void {
    if (generation !== this.generation || !this.wanted) return;
    this.inflight = undefined;
    this.retryAttempts = 0;
    this.tokenRetried = false;
    this.recoverableValue = r.recoverable === true;
    const recovered = r.recovered === true;
    const event: SubscribedEvent = {
      channel: this.channel,
      recoverable: this.recoverableValue,
      recovered,
      wasRecovering,
      joinLeave: r.join_leave === true,
    };
    if (typeof r.epoch === "string") event.epoch = r.epoch;
    if (typeof r.offset === "number") event.offset = r.offset;
    if (Array.isArray(r.presence)) {
      event.presence = r.presence;
      this.presenceMap.clear();
      for (const info of r.presence) this.presenceMap.set(info.client, info);
    }
    // Recovered publications are judged against the old position; a failed recovery starts from the new top.
    if (!recovered || !this.recoverableValue) this.positionValue = undefined;
    this.setState("subscribed");
    this.emit("subscribed", event);
    if (generation !== this.generation) return; // a listener unsubscribed
    if (Array.isArray(r.presence)) this.emitPresence();
    if (recovered && Array.isArray(r.publications)) {
      for (const p of r.publications) {
        this.publication(p);
        if (generation !== this.generation) return;
      }
    }
    // Then the position: the reply's top, which the next push continues (§10.2).
    if (this.recoverableValue && typeof r.epoch === "string" && typeof r.offset === "number") {
      this.positionValue = { epoch: r.epoch, offset: r.offset };
    } else {
      this.positionValue = undefined;
    }
  }

  private subscribeFailed(generation: number, error: VolleyError): void {
    if (generation !== this.generation || !this.wanted) return;
    this.inflight = undefined;
    // Disconnected or timed out: the connection is gone and the next connect subscribes again.
    if (error.kind === "disconnected" || error.kind === "timeout") return;
    this.emit("error", { channel: this.channel, type: "subscribe", error });
    const freshTokenHelps = this.channel.startsWith("$") && this.options.getToken !== undefined && !this.tokenRetried;
    if ((error.code === 109 || error.code === 101) && freshTokenHelps) {
      // Get a new token and subscribe again, once (§14.3).
      this.tokenRetried = true;
      this.token = undefined;
      void this.sendSubscribe();
      return;
    }
    if (error.kind === "server" && error.temporary) {
      this.retry(generation);
      return;
    }
    this.fail(error.code, error.message);
  }

  /** Retry a temporarily failed subscribe with backoff, per channel (§14.3). */
  private retry(generation: number): void {
    this.clearRetry();
    const delay = backoffDelay(this.retryAttempts, this.env.backoffBaseMs, this.env.backoffCapMs, this.env.random);
    this.retryAttempts++;
    this.retryTimer = this.env.timers.setTimeout(() => {
      this.retryTimer = undefined;
      if (generation === this.generation && this.wanted) void this.sendSubscribe();
    }, delay);
  }

  private fail(code: number, reason: string): void {
    this.wanted = false;
    this.generation++;
    this.presenceMap.clear();
    this.setState("unsubscribed");
    this.emit("unsubscribed", { channel: this.channel, code, reason });
  }

  private clearRetry(): void {
    if (this.retryTimer !== undefined) this.env.timers.clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
  }

  private emitPresence(): void {
    this.emit("presence", { channel: this.channel, clients: this.presenceList() });
  }

  private setState(state: SubscriptionState): void {
    const previous = this.stateValue;
    if (previous === state) return;
    this.stateValue = state;
    this.emit("state", { state, previous });
  }
}
