// Subscriptions: resubscribe with recovery (§14.3), duplicates and gaps
// (§11, §14.4), unsubscribe pushes (§7.4), presence mirroring (§7.3), subscribe
// errors and private channel tokens.
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import { Client, type ClientOptions, type Subscription, type SubscriptionOptions } from "../src/index.js";
import { FakeHub, type FakeSocket, type SentCommand } from "./fake.js";

function setup(options: ClientOptions = {}) {
  const hub = new FakeHub();
  const client = new Client("ws://hub.test/connection/websocket", {
    WebSocket: hub.WebSocket,
    transports: ["websocket"],
    random: () => 0.5,
    now: () => Date.now(),
    ...options,
  });
  return { hub, client };
}

/** Records every event of a subscription as short strings. */
function record(sub: Subscription): string[] {
  const log: string[] = [];
  sub.on("subscribing", (e) => log.push(`subscribing ${e.code}`));
  sub.on("subscribed", (e) =>
    log.push(`subscribed recoverable=${e.recoverable} recovered=${e.recovered} wasRecovering=${e.wasRecovering}`),
  );
  sub.on("unsubscribed", (e) => log.push(`unsubscribed ${e.code} ${e.reason}`));
  sub.on("publication", (e) => log.push(`pub ${e.offset ?? "-"} ${JSON.stringify(e.data)}`));
  sub.on("gap", (e) => log.push(`gap ${e.expected} ${e.received}`));
  sub.on("error", (e) => log.push(`error ${e.type} ${(e.error as { code?: number }).code ?? ""}`));
  return log;
}

const pub = (offset: number, text: string) => ({ offset, data: { text } });

function subscribeResult(fields: Record<string, unknown> = {}): Record<string, unknown> {
  return { recoverable: true, epoch: "E1", offset: 0, recovered: false, publications: [], join_leave: false, ...fields };
}

/** Connects, subscribes `channel` and answers the subscribe; returns the socket and the subscribe command. */
function subscribed(
  hub: FakeHub,
  client: Client,
  channel: string,
  result: Record<string, unknown>,
  options: SubscriptionOptions = {},
): { ws: FakeSocket; sub: Subscription; log: string[]; command: SentCommand } {
  const sub = client.newSubscription(channel, options);
  const log = record(sub);
  sub.subscribe();
  client.connect();
  const ws = hub.last;
  ws.accept();
  const command = ws.next("subscribe");
  ws.reply(command, subscribeResult(result));
  return { ws, sub, log, command };
}

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

describe("subscribing", () => {
  it("subscribes after connect, with presence when asked, and delivers publications", () => {
    const { hub, client } = setup();
    const { ws, sub, log, command } = subscribed(hub, client, "chat:lobby", { offset: 12 }, { presence: true });
    expect(command.params).toEqual({ channel: "chat:lobby", presence: true });
    expect(sub.state).toBe("subscribed");
    ws.push("publication", { channel: "chat:lobby", ...pub(13, "hi") });
    ws.push("publication", { channel: "chat:other", ...pub(1, "not mine") });
    expect(log).toEqual([
      "subscribing 0",
      "subscribed recoverable=true recovered=false wasRecovering=false",
      'pub 13 {"text":"hi"}',
    ]);
    expect(sub.position).toEqual({ epoch: "E1", offset: 13 });
  });

  it("subscribes at once when the client is already connected", () => {
    const { hub, client } = setup();
    client.connect();
    hub.last.accept();
    const sub = client.subscribe("ticker:demo");
    expect(hub.last.next("subscribe").params).toEqual({ channel: "ticker:demo" });
    expect(sub.state).toBe("subscribing");
  });

  it("subscribes once when a connected listener subscribes before the SDK resubscribes", () => {
    const { hub, client } = setup();
    const sub = client.newSubscription("chat:lobby");
    client.on("connected", () => sub.subscribe());
    client.connect();
    hub.last.accept();
    expect(hub.last.take().map((c) => c.method)).toEqual(["subscribe"]);
    hub.last.serverClose(1006);
    return vi.advanceTimersByTimeAsync(250).then(() => {
      hub.last.accept();
      expect(hub.last.take().map((c) => c.method)).toEqual(["subscribe"]);
    });
  });

  it("accepts listeners in the options", () => {
    const { hub, client } = setup();
    const seen: unknown[] = [];
    const { ws } = subscribed(hub, client, "chat:lobby", {}, { on: { publication: (p) => seen.push(p.data) } });
    ws.push("publication", { channel: "chat:lobby", ...pub(1, "x") });
    expect(seen).toEqual([{ text: "x" }]);
  });

  it("ignores pushes that arrive before the subscribe reply", () => {
    const { hub, client } = setup();
    const sub = client.newSubscription("chat:lobby");
    const log = record(sub);
    sub.subscribe();
    client.connect();
    const ws = hub.last;
    ws.accept();
    const command = ws.next("subscribe");
    ws.push("publication", { channel: "chat:lobby", ...pub(5, "stale") });
    ws.reply(command, subscribeResult({ offset: 5 }));
    ws.push("publication", { channel: "chat:lobby", ...pub(6, "live") });
    expect(log.filter((l) => l.startsWith("pub"))).toEqual(['pub 6 {"text":"live"}']);
  });

  it("publishes through the subscription and resolves with the reply", async () => {
    const { hub, client } = setup();
    const { ws, sub } = subscribed(hub, client, "chat:lobby", {});
    const done = sub.publish({ text: "hello" });
    const command = ws.next("publish");
    expect(command.params).toEqual({ channel: "chat:lobby", data: { text: "hello" } });
    ws.reply(command, { epoch: "E1", offset: 1 });
    await expect(done).resolves.toEqual({ epoch: "E1", offset: 1 });
  });

  it("sends presence, presence_stats and history for its channel", async () => {
    const { hub, client } = setup();
    const { ws, sub } = subscribed(hub, client, "chat:lobby", {});
    const history = sub.history({ limit: 50, reverse: true });
    expect(ws.next("history").params).toEqual({ channel: "chat:lobby", limit: 50, reverse: true });
    ws.reply(ws.sent.at(-1)!, { epoch: "E1", offset: 2, publications: [pub(2, "b"), pub(1, "a")] });
    await expect(history).resolves.toMatchObject({ offset: 2 });
    const presence = sub.presence();
    ws.reply(ws.next("presence"), { clients: [] });
    await expect(presence).resolves.toEqual({ clients: [] });
    const stats = sub.presenceStats();
    ws.reply(ws.next("presence_stats"), { num_clients: 0, num_users: 0 });
    await expect(stats).resolves.toEqual({ num_clients: 0, num_users: 0 });
  });
});

describe("resubscribing and recovering (§14.3)", () => {
  it("resubscribes after a reconnect from the last position and delivers what was missed, in order", async () => {
    const { hub, client } = setup();
    const { ws, sub, log } = subscribed(hub, client, "chat:lobby", { offset: 5 }, { presence: true });
    ws.push("publication", { channel: "chat:lobby", ...pub(6, "six") });
    ws.push("publication", { channel: "chat:lobby", ...pub(7, "seven") });
    ws.serverClose(1006);
    expect(sub.state).toBe("subscribing");
    await vi.advanceTimersByTimeAsync(250);
    const ws2 = hub.last;
    ws2.accept();
    const again = ws2.next("subscribe");
    expect(again.params).toEqual({ channel: "chat:lobby", recover: true, epoch: "E1", offset: 7, presence: true });
    ws2.reply(again, subscribeResult({ offset: 9, recovered: true, publications: [pub(8, "eight"), pub(9, "nine")] }));
    ws2.push("publication", { channel: "chat:lobby", ...pub(10, "ten") });
    expect(log.slice(4)).toEqual([
      "subscribing 1006",
      "subscribed recoverable=true recovered=true wasRecovering=true",
      'pub 8 {"text":"eight"}',
      'pub 9 {"text":"nine"}',
      'pub 10 {"text":"ten"}',
    ]);
    expect(sub.position).toEqual({ epoch: "E1", offset: 10 });
  });

  it("reports recovered: false with wasRecovering: true and continues from the new stream", async () => {
    const { hub, client } = setup();
    const { ws, sub, log } = subscribed(hub, client, "chat:lobby", { offset: 3 });
    ws.serverClose(1011);
    await vi.advanceTimersByTimeAsync(250);
    hub.last.accept();
    hub.last.reply(hub.last.next("subscribe"), subscribeResult({ epoch: "E2", offset: 1 }));
    expect(log.at(-1)).toBe("subscribed recoverable=true recovered=false wasRecovering=true");
    expect(sub.position).toEqual({ epoch: "E2", offset: 1 });
    hub.last.push("publication", { channel: "chat:lobby", ...pub(2, "new epoch") });
    expect(log.at(-1)).toBe('pub 2 {"text":"new epoch"}');
  });

  it("does not ask to recover a channel without history", async () => {
    const { hub, client } = setup();
    const { ws } = subscribed(hub, client, "news", { recoverable: false, epoch: undefined, offset: undefined });
    ws.push("publication", { channel: "news", data: 1 });
    ws.serverClose(1006);
    await vi.advanceTimersByTimeAsync(250);
    hub.last.accept();
    expect(hub.last.next("subscribe").params).toEqual({ channel: "news" });
  });

  it("recovers from a position given by the application on the first subscribe", () => {
    const { hub, client } = setup();
    const sub = client.newSubscription("chat:lobby", { since: { epoch: "E9", offset: 40 } });
    sub.subscribe();
    client.connect();
    hub.last.accept();
    expect(hub.last.next("subscribe").params).toEqual({ channel: "chat:lobby", recover: true, epoch: "E9", offset: 40 });
  });

  it("resubscribes every channel back to back after connect, then sends queued commands", async () => {
    const { hub, client } = setup();
    client.subscribe("chat:a");
    client.subscribe("chat:b");
    client.connect();
    const published = client.publish("chat:a", 1);
    hub.last.accept();
    expect(hub.last.take().map((c) => `${c.method} ${String(c.params?.channel)}`)).toEqual([
      "subscribe chat:a",
      "subscribe chat:b",
      "publish chat:a",
    ]);
    hub.last.serverClose(1000);
    await expect(published).rejects.toMatchObject({ kind: "disconnected" });
  });

  it("after disconnect() and connect() the subscription recovers", () => {
    const { hub, client } = setup();
    const { ws, sub } = subscribed(hub, client, "chat:lobby", { offset: 2 });
    client.disconnect();
    expect(ws.closedByClient?.code).toBe(1000);
    expect(sub.state).toBe("subscribing");
    client.connect();
    hub.last.accept();
    expect(hub.last.next("subscribe").params).toMatchObject({ recover: true, epoch: "E1", offset: 2 });
  });

  it("unsubscribe() sends unsubscribe, forgets the position, and stays unsubscribed across reconnects", async () => {
    const { hub, client } = setup();
    const { ws, sub, log } = subscribed(hub, client, "chat:lobby", { offset: 2 });
    sub.unsubscribe();
    expect(ws.next("unsubscribe").params).toEqual({ channel: "chat:lobby" });
    expect(log.at(-1)).toBe("unsubscribed 0 unsubscribe called");
    expect(sub.position).toBeUndefined();
    ws.serverClose(1006);
    await vi.advanceTimersByTimeAsync(250);
    hub.last.accept();
    expect(hub.last.take()).toEqual([]);
    sub.subscribe();
    expect(hub.last.next("subscribe").params).toEqual({ channel: "chat:lobby" });
  });
});

describe("duplicates and gaps (§11, §14.4)", () => {
  it("drops publications at or below the position", () => {
    const { hub, client } = setup();
    const { ws, log } = subscribed(hub, client, "chat:lobby", { offset: 5 });
    ws.push("publication", { channel: "chat:lobby", ...pub(5, "old") });
    ws.push("publication", { channel: "chat:lobby", ...pub(6, "new") });
    ws.push("publication", { channel: "chat:lobby", ...pub(6, "again") });
    ws.push("publication", { channel: "chat:lobby", ...pub(3, "older") });
    expect(log.filter((l) => l.startsWith("pub"))).toEqual(['pub 6 {"text":"new"}']);
  });

  it("drops recovered publications already seen", async () => {
    const { hub, client } = setup();
    const { ws, log } = subscribed(hub, client, "chat:lobby", { offset: 5 });
    ws.push("publication", { channel: "chat:lobby", ...pub(6, "six") });
    ws.serverClose(1006);
    await vi.advanceTimersByTimeAsync(250);
    hub.last.accept();
    const again = hub.last.next("subscribe");
    hub.last.reply(again, subscribeResult({ offset: 7, recovered: true, publications: [pub(6, "six"), pub(7, "seven")] }));
    expect(log.filter((l) => l.startsWith("pub"))).toEqual(['pub 6 {"text":"six"}', 'pub 7 {"text":"seven"}']);
  });

  it("on a gap delivers nothing, unsubscribes, and resubscribes with recovery from the position", () => {
    const { hub, client } = setup();
    const { ws, sub, log } = subscribed(hub, client, "chat:lobby", { offset: 7 });
    ws.push("publication", { channel: "chat:lobby", ...pub(9, "nine") });
    expect(log.slice(-2)).toEqual(["gap 8 9", "subscribing 0"]);
    expect(sub.state).toBe("subscribing");
    const unsubscribe = ws.next("unsubscribe");
    ws.push("publication", { channel: "chat:lobby", ...pub(10, "ten") }); // still the old subscription: ignored
    expect(ws.take()).toEqual([]); // waits for the unsubscribe reply
    ws.reply(unsubscribe);
    const again = ws.next("subscribe");
    expect(again.params).toEqual({ channel: "chat:lobby", recover: true, epoch: "E1", offset: 7 });
    ws.reply(again, subscribeResult({ offset: 10, recovered: true, publications: [pub(8, "8"), pub(9, "9"), pub(10, "10")] }));
    expect(log.filter((l) => l.startsWith("pub"))).toEqual([8, 9, 10].map((n) => `pub ${n} {"text":"${n}"}`));
  });
});

describe("unsubscribe pushes (§7.4)", () => {
  it("2000: subscribes again at once with recovery", () => {
    const { hub, client } = setup();
    const { ws, log } = subscribed(hub, client, "chat:lobby", { offset: 4 });
    ws.push("unsubscribe", { channel: "chat:lobby", code: 2000, reason: "insufficient state", resubscribe: true });
    expect(log.at(-1)).toBe("subscribing 2000");
    expect(ws.next("subscribe").params).toEqual({ channel: "chat:lobby", recover: true, epoch: "E1", offset: 4 });
  });

  it("2500: stays unsubscribed and reports it", async () => {
    const { hub, client } = setup();
    const { ws, sub, log } = subscribed(hub, client, "chat:lobby", { offset: 4 });
    ws.push("unsubscribe", { channel: "chat:lobby", code: 2500, reason: "unsubscribed by server", resubscribe: false });
    expect(log.at(-1)).toBe("unsubscribed 2500 unsubscribed by server");
    expect(sub.state).toBe("unsubscribed");
    ws.serverClose(1006);
    await vi.advanceTimersByTimeAsync(250);
    hub.last.accept();
    expect(hub.last.take()).toEqual([]);
  });

  it("an unknown code without the flag is handled by its range", () => {
    const { hub, client } = setup();
    const { ws } = subscribed(hub, client, "chat:lobby", {});
    ws.push("unsubscribe", { channel: "chat:lobby", code: 2100, reason: "future" });
    expect(ws.next("subscribe")).toBeTruthy();
  });
});

describe("subscribe errors", () => {
  it("retries temporary errors with backoff, per channel", async () => {
    const { hub, client } = setup({ random: () => 1 - 2 ** -20 });
    const sub = client.newSubscription("chat:lobby");
    const log = record(sub);
    sub.subscribe();
    client.connect();
    const ws = hub.last;
    ws.accept();
    ws.replyError(ws.next("subscribe"), 106, "limit exceeded", true);
    await vi.advanceTimersByTimeAsync(498);
    expect(ws.take()).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    ws.replyError(ws.next("subscribe"), 100, "internal", true);
    await vi.advanceTimersByTimeAsync(999);
    ws.reply(ws.next("subscribe"), subscribeResult());
    expect(log).toContain("error subscribe 106");
    expect(sub.state).toBe("subscribed");
  });

  it("ends the subscription on a permanent error and reports it", () => {
    const { hub, client } = setup();
    const sub = client.newSubscription("chat:lobby");
    const log = record(sub);
    sub.subscribe();
    client.connect();
    hub.last.accept();
    hub.last.replyError(hub.last.next("subscribe"), 103, "permission denied");
    expect(sub.state).toBe("unsubscribed");
    expect(log.slice(-2)).toEqual(["error subscribe 103", "unsubscribed 103 permission denied (103)"]);
  });

  it("private channels: token from getToken, a new one after 109, once", async () => {
    let n = 0;
    const getToken = vi.fn(async ({ channel }: { channel: string }) => `${channel}#${++n}`);
    const { hub, client } = setup();
    const sub = client.newSubscription("$orders:42", { getToken });
    const log = record(sub);
    sub.subscribe();
    client.connect();
    hub.last.accept();
    await vi.advanceTimersByTimeAsync(0);
    const first = hub.last.next("subscribe");
    expect(first.params).toEqual({ channel: "$orders:42", token: "$orders:42#1" });
    hub.last.replyError(first, 109, "token expired");
    await vi.advanceTimersByTimeAsync(0);
    const second = hub.last.next("subscribe");
    expect(second.params?.token).toBe("$orders:42#2");
    hub.last.replyError(second, 109, "token expired");
    await vi.advanceTimersByTimeAsync(0);
    expect(hub.last.take()).toEqual([]);
    expect(log.at(-1)).toBe("unsubscribed 109 token expired (109)");
  });
});

describe("presence mirror", () => {
  const ada = { client: "c-ada", user: "1", conn_info: { name: "Ada" } };
  const grace = { client: "c-grace", user: "2", conn_info: { name: "Grace" } };

  it("starts from the subscribe snapshot and applies join/leave keyed by client id", () => {
    const { hub, client } = setup();
    const sub = client.newSubscription("chat:lobby", { presence: true });
    const lists: string[] = [];
    sub.on("presence", (e) => lists.push(e.clients.map((c) => c.client).join(",")));
    const joins: string[] = [];
    sub.on("join", (e) => joins.push(e.info.client));
    sub.subscribe();
    client.connect();
    const ws = hub.last;
    ws.accept();
    ws.reply(ws.next("subscribe"), subscribeResult({ join_leave: true, presence: [ada] }));
    ws.push("join", { channel: "chat:lobby", info: ada }); // its own join: already known
    ws.push("join", { channel: "chat:lobby", info: grace });
    ws.push("leave", { channel: "chat:lobby", info: ada });
    ws.push("leave", { channel: "chat:lobby", info: { client: "unknown", user: "" } });
    expect(lists).toEqual(["c-ada", "c-ada,c-grace", "c-grace"]);
    expect(joins).toEqual(["c-ada", "c-grace"]);
    expect(sub.presenceList()).toEqual([grace]);
  });
});
