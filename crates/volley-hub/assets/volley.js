// volley-js 0.1.0: the Volley hub client (volley.v1). Generated from clients/js/src by
// `npm run build` in clients/js; do not edit. The hub serves this file at /volley.js.

// src/env.ts
var host = globalThis;
var hostTimers = {
  setTimeout: (fn, ms) => host.setTimeout(fn, ms),
  clearTimeout: (handle) => host.clearTimeout(handle)
};
function hostNow() {
  return host.performance !== void 0 ? host.performance.now() : Date.now();
}
var encoder;
function utf8Length(text) {
  if (host.TextEncoder !== void 0) {
    encoder ?? (encoder = new host.TextEncoder());
    return encoder.encode(text).length;
  }
  let bytes = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 128) bytes += 1;
    else if (c < 2048) bytes += 2;
    else if (c >= 55296 && c <= 56319 && i + 1 < text.length) {
      bytes += 4;
      i++;
    } else bytes += 3;
  }
  return bytes;
}
function jwtExpiryMs(token) {
  const payload = token.split(".")[1];
  if (payload === void 0 || host.atob === void 0) return void 0;
  try {
    const base64 = payload.replace(/-/g, "+").replace(/_/g, "/");
    const claims = JSON.parse(host.atob(base64 + "=".repeat((4 - base64.length % 4) % 4)));
    if (typeof claims === "object" && claims !== null && typeof claims.exp === "number") {
      return claims.exp * 1e3;
    }
  } catch {
    return void 0;
  }
  return void 0;
}
function reportLater(error) {
  const raise = () => {
    throw error;
  };
  if (host.queueMicrotask !== void 0) host.queueMicrotask(raise);
  else if (host.setTimeout !== void 0) host.setTimeout(raise, 0);
}

// src/emitter.ts
var Emitter = class {
  constructor() {
    this.listeners = /* @__PURE__ */ new Map();
  }
  /** Adds a listener; returns a function that removes it. */
  on(event, listener) {
    let set = this.listeners.get(event);
    if (set === void 0) {
      set = /* @__PURE__ */ new Set();
      this.listeners.set(event, set);
    }
    set.add(listener);
    return () => this.off(event, listener);
  }
  /** Adds a listener called at most once; returns a function that removes it. */
  once(event, listener) {
    const off = this.on(event, (value) => {
      off();
      listener(value);
    });
    return off;
  }
  /** Removes a listener added with `on`. */
  off(event, listener) {
    this.listeners.get(event)?.delete(listener);
  }
  /** Calls every listener of `event` with `value`. */
  emit(event, value) {
    const set = this.listeners.get(event);
    if (set === void 0) return;
    for (const listener of [...set]) {
      try {
        listener(value);
      } catch (error) {
        reportLater(error);
      }
    }
  }
};

// src/errors.ts
var VolleyError = class _VolleyError extends Error {
  /** Makes an error of `kind` with a message, an optional code and temporary flag. */
  constructor(kind, message, code = 0, temporary = false) {
    super(message);
    this.name = "VolleyError";
    this.kind = kind;
    this.code = code;
    this.temporary = temporary;
  }
  /** The error of a failed reply. */
  static fromReply(error, temporary) {
    return new _VolleyError("server", `${error.message} (${error.code})`, error.code, temporary);
  }
};
var UnauthorizedError = class extends Error {
  /** Makes the error, with an optional message. */
  constructor(message = "unauthorized") {
    super(message);
    this.name = "UnauthorizedError";
  }
};

// src/protocol.ts
var SUBPROTOCOL = "volley.v1";
var PATH = "/connection/websocket";
var ErrorCode = {
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
  UnrecoverablePosition: 113
};
var DisconnectCode = {
  Reconnect: 4e3,
  Shutdown: 4001,
  SlowConsumer: 4002,
  ConnectTimeout: 4003,
  InsufficientState: 4005,
  ConnectionLimit: 4006,
  RateLimited: 4007,
  TokenExpired: 4400,
  Unauthorized: 4401,
  BadRequest: 4500,
  Forbidden: 4501
};
function closeAction(code) {
  if (code >= 4e3 && code <= 4399) return "reconnect";
  if (code >= 4400 && code <= 4499) return "new-token";
  if (code >= 4500 && code <= 4999) return "stop";
  if (code === 1e3 || code === 1002 || code === 1003 || code === 1007) return "stop";
  return "reconnect";
}
function isTemporary(error) {
  if (error.code === 100 || error.code === 106 || error.code === 110) return true;
  return error.temporary === true;
}
function backoffDelay(attempt, baseMs, capMs, random) {
  const ceiling = Math.min(capMs, baseMs * 2 ** Math.min(Math.max(attempt, 0), 40));
  return Math.floor(random() * ceiling);
}

// src/fallback.ts
var RETRIES = 3;
function retryDelayMs(retry) {
  return 250 * 2 ** (retry - 1);
}
var FallbackSocket = class {
  /** `base` is the HTTP base (`http[s]://host/connection`). */
  constructor(base, fetchImpl, timers) {
    this.base = base;
    this.fetchImpl = fetchImpl;
    this.timers = timers;
    this.onopen = null;
    this.onmessage = null;
    this.onclose = null;
    this.onerror = null;
    /** Set by `close()` or when the session ended: no more callbacks, no more requests. */
    this.closed = false;
    this.outbox = [];
    this.sending = false;
    this.seq = 0;
    this.maxBody = Number.MAX_SAFE_INTEGER;
    const Controller = host.AbortController;
    this.controller = Controller === void 0 ? void 0 : new Controller();
    this.signal = this.controller?.signal;
  }
  /** Queues one command; it goes out in the next POST. */
  send(data) {
    if (this.closed) throw new Error("send on a closed session");
    this.outbox.push(data);
    if (!this.sending) void this.flush();
  }
  /** Ends the session: cancels the requests in flight and tells the server (`DELETE /session`). */
  close() {
    if (this.closed) return;
    this.closed = true;
    this.controller?.abort();
    this.release();
  }
  /** See {@link TransportSocket.setMaxMessageSize}. */
  setMaxMessageSize(bytes) {
    this.maxBody = bytes;
  }
  /** The server gave the session id: the transport is open. */
  opened(session) {
    if (this.closed) return;
    this.session = session;
    this.onopen?.({});
    if (this.outbox.length > 0 && !this.sending) void this.flush();
  }
  /** One server message (a JSON text). */
  deliver(text) {
    if (this.closed) return;
    if (text.includes('"disconnect"')) {
      try {
        const m = JSON.parse(text);
        if (m.push === "disconnect" && typeof m.code === "number") {
          this.lastDisconnect = { code: m.code, reason: typeof m.reason === "string" ? m.reason : "" };
        }
      } catch {
      }
    }
    this.onmessage?.({ data: text });
  }
  /** The server ended the session: close with the last disconnect push's code, else 1006. */
  ended(why) {
    if (this.closed) return;
    this.closed = true;
    this.controller?.abort();
    this.onclose?.(this.lastDisconnect ?? { code: 1006, reason: why });
  }
  /** The session failed (network, unexpected status): an error, then close 1006. */
  fail(why) {
    if (this.closed) return;
    this.onerror?.({ message: why });
    this.ended(why);
    this.release();
  }
  /** Tells the server the session is over (best effort: it also times out on its own). */
  release() {
    const session = this.session;
    if (session === void 0) return;
    this.fetchImpl(`${this.base}/session?session=${encodeURIComponent(session)}`, { method: "DELETE" }).then(
      () => {
      },
      () => {
      }
    );
  }
  /** `fetch` that resolves with `undefined` when the session was closed meanwhile (the request was aborted). */
  async request(url, init) {
    const response = await this.fetchImpl(url, { ...init, signal: this.signal, cache: "no-store" });
    return this.closed ? void 0 : response;
  }
  /** Waits `ms` on the client's timers. */
  sleep(ms) {
    return new Promise((resolve) => this.timers.setTimeout(resolve, ms));
  }
  /** Sends what is queued, one POST at a time, until the queue is empty. */
  async flush() {
    if (this.session === void 0) return;
    this.sending = true;
    try {
      while (this.outbox.length > 0 && !this.closed) {
        const count = this.batch();
        const body = this.outbox.slice(0, count).join("\n");
        this.seq += 1;
        const url = `${this.base}/send?session=${encodeURIComponent(this.session)}&seq=${this.seq}`;
        if (!await this.post(url, body)) return;
        this.outbox.splice(0, count);
      }
    } finally {
      this.sending = false;
    }
  }
  /** How many queued commands fit in one POST (at least one: the client checked each against the limit). */
  batch() {
    let size = utf8Length(this.outbox[0]);
    let count = 1;
    while (count < this.outbox.length) {
      const next = size + 1 + utf8Length(this.outbox[count]);
      if (next > this.maxBody) break;
      size = next;
      count++;
    }
    return count;
  }
  /** One POST, retried after network failures; whether it was accepted (204). */
  async post(url, body) {
    for (let retry = 0; ; retry++) {
      let response;
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
      if (response === void 0) return false;
      if (response.status === 204 || response.ok) return true;
      this.fail(`send: HTTP ${response.status}`);
      return false;
    }
  }
};

// src/longpoll.ts
var PollSocket = class extends FallbackSocket {
  constructor(base, fetchImpl, timers) {
    super(base, fetchImpl, timers);
    this.ack = 0;
    void this.run();
  }
  async run() {
    let session;
    try {
      const response = await this.request(`${this.base}/poll`, { method: "POST" });
      if (response === void 0) return;
      if (!response.ok) {
        this.fail(`long-poll: HTTP ${response.status}`);
        return;
      }
      session = JSON.parse(await response.text()).session;
    } catch (error) {
      this.fail(`long-poll: ${String(error)}`);
      return;
    }
    if (this.closed) return;
    if (typeof session !== "string" || session === "") {
      this.fail("long-poll: no session id in the reply");
      return;
    }
    this.opened(session);
    let failures = 0;
    while (!this.closed) {
      let response;
      let body;
      try {
        response = await this.request(`${this.base}/poll?session=${encodeURIComponent(session)}&ack=${this.ack}`, {});
        if (response === void 0) return;
        body = await response.text();
      } catch (error) {
        if (this.closed) return;
        failures += 1;
        if (failures > RETRIES) {
          this.fail(`long-poll: ${String(error)}`);
          return;
        }
        await this.sleep(retryDelayMs(failures));
        continue;
      }
      if (this.closed) return;
      if (response.status === 404) {
        this.ended("long-poll session ended");
        return;
      }
      if (!response.ok) {
        this.fail(`long-poll: HTTP ${response.status}`);
        return;
      }
      failures = 0;
      if (!this.receive(body)) return;
    }
  }
  /** Delivers one poll's messages; whether to poll again. */
  receive(body) {
    let reply;
    try {
      reply = JSON.parse(body);
    } catch {
      this.fail("long-poll: a reply that is not JSON");
      return false;
    }
    const { messages, last } = reply;
    if (!Array.isArray(messages) || typeof last !== "number" || last < this.ack) {
      this.fail("long-poll: a reply without messages and last");
      return false;
    }
    this.ack = last;
    for (const message of messages) {
      this.deliver(JSON.stringify(message));
      if (this.closed) return false;
    }
    return true;
  }
};

// src/sse.ts
var SseParser = class {
  constructor() {
    this.buffer = "";
    this.event = "";
    this.data = [];
    this.sawCr = false;
  }
  /** Parses `chunk`; returns the events it completed. */
  push(chunk) {
    const out = [];
    let text = chunk;
    if (this.sawCr && text.startsWith("\n")) text = text.slice(1);
    this.sawCr = false;
    this.buffer += text;
    let start = 0;
    for (; ; ) {
      const end = this.lineEnd(start);
      if (end < 0) break;
      const line = this.buffer.slice(start, end);
      if (this.buffer[end] === "\r") {
        if (end + 1 === this.buffer.length) {
          this.sawCr = true;
          start = end + 1;
          this.line(line, out);
          break;
        }
        start = this.buffer[end + 1] === "\n" ? end + 2 : end + 1;
      } else {
        start = end + 1;
      }
      this.line(line, out);
    }
    this.buffer = this.buffer.slice(start);
    return out;
  }
  lineEnd(from) {
    const lf = this.buffer.indexOf("\n", from);
    const cr = this.buffer.indexOf("\r", from);
    if (cr < 0) return lf;
    if (lf < 0) return cr;
    return Math.min(cr, lf);
  }
  line(line, out) {
    if (line === "") {
      if (this.data.length > 0) {
        const event = { event: this.event === "" ? "message" : this.event, data: this.data.join("\n") };
        if (this.id !== void 0) event.id = this.id;
        out.push(event);
      }
      this.event = "";
      this.data = [];
      return;
    }
    if (line.startsWith(":")) return;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    switch (field) {
      case "event":
        this.event = value;
        break;
      case "data":
        this.data.push(value);
        break;
      case "id":
        if (!value.includes("\0")) this.id = value;
        break;
      default:
        break;
    }
  }
};
var SseSocket = class extends FallbackSocket {
  constructor(base, fetchImpl, timers) {
    super(base, fetchImpl, timers);
    void this.run();
  }
  async run() {
    const Decoder = host.TextDecoder;
    if (Decoder === void 0) {
      this.fail("no TextDecoder here");
      return;
    }
    const decoder = new Decoder();
    const parser = new SseParser();
    try {
      const response = await this.request(`${this.base}/sse`, { headers: { Accept: "text/event-stream" } });
      if (response === void 0) return;
      if (!response.ok || response.body === null) {
        this.fail(`SSE: HTTP ${response.status}`);
        return;
      }
      const reader = response.body.getReader();
      for (; ; ) {
        const { done, value } = await reader.read();
        if (this.closed) {
          reader.cancel().catch(() => {
          });
          return;
        }
        if (done) break;
        for (const event of parser.push(decoder.decode(value, { stream: true }))) {
          this.dispatch(event);
          if (this.closed) return;
        }
      }
      this.ended("SSE stream ended");
    } catch (error) {
      this.fail(`SSE: ${String(error)}`);
    }
  }
  dispatch(event) {
    if (event.event === "session") {
      if (this.session !== void 0) return;
      let id;
      try {
        id = JSON.parse(event.data).session;
      } catch {
        id = void 0;
      }
      if (typeof id !== "string" || id === "") {
        this.fail("SSE: a session event without a session id");
        return;
      }
      this.opened(id);
      return;
    }
    if (event.event !== "message" || this.session === void 0) return;
    this.deliver(event.data);
  }
};

// src/subscription.ts
var Subscription = class extends Emitter {
  /** Made by {@link Client.newSubscription}. */
  constructor(client, channel, options, env) {
    super();
    this.stateValue = "unsubscribed";
    this.wanted = false;
    this.recoverableValue = false;
    this.generation = 0;
    this.retryAttempts = 0;
    this.tokenRetried = false;
    this.presenceMap = /* @__PURE__ */ new Map();
    this.client = client;
    this.channel = channel;
    this.options = options;
    this.env = env;
    this.token = options.token;
    if (options.since !== void 0) {
      this.positionValue = { ...options.since };
      this.recoverableValue = true;
    }
    const handlers = options.on ?? {};
    for (const key of Object.keys(handlers)) {
      const listener = handlers[key];
      if (listener !== void 0) this.on(key, listener);
    }
  }
  /** The subscription's state. */
  get state() {
    return this.stateValue;
  }
  /** The last position seen in the channel's stream (when recoverable). */
  get position() {
    return this.positionValue === void 0 ? void 0 : { ...this.positionValue };
  }
  /** The mirrored presence list (with the `presence` option), one entry per subscribed connection. */
  presenceList() {
    return [...this.presenceMap.values()];
  }
  /** Starts subscribing (now if the client is connected, else after its next connect). */
  subscribe() {
    if (this.wanted) return;
    this.wanted = true;
    this.retryAttempts = 0;
    this.tokenRetried = false;
    this.setState("subscribing");
    this.emit("subscribing", { channel: this.channel, code: 0, reason: "subscribe called" });
    if (this.client.state === "connected") void this.sendSubscribe();
  }
  /** Unsubscribes; the position is forgotten, so a later `subscribe()` starts fresh. */
  unsubscribe() {
    if (!this.wanted) return;
    this.wanted = false;
    this.generation++;
    this.clearRetry();
    const wasActive = this.stateValue !== "unsubscribed";
    this.positionValue = void 0;
    this.presenceMap.clear();
    this.setState("unsubscribed");
    if (this.client.state === "connected") {
      this.client.commandNow("unsubscribe", { channel: this.channel }, { result: () => {
      }, error: () => {
      } });
    }
    if (wasActive) this.emit("unsubscribed", { channel: this.channel, code: 0, reason: "unsubscribe called" });
  }
  /** Publishes to this channel; see {@link Client.publish}. */
  publish(data) {
    return this.client.publish(this.channel, data);
  }
  /** The channel's subscribers; see {@link Client.presence}. */
  presence() {
    return this.client.presence(this.channel);
  }
  /** The channel's subscriber counts; see {@link Client.presenceStats}. */
  presenceStats() {
    return this.client.presenceStats(this.channel);
  }
  /** The channel's retained publications; see {@link Client.history}. */
  history(options = {}) {
    return this.client.history(this.channel, options);
  }
  // ---- called by the client -----------------------------------------------------------
  /** The client connected: subscribe again, recovering (§14.3). */
  clientConnected() {
    if (!this.wanted) return;
    if (this.inflight !== void 0 && this.inflight === this.generation) return;
    this.clearRetry();
    void this.sendSubscribe();
  }
  /** The connection ended: wait for the next one. */
  clientDisconnected(code, reason) {
    this.generation++;
    this.clearRetry();
    if (!this.wanted || this.stateValue === "subscribing") return;
    this.setState("subscribing");
    this.emit("subscribing", { channel: this.channel, code, reason });
  }
  /** A push for this channel. */
  handlePush(kind, m) {
    if (this.stateValue !== "subscribed") return;
    switch (kind) {
      case "publication":
        this.publication(m);
        return;
      case "join": {
        const info = m.info;
        if (info === void 0 || typeof info.client !== "string") return;
        const known = this.presenceMap.has(info.client);
        if (this.options.presence === true && !known) this.presenceMap.set(info.client, info);
        this.emit("join", { channel: this.channel, info });
        if (this.options.presence === true && !known) this.emitPresence();
        return;
      }
      case "leave": {
        const info = m.info;
        if (info === void 0 || typeof info.client !== "string") return;
        const known = this.presenceMap.delete(info.client);
        this.emit("leave", { channel: this.channel, info });
        if (known) this.emitPresence();
        return;
      }
      case "unsubscribe": {
        const code = typeof m.code === "number" ? m.code : 0;
        const reason = typeof m.reason === "string" ? m.reason : "";
        const again = typeof m.resubscribe === "boolean" ? m.resubscribe : code >= 2e3 && code <= 2499;
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
  publication(p) {
    const position = this.positionValue;
    if (typeof p.offset === "number" && position !== void 0 && this.recoverableValue) {
      if (p.offset <= position.offset) return;
      if (p.offset > position.offset + 1) {
        this.gap(position.offset + 1, p.offset);
        return;
      }
      position.offset = p.offset;
    }
    const event = { channel: this.channel, data: p.data ?? null };
    if (typeof p.offset === "number") event.offset = p.offset;
    if (p.info !== void 0) event.info = p.info;
    this.emit("publication", event);
  }
  /** Lost continuity (§11, §14.4): deliver nothing more, unsubscribe, then subscribe again with recovery. */
  gap(expected, received) {
    const generation = ++this.generation;
    this.setState("subscribing");
    this.emit("gap", { channel: this.channel, expected, received });
    this.emit("subscribing", { channel: this.channel, code: 0, reason: "gap in offsets" });
    const again = () => {
      if (generation === this.generation && this.wanted) void this.sendSubscribe();
    };
    this.client.commandNow("unsubscribe", { channel: this.channel }, { result: again, error: again });
  }
  async sendSubscribe() {
    const generation = ++this.generation;
    this.inflight = generation;
    const params = { channel: this.channel };
    if (this.channel.startsWith("$")) {
      let token = this.token;
      const expiry = token === void 0 ? void 0 : jwtExpiryMs(token);
      const getToken = this.options.getToken;
      if (getToken !== void 0 && (token === void 0 || expiry !== void 0 && expiry <= Date.now())) {
        try {
          token = await getToken({ channel: this.channel }) ?? void 0;
        } catch (error) {
          if (generation !== this.generation || !this.wanted) return;
          this.inflight = void 0;
          const err = error instanceof Error ? error : new Error(String(error));
          this.emit("error", { channel: this.channel, type: "token", error: err });
          if (error instanceof UnauthorizedError) this.fail(103, err.message);
          else this.retry(generation);
          return;
        }
        if (generation !== this.generation || !this.wanted) return;
        this.token = token === "" ? void 0 : token;
      }
      if (this.token !== void 0) params.token = this.token;
    }
    if (this.client.state !== "connected") {
      this.inflight = void 0;
      return;
    }
    const recovering = this.recoverableValue && this.positionValue !== void 0;
    if (recovering && this.positionValue !== void 0) {
      params.recover = true;
      params.epoch = this.positionValue.epoch;
      params.offset = this.positionValue.offset;
    }
    if (this.options.presence === true) params.presence = true;
    this.client.commandNow("subscribe", params, {
      result: (result) => this.subscribed(generation, result, recovering),
      error: (error) => this.subscribeFailed(generation, error)
    });
  }
  subscribed(generation, r, wasRecovering) {
    if (generation !== this.generation || !this.wanted) return;
    this.inflight = void 0;
    this.retryAttempts = 0;
    this.tokenRetried = false;
    this.recoverableValue = r.recoverable === true;
    const recovered = r.recovered === true;
    const event = {
      channel: this.channel,
      recoverable: this.recoverableValue,
      recovered,
      wasRecovering,
      joinLeave: r.join_leave === true
    };
    if (typeof r.epoch === "string") event.epoch = r.epoch;
    if (typeof r.offset === "number") event.offset = r.offset;
    if (Array.isArray(r.presence)) {
      event.presence = r.presence;
      this.presenceMap.clear();
      for (const info of r.presence) this.presenceMap.set(info.client, info);
    }
    if (!recovered || !this.recoverableValue) this.positionValue = void 0;
    this.setState("subscribed");
    this.emit("subscribed", event);
    if (generation !== this.generation) return;
    if (Array.isArray(r.presence)) this.emitPresence();
    if (recovered && Array.isArray(r.publications)) {
      for (const p of r.publications) {
        this.publication(p);
        if (generation !== this.generation) return;
      }
    }
    if (this.recoverableValue && typeof r.epoch === "string" && typeof r.offset === "number") {
      this.positionValue = { epoch: r.epoch, offset: r.offset };
    } else {
      this.positionValue = void 0;
    }
  }
  subscribeFailed(generation, error) {
    if (generation !== this.generation || !this.wanted) return;
    this.inflight = void 0;
    if (error.kind === "disconnected" || error.kind === "timeout") return;
    this.emit("error", { channel: this.channel, type: "subscribe", error });
    const freshTokenHelps = this.channel.startsWith("$") && this.options.getToken !== void 0 && !this.tokenRetried;
    if ((error.code === 109 || error.code === 101) && freshTokenHelps) {
      this.tokenRetried = true;
      this.token = void 0;
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
  retry(generation) {
    this.clearRetry();
    const delay = backoffDelay(this.retryAttempts, this.env.backoffBaseMs, this.env.backoffCapMs, this.env.random);
    this.retryAttempts++;
    this.retryTimer = this.env.timers.setTimeout(() => {
      this.retryTimer = void 0;
      if (generation === this.generation && this.wanted) void this.sendSubscribe();
    }, delay);
  }
  fail(code, reason) {
    this.wanted = false;
    this.generation++;
    this.presenceMap.clear();
    this.setState("unsubscribed");
    this.emit("unsubscribed", { channel: this.channel, code, reason });
  }
  clearRetry() {
    if (this.retryTimer !== void 0) this.env.timers.clearTimeout(this.retryTimer);
    this.retryTimer = void 0;
  }
  emitPresence() {
    this.emit("presence", { channel: this.channel, clients: this.presenceList() });
  }
  setState(state) {
    const previous = this.stateValue;
    if (previous === state) return;
    this.stateValue = state;
    this.emit("state", { state, previous });
  }
};

// src/transport.ts
var TRANSPORTS = ["websocket", "sse", "long-poll"];
function httpBase(url) {
  const match = /^(wss?|https?):\/\/([^/?#]*)([^?#]*)/i.exec(url);
  if (match === null) throw new TypeError(`volley: cannot derive an HTTP URL from ${JSON.stringify(url)}`);
  const scheme = match[1].toLowerCase();
  const http = scheme === "wss" || scheme === "https" ? "https" : "http";
  const path = match[3].replace(/\/[^/]*$/, "");
  return `${http}://${match[2]}${path}`;
}
function checkTransports(list) {
  if (list.length === 0) throw new TypeError("volley: the transports option is empty");
  const seen = /* @__PURE__ */ new Set();
  for (const name of list) {
    if (!TRANSPORTS.includes(name)) {
      throw new TypeError(`volley: unknown transport ${JSON.stringify(name)} (use ${TRANSPORTS.join(", ")})`);
    }
    if (seen.has(name)) throw new TypeError(`volley: transport ${JSON.stringify(name)} is listed twice`);
    seen.add(name);
  }
  return [...list];
}

// src/version.ts
var VERSION = "0.1.0";

// src/client.ts
var CONNECT_FAILED_CODE = 1006;
var Client = class extends Emitter {
  /**
   * Makes a client for `url` (default: `/connection/websocket` on the page's
   * host, for pages served by the hub). It does not connect until `connect()`.
   */
  constructor(url, options = {}) {
    super();
    this.stateValue = "disconnected";
    this.conn = null;
    this.subs = /* @__PURE__ */ new Map();
    this.queue = [];
    this.attempts = 0;
    this.attemptSeq = 0;
    /** Index in `transports` of the connection or of the next try. */
    this.transportIndex = 0;
    /** Consecutive attempts on this transport that opened and closed before the connect reply. */
    this.closedBeforeReply = 0;
    this.tokenNeeded = false;
    this.notBefore = 0;
    this.lastClose = { code: 0, reason: "" };
    this.clientId = "";
    this.userId = "";
    this.url = url ?? defaultUrl();
    this.transports = checkTransports(options.transports ?? TRANSPORTS);
    this.httpUrl = options.httpUrl ?? httpBase(this.url);
    this.WebSocketImpl = options.WebSocket ?? host.WebSocket;
    if (this.WebSocketImpl === void 0 && this.transports.includes("websocket")) {
      throw new TypeError("volley: no WebSocket implementation here; pass the WebSocket option");
    }
    this.fetchImpl = options.fetch ?? hostFetch();
    if (this.fetchImpl === void 0 && this.transports.some((name) => name !== "websocket")) {
      throw new TypeError("volley: no fetch here for the sse and long-poll transports; pass the fetch option");
    }
    this.options = options;
    this.timers = options.timers ?? hostTimers;
    this.now = options.now ?? hostNow;
    this.random = options.random ?? Math.random;
    this.timeoutMs = options.timeoutMs ?? 1e4;
    this.backoffBaseMs = options.backoffBaseMs ?? 500;
    this.backoffCapMs = options.backoffCapMs ?? 2e4;
    this.token = options.token === "" ? void 0 : options.token;
  }
  /** The connection state. */
  get state() {
    return this.stateValue;
  }
  /**
   * The transport of the connection (when connected) or of the next try
   * (when connecting); `null` when disconnected.
   */
  get transport() {
    return this.stateValue === "disconnected" ? null : this.currentTransport();
  }
  /** The client id of the current connection (`""` when not connected). */
  get client() {
    return this.clientId;
  }
  /** The user id of the current connection (`""` when anonymous or not connected). */
  get user() {
    return this.userId;
  }
  /** Starts connecting (no-op unless disconnected). The SDK then stays connected until `disconnect()`. */
  connect() {
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
  disconnect() {
    if (this.stateValue === "disconnected") return;
    this.stop(1e3, "disconnect called");
  }
  /**
   * Makes a subscription to `channel` without subscribing yet. Throws if the
   * client already has a subscription to that channel (see `getSubscription`).
   */
  newSubscription(channel, options = {}) {
    if (this.subs.has(channel)) {
      throw new Error(`volley: already have a subscription to ${channel}`);
    }
    const sub = new Subscription(this, channel, options, {
      timers: this.timers,
      now: this.now,
      random: this.random,
      backoffBaseMs: this.backoffBaseMs,
      backoffCapMs: this.backoffCapMs
    });
    this.subs.set(channel, sub);
    return sub;
  }
  /** `newSubscription` (or the existing subscription) followed by `subscribe()`. */
  subscribe(channel, options = {}) {
    const sub = this.subs.get(channel) ?? this.newSubscription(channel, options);
    sub.subscribe();
    return sub;
  }
  /** The subscription to `channel`, if any. */
  getSubscription(channel) {
    return this.subs.get(channel);
  }
  /** Every subscription of this client. */
  subscriptions() {
    return [...this.subs.values()];
  }
  /** Unsubscribes and forgets the subscription. */
  removeSubscription(sub) {
    sub.unsubscribe();
    if (this.subs.get(sub.channel) === sub) this.subs.delete(sub.channel);
  }
  /**
   * Publishes `data` to `channel` (the client must be subscribed to it).
   * Never retried automatically (§14.6): a `"disconnected"` or `"timeout"`
   * failure means the outcome is unknown.
   */
  publish(channel, data) {
    return this.call("publish", { channel, data });
  }
  /** The channel's current subscribers (§6.6). */
  presence(channel) {
    return this.call("presence", { channel });
  }
  /** The channel's subscriber counts (§6.7). */
  presenceStats(channel) {
    return this.call("presence_stats", { channel });
  }
  /** The channel's retained publications (§6.8). */
  history(channel, options = {}) {
    const params = { channel };
    if (options.limit !== void 0) params.limit = options.limit;
    if (options.since !== void 0) params.since = options.since;
    if (options.reverse === true) params.reverse = true;
    return this.call("history", params);
  }
  /** An application-level round trip; resolves with the round-trip time in milliseconds. */
  async ping() {
    const started = this.now();
    await this.call("ping", void 0);
    return this.now() - started;
  }
  /**
   * Sends a command and resolves with its result. While the client is
   * connecting the command waits in a queue, bounded by its timeout; when it
   * is disconnected the promise rejects at once.
   */
  call(method, params) {
    return new Promise((resolve, reject) => {
      this.command(method, params, {
        result: (result) => resolve(result),
        error: reject
      });
    });
  }
  /** Like `call`, with synchronous callbacks (used by subscriptions, whose replies must be handled in order). */
  command(method, params, handler) {
    const transport = this.conn;
    if (this.stateValue === "connected" && transport !== null && transport.connected) {
      this.send(transport, method, params, handler, this.timeoutMs);
      return;
    }
    if (this.stateValue === "disconnected") {
      handler.error(new VolleyError("disconnected", `${method}: client is disconnected`));
      return;
    }
    const item = { method, params, handler, timer: void 0, deadline: this.now() + this.timeoutMs };
    item.timer = this.timers.setTimeout(() => {
      this.queue = this.queue.filter((q) => q !== item);
      handler.error(new VolleyError("timeout", `${method}: not connected within ${this.timeoutMs} ms`));
    }, this.timeoutMs);
    this.queue.push(item);
  }
  /** Sends a command only if connected now; otherwise reports `"disconnected"` (used for resubscription). */
  commandNow(method, params, handler) {
    const transport = this.conn;
    if (this.stateValue === "connected" && transport !== null && transport.connected) {
      this.send(transport, method, params, handler, this.timeoutMs);
    } else {
      handler.error(new VolleyError("disconnected", `${method}: not connected`));
    }
  }
  // ---- connection attempts ------------------------------------------------------------
  async startAttempt() {
    const seq = ++this.attemptSeq;
    this.reconnectTimer = void 0;
    const getToken = this.options.getToken;
    const expired = this.expiresAt !== void 0 && this.now() >= this.expiresAt;
    if (this.tokenNeeded || getToken !== void 0 && (this.token === void 0 || expired)) {
      if (getToken === void 0) {
        this.stop(this.lastClose.code, this.lastClose.reason);
        return;
      }
      let token;
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
      if (token === null || token === void 0 || token === "") {
        if (this.tokenNeeded) {
          this.stop(this.lastClose.code, this.lastClose.reason);
          return;
        }
        this.token = void 0;
      } else {
        this.token = token;
        this.expiresAt = void 0;
      }
      this.tokenNeeded = false;
    }
    this.openTransport();
  }
  openTransport() {
    const name = this.currentTransport();
    let ws;
    try {
      ws = this.newSocket(name);
    } catch (error) {
      this.emit("error", { type: "transport", error: asError(error) });
      this.attemptFailed(CONNECT_FAILED_CODE, `${name} could not start`);
      return;
    }
    const t = {
      ws,
      name,
      opened: false,
      timedOut: false,
      refused: false,
      nextId: 1,
      pending: /* @__PURE__ */ new Map(),
      connected: false,
      maxMessageSize: Number.MAX_SAFE_INTEGER,
      pingIntervalMs: 2e4,
      pongTimeoutMs: 2e4,
      pingInFlight: false,
      attemptTimer: void 0,
      idleTimer: void 0
    };
    this.conn = t;
    this.advice = void 0;
    t.attemptTimer = this.timers.setTimeout(() => {
      t.attemptTimer = void 0;
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
  newSocket(name) {
    const fetchImpl = this.fetchImpl;
    switch (name) {
      case "websocket":
        return new this.WebSocketImpl(this.url, [SUBPROTOCOL]);
      case "sse":
        return new SseSocket(this.httpUrl, fetchImpl, this.timers);
      case "long-poll":
        return new PollSocket(this.httpUrl, fetchImpl, this.timers);
    }
  }
  currentTransport() {
    return this.transports[this.transportIndex] ?? this.transports[0];
  }
  /**
   * An attempt failed before the connect reply in a way that says this
   * transport does not get through: try the next one at once; after the last
   * one, start again from the first with backoff.
   */
  attemptFailed(code, reason) {
    this.closedBeforeReply = 0;
    if (this.transportIndex + 1 < this.transports.length) {
      this.transportIndex += 1;
      this.scheduleReconnect(code, reason, true, false);
      return;
    }
    this.transportIndex = 0;
    this.scheduleReconnect(code, reason, false);
  }
  sendConnect(t) {
    const params = {};
    if (this.token !== void 0) params.token = this.token;
    params.name = this.options.name ?? "volley-js";
    params.version = this.options.version ?? VERSION;
    this.send(t, "connect", params, {
      result: (result) => this.connected(t, result),
      error: (error) => {
        if (error.kind === "server") t.refused = true;
        this.emit("error", { type: "connect", error });
        if (error.code === 101 || error.code === 109) this.tokenNeeded = true;
      }
    }, void 0);
  }
  connected(t, result) {
    if (t.attemptTimer !== void 0) this.timers.clearTimeout(t.attemptTimer);
    t.attemptTimer = void 0;
    t.connected = true;
    t.maxMessageSize = positive(result.max_message_size, Number.MAX_SAFE_INTEGER);
    t.ws.setMaxMessageSize?.(t.maxMessageSize);
    t.pingIntervalMs = positive(result.ping_interval_ms, 2e4);
    t.pongTimeoutMs = positive(result.pong_timeout_ms, 2e4);
    this.attempts = 0;
    this.notBefore = 0;
    this.closedBeforeReply = 0;
    this.clientId = typeof result.client === "string" ? result.client : "";
    this.userId = typeof result.user === "string" ? result.user : "";
    this.scheduleRefresh(t, result.expires_in_ms);
    this.setState("connected");
    const event = {
      client: this.clientId,
      user: this.userId,
      version: String(result.version ?? ""),
      transport: t.name
    };
    if (typeof result.expires_in_ms === "number") event.expiresInMs = result.expires_in_ms;
    this.emit("connected", event);
    if (this.conn !== t) return;
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
  scheduleReconnect(code, reason, immediate, counts = true) {
    const attempt = this.attempts;
    if (counts) this.attempts += 1;
    const jitter = immediate ? 0 : backoffDelay(attempt, this.backoffBaseMs, this.backoffCapMs, this.random);
    const delay = Math.max(jitter, this.notBefore - this.now(), 0);
    this.emit("connecting", { code, reason, attempt, delayMs: delay, transport: this.currentTransport() });
    if (this.stateValue !== "connecting") return;
    this.reconnectTimer = this.timers.setTimeout(() => void this.startAttempt(), delay);
  }
  // ---- receiving ----------------------------------------------------------------------
  receive(t, data) {
    if (typeof data !== "string") {
      this.emit("error", { type: "protocol", error: new Error("binary message ignored") });
      return;
    }
    let message;
    try {
      message = JSON.parse(data);
    } catch (error) {
      this.emit("error", { type: "protocol", error: asError(error) });
      return;
    }
    if (typeof message !== "object" || message === null || Array.isArray(message)) return;
    const m = message;
    if (t.connected) this.armIdle(t);
    if (m.id !== void 0) {
      const id = m.id;
      const pending = typeof id === "number" ? t.pending.get(id) : void 0;
      if (pending === void 0 || typeof id !== "number") return;
      t.pending.delete(id);
      if (pending.timer !== void 0) this.timers.clearTimeout(pending.timer);
      if (typeof m.error === "object" && m.error !== null) {
        const error = m.error;
        pending.handler.error(VolleyError.fromReply(error, isTemporary(error)));
      } else {
        const result = typeof m.result === "object" && m.result !== null ? m.result : {};
        pending.handler.result(result);
      }
      return;
    }
    if (typeof m.push === "string") this.push(t, m.push, m);
  }
  push(t, kind, m) {
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
        this.emit("message", { data: m.data ?? null });
        return;
      case "disconnect": {
        const code = typeof m.code === "number" ? m.code : 0;
        const reason = typeof m.reason === "string" ? m.reason : "";
        this.advice = { code, reason };
        const after = typeof m.reconnect_after_ms === "number" && m.reconnect_after_ms > 0 ? m.reconnect_after_ms : 0;
        this.notBefore = Math.max(this.notBefore, this.now() + after);
        if (code === DisconnectCode.Shutdown) {
          if (this.drainTimer !== void 0) this.timers.clearTimeout(this.drainTimer);
          this.drainTimer = this.timers.setTimeout(() => {
            this.drainTimer = void 0;
            if (this.conn !== t) return;
            this.closeSocket(t, 1e3, "server draining");
            this.transportClosed(t, DisconnectCode.Shutdown, reason, true);
          }, after);
        }
        return;
      }
      default:
        return;
    }
  }
  // ---- sending ------------------------------------------------------------------------
  send(t, method, params, handler, timeoutMs) {
    const id = t.nextId++;
    const command = { id, method };
    if (params !== void 0) command.params = params;
    let frame;
    try {
      frame = JSON.stringify(command);
    } catch (error) {
      handler.error(new VolleyError("too_large", `${method}: params are not JSON: ${asError(error).message}`));
      return;
    }
    const size = utf8Length(frame);
    if (size > t.maxMessageSize) {
      handler.error(
        new VolleyError("too_large", `${method}: ${size} bytes is over the server's limit of ${t.maxMessageSize}`)
      );
      return;
    }
    const pending = { method, handler, timer: void 0 };
    if (timeoutMs !== void 0) {
      pending.timer = this.timers.setTimeout(() => {
        if (t.pending.get(id) !== pending) return;
        t.pending.delete(id);
        handler.error(new VolleyError("timeout", `${method}: no reply within ${timeoutMs} ms`));
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
  armIdle(t) {
    if (t.idleTimer !== void 0) this.timers.clearTimeout(t.idleTimer);
    t.idleTimer = this.timers.setTimeout(() => {
      t.idleTimer = void 0;
      if (this.conn !== t || t.pingInFlight) return;
      t.pingInFlight = true;
      this.send(
        t,
        "ping",
        void 0,
        {
          result: () => {
            t.pingInFlight = false;
          },
          error: () => {
            t.pingInFlight = false;
          }
        },
        t.pongTimeoutMs
      );
    }, t.pingIntervalMs);
  }
  scheduleRefresh(t, expiresInMs) {
    if (this.refreshTimer !== void 0) this.timers.clearTimeout(this.refreshTimer);
    this.refreshTimer = void 0;
    if (typeof expiresInMs !== "number") {
      this.expiresAt = void 0;
      return;
    }
    this.expiresAt = this.now() + expiresInMs;
    if (this.options.getToken === void 0) return;
    this.refreshTimer = this.timers.setTimeout(() => void this.refresh(t, 0), Math.floor(expiresInMs * 0.8));
  }
  async refresh(t, attempt) {
    this.refreshTimer = void 0;
    const getToken = this.options.getToken;
    if (this.conn !== t || !t.connected || getToken === void 0) return;
    let token;
    try {
      token = await getToken({ reason: "refresh" });
    } catch (error) {
      if (this.conn !== t) return;
      this.emit("error", { type: "refresh", error: asError(error) });
      if (!(error instanceof UnauthorizedError)) this.retryRefresh(t, attempt);
      return;
    }
    if (this.conn !== t || !t.connected) return;
    if (token === null || token === void 0 || token === "") {
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
          this.scheduleRefresh(t, result.expires_in_ms);
        },
        error: (error) => {
          if (error.kind === "disconnected" || error.kind === "timeout") return;
          this.emit("error", { type: "refresh", error });
          if (error.code === 101 || error.code === 109 || error.temporary) this.retryRefresh(t, attempt);
        }
      },
      this.timeoutMs
    );
  }
  retryRefresh(t, attempt) {
    if (this.conn !== t || this.expiresAt === void 0) return;
    const delay = backoffDelay(attempt, this.backoffBaseMs, this.backoffCapMs, this.random);
    if (this.now() + delay >= this.expiresAt) return;
    this.refreshTimer = this.timers.setTimeout(() => void this.refresh(t, attempt + 1), delay);
  }
  // ---- ending connections -------------------------------------------------------------
  /** The connection is unusable (timeout, liveness): close it and reconnect as after 1006 (§14.5). */
  transportDead(t, reason) {
    if (this.conn !== t) return;
    this.closeSocket(t, 1e3, reason);
    this.transportClosed(t, CONNECT_FAILED_CODE, reason, false);
  }
  closeSocket(t, code, reason) {
    const ws = t.ws;
    const ignore = () => {
    };
    ws.onopen = ignore;
    ws.onmessage = ignore;
    ws.onclose = ignore;
    ws.onerror = ignore;
    try {
      ws.close(code, reason);
    } catch {
    }
  }
  transportClosed(t, code, reason, immediate) {
    if (this.conn !== t) return;
    const wasConnected = t.connected;
    this.endTransport(t, code, reason);
    if (this.advice !== void 0 && this.advice.code === code && reason === "") reason = this.advice.reason;
    this.lastClose = { code, reason };
    const action = immediate ? "reconnect" : closeAction(code);
    if (action === "stop") {
      this.stop(code, reason);
      return;
    }
    if (action === "new-token") {
      this.tokenNeeded = true;
      this.token = void 0;
      if (this.options.getToken === void 0) {
        this.stop(code, reason);
        return;
      }
    }
    if (wasConnected) {
      this.transportIndex = 0;
      this.closedBeforeReply = 0;
      this.setState("connecting");
      this.emit("disconnected", { code, reason, reconnect: true });
      if (this.stateValue !== "connecting") return;
    }
    if (!wasConnected && !immediate && action === "reconnect") {
      if (!t.refused && (!t.opened || t.timedOut || ++this.closedBeforeReply >= 2)) {
        this.attemptFailed(code, reason);
        return;
      }
    }
    this.scheduleReconnect(code, reason, immediate);
  }
  /** Forgets the transport: fails its commands, stops its timers, tells the subscriptions. */
  endTransport(t, code, reason) {
    this.conn = null;
    t.connected = false;
    if (t.attemptTimer !== void 0) this.timers.clearTimeout(t.attemptTimer);
    if (t.idleTimer !== void 0) this.timers.clearTimeout(t.idleTimer);
    t.attemptTimer = void 0;
    t.idleTimer = void 0;
    for (const timer of [this.refreshTimer, this.drainTimer]) {
      if (timer !== void 0) this.timers.clearTimeout(timer);
    }
    this.refreshTimer = void 0;
    this.drainTimer = void 0;
    this.clientId = "";
    const pending = [...t.pending.values()];
    t.pending.clear();
    for (const p of pending) {
      if (p.timer !== void 0) this.timers.clearTimeout(p.timer);
      p.handler.error(new VolleyError("disconnected", `${p.method}: connection closed (${code} ${reason})`));
    }
    for (const sub of this.subs.values()) sub.clientDisconnected(code, reason);
  }
  /** Ends everything and stays disconnected. */
  stop(code, reason) {
    this.attemptSeq++;
    if (this.reconnectTimer !== void 0) this.timers.clearTimeout(this.reconnectTimer);
    this.reconnectTimer = void 0;
    const t = this.conn;
    if (t !== null) {
      this.closeSocket(t, 1e3, reason);
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
  setState(state) {
    const previous = this.stateValue;
    if (previous === state) return;
    this.stateValue = state;
    this.emit("state", { state, previous, transport: this.transport });
  }
  listenOnline() {
    if (this.options.reconnectOnOnline === false || host.addEventListener === void 0) return;
    if (this.onlineListener !== void 0) return;
    this.onlineListener = () => {
      if (this.stateValue !== "connecting" || this.reconnectTimer === void 0) return;
      if (this.now() < this.notBefore) return;
      this.timers.clearTimeout(this.reconnectTimer);
      this.reconnectTimer = void 0;
      this.attempts = 0;
      this.transportIndex = 0;
      this.closedBeforeReply = 0;
      void this.startAttempt();
    };
    host.addEventListener("online", this.onlineListener);
  }
  unlistenOnline() {
    if (this.onlineListener !== void 0 && host.removeEventListener !== void 0) {
      host.removeEventListener("online", this.onlineListener);
    }
    this.onlineListener = void 0;
  }
};
function positive(value, fallback) {
  return typeof value === "number" && value > 0 ? value : fallback;
}
function asError(value) {
  return value instanceof Error ? value : new Error(String(value));
}
function hostFetch() {
  const f = globalThis.fetch;
  return f === void 0 ? void 0 : (url, init) => f.call(globalThis, url, init);
}
function defaultUrl() {
  const location = host.location;
  if (location === void 0) {
    throw new TypeError("volley: no URL given and no page location to derive one from");
  }
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}${PATH}`;
}
export {
  Client,
  DisconnectCode,
  Emitter,
  ErrorCode,
  PATH,
  SUBPROTOCOL,
  Subscription,
  TRANSPORTS,
  UnauthorizedError,
  VERSION,
  VolleyError,
  backoffDelay,
  closeAction,
  isTemporary
};
