// The fallback transports (docs/protocol.md, "Transports"): SSE and
// long-polling against an in-memory fake of the hub's HTTP endpoints, the
// fallback order and its rules, and the way back to the WebSocket; with fake
// timers, no sockets, no real sleeps.
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import { Client, type ClientOptions, type TransportName } from "../src/index.js";
import { SseParser } from "../src/sse.js";
import { httpBase } from "../src/transport.js";
import { FakeHub, connectResult } from "./fake.js";
import { FakeHttp, type FakeRequest, type FakeStream } from "./fakehttp.js";

const URL = "ws://hub.test/connection/websocket";

function setup(options: ClientOptions = {}) {
  const hub = new FakeHub();
  const http = new FakeHttp();
  const client = new Client(URL, {
    WebSocket: hub.WebSocket,
    fetch: http.fetch,
    random: () => 0.5,
    now: () => Date.now(),
    ...options,
  });
  const log: string[] = [];
  client.on("state", (e) => log.push(`state ${e.state} ${e.transport}`));
  client.on("connecting", (e) => log.push(`connecting ${e.code} ${e.transport} ${e.delayMs ?? "-"}`));
  client.on("connected", (e) => log.push(`connected ${e.client} ${e.transport}`));
  client.on("disconnected", (e) => log.push(`disconnected ${e.code} ${e.reconnect}`));
  return { hub, http, client, log };
}

/** Lets the SDK's promise chains (fetch, stream reads) run. */
async function flush(): Promise<void> {
  for (let i = 0; i < 5; i++) {
    await vi.advanceTimersByTimeAsync(0); // the immediate reconnect of a fallback is a 0 ms timer
    for (let j = 0; j < 20; j++) await Promise.resolve();
  }
}

/** Opens an SSE session: answers GET /sse with a stream and sends the session event. */
async function openSse(http: FakeHttp, session = "S1"): Promise<{ get: FakeRequest; stream: FakeStream }> {
  const get = http.next("GET", "/connection/sse");
  const stream = get.open();
  stream.event(JSON.stringify({ session }), "session");
  await flush();
  return { get, stream };
}

/** Takes the next POST /send, checks its session and seq, answers 204; its commands. */
async function takeSend(http: FakeHttp, session: string, seq: number) {
  const post = http.next("POST", "/connection/send");
  expect(post.query.get("session")).toBe(session);
  expect(post.query.get("seq")).toBe(String(seq));
  expect(post.headers["Content-Type"]).toBe("text/plain");
  const commands = post.commands;
  post.reply(204);
  await flush();
  return commands;
}

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

describe("the HTTP base and the options", () => {
  it("derives the HTTP base from the WebSocket URL", () => {
    expect(httpBase("ws://h:8000/connection/websocket")).toBe("http://h:8000/connection");
    expect(httpBase("wss://rt.example.com/app/connection/websocket?x=1")).toBe("https://rt.example.com/app/connection");
    expect(() => httpBase("ftp://x/")).toThrow(TypeError);
  });

  it("takes an explicit HTTP base, checks the transports list and needs no WebSocket without the websocket transport", () => {
    const http = new FakeHttp();
    const client = new Client(URL, { fetch: http.fetch, transports: ["long-poll"], httpUrl: "https://other/rt" });
    expect(client.httpUrl).toBe("https://other/rt");
    expect(client.transports).toEqual(["long-poll"]);
    expect(client.transport).toBeNull();
    expect(() => new Client(URL, { fetch: http.fetch, transports: [] })).toThrow(/empty/);
    expect(() => new Client(URL, { fetch: http.fetch, transports: ["sse", "sse"] })).toThrow(/twice/);
    expect(() => new Client(URL, { fetch: http.fetch, transports: ["carrier-pigeon" as TransportName] })).toThrow(/unknown/);
  });
});

describe("the SSE parser", () => {
  const stream = 'event: session\ndata: {"session":"abc"}\n\n: ping\n\nid: 1\ndata: {"a":1}\n\nid: 2\r\ndata: x\r\ndata:y\r\n\r\nretry: 5\nfoo\n\n';
  const expected = [
    { event: "session", data: '{"session":"abc"}' },
    { event: "message", data: '{"a":1}', id: "1" },
    { event: "message", data: "x\ny", id: "2" },
  ];

  it("parses events, comments, multi-line data, ids and CRLF", () => {
    expect(new SseParser().push(stream)).toEqual(expected);
  });

  it("gives the same events with the input cut at every position", () => {
    for (let cut = 0; cut <= stream.length; cut++) {
      const parser = new SseParser();
      const events = [...parser.push(stream.slice(0, cut)), ...parser.push(stream.slice(cut))];
      expect(events, `cut at ${cut}`).toEqual(expected);
    }
  });

  it("reads a lone CR as a line end, also at the end of a chunk", () => {
    const parser = new SseParser();
    expect(parser.push("data: a\r")).toEqual([]);
    expect(parser.push("\rdata: b\r\r")).toEqual([
      { event: "message", data: "a" },
      { event: "message", data: "b" },
    ]);
  });
});

describe("SSE", () => {
  it("falls back to SSE at once when the WebSocket does not open, and runs the session over it", async () => {
    const { hub, http, client, log } = setup({ token: "T" });
    client.connect();
    expect(client.transport).toBe("websocket");
    hub.last.serverClose(1006); // the upgrade failed (a proxy without Upgrade)
    await vi.advanceTimersByTimeAsync(0);
    expect(client.transport).toBe("sse");
    const get = http.next("GET", "/connection/sse");
    expect(get.url).toBe("http://hub.test/connection/sse");
    expect(get.headers.Accept).toBe("text/event-stream");
    const stream = get.open();
    stream.write('event: session\ndata: {"sess'); // cut anywhere
    stream.write('ion":"S1"}\n\n');
    await flush();
    const [connect] = await takeSend(http, "S1", 1);
    expect(connect).toMatchObject({ id: 1, method: "connect", params: { token: "T" } });
    stream.event(JSON.stringify({ id: 1, result: connectResult({ client: "sse-1" }) }), undefined, 1);
    await flush();
    expect(client.state).toBe("connected");
    expect(client.transport).toBe("sse");
    expect(log).toEqual([
      "state connecting websocket",
      "connecting 0 websocket -",
      "connecting 1006 sse 0",
      "state connected sse",
      "connected sse-1 sse",
    ]);

    // A command and its reply; a push.
    const stats = client.presenceStats("chat:a");
    const [command] = await takeSend(http, "S1", 2);
    expect(command).toMatchObject({ id: 2, method: "presence_stats", params: { channel: "chat:a" } });
    stream.event(JSON.stringify({ id: 2, result: { num_clients: 3, num_users: 2 } }), undefined, 2);
    await expect(stats).resolves.toEqual({ num_clients: 3, num_users: 2 });
    const messages: unknown[] = [];
    client.on("message", (e) => messages.push(e.data));
    stream.write(": ping\n\n");
    stream.event(JSON.stringify({ push: "message", data: { hi: 1 } }), undefined, 3);
    await flush();
    expect(messages).toEqual([{ hi: 1 }]);
  });

  it("sends one POST at a time and batches what queued meanwhile, one command per line", async () => {
    const { hub, http, client } = setup({ transports: ["sse"] });
    client.connect();
    expect(hub.sockets).toHaveLength(0);
    const { stream } = await openSse(http);
    await takeSend(http, "S1", 1);
    stream.event(JSON.stringify({ id: 1, result: connectResult() }));
    await flush();
    const a = client.publish("chat:a", 1);
    const b = client.publish("chat:a", 2);
    const c = client.publish("chat:a", 3);
    await flush();
    const first = http.next("POST", "/connection/send");
    expect(first.commands.map((x) => x.params?.data)).toEqual([1]);
    expect(http.pending()).toEqual([]); // the next waits for this one's response
    first.reply(204);
    await flush();
    expect((await takeSend(http, "S1", 3)).map((x) => x.params?.data)).toEqual([2, 3]);
    for (const id of [2, 3, 4]) stream.event(JSON.stringify({ id, result: { offset: id } }));
    await expect(Promise.all([a, b, c])).resolves.toEqual([{ offset: 2 }, { offset: 3 }, { offset: 4 }]);
  });

  it("keeps a POST within the server's max_message_size", async () => {
    const { http, client } = setup({ transports: ["sse"] });
    client.connect();
    const { stream } = await openSse(http);
    await takeSend(http, "S1", 1);
    stream.event(JSON.stringify({ id: 1, result: connectResult({ max_message_size: 120 }) }));
    await flush();
    void client.publish("c:a", "x".repeat(40)).catch(() => {});
    void client.publish("c:a", "y".repeat(40)).catch(() => {});
    void client.publish("c:a", "z".repeat(40)).catch(() => {});
    await flush();
    http.next("POST", "/connection/send").reply(204);
    await flush();
    // Each command is ~80 bytes: the two queued ones would be ~161 > 120, so one per POST.
    expect(await takeSend(http, "S1", 3)).toHaveLength(1);
    expect(await takeSend(http, "S1", 4)).toHaveLength(1);
  });

  it("retries a POST lost on the network with the same seq, and gives up after the retries", async () => {
    const { http, client } = setup({ transports: ["sse"] });
    client.connect();
    await openSse(http);
    const lost = http.next("POST", "/connection/send");
    expect(lost.query.get("seq")).toBe("1");
    lost.fail();
    await flush();
    expect(http.pending()).toEqual([]);
    await vi.advanceTimersByTimeAsync(250);
    const again = http.next("POST", "/connection/send");
    expect(again.query.get("seq")).toBe("1");
    expect(again.body).toBe(lost.body);
    again.fail();
    await vi.advanceTimersByTimeAsync(500);
    http.next("POST", "/connection/send").fail();
    await vi.advanceTimersByTimeAsync(1000);
    const last = http.next("POST", "/connection/send");
    expect(client.state).toBe("connecting");
    last.fail();
    await flush();
    // Given up: the session is closed (DELETE) and the attempt ends.
    const del = http.next("DELETE", "/connection/session");
    expect(del.query.get("session")).toBe("S1");
  });

  it("closes with the code of the last disconnect push when the stream ends", async () => {
    const { http, client, log } = setup({ transports: ["sse"] });
    client.connect();
    const { stream } = await openSse(http);
    await takeSend(http, "S1", 1);
    stream.event(JSON.stringify({ id: 1, result: connectResult() }));
    stream.event(JSON.stringify({ push: "disconnect", code: 4501, reason: "banned", reconnect: false }));
    stream.end();
    await flush();
    expect(client.state).toBe("disconnected");
    expect(log.at(-1)).toBe("disconnected 4501 false");
  });

  it("after a connected SSE session ends without a disconnect push (1006), tries the WebSocket first again", async () => {
    const { hub, http, client, log } = setup();
    client.connect();
    hub.last.serverClose(1006);
    await vi.advanceTimersByTimeAsync(0);
    const { stream } = await openSse(http);
    await takeSend(http, "S1", 1);
    stream.event(JSON.stringify({ id: 1, result: connectResult({ client: "on-sse" }) }));
    await flush();
    expect(client.transport).toBe("sse");
    stream.end();
    await flush();
    expect(log.slice(-3)).toEqual(["state connecting websocket", "disconnected 1006 true", "connecting 1006 websocket 250"]);
    await vi.advanceTimersByTimeAsync(250);
    expect(hub.sockets).toHaveLength(2);
    hub.last.accept({ client: "back-on-ws" });
    expect(client.state).toBe("connected");
    expect(client.transport).toBe("websocket");
    expect(log.at(-1)).toBe("connected back-on-ws websocket");
  });

  it("aborts the stream and deletes the session on disconnect()", async () => {
    const { http, client } = setup({ transports: ["sse"] });
    client.connect();
    const { stream } = await openSse(http);
    await takeSend(http, "S1", 1);
    stream.event(JSON.stringify({ id: 1, result: connectResult() }));
    await flush();
    client.disconnect();
    await flush();
    expect(http.next("DELETE", "/connection/session").query.get("session")).toBe("S1");
    expect(http.requests[0]?.aborted).toBe(true);
  });
});

describe("fallback rules", () => {
  it("falls back when the WebSocket opens but no connect reply comes within the timeout", async () => {
    const { hub, http, client, log } = setup({ timeoutMs: 3000 });
    client.connect();
    hub.last.open();
    await vi.advanceTimersByTimeAsync(2999);
    expect(http.requests).toHaveLength(0);
    await vi.advanceTimersByTimeAsync(1);
    expect(hub.last.closedByClient?.code).toBe(1000);
    expect(client.transport).toBe("sse");
    // (A 0 ms timer set from a timer callback runs 1 ms later under fake timers.)
    await vi.advanceTimersByTimeAsync(1);
    expect(log.at(-1)).toBe("connecting 1006 sse 0");
    http.next("GET", "/connection/sse");
  });

  it("retries the WebSocket once when it closes before the connect reply, falls back the second time", async () => {
    const { hub, http, client } = setup();
    client.connect();
    hub.last.open();
    hub.last.serverClose(1006);
    expect(client.transport).toBe("websocket");
    await vi.advanceTimersByTimeAsync(250);
    expect(hub.sockets).toHaveLength(2);
    hub.last.open();
    hub.last.serverClose(1006);
    expect(client.transport).toBe("sse");
    await flush();
    http.next("GET", "/connection/sse");
  });

  it("does not fall back when the connect command got an error reply (the transport works)", async () => {
    const getToken = vi.fn(async () => "T");
    const { http, client } = setup({ transports: ["sse", "long-poll"], getToken });
    client.connect();
    for (let attempt = 1; attempt <= 3; attempt++) {
      // Until the next try has started (the backoff, then getToken).
      for (let i = 0; i < 100 && http.pending().length === 0; i++) await vi.advanceTimersByTimeAsync(50);
      expect(http.pending().map((r) => `${r.method} ${r.path}`)).toEqual(["GET /connection/sse"]);
      const { stream } = await openSse(http, `S${attempt}`);
      await takeSend(http, `S${attempt}`, 1);
      // Over a fallback the refusal is an error reply and the end of the stream (no close code).
      stream.event(JSON.stringify({ id: 1, error: { code: 101, message: "unauthorized" } }));
      stream.end();
      await flush();
      expect(client.transport).toBe("sse");
    }
    expect(getToken).toHaveBeenCalledTimes(3); // a new token before each try, as after 4401
  });

  it("does not fall back on a close code that is an answer (4501 stops)", async () => {
    const { hub, http, client } = setup();
    client.connect();
    hub.last.open();
    hub.last.serverClose(4501, "forbidden");
    await flush();
    expect(client.state).toBe("disconnected");
    expect(http.requests).toHaveLength(0);
  });

  it("after the last transport fails, starts again from the first with backoff", async () => {
    const { hub, http, client, log } = setup();
    client.connect();
    hub.last.serverClose(1006);
    await vi.advanceTimersByTimeAsync(0);
    http.next("GET", "/connection/sse").reply(502);
    await flush();
    expect(client.transport).toBe("long-poll");
    http.next("POST", "/connection/poll").fail();
    await flush();
    expect(client.transport).toBe("websocket");
    expect(log.at(-1)).toBe("connecting 1006 websocket 250");
    await vi.advanceTimersByTimeAsync(249);
    expect(hub.sockets).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(hub.sockets).toHaveLength(2);
  });
});

describe("long-polling", () => {
  /** Connects over long-polling (SSE answered 404, WebSocket refused); returns the first poll. */
  async function connectPolling() {
    const s = setup();
    s.client.connect();
    s.hub.last.serverClose(1006);
    await vi.advanceTimersByTimeAsync(0);
    s.http.next("GET", "/connection/sse").reply(404, "not found");
    await flush();
    s.http.next("POST", "/connection/poll").json({ session: "P1" });
    await flush();
    const [connect] = await takeSend(s.http, "P1", 1);
    expect(connect?.method).toBe("connect");
    const poll = s.http.next("GET", "/connection/poll");
    expect(poll.query.get("session")).toBe("P1");
    expect(poll.query.get("ack")).toBe("0");
    poll.json({ messages: [{ id: 1, result: connectResult({ client: "lp" }) }], last: 1 });
    await flush();
    expect(s.client.state).toBe("connected");
    expect(s.client.transport).toBe("long-poll");
    return s;
  }

  it("polls with the last seq received and delivers the messages in order", async () => {
    const { http, client } = await connectPolling();
    const got: unknown[] = [];
    client.on("message", (e) => got.push(e.data));
    const poll = http.next("GET", "/connection/poll");
    expect(poll.query.get("ack")).toBe("1");
    poll.json({ messages: [{ push: "message", data: 1 }, { push: "message", data: 2 }], last: 3 });
    await flush();
    expect(got).toEqual([1, 2]);
    expect(http.next("GET", "/connection/poll").query.get("ack")).toBe("3");
  });

  it("asks a poll lost on the network again with the same ack", async () => {
    const { http, client } = await connectPolling();
    const got: unknown[] = [];
    client.on("message", (e) => got.push(e.data));
    http.next("GET", "/connection/poll").fail();
    await vi.advanceTimersByTimeAsync(250);
    const again = http.next("GET", "/connection/poll");
    expect(again.query.get("ack")).toBe("1");
    again.json({ messages: [{ push: "message", data: "kept" }], last: 2 });
    await flush();
    expect(got).toEqual(["kept"]);
  });

  it("ends the session on 404 with the last disconnect push's code and tries the WebSocket again", async () => {
    const { hub, http, log } = await connectPolling();
    http.next("GET", "/connection/poll").json({ messages: [{ push: "disconnect", code: 4000, reason: "api", reconnect: true }], last: 2 });
    await flush();
    http.next("GET", "/connection/poll").reply(404);
    await flush();
    expect(log.slice(-2)).toEqual(["disconnected 4000 true", "connecting 4000 websocket 250"]);
    await vi.advanceTimersByTimeAsync(250);
    expect(hub.sockets).toHaveLength(2);
  });
});
