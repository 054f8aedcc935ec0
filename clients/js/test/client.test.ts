// The connection rules of docs/protocol.md §14 (reconnect, drain, liveness,
// pending commands, token refresh), driven against an in-memory fake hub with
// fake timers: no sockets, no real sleeps.
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import { Client, type ClientOptions, UnauthorizedError, VolleyError } from "../src/index.js";
import { FakeHub, type FakeSocket } from "./fake.js";

const URL = "ws://hub.test/connection/websocket";

/** A WebSocket-only client (the fallback transports have their tests in transports.test.ts). */
function setup(options: ClientOptions = {}) {
  const hub = new FakeHub();
  const client = new Client(URL, {
    WebSocket: hub.WebSocket,
    transports: ["websocket"],
    random: () => 0.5,
    now: () => Date.now(),
    ...options,
  });
  const log: string[] = [];
  client.on("connecting", (e) => log.push(`connecting ${e.code} ${e.attempt ?? "-"} ${e.delayMs ?? "-"}`));
  client.on("connected", (e) => log.push(`connected ${e.client}`));
  client.on("disconnected", (e) => log.push(`disconnected ${e.code} ${e.reason} ${e.reconnect}`));
  return { hub, client, log };
}

/** Connects and answers the connect command; returns the socket. */
function connect(hub: FakeHub, client: Client, result: Record<string, unknown> = {}): FakeSocket {
  client.connect();
  hub.last.accept(result);
  return hub.last;
}

/** Settles a promise into a value or the error it rejected with, so a rejection is never unhandled. */
function settle<T>(promise: Promise<T>): { value?: T; error?: unknown; done: boolean } {
  const out: { value?: T; error?: unknown; done: boolean } = { done: false };
  promise.then(
    (value) => Object.assign(out, { value, done: true }),
    (error: unknown) => Object.assign(out, { error, done: true }),
  );
  return out;
}

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

describe("connecting", () => {
  it("opens the hub URL with the volley.v1 subprotocol and sends connect first", () => {
    const { hub, client, log } = setup({ token: "T1" });
    client.connect();
    expect(client.state).toBe("connecting");
    const ws = hub.last;
    expect(ws.url).toBe(URL);
    expect(ws.protocols).toEqual(["volley.v1"]);
    expect(ws.sent).toEqual([]); // nothing before the handshake
    ws.open();
    const connect = ws.next("connect");
    expect(connect.id).toBe(1);
    expect(connect.params).toEqual({ token: "T1", name: "volley-js", version: "0.1.0" });
    ws.reply(connect, { client: "abc", user: "42", version: "1", ping_interval_ms: 20000, pong_timeout_ms: 20000, max_message_size: 65536 });
    expect(client.state).toBe("connected");
    expect(client.client).toBe("abc");
    expect(client.user).toBe("42");
    expect(log).toEqual(["connecting 0 - -", "connected abc"]);
  });

  it("connects anonymously without a token", () => {
    const { hub, client } = setup();
    client.connect();
    hub.last.open();
    expect(hub.last.next("connect").params).toEqual({ name: "volley-js", version: "0.1.0" });
  });

  it("asks getToken for the first token", async () => {
    const getToken = vi.fn(async () => "FROM-CALLBACK");
    const { hub, client } = setup({ getToken });
    client.connect();
    await vi.advanceTimersByTimeAsync(0);
    expect(getToken).toHaveBeenCalledWith({ reason: "connect" });
    hub.last.open();
    expect(hub.last.next("connect").params?.token).toBe("FROM-CALLBACK");
  });

  it("numbers commands from 1 on every connection and matches replies by id in any order", async () => {
    const { hub, client } = setup();
    const ws = connect(hub, client);
    const a = client.presenceStats("chat:a");
    const b = client.presenceStats("chat:b");
    const [ca, cb] = ws.take();
    expect([ca?.id, cb?.id]).toEqual([2, 3]);
    ws.reply(cb!, { num_clients: 2, num_users: 2 });
    ws.reply(ca!, { num_clients: 1, num_users: 1 });
    await expect(a).resolves.toEqual({ num_clients: 1, num_users: 1 });
    await expect(b).resolves.toEqual({ num_clients: 2, num_users: 2 });
    ws.serverClose(1006);
    await vi.advanceTimersByTimeAsync(1000);
    hub.last.open();
    expect(hub.last.next("connect").id).toBe(1);
  });

  it("kills an attempt that never opens after the command timeout and tries again", async () => {
    const { hub, client, log } = setup({ timeoutMs: 3000 });
    client.connect();
    const first = hub.last;
    await vi.advanceTimersByTimeAsync(2999);
    expect(first.closedByClient).toBeNull();
    await vi.advanceTimersByTimeAsync(1);
    expect(first.closedByClient?.code).toBe(1000);
    expect(log.at(-1)).toBe("connecting 1006 0 250");
    await vi.advanceTimersByTimeAsync(250);
    expect(hub.sockets).toHaveLength(2);
  });
});

describe("commands (§14.6)", () => {
  it("queues commands issued while connecting and sends them after the connect reply", async () => {
    const { hub, client } = setup();
    client.connect();
    const published = client.publish("chat:lobby", { text: "queued" });
    const ws = hub.last;
    ws.open();
    const connect = ws.next("connect");
    expect(ws.take()).toEqual([]); // nothing but connect before the reply (§3.5)
    ws.reply(connect, { client: "c", user: "", version: "1", ping_interval_ms: 20000, pong_timeout_ms: 20000, max_message_size: 65536 });
    const publish = ws.next("publish");
    expect(publish.params).toEqual({ channel: "chat:lobby", data: { text: "queued" } });
    ws.reply(publish, { epoch: "e", offset: 3 });
    await expect(published).resolves.toEqual({ epoch: "e", offset: 3 });
  });

  it("fails a queued command after its timeout", async () => {
    const { hub, client } = setup({ timeoutMs: 5000 });
    client.connect();
    const result = settle(client.publish("chat:lobby", 1));
    await vi.advanceTimersByTimeAsync(4999);
    expect(result.done).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    expect((result.error as VolleyError).kind).toBe("timeout");
    // (The attempt, which has the same timeout, was given up too; the next one connects.)
    await vi.advanceTimersByTimeAsync(250);
    hub.last.accept();
    expect(hub.last.take()).toEqual([]); // never sent
  });

  it("rejects at once while disconnected", async () => {
    const { client } = setup();
    await expect(client.publish("chat:lobby", 1)).rejects.toMatchObject({ kind: "disconnected" });
  });

  it("rejects with the server's error code", async () => {
    const { hub, client } = setup();
    const ws = connect(hub, client);
    const result = client.publish("chat:lobby", 1);
    ws.replyError(ws.next("publish"), 111, "not subscribed");
    await expect(result).rejects.toMatchObject({ kind: "server", code: 111, temporary: false });
  });

  it("a command that times out fails and the connection is treated as dead", async () => {
    const { hub, client, log } = setup({ timeoutMs: 10_000 });
    const ws = connect(hub, client);
    const result = settle(client.history("chat:lobby", { limit: 10 }));
    expect(ws.next("history").params).toEqual({ channel: "chat:lobby", limit: 10 });
    await vi.advanceTimersByTimeAsync(10_000);
    expect((result.error as VolleyError).kind).toBe("timeout");
    expect(ws.closedByClient?.code).toBe(1000);
    expect(log).toContain("disconnected 1006 history timed out true");
    await vi.advanceTimersByTimeAsync(250);
    expect(hub.sockets).toHaveLength(2);
  });

  it("fails pending commands with 'disconnected' on close and never re-sends a publish", async () => {
    const { hub, client } = setup();
    const ws = connect(hub, client);
    const result = settle(client.publish("chat:lobby", { n: 1 }));
    ws.next("publish");
    ws.serverClose(1006);
    await vi.advanceTimersByTimeAsync(0);
    expect((result.error as VolleyError).kind).toBe("disconnected");
    await vi.advanceTimersByTimeAsync(250);
    hub.last.accept();
    expect(hub.last.take()).toEqual([]);
  });

  it("fails a command over max_message_size locally without sending it", async () => {
    const { hub, client } = setup();
    const ws = connect(hub, client, { max_message_size: 100 });
    await expect(client.publish("chat:lobby", "x".repeat(100))).rejects.toMatchObject({ kind: "too_large" });
    expect(ws.take()).toEqual([]);
    // Multi-byte text is measured in UTF-8 bytes: 30 × "é" is 60 bytes, plus the envelope.
    await expect(client.publish("chat:lobby", "é".repeat(30))).rejects.toMatchObject({ kind: "too_large" });
    const small = client.publish("chat:lobby", "ok");
    ws.reply(ws.next("publish"));
    await expect(small).resolves.toEqual({});
    expect(client.state).toBe("connected");
  });

  it("ping resolves with the round-trip time", async () => {
    const { hub, client } = setup();
    const ws = connect(hub, client);
    const rtt = client.ping();
    const ping = ws.next("ping");
    expect(ping.params).toBeUndefined();
    await vi.advanceTimersByTimeAsync(42);
    ws.reply(ping);
    await expect(rtt).resolves.toBe(42);
  });

  it("ignores replies to unknown ids, unknown pushes and non-JSON, reporting the last", () => {
    const { hub, client } = setup();
    const ws = connect(hub, client);
    const errors: string[] = [];
    client.on("error", (e) => errors.push(e.type));
    ws.deliver({ id: 99, result: {} });
    ws.push("future_push_kind", { x: 1 });
    ws.sendText("not json");
    expect(errors).toEqual(["protocol"]);
    expect(client.state).toBe("connected");
  });

  it("delivers message pushes", () => {
    const { hub, client } = setup();
    const ws = connect(hub, client);
    const got: unknown[] = [];
    client.on("message", (m) => got.push(m.data));
    ws.push("message", { data: { text: "export ready" } });
    expect(got).toEqual([{ text: "export ready" }]);
  });
});

describe("reconnecting (§14.1)", () => {
  it("reconnects with full-jitter exponential backoff and resets after a connect", async () => {
    const { hub, client, log } = setup({ random: () => 1 - 2 ** -20 });
    const ws = connect(hub, client);
    ws.serverClose(1006, "");
    expect(client.state).toBe("connecting");
    expect(log).toContain("disconnected 1006  true");
    const expected = [499, 999, 1999, 3999, 7999, 15_999, 19_999, 19_999];
    for (const [n, delay] of expected.entries()) {
      const before = hub.sockets.length;
      await vi.advanceTimersByTimeAsync(delay - 1);
      expect(hub.sockets.length, `attempt ${n} not before ${delay} ms`).toBe(before);
      await vi.advanceTimersByTimeAsync(1);
      expect(hub.sockets.length, `attempt ${n} at ${delay} ms`).toBe(before + 1);
      hub.last.serverClose(1006); // handshake failed
    }
    expect(log.filter((l) => l.startsWith("connecting 1006")).map((l) => l.split(" ")[3])).toEqual(
      [...expected, 19_999].map(String),
    );
    // A successful connect resets n: the next loss waits at most base.
    await vi.advanceTimersByTimeAsync(19_999);
    hub.last.accept();
    hub.last.serverClose(1011);
    expect(log.at(-1)).toBe("connecting 1011 0 499");
  });

  it("waits at least reconnect_after_ms from the disconnect push", async () => {
    const { hub, client } = setup({ random: () => 0 });
    const ws = connect(hub, client);
    ws.push("disconnect", { code: 4006, reason: "connection limit", reconnect: true, reconnect_after_ms: 5000 });
    await vi.advanceTimersByTimeAsync(1000);
    ws.serverClose(4006, "connection limit");
    await vi.advanceTimersByTimeAsync(3999);
    expect(hub.sockets).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(hub.sockets).toHaveLength(2);
  });

  it.each([1001, 1006, 1009, 1011, 1013, 3000, 4000, 4002, 4004, 4005, 4007])(
    "reconnects and reports it after close %i",
    async (code) => {
      const { hub, client, log } = setup();
      connect(hub, client).serverClose(code, "why");
      expect(log).toContain(`disconnected ${code} why true`);
      await vi.advanceTimersByTimeAsync(250);
      expect(hub.sockets).toHaveLength(2);
    },
  );

  it.each([1000, 1002, 1003, 1007, 4500, 4501, 4999])("stops after close %i and reports the code", async (code) => {
    const { hub, client, log } = setup();
    connect(hub, client).serverClose(code, "bye");
    expect(client.state).toBe("disconnected");
    expect(log.at(-1)).toBe(`disconnected ${code} bye false`);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(hub.sockets).toHaveLength(1);
  });

  it("takes the reason from the disconnect push when the close frame has none", () => {
    const { hub, client, log } = setup();
    const ws = connect(hub, client);
    ws.push("disconnect", { code: 4501, reason: "banned", reconnect: false });
    ws.serverClose(4501, "");
    expect(log.at(-1)).toBe("disconnected 4501 banned false");
  });

  it("does not reconnect after disconnect(), and connect() starts again", async () => {
    const { hub, client, log } = setup();
    const ws = connect(hub, client);
    const pending = settle(client.ping());
    client.disconnect();
    expect(ws.closedByClient?.code).toBe(1000);
    expect(client.state).toBe("disconnected");
    expect(log.at(-1)).toBe("disconnected 1000 disconnect called false");
    await vi.advanceTimersByTimeAsync(0);
    expect((pending.error as VolleyError).kind).toBe("disconnected");
    await vi.advanceTimersByTimeAsync(60_000);
    expect(hub.sockets).toHaveLength(1);
    client.connect();
    expect(hub.sockets).toHaveLength(2);
  });

  it("leaves no-op handlers on a socket it closes (the ws package throws on an error event nobody listens to)", async () => {
    const { hub, client } = setup();
    client.connect();
    const ws = hub.last; // still connecting
    client.disconnect();
    expect(ws.closedByClient?.code).toBe(1000);
    expect(typeof ws.onerror).toBe("function");
    expect(() => ws.onerror?.({})).not.toThrow();
    ws.serverClose(1006); // a late close event changes nothing
    expect(client.state).toBe("disconnected");
    await vi.advanceTimersByTimeAsync(60_000);
    expect(hub.sockets).toHaveLength(1);
  });

  it("closes a failed connect's socket by the server's close code (4401 without getToken: stop)", () => {
    const { hub, client, log } = setup({ token: "bad" });
    client.connect();
    const ws = hub.last;
    ws.open();
    ws.replyError(ws.next("connect"), 101, "unauthorized");
    ws.serverClose(4401, "unauthorized");
    expect(client.state).toBe("disconnected");
    expect(log.at(-1)).toBe("disconnected 4401 unauthorized false");
  });

  it("gets a new token before reconnecting after 4400", async () => {
    let n = 0;
    const getToken = vi.fn(async () => `T${++n}`);
    const { hub, client } = setup({ getToken });
    client.connect();
    await vi.advanceTimersByTimeAsync(0);
    const first = hub.last;
    expect(first.accept().params?.token).toBe("T1");
    first.push("disconnect", { code: 4400, reason: "token expired", reconnect: true });
    first.serverClose(4400, "token expired");
    await vi.advanceTimersByTimeAsync(250);
    expect(getToken).toHaveBeenCalledTimes(2);
    expect(hub.last.accept().params?.token).toBe("T2");
  });

  it("reuses a valid token on an ordinary reconnect", async () => {
    const getToken = vi.fn(async () => "SAME");
    const { hub, client } = setup({ getToken });
    client.connect();
    await vi.advanceTimersByTimeAsync(0);
    hub.last.accept({ expires_in_ms: 3_600_000 });
    hub.last.serverClose(1006);
    await vi.advanceTimersByTimeAsync(250);
    expect(getToken).toHaveBeenCalledTimes(1);
    expect(hub.last.accept().params?.token).toBe("SAME");
  });

  it("stops when getToken has no token after 4401, or throws UnauthorizedError", async () => {
    for (const answer of [async () => null, async () => Promise.reject(new UnauthorizedError("banned"))]) {
      let calls = 0;
      const getToken = vi.fn(async () => (++calls === 1 ? "T1" : answer()));
      const { hub, client, log } = setup({ getToken });
      client.connect();
      await vi.advanceTimersByTimeAsync(0);
      hub.last.accept();
      hub.last.serverClose(4401, "unauthorized");
      await vi.advanceTimersByTimeAsync(250);
      expect(client.state).toBe("disconnected");
      expect(log.at(-1)).toMatch(/^disconnected 4401 .* false$/);
      expect(hub.sockets).toHaveLength(1);
    }
  });

  it("retries with backoff when getToken fails temporarily", async () => {
    let calls = 0;
    const getToken = vi.fn(async () => {
      calls++;
      if (calls === 2) throw new Error("backend down");
      return `T${calls}`;
    });
    const { hub, client } = setup({ getToken, random: () => 0.999 });
    client.connect();
    await vi.advanceTimersByTimeAsync(0);
    hub.last.accept();
    hub.last.serverClose(4400, "token expired");
    await vi.advanceTimersByTimeAsync(499); // attempt 0: getToken fails
    expect(getToken).toHaveBeenCalledTimes(2);
    expect(hub.sockets).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(999); // attempt 1
    expect(getToken).toHaveBeenCalledTimes(3);
    expect(hub.last.accept().params?.token).toBe("T3");
  });
});

describe("server drain, 4001 (§14.2)", () => {
  it("keeps working until reconnect_after_ms, then closes 1000 and reconnects at once", async () => {
    const { hub, client, log } = setup({ random: () => 0.999 });
    const ws = connect(hub, client);
    ws.push("disconnect", { code: 4001, reason: "shutdown", reconnect: true, reconnect_after_ms: 8000 });
    await vi.advanceTimersByTimeAsync(7000);
    const stats = client.presenceStats("chat:lobby");
    ws.reply(ws.next("presence_stats"), { num_clients: 1, num_users: 1 });
    await expect(stats).resolves.toEqual({ num_clients: 1, num_users: 1 });
    expect(ws.closedByClient).toBeNull();
    await vi.advanceTimersByTimeAsync(1000);
    expect(ws.closedByClient?.code).toBe(1000);
    // No extra delay: a 0 ms timer (which fake timers run 1 ms later when it is set during a tick).
    await vi.advanceTimersByTimeAsync(1);
    expect(hub.sockets).toHaveLength(2);
    expect(log).toContain("disconnected 4001 shutdown true");
    expect(log.at(-1)).toBe("connecting 4001 0 0");
  });

  it("if the server closes first (1001), reconnects with backoff but not before the advised time", async () => {
    const { hub, client } = setup({ random: () => 0 });
    const ws = connect(hub, client);
    ws.push("disconnect", { code: 4001, reason: "shutdown", reconnect: true, reconnect_after_ms: 8000 });
    await vi.advanceTimersByTimeAsync(2000);
    ws.serverClose(1001, "going away");
    await vi.advanceTimersByTimeAsync(5999);
    expect(hub.sockets).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(hub.sockets).toHaveLength(2);
  });
});

describe("liveness (§14.5)", () => {
  it("pings after ping_interval_ms of silence; a reply keeps the connection", async () => {
    const { hub, client } = setup();
    const ws = connect(hub, client, { ping_interval_ms: 20_000, pong_timeout_ms: 10_000 });
    await vi.advanceTimersByTimeAsync(19_999);
    expect(ws.take()).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    const ping = ws.next("ping");
    await vi.advanceTimersByTimeAsync(9_000);
    ws.reply(ping);
    await vi.advanceTimersByTimeAsync(5_000);
    expect(ws.closedByClient).toBeNull();
    expect(client.state).toBe("connected");
  });

  it("any message resets the silence timer", async () => {
    const { hub, client } = setup();
    const ws = connect(hub, client, { ping_interval_ms: 20_000 });
    await vi.advanceTimersByTimeAsync(15_000);
    ws.push("message", { data: 1 });
    await vi.advanceTimersByTimeAsync(15_000);
    expect(ws.take()).toEqual([]);
    await vi.advanceTimersByTimeAsync(5_000);
    expect(ws.next("ping")).toBeTruthy();
  });

  it("no reply within pong_timeout_ms: closes (1000) and reconnects as for 1006", async () => {
    const { hub, client, log } = setup();
    const ws = connect(hub, client, { ping_interval_ms: 20_000, pong_timeout_ms: 10_000 });
    await vi.advanceTimersByTimeAsync(20_000);
    ws.next("ping");
    await vi.advanceTimersByTimeAsync(9_999);
    expect(ws.closedByClient).toBeNull();
    await vi.advanceTimersByTimeAsync(1);
    expect(ws.closedByClient?.code).toBe(1000);
    expect(log).toContain("disconnected 1006 ping timed out true");
    await vi.advanceTimersByTimeAsync(250);
    expect(hub.sockets).toHaveLength(2);
  });
});

describe("token refresh (§14.7)", () => {
  it("refreshes at 80 % of expires_in_ms with a token from getToken, then reschedules", async () => {
    let n = 0;
    const getToken = vi.fn(async () => `T${++n}`);
    const { hub, client } = setup({ getToken });
    client.connect();
    await vi.advanceTimersByTimeAsync(0);
    const ws = hub.last;
    ws.accept({ expires_in_ms: 10_000 });
    ws.deliver({ push: "message", data: 0 }); // keep liveness quiet
    await vi.advanceTimersByTimeAsync(7_999);
    expect(ws.take()).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(getToken).toHaveBeenLastCalledWith({ reason: "refresh" });
    const refresh = ws.next("refresh");
    expect(refresh.params).toEqual({ token: "T2" });
    ws.reply(refresh, { expires_in_ms: 5_000 });
    await vi.advanceTimersByTimeAsync(3_999);
    expect(ws.take()).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(ws.next("refresh").params).toEqual({ token: "T3" });
  });

  it("retries a temporary failure with backoff, asks a new token after 109, stops at the expiry", async () => {
    let n = 0;
    const getToken = vi.fn(async () => `T${++n}`);
    const { hub, client } = setup({ getToken, random: () => 0.999 });
    client.connect();
    await vi.advanceTimersByTimeAsync(0);
    const ws = hub.last;
    ws.accept({ expires_in_ms: 10_000, ping_interval_ms: 60_000 });
    await vi.advanceTimersByTimeAsync(8_000);
    ws.replyError(ws.next("refresh"), 100, "internal", true);
    await vi.advanceTimersByTimeAsync(499); // backoff attempt 0
    const second = ws.next("refresh");
    expect(second.params).toEqual({ token: "T3" });
    ws.replyError(second, 109, "token expired");
    await vi.advanceTimersByTimeAsync(999); // attempt 1: a new token
    expect(ws.next("refresh").params).toEqual({ token: "T4" });
    ws.replyError(ws.sent.at(-1)!, 110, "too many requests", true);
    // The next backoff (1999 ms) would pass the expiry (at 10 000 ms): no more tries.
    await vi.advanceTimersByTimeAsync(5_000);
    expect(ws.take()).toEqual([]);
    expect(client.state).toBe("connected");
  });

  it("gets a fresh token when reconnecting after the session expired", async () => {
    let n = 0;
    const getToken = vi.fn(async () => `T${++n}`);
    const { hub, client } = setup({ getToken, random: () => 0.999 });
    client.connect();
    await vi.advanceTimersByTimeAsync(0);
    hub.last.accept({ expires_in_ms: 1_000, ping_interval_ms: 60_000 });
    hub.last.serverClose(1006); // before the refresh
    await vi.advanceTimersByTimeAsync(499);
    hub.last.open();
    expect(hub.last.next("connect").params?.token).toBe("T1"); // still valid
    hub.last.serverClose(1006);
    await vi.advanceTimersByTimeAsync(999); // now past the expiry
    expect(getToken).toHaveBeenCalledTimes(2);
    expect(hub.last.accept().params?.token).toBe("T2");
  });
});
