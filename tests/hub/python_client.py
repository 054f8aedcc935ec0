#!/usr/bin/env python3
"""A third-party volley.v1 client, written from docs/protocol.md alone, tested
against a running `volley serve`.

    python_client.py --ws ws://ADDR/connection/websocket --http http://ADDR \
        --api-key KEY --token-secret SECRET [--timeout SECONDS]

The server must be configured as tests/hub/run.sh does: anonymous
connections allowed, an HS256 token secret, a namespace `room` with presence,
join/leave, history (size >= 2000) and client publishing, open to anonymous
clients, a namespace `hist` with history only (size >= 2000), and a
namespace `plain` without history. Channel names carry a
random suffix, so the script can run against a server that has seen other
runs.

With --demo it checks demo mode instead (`volley serve` without --config,
given --api-key and --admin-key): the stdout lines, the pages, /demo/token,
the chat and ticker namespaces, the demo publisher and the admin stats.

What it covers: connect (HS256 token, anonymous, bad and expired tokens),
subscribe with presence and join/leave, publications through the HTTP API
with offsets, ping, presence, client publish, history, error replies, the
HTTP API (every method and its errors), disconnect with and without
reconnect (4000/4501) by client and by user, recovery (exact, nothing
missed, bad epoch, past the top), a namespace without history, protocol
violations (4500), handshake rejections, refresh, private channels and the
`channels` claim, limits (112, 110, 4007, 1009, 4003), a slow consumer (4002
then exact recovery of more than the queue limit), back-to-back recoveries,
the fallbacks (§2.5: long-polling and Server-Sent Events, over urllib),
and, with --server-pid, the drain on SIGTERM (4001, 503, 1001).

Each check prints one line (PASS/FAIL and what it saw); the script ends with
`N passed, M failed` and exits 1 on any failure. Every wait is bounded.
`--only TEXT` runs only the checks whose name contains TEXT.
Uses only the standard library and `websockets`.
"""

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import re
import secrets
import ssl
import sys
import time
import traceback
import urllib.error
import urllib.request

from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

SUBPROTOCOL = "volley.v1"

ARGS = None  # set in main()
B2B_CHANNELS = 4  # channels recovered back to back in check_back_to_back_recovery
SSL_CONTEXT = None  # with --cafile: wss:// and https:// trusting that certificate


def http_opener():
    # No proxy for loopback, whatever the environment says.
    handlers = [urllib.request.ProxyHandler({})]
    if SSL_CONTEXT is not None:
        handlers.append(urllib.request.HTTPSHandler(context=SSL_CONTEXT))
    return urllib.request.build_opener(*handlers)


def _http(method, path, body=None, headers=None):
    """One request; (status, headers, body), whatever the status."""
    req = urllib.request.Request(ARGS.http + path, data=body, method=method, headers=headers or {})
    try:
        with http_opener().open(req, timeout=ARGS.timeout) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


class CheckFailed(Exception):
    pass


def require(cond, what):
    if not cond:
        raise CheckFailed(what)


# ---- tokens ---------------------------------------------------------------------


def b64url(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def hs256_token(secret, claims):
    """A compact JWS (RFC 7515) signed with HMAC-SHA256, as §9 describes."""
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    payload = b64url(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = ("%s.%s" % (header, payload)).encode("ascii")
    sig = hmac.new(secret.encode(), signing_input, hashlib.sha256).digest()
    return "%s.%s.%s" % (header, payload, b64url(sig))


# ---- HTTP API -------------------------------------------------------------------


def _http_post(path, body, headers):
    status, _, raw = _http("POST", path, json.dumps(body).encode(), headers)
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = None
    return status, parsed, raw


async def api(method, body, key=None, expect_ok=True):
    """POST /api/<method>. Returns (status, parsed JSON body)."""
    headers = {"Content-Type": "application/json"}
    key = ARGS.api_key if key is None else key
    if key != "":
        headers["Authorization"] = "apikey %s" % key
    status, parsed, raw = await asyncio.to_thread(
        _http_post, "/api/%s" % method, body, headers)
    if expect_ok:
        require(status == 200 and isinstance(parsed, dict) and "result" in parsed,
                "POST /api/%s %s -> HTTP %s %r" % (method, json.dumps(body), status, raw[:300]))
        return parsed["result"]
    return status, parsed


async def publish(channel, data):
    return await api("publish", {"channel": channel, "data": data})


# ---- a volley.v1 connection -------------------------------------------------------


class Conn:
    """One WebSocket with the volley.v1 envelope: commands with ids, replies
    matched by id, pushes queued in arrival order."""

    def __init__(self, ws):
        self.ws = ws
        self.next_id = 1
        self.pending = {}
        self.pushes = asyncio.Queue()
        self.events = []  # ("reply", id) / ("push", kind), in arrival order
        self.closed = asyncio.get_running_loop().create_future()
        self.reader = asyncio.create_task(self._read())
        self.client_id = None

    @classmethod
    async def open(cls):
        ws = await ws_connect(ARGS.ws, subprotocols=[SUBPROTOCOL], open_timeout=ARGS.timeout,
                              close_timeout=5, ping_interval=None, max_size=64 << 20, proxy=None,
                              ssl=SSL_CONTEXT)
        require(ws.subprotocol == SUBPROTOCOL,
                "handshake selected subprotocol %r, want %r" % (ws.subprotocol, SUBPROTOCOL))
        return cls(ws)

    async def _read(self):
        try:
            async for raw in self.ws:
                if not isinstance(raw, str):
                    self.events.append(("binary", None))
                    continue
                msg = json.loads(raw)
                if "id" in msg:
                    self.events.append(("reply", msg["id"]))
                    fut = self.pending.pop(msg["id"], None)
                    if fut is not None and not fut.done():
                        fut.set_result(msg)
                elif "push" in msg:
                    self.events.append(("push", msg["push"]))
                    self.pushes.put_nowait(msg)
        except ConnectionClosed:
            pass
        except Exception as e:  # noqa: BLE001 -- reported through `closed`
            self.events.append(("reader-error", repr(e)))
        finally:
            rcvd = self.ws.protocol.close_rcvd
            code = rcvd.code if rcvd is not None else 1006
            reason = rcvd.reason if rcvd is not None else ""
            if not self.closed.done():
                self.closed.set_result((code, reason))
            for fut in self.pending.values():
                if not fut.done():
                    fut.set_exception(CheckFailed("connection closed (%s %r) before the reply" % (code, reason)))

    async def send_raw(self, obj):
        await self.ws.send(json.dumps(obj))

    async def call(self, method, params=None):
        """Sends a command, returns the whole reply ({id, result} or {id, error})."""
        cid = self.next_id
        self.next_id += 1
        fut = asyncio.get_running_loop().create_future()
        self.pending[cid] = fut
        cmd = {"id": cid, "method": method}
        if params is not None:
            cmd["params"] = params
        await self.send_raw(cmd)
        reply = await asyncio.wait_for(fut, ARGS.timeout)
        require(reply.get("id") == cid, "reply id %r, sent %r" % (reply.get("id"), cid))
        require(("result" in reply) != ("error" in reply), "reply must have exactly one of result/error: %r" % reply)
        return reply

    async def ok(self, method, params=None):
        reply = await self.call(method, params)
        require("result" in reply, "%s %s -> error %r" % (method, json.dumps(params), reply.get("error")))
        require(isinstance(reply["result"], dict), "result is not an object: %r" % reply)
        return reply["result"]

    async def err(self, method, params, code):
        reply = await self.call(method, params)
        require("error" in reply, "%s %s -> %r, want error %d" % (method, json.dumps(params), reply, code))
        e = reply["error"]
        require(e.get("code") == code, "%s %s -> error %r, want code %d" % (method, json.dumps(params), e, code))
        require(isinstance(e.get("message"), str), "error without a message: %r" % e)
        return e

    async def connect(self, token=None):
        params = {"name": "python-websockets-test", "version": "1"}
        if token is not None:
            params["token"] = token
        result = await self.ok("connect", params)
        self.client_id = result.get("client")
        return result

    async def push(self, kind=None, channel=None, skip=("join", "leave")):
        """The next push (of `kind` in `channel` if given; pushes of the kinds
        in `skip` are passed over unless asked for)."""
        deadline = time.monotonic() + ARGS.timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CheckFailed("no %s push%s within %ss" % (kind or "", " in " + channel if channel else "", ARGS.timeout))
            try:
                p = await asyncio.wait_for(self.pushes.get(), left)
            except asyncio.TimeoutError:
                continue
            if kind is not None and p.get("push") != kind and p.get("push") in skip:
                continue
            if kind is not None:
                require(p.get("push") == kind, "expected a %s push, got %r" % (kind, p))
            if channel is not None:
                require(p.get("channel") == channel, "push for channel %r, want %r: %r" % (p.get("channel"), channel, p))
            return p

    def drain(self, kinds=("join", "leave")):
        """Removes queued pushes of the given kinds; returns the others, still queued."""
        kept = []
        while not self.pushes.empty():
            p = self.pushes.get_nowait()
            if p.get("push") not in kinds:
                kept.append(p)
        for p in kept:
            self.pushes.put_nowait(p)
        return kept

    async def wait_closed(self):
        return await asyncio.wait_for(asyncio.shield(self.closed), ARGS.timeout)

    async def close(self):
        try:
            await asyncio.wait_for(self.ws.close(), 10)
        except Exception:  # noqa: BLE001 -- best effort
            pass
        self.reader.cancel()


async def publications(conn, channel, count):
    got = []
    for _ in range(count):
        got.append(await conn.push("publication", channel))
    return got


# ---- the checks ----------------------------------------------------------------


class State:
    pass


S = State()


async def check_connect_token():
    S.channel = "room:py-%s" % secrets.token_hex(4)
    S.user = "py-user-%s" % secrets.token_hex(3)
    S.token = hs256_token(ARGS.token_secret, {"sub": S.user, "exp": int(time.time()) + 3600, "info": {"name": "Py"}})
    S.conn = await Conn.open()
    r = await S.conn.connect(S.token)
    require(isinstance(r.get("client"), str) and r["client"], "no client id: %r" % r)
    require(r.get("user") == S.user, "user %r, want %r" % (r.get("user"), S.user))
    for field in ("ping_interval_ms", "pong_timeout_ms", "max_message_size"):
        require(isinstance(r.get(field), int) and r[field] > 0, "%s missing or not a positive integer: %r" % (field, r))
    require(isinstance(r.get("version"), str), "version missing: %r" % r)
    require(isinstance(r.get("expires_in_ms"), int) and 3_500_000 <= r["expires_in_ms"] <= 3_600_000,
            "expires_in_ms %r, want about 3600000 for a one-hour token" % r.get("expires_in_ms"))
    return "client %s user %s, subprotocol %s, max_message_size %d" % (r["client"], r["user"], S.conn.ws.subprotocol, r["max_message_size"])


async def check_subscribe():
    r = await S.conn.ok("subscribe", {"channel": S.channel, "presence": True})
    require(r.get("recoverable") is True, "recoverable %r" % r.get("recoverable"))
    require(isinstance(r.get("epoch"), str) and 1 <= len(r["epoch"]) <= 64, "epoch %r" % r.get("epoch"))
    require(r.get("offset") == 0, "offset %r, want 0 on a new channel" % r.get("offset"))
    require(r.get("recovered") is False, "recovered %r" % r.get("recovered"))
    require(r.get("publications") == [], "publications %r" % r.get("publications"))
    require(r.get("join_leave") is True, "join_leave %r" % r.get("join_leave"))
    pres = r.get("presence")
    require(isinstance(pres, list) and any(c.get("client") == S.conn.client_id for c in pres),
            "presence snapshot %r lacks this client %s" % (pres, S.conn.client_id))
    S.epoch = r["epoch"]
    j = await S.conn.push("join", S.channel, skip=())
    require(j.get("info", {}).get("client") == S.conn.client_id, "own join push %r" % j)
    require(j["info"].get("user") == S.user and j["info"].get("conn_info") == {"name": "Py"}, "join info %r" % j["info"])
    return "epoch %s offset 0, presence snapshot of %d, own join push" % (S.epoch, len(pres))


async def check_http_publish():
    S.sent = {}
    offsets = []
    for i in range(1, 4):
        data = {"n": i, "text": "hello %d" % i}
        r = await publish(S.channel, data)
        require(r.get("epoch") == S.epoch, "publish epoch %r, want %r" % (r.get("epoch"), S.epoch))
        offsets.append(r.get("offset"))
        S.sent[r.get("offset")] = data
    require(offsets == [1, 2, 3], "publish offsets %r, want [1, 2, 3]" % offsets)
    got = await publications(S.conn, S.channel, 3)
    for p, off in zip(got, offsets):
        require(p.get("offset") == off, "push offset %r, want %r" % (p.get("offset"), off))
        require(p.get("data") == S.sent[off], "push data %r, want %r" % (p.get("data"), S.sent[off]))
        require("info" not in p, "HTTP publication carries info %r" % p.get("info"))
    S.position = 3
    return "HTTP publish -> offsets %s, pushes %s" % (offsets, [p["offset"] for p in got])


async def check_ping():
    t = time.monotonic()
    r = await S.conn.ok("ping")
    require(r == {}, "ping result %r, want {}" % r)
    return "ping reply {} in %.1f ms" % ((time.monotonic() - t) * 1000)


async def check_presence():
    r = await S.conn.ok("presence", {"channel": S.channel})
    clients = r.get("clients")
    require(isinstance(clients, list) and len(clients) == 1, "presence clients %r" % clients)
    c = clients[0]
    require(c.get("client") == S.conn.client_id and c.get("user") == S.user and c.get("conn_info") == {"name": "Py"},
            "presence entry %r" % c)
    st = await S.conn.ok("presence_stats", {"channel": S.channel})
    require(st == {"num_clients": 1, "num_users": 1} or (st.get("num_clients") == 1 and st.get("num_users") == 1),
            "presence_stats %r" % st)
    h = await api("presence", {"channel": S.channel})
    require(any(x.get("client") == S.conn.client_id for x in h.get("clients", [])), "HTTP presence %r" % h)
    hs = await api("presence_stats", {"channel": S.channel})
    require(hs.get("num_clients") == 1 and hs.get("num_users") == 1, "HTTP presence_stats %r" % hs)
    return "presence 1 client (WS and HTTP), presence_stats %r" % st


async def check_join_leave():
    other = await Conn.open()
    try:
        await other.connect()  # anonymous
        await other.ok("subscribe", {"channel": S.channel})
        j = await S.conn.push("join", S.channel, skip=())
        require(j["info"].get("client") == other.client_id and j["info"].get("user") == "", "join push %r" % j)
        await other.ok("unsubscribe", {"channel": S.channel})
        lv = await S.conn.push("leave", S.channel, skip=())
        require(lv["info"].get("client") == other.client_id, "leave push %r" % lv)
    finally:
        await other.close()
    return "join and leave pushes for an anonymous subscriber %s" % other.client_id


async def check_client_publish():
    data = {"from": "python", "text": "hi"}
    r = await S.conn.ok("publish", {"channel": S.channel, "data": data})
    require(r.get("epoch") == S.epoch and r.get("offset") == 4, "publish result %r, want epoch %s offset 4" % (r, S.epoch))
    p = await S.conn.push("publication", S.channel)
    require(p.get("offset") == 4 and p.get("data") == data, "own publication push %r" % p)
    info = p.get("info") or {}
    require(info.get("client") == S.conn.client_id and info.get("user") == S.user, "own publication info %r" % info)
    S.sent[4] = data
    S.position = 4
    return "client publish -> offset 4, own copy pushed with info.client = own id"


async def check_history():
    r = await S.conn.ok("history", {"channel": S.channel, "limit": 2, "reverse": True})
    require(r.get("epoch") == S.epoch and r.get("offset") == 4, "history top %r" % r)
    offs = [p.get("offset") for p in r.get("publications", [])]
    require(offs == [4, 3], "history limit 2 reverse offsets %r, want [4, 3]" % offs)
    r = await S.conn.ok("history", {"channel": S.channel, "since": {"epoch": S.epoch, "offset": 1}})
    pubs = r.get("publications", [])
    require([p.get("offset") for p in pubs] == [2, 3, 4], "history since 1 offsets %r" % [p.get("offset") for p in pubs])
    require([p.get("data") for p in pubs] == [S.sent[2], S.sent[3], S.sent[4]], "history data differs")
    await S.conn.err("history", {"channel": S.channel, "since": {"epoch": "not-" + S.epoch, "offset": 1}}, 113)
    h = await api("history", {"channel": S.channel, "limit": 10})
    require([p.get("offset") for p in h.get("publications", [])] == [1, 2, 3, 4] and h.get("epoch") == S.epoch,
            "HTTP history %r" % h)
    return "history reverse [4, 3], since 1 -> [2, 3, 4], bad epoch -> 113, HTTP history [1..4]"


async def check_errors():
    e1 = await S.conn.err("no_such_method", {}, 104)
    await S.conn.err("subscribe", {}, 107)
    await S.conn.err("subscribe", {"channel": "chat:a:b"}, 107)
    await S.conn.err("subscribe", {"channel": "nosuchns%s:x" % secrets.token_hex(2)}, 102)
    await S.conn.err("subscribe", {"channel": S.channel}, 105)
    await S.conn.err("unsubscribe", {"channel": S.channel + "-other"}, 111)
    # The connection still works after errors.
    require(await S.conn.ok("ping") == {}, "ping after errors")
    return "104 %r; 107 (no channel, bad grammar), 102, 105, 111 as specified" % e1.get("message")


async def check_http_errors():
    st, body = await api("publish", {"channel": S.channel, "data": 1}, key="wrong-key", expect_ok=False)
    require(st == 401, "wrong API key -> HTTP %s %r, want 401" % (st, body))
    st, body = await api("publish", {"channel": S.channel, "data": 1}, key="", expect_ok=False)
    require(st == 401, "missing API key -> HTTP %s %r, want 401" % (st, body))
    st, body = await api("no_such_method", {}, expect_ok=False)
    require(st == 404 and (body or {}).get("error", {}).get("code") == 104, "unknown method -> HTTP %s %r" % (st, body))
    st, body = await api("publish", {"data": 1}, expect_ok=False)
    require(st == 400 and (body or {}).get("error", {}).get("code") == 107, "publish without channel -> HTTP %s %r" % (st, body))
    # Nothing was published by the refused calls.
    h = await api("history", {"channel": S.channel, "limit": 0})
    require(h.get("offset") == 4, "top after refused publishes %r, want 4" % h.get("offset"))
    return "401 wrong/missing key, 404+104 unknown method, 400+107 missing channel, nothing published"


async def check_info_channels():
    info = await api("info", {})
    for f in ("version", "uptime_ms", "num_connections", "num_users", "num_channels", "num_subscriptions"):
        require(f in info, "info lacks %s: %r" % (f, info))
    require(info["num_connections"] >= 1 and info["num_subscriptions"] >= 1, "info counts %r" % info)
    ch = await api("channels", {})
    entry = [c for c in ch.get("channels", []) if c.get("channel") == S.channel]
    require(entry and entry[0].get("num_clients") == 1, "channels %r lacks %s with 1 client" % (ch, S.channel))
    return "info %d connections, channels lists %s with 1 client" % (info["num_connections"], S.channel)


async def check_send():
    r = await api("send", {"user": S.user, "data": {"note": "for you"}})
    require(r.get("delivered") == 1, "send delivered %r, want 1" % r)
    m = await S.conn.push("message")
    require(m.get("data") == {"note": "for you"}, "message push %r" % m)
    return "HTTP send -> message push, delivered 1"


async def check_disconnect():
    old = S.conn.client_id
    r = await api("disconnect", {"client": old, "reconnect": True, "reason": "test"})
    require(r.get("disconnected") == 1, "disconnect result %r, want disconnected 1" % r)
    d = await S.conn.push("disconnect")
    require(d.get("code") == 4000 and d.get("reconnect") is True, "disconnect push %r, want code 4000 reconnect true" % d)
    require(d.get("reason") == "test", "disconnect push reason %r, want the API's reason 'test'" % d.get("reason"))
    code, reason = await S.conn.wait_closed()
    require(code == 4000 and reason == "test", "close code %s %r, want 4000 'test'" % (code, reason))
    after = [e for e in S.conn.events[S.conn.events.index(("push", "disconnect")) + 1:] if e[0] in ("push", "reply")]
    require(not after, "messages after the disconnect push: %r" % after)
    await S.conn.close()
    return "disconnect push %r, close %d %r" % (d, code, reason)


async def check_publish_while_away():
    for i in range(5, 10):
        data = {"n": i, "text": "missed %d" % i}
        r = await publish(S.channel, data)
        require(r.get("offset") == i and r.get("epoch") == S.epoch, "publish while away -> %r, want offset %d" % (r, i))
        S.sent[i] = data
    return "published offsets 5..9 while disconnected"


async def check_recover():
    old = S.conn.client_id
    S.conn = await Conn.open()
    await S.conn.connect(S.token)
    require(S.conn.client_id != old, "reconnection reused client id %s" % old)
    r = await S.conn.ok("subscribe", {"channel": S.channel, "recover": True, "epoch": S.epoch, "offset": S.position})
    require(r.get("recovered") is True, "recovered %r: %r" % (r.get("recovered"), r))
    require(r.get("epoch") == S.epoch and r.get("offset") == 9, "epoch/offset %r/%r, want %s/9" % (r.get("epoch"), r.get("offset"), S.epoch))
    pubs = r.get("publications", [])
    offs = [p.get("offset") for p in pubs]
    require(offs == [5, 6, 7, 8, 9], "recovered offsets %r, want exactly [5, 6, 7, 8, 9]" % offs)
    for p in pubs:
        require(p.get("data") == S.sent[p["offset"]], "recovered data %r differs from %r" % (p.get("data"), S.sent[p["offset"]]))
    # Live from T + 1, with nothing re-pushed.
    r2 = await publish(S.channel, {"n": 10})
    p = await S.conn.push("publication", S.channel)
    require(p.get("offset") == 10 == r2.get("offset"), "first push after recovery %r, want offset 10" % p)
    S.position = 10
    return "new client %s, recovered true, publications %s, next push offset 10" % (S.conn.client_id, offs)


async def check_recover_nothing_missed():
    c = await Conn.open()
    try:
        await c.connect()
        r = await c.ok("subscribe", {"channel": S.channel, "recover": True, "epoch": S.epoch, "offset": S.position})
        require(r.get("recovered") is True and r.get("publications") == [] and r.get("offset") == S.position,
                "recover at the top -> %r" % r)
    finally:
        await c.close()
    return "recover at the top -> recovered true, no publications"


async def check_bad_epoch():
    c = await Conn.open()
    try:
        await c.connect()
        r = await c.ok("subscribe", {"channel": S.channel, "recover": True, "epoch": "bogus-epoch", "offset": 2})
        require(r.get("recovered") is False, "recovered %r with a bad epoch" % r.get("recovered"))
        require(r.get("publications") == [], "publications %r, want [] after a failed recovery" % r.get("publications"))
        require(r.get("epoch") == S.epoch and r.get("offset") == S.position, "failed recovery epoch/offset %r/%r" % (r.get("epoch"), r.get("offset")))
        r2 = await c.ok("unsubscribe", {"channel": S.channel})
        require(r2 == {}, "unsubscribe result %r" % r2)
        r = await c.ok("subscribe", {"channel": S.channel, "recover": True, "epoch": S.epoch, "offset": S.position + 5})
        require(r.get("recovered") is False and r.get("publications") == [], "recover from beyond the top -> %r" % r)
    finally:
        await c.close()
    return "bad epoch -> recovered false, [] and the current position; offset past the top -> recovered false"


async def check_anonymous_and_plain():
    c = await Conn.open()
    try:
        r = await c.connect()
        require(r.get("user") == "" and "expires_in_ms" not in r, "anonymous connect %r" % r)
        ch = "plain:py-%s" % secrets.token_hex(3)
        s = await c.ok("subscribe", {"channel": ch, "recover": True, "epoch": "x", "offset": 0})
        require(s.get("recoverable") is False and s.get("recovered") is False and "epoch" not in s,
                "subscribe without history %r" % s)
        pr = await publish(ch, {"x": 1})
        require("offset" not in pr, "publish without history returned %r" % pr)
        p = await c.push("publication", ch)
        require("offset" not in p and p.get("data") == {"x": 1}, "publication without history %r" % p)
        await c.err("history", {"channel": ch}, 108)
        await c.err("presence", {"channel": ch}, 108)
        await c.err("publish", {"channel": ch, "data": 1}, 103)
    finally:
        await c.close()
    return "anonymous user '', no-history namespace: no offsets, 108 for history/presence, 103 for publish"


async def check_bad_token():
    c = await Conn.open()
    bad = hs256_token("not-the-secret", {"sub": "mallory"})
    try:
        await c.err("connect", {"token": bad}, 101)
        code, reason = await c.wait_closed()
        require(code == 4401, "close after error 101: %s %r, want 4401" % (code, reason))
    finally:
        await c.close()
    expired = hs256_token(ARGS.token_secret, {"sub": "late", "exp": int(time.time()) - 60})
    c = await Conn.open()
    try:
        await c.err("connect", {"token": expired}, 109)
        code, _ = await c.wait_closed()
        require(code == 4400, "close after error 109: %s, want 4400" % code)
    finally:
        await c.close()
    return "bad signature -> 101 + close 4401; expired -> 109 + close 4400"


async def check_protocol_violations():
    c = await Conn.open()
    try:
        await c.send_raw({"id": 1, "method": "ping"})
        code, _ = await c.wait_closed()
        require(code == 4500, "command before connect -> close %s, want 4500" % code)
    finally:
        await c.close()
    c = await Conn.open()
    try:
        await c.connect()
        await c.ws.send("this is not json")
        d = await c.push("disconnect")
        require(d.get("code") == 4500 and d.get("reconnect") is False, "disconnect push %r" % d)
        code, _ = await c.wait_closed()
        require(code == 4500, "invalid JSON -> close %s, want 4500" % code)
    finally:
        await c.close()
    return "command before connect -> 4500; invalid JSON -> disconnect push + close 4500"


async def check_disconnect_forever():
    c = await Conn.open()
    try:
        await c.connect()
        r = await api("disconnect", {"client": c.client_id, "reconnect": False})
        require(r.get("disconnected") == 1, "disconnect result %r" % r)
        d = await c.push("disconnect")
        require(d.get("code") == 4501 and d.get("reconnect") is False, "disconnect push %r, want 4501" % d)
        code, _ = await c.wait_closed()
        require(code == 4501, "close %s, want 4501" % code)
    finally:
        await c.close()
    return "HTTP disconnect reconnect:false -> push and close 4501"


async def check_broadcast_and_user_disconnect():
    a, b = S.channel, "room:py-b-%s" % secrets.token_hex(3)
    r = await api("broadcast", {"channels": [a, "bad:a:b", b], "data": {"all": True}})
    resp = r.get("responses")
    require(isinstance(resp, list) and len(resp) == 3, "broadcast responses %r" % resp)
    require(resp[0].get("result", {}).get("offset") == S.position + 1, "broadcast to %s: %r" % (a, resp[0]))
    require(resp[1].get("error", {}).get("code") == 107, "broadcast to a bad channel: %r" % resp[1])
    require(resp[2].get("result", {}).get("offset") == 1, "broadcast to a new channel: %r" % resp[2])
    p = await S.conn.push("publication", a)
    require(p.get("offset") == S.position + 1 and p.get("data") == {"all": True}, "broadcast push %r" % p)
    S.position += 1
    # Two connections of one user, both disconnected by user id.
    user = "py-two-%s" % secrets.token_hex(3)
    token = hs256_token(ARGS.token_secret, {"sub": user})
    conns = [await Conn.open(), await Conn.open()]
    try:
        for c in conns:
            r = await c.connect(token)
            require("expires_in_ms" not in r, "expires_in_ms for a token without exp: %r" % r)
        r = await api("disconnect", {"user": user})
        require(r.get("disconnected") == 2, "disconnect by user -> %r, want 2" % r)
        for c in conns:
            code, _ = await c.wait_closed()
            require(code == 4000, "close %s after disconnect by user (reconnect defaults to true), want 4000" % code)
    finally:
        for c in conns:
            await c.close()
    return "broadcast: per-channel results with 107 for a bad one; disconnect by user -> 2 connections closed 4000"


async def check_api_unsubscribe():
    user = "py-unsub-%s" % secrets.token_hex(3)
    ch = "room:py-unsub-%s" % secrets.token_hex(3)
    c = await Conn.open()
    try:
        await c.connect(hs256_token(ARGS.token_secret, {"sub": user}))
        await c.ok("subscribe", {"channel": ch})
        r = await api("unsubscribe", {"user": user, "channel": ch})
        require(r.get("unsubscribed") == 1, "unsubscribe result %r, want unsubscribed 1" % r)
        p = await c.push("unsubscribe", ch)
        require(p.get("code") == 2500 and p.get("resubscribe") is False, "unsubscribe push %r, want 2500, resubscribe false" % p)
        await c.err("unsubscribe", {"channel": ch}, 111)
        await c.ok("subscribe", {"channel": ch})
    finally:
        await c.close()
    return "HTTP unsubscribe -> unsubscribe push 2500; the connection may subscribe again"


async def check_handshake_rejections():
    import websockets.exceptions as wse
    url = ARGS.ws
    async def status_of(**kw):
        try:
            ws = await ws_connect(url, open_timeout=ARGS.timeout, proxy=None, ssl=SSL_CONTEXT, **kw)
        except wse.InvalidStatus as e:
            return e.response.status_code
        await ws.close()
        return 101
    no_proto = await status_of()
    require(no_proto == 400, "handshake without volley.v1 -> %s, want 400" % no_proto)
    bad_origin = await status_of(subprotocols=[SUBPROTOCOL], origin="http://evil.example")
    require(bad_origin == 403, "Origin not in the allowlist -> %s, want 403" % bad_origin)
    good_origin = await status_of(subprotocols=[SUBPROTOCOL], origin="http://good.example")
    require(good_origin == 101, "allowed Origin -> %s, want 101" % good_origin)
    return "no subprotocol -> 400, Origin not allowed -> 403, allowed Origin -> 101"


async def check_slow_consumer(ns="hist"):
    """A subscriber that stops reading is disconnected with 4002 once its
    outbound queue passes the limit (1 MiB by default), and then recovers
    every publication it missed (§13, §16), even when that is more than the
    queue limit (§2.3: replies may be much larger; clients accept 16 MiB)."""
    ch = "%s:py-slow-%s" % (ns, secrets.token_hex(3))
    # max_queue=1: the client library stops reading the socket as soon as one
    # message waits, so the kernel buffers and then the hub's queue fill up.
    ws = await ws_connect(ARGS.ws, subprotocols=[SUBPROTOCOL], open_timeout=ARGS.timeout, ping_interval=None,
                          max_size=64 << 20, max_queue=1, proxy=None, ssl=SSL_CONTEXT)
    await ws.send(json.dumps({"id": 1, "method": "connect", "params": {}}))
    require("result" in json.loads(await asyncio.wait_for(ws.recv(), ARGS.timeout)), "connect")
    await ws.send(json.dumps({"id": 2, "method": "subscribe", "params": {"channel": ch}}))
    sub = json.loads(await asyncio.wait_for(ws.recv(), ARGS.timeout))["result"]
    epoch, pos = sub["epoch"], sub["offset"]
    pad = "z" * 16000
    published = 0
    t0 = time.monotonic()
    # Up to 1500 x 16 kB = 24 MB: more than the socket buffers and the 1 MiB queue.
    while published < 1500 and time.monotonic() - t0 < 4 * ARGS.timeout:
        await publish(ch, {"n": published + 1, "pad": pad})
        published += 1
        if ws.protocol.close_rcvd is not None or ws.protocol.state.name == "CLOSED":
            break
        if published % 100 == 0:
            await asyncio.sleep(0)  # let the client library notice a close
    # Now read whatever arrived before the close: in order, no gaps.
    got = 0
    code = None
    while True:
        try:
            raw = await asyncio.wait_for(ws.recv(), ARGS.timeout)
        except ConnectionClosed:
            rcvd = ws.protocol.close_rcvd
            code = rcvd.code if rcvd is not None else 1006
            break
        m = json.loads(raw)
        if m.get("push") == "publication":
            require(m["offset"] == pos + 1, "publication offset %s after %s" % (m["offset"], pos))
            pos = m["offset"]
            got += 1
        elif m.get("push") == "disconnect":
            require(m.get("code") == 4002 and m.get("reconnect") is True, "disconnect push %r" % m)
    require(code == 4002, "close code %s after %d publications without reading, want 4002" % (code, published))
    # Publish a few more, then reconnect and recover everything after `pos`.
    for _ in range(3):
        await publish(ch, {"n": published + 1, "pad": "after"})
        published += 1
    c = await Conn.open()
    try:
        await c.connect()
        r = await c.ok("subscribe", {"channel": ch, "recover": True, "epoch": epoch, "offset": pos})
        require(r.get("recovered") is True, "recovered %r" % r.get("recovered"))
        offs = [p["offset"] for p in r.get("publications", [])]
        require(offs == list(range(pos + 1, published + 1)), "recovered offsets %s..%s (%d), want %d..%d" % (
            offs[:1], offs[-1:], len(offs), pos + 1, published))
        require(all(p["data"]["n"] == p["offset"] for p in r["publications"]), "recovered data differs")
    finally:
        await c.close()
    return "4002 after %d publications of 16 kB (%d read before the close); recovered the other %d exactly" % (
        published - 3, got, published - pos)


async def check_slow_consumer_join_leave():
    # The same in a namespace with join/leave pushes (and presence).
    return await check_slow_consumer("room")


async def check_back_to_back_recovery():
    """§14.3: after a reconnect an SDK resubscribes every channel back to
    back. Recoveries of 640 kB each (together more than the 1 MiB queue
    limit, each one less) must all be answered."""
    chans = ["hist:py-b2b-%s-%d" % (secrets.token_hex(3), i) for i in range(B2B_CHANNELS)]
    epochs = {}
    for ch in chans:
        for n in range(1, 41):
            epochs[ch] = (await publish(ch, {"n": n, "pad": "y" * 16000}))["epoch"]
    c = await Conn.open()
    try:
        await c.connect()
        calls = [c.call("subscribe", {"channel": ch, "recover": True, "epoch": epochs[ch], "offset": 0}) for ch in chans]
        replies = await asyncio.gather(*calls, return_exceptions=True)
        for ch, r in zip(chans, replies):
            require(not isinstance(r, Exception), "subscribe %s: %s" % (ch, r))
            res = r.get("result") or {}
            require(res.get("recovered") is True and len(res.get("publications", [])) == 40,
                    "subscribe %s: recovered %r, %d publications" % (ch, res.get("recovered"), len(res.get("publications", []))))
    finally:
        await c.close()
    return "%d back-to-back recoveries of 40 x 16 kB each all answered" % B2B_CHANNELS


async def check_refresh():
    user = "py-refresh-%s" % secrets.token_hex(3)
    c = await Conn.open()
    try:
        r = await c.connect(hs256_token(ARGS.token_secret, {"sub": user, "exp": int(time.time()) + 600}))
        require(500_000 < r.get("expires_in_ms", 0) <= 600_000, "expires_in_ms %r for a 10-minute token" % r.get("expires_in_ms"))
        r = await c.ok("refresh", {"token": hs256_token(ARGS.token_secret, {"sub": user, "exp": int(time.time()) + 7200})})
        require(7_000_000 < r.get("expires_in_ms", 0) <= 7_200_000, "refresh expires_in_ms %r for a 2-hour token" % r)
        await c.err("refresh", {"token": hs256_token(ARGS.token_secret, {"sub": "someone-else", "exp": int(time.time()) + 7200})}, 101)
        await c.err("refresh", {"token": hs256_token(ARGS.token_secret, {"sub": user, "exp": int(time.time()) - 5})}, 109)
        await c.err("refresh", {}, 107)
        require(await c.ok("ping") == {}, "the connection survives failed refreshes")
    finally:
        await c.close()
    a = await Conn.open()
    try:
        await a.connect()
        await a.err("refresh", {"token": hs256_token(ARGS.token_secret, {"sub": "x"})}, 108)
    finally:
        await a.close()
    return "refresh extends the session; other sub -> 101, expired -> 109, no token -> 107, anonymous -> 108"


async def check_private_channels():
    user = "py-priv-%s" % secrets.token_hex(3)
    secret_ch = "$room:secret-%s" % secrets.token_hex(3)
    c = await Conn.open()
    try:
        await c.connect(hs256_token(ARGS.token_secret, {"sub": user}))
        await c.err("subscribe", {"channel": secret_ch}, 103)
        wrong = hs256_token(ARGS.token_secret, {"sub": user, "channel": secret_ch + "x"})
        await c.err("subscribe", {"channel": secret_ch, "token": wrong}, 101)
        other = hs256_token(ARGS.token_secret, {"sub": "not-" + user, "channel": secret_ch})
        await c.err("subscribe", {"channel": secret_ch, "token": other}, 101)
        late = hs256_token(ARGS.token_secret, {"sub": user, "channel": secret_ch, "exp": int(time.time()) - 5})
        await c.err("subscribe", {"channel": secret_ch, "token": late}, 109)
        good = hs256_token(ARGS.token_secret, {"sub": user, "channel": secret_ch, "info": {"role": "owner"}})
        r = await c.ok("subscribe", {"channel": secret_ch, "token": good, "presence": True})
        me = [p for p in r.get("presence", []) if p.get("client") == c.client_id]
        require(me and me[0].get("chan_info") == {"role": "owner"}, "presence entry %r lacks chan_info" % me)
    finally:
        await c.close()
    # The connection token's `channels` claim: only those, private ones without a subscription token.
    listed = "room:listed-%s" % secrets.token_hex(3)
    c = await Conn.open()
    try:
        await c.connect(hs256_token(ARGS.token_secret, {"sub": user, "channels": [listed, secret_ch]}))
        await c.ok("subscribe", {"channel": listed})
        await c.ok("subscribe", {"channel": secret_ch})
        await c.err("subscribe", {"channel": "room:not-listed-%s" % secrets.token_hex(3)}, 103)
    finally:
        await c.close()
    return "private channel: 103 without token, 101 wrong channel/sub, 109 expired, chan_info in presence; channels claim honoured"


async def check_limits():
    # Channels per connection (config: 10) -> 112.
    c = await Conn.open()
    try:
        await c.connect()
        base = "hist:py-many-%s-" % secrets.token_hex(3)
        for i in range(10):
            await c.ok("subscribe", {"channel": base + str(i)})
        await c.err("subscribe", {"channel": base + "10"}, 112)
    finally:
        await c.close()
    # Command rate (config: 200/s, bursts of as many) -> 110, temporary; the
    # connection goes on (fewer than a second's worth of refusals in a row).
    c = await Conn.open()
    try:
        await c.connect()
        calls = [c.call("ping") for _ in range(300)]
        replies = await asyncio.gather(*calls)
        limited = [r for r in replies if "error" in r]
        require(limited, "300 pings at once, none answered 110 (limit 200/s)")
        require(all(r["error"].get("code") == 110 and r["error"].get("temporary") is True for r in limited),
                "rate-limit errors %r" % limited[:2])
        await asyncio.sleep(1.5)
        require(await c.ok("ping") == {}, "ping after the rate limit refilled")
    finally:
        await c.close()
    # More than a second's worth of consecutive refusals -> 4007 with reconnect_after_ms.
    c = await Conn.open()
    try:
        await c.connect()
        sent = 0
        while sent < 5000 and not c.closed.done():
            try:
                await c.send_raw({"id": 100 + sent, "method": "ping"})
            except ConnectionClosed:
                break
            sent += 1
        code, _ = await c.wait_closed()
        require(code == 4007, "close %s after %d pings as fast as possible, want 4007" % (code, sent))
        pushes = [p for p in c.drain(kinds=()) if p.get("push") == "disconnect"]
        require(all(p.get("code") == 4007 and isinstance(p.get("reconnect_after_ms"), int) for p in pushes),
                "disconnect push %r, want 4007 with reconnect_after_ms" % pushes)
    finally:
        await c.close()
    # A message over max_message_size (64 KiB) -> close 1009.
    c = await Conn.open()
    try:
        await c.connect()
        await c.send_raw({"id": 2, "method": "ping", "params": {"pad": "x" * 70000}})
        code, _ = await c.wait_closed()
        require(code == 1009, "a 70 kB message -> close %s, want 1009" % code)
    finally:
        await c.close()
    # No connect within connect_timeout_ms (config: 1500) -> 4003.
    c = await Conn.open()
    t0 = time.monotonic()
    try:
        code, _ = await c.wait_closed()
        waited = time.monotonic() - t0
        require(code == 4003 and 1.0 <= waited <= 6.0, "no connect: close %s after %.1f s, want 4003 after ~1.5 s" % (code, waited))
    finally:
        await c.close()
    return ("112 past 10 channels, %d of 300 pings -> 110 (temporary), flood -> 4007, 1009 for 70 kB, "
            "4003 after %.1f s without connect" % (len(limited), waited))


async def check_drain():
    """SIGTERM while a client is connected (the server's drain settings:
    grace 3000 ms, spread 1000 ms)."""
    import os
    import signal
    import websockets.exceptions as wse
    c = await Conn.open()
    await c.connect()
    # A channel of its own: `--only drain` runs this check alone.
    await c.ok("subscribe", {"channel": "room:py-drain-%s" % secrets.token_hex(4)})
    t0 = time.monotonic()
    os.kill(ARGS.server_pid, signal.SIGTERM)
    d = await c.push("disconnect")
    require(d.get("code") == 4001 and d.get("reconnect") is True, "drain push %r, want 4001 reconnect true" % d)
    after = d.get("reconnect_after_ms")
    require(isinstance(after, int) and 0 <= after < 1000, "reconnect_after_ms %r, want in [0, 1000)" % after)
    # The connection keeps working.
    require(await c.ok("ping") == {}, "ping during the drain")
    status, _ = await asyncio.to_thread(_http_get, "/health/ready")
    require(status == 503, "/health/ready during the drain -> %s, want 503" % status)
    try:
        ws = await ws_connect(ARGS.ws, subprotocols=[SUBPROTOCOL], open_timeout=ARGS.timeout, proxy=None,
                              ssl=SSL_CONTEXT)
        await ws.close()
        upgrade = 101
    except wse.InvalidStatus as e:
        upgrade = e.response.status_code
    require(upgrade == 503, "new upgrade during the drain -> %s, want 503" % upgrade)
    code, reason = await c.wait_closed()
    waited = time.monotonic() - t0
    require(code == 1001, "close at the end of the grace period %s %r, want 1001" % (code, reason))
    require(2.0 <= waited <= 8.0, "closed %.1f s after SIGTERM, grace is 3 s" % waited)
    await c.close()
    return "4001 push (reconnect_after_ms %d), ping still answered, ready 503, upgrade 503, close 1001 after %.1f s" % (after, waited)


async def check_health_metrics():
    def get(path):
        opener = http_opener()
        try:
            with opener.open(ARGS.http + path, timeout=ARGS.timeout) as resp:
                return resp.status, resp.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as e:
            return e.code, ""
    live = await asyncio.to_thread(get, "/health/live")
    ready = await asyncio.to_thread(get, "/health/ready")
    metrics = await asyncio.to_thread(get, "/metrics")
    require(live[0] == 200 and ready[0] == 200, "health live %s ready %s" % (live[0], ready[0]))
    require(metrics[0] == 200 and "# TYPE" in metrics[1], "metrics %s %r" % (metrics[0], metrics[1][:200]))
    return "/health/live 200, /health/ready 200, /metrics %d lines" % len(metrics[1].splitlines())


# ---- demo mode (volley serve without --config) ------------------------------------


def _http_get(path, headers=None):
    status, _, body = _http("GET", path, None, headers)
    return status, body


def jwt_claims(token):
    parts = token.split(".")
    require(len(parts) == 3, "not a compact JWS: %r" % token[:80])
    header = json.loads(base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4)))
    claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    return header, claims


# ---- the fallbacks (§2.5) ----------------------------------------------------------


async def http(method, path, body=None, headers=None):
    return await asyncio.to_thread(_http, method, path, body, headers)


def command_lines(*commands):
    """A POST /connection/send body: one command per line."""
    return "\n".join(json.dumps(c) for c in commands).encode()


async def send_commands(session, seq, body):
    status, _, raw = await http("POST", "/connection/send?session=%s&seq=%d" % (session, seq), body,
                                {"Content-Type": "text/plain"})
    require(status == 204, "POST /connection/send seq=%d -> %s %r" % (seq, status, raw[:200]))


def new_session_id(session):
    require(isinstance(session, str) and re.fullmatch(r"[A-Za-z0-9_-]{22}", session) is not None,
            "session id %r: want 22 characters of URL-safe base64" % (session,))
    return session


async def check_long_poll():
    """§2.5 long-polling from the docs alone: a session, commands by POST,
    replies and a publication by poll, the same messages again for a poll
    with the same ack (a lost answer), a POST sent again not run twice, and
    the session closed by DELETE (polls then get 404)."""
    ch = "hist:py-lp-%s" % secrets.token_hex(3)
    status, _, raw = await http("POST", "/connection/poll", b"")
    require(status == 200, "POST /connection/poll -> %s %r" % (status, raw[:200]))
    session = new_session_id(json.loads(raw).get("session"))

    async def poll(ack):
        status, headers, raw = await http("GET", "/connection/poll?session=%s&ack=%d" % (session, ack))
        require(status == 200, "poll ack=%d -> %s %r" % (ack, status, raw[:200]))
        require(headers.get("Content-Type", "").startswith("application/json"),
                "poll Content-Type %r" % headers.get("Content-Type"))
        body = json.loads(raw)
        require(body["last"] == ack + len(body["messages"]), "poll ack=%d -> last %s with %d messages" % (
            ack, body["last"], len(body["messages"])))
        return body

    first = command_lines({"id": 1, "method": "connect", "params": {}},
                          {"id": 2, "method": "subscribe", "params": {"channel": ch}})
    await send_commands(session, 1, first)
    got, ack = [], 0
    while len(got) < 2:
        body = await poll(ack)
        got += body["messages"]
        ack = body["last"]
    require([m.get("id") for m in got] == [1, 2] and all("result" in m for m in got),
            "replies by poll %r" % got)
    await publish(ch, {"n": 1})
    body = await poll(ack)  # held until the publication is there
    pub = body["messages"]
    require(len(pub) == 1 and pub[0].get("push") == "publication" and pub[0].get("data") == {"n": 1},
            "publication by poll %r" % pub)
    again = await poll(ack)
    require(again["messages"] == pub, "the same ack again gave %r, want the same message" % again["messages"])
    ack = again["last"]
    # The first POST sent again: 204, not run again; the next one's reply is
    # then all that comes.
    await send_commands(session, 1, first)
    await send_commands(session, 2, command_lines({"id": 3, "method": "ping"}))
    body = await poll(ack)
    require([m.get("id") for m in body["messages"]] == [3], "after a repeated POST: %r" % body["messages"])
    status, _, _ = await http("DELETE", "/connection/session?session=%s" % session)
    require(status == 204, "DELETE /connection/session -> %s" % status)
    status, _, _ = await http("GET", "/connection/poll?session=%s&ack=%d" % (session, body["last"]))
    require(status == 404, "poll after DELETE -> %s, want 404" % status)
    return "session, 2 replies and a publication by poll, the same again for the same ack, " \
        "a repeated POST not run twice, DELETE -> 204, then 404"


def _sse_event(resp, deadline):
    """The next event of an SSE stream as a dict of its fields, skipping
    comments; None at the end of the stream."""
    fields = {}
    while time.monotonic() < deadline:
        line = resp.readline()
        if not line:
            return None
        line = line.decode("utf-8").rstrip("\r\n")
        if line == "":
            if "data" in fields:
                return fields
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(": ")
            require(name not in fields, "field %r twice in one event" % name)
            fields[name] = value
    raise CheckFailed("no SSE event within %ss" % ARGS.timeout)


async def check_sse():
    """§2.5 Server-Sent Events from the docs alone: the session event, then
    each server message as an event numbered 1, 2, 3, ...; commands by POST;
    the stream ends when the client closes the session."""
    ch = "hist:py-sse-%s" % secrets.token_hex(3)
    req = urllib.request.Request(ARGS.http + "/connection/sse", method="GET")
    resp = await asyncio.to_thread(http_opener().open, req, timeout=ARGS.timeout)
    try:
        require(resp.status == 200, "GET /connection/sse -> %s" % resp.status)
        for name, want in [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache"),
                           ("X-Accel-Buffering", "no")]:
            require(resp.headers.get(name) == want, "%s: %r, want %r" % (name, resp.headers.get(name), want))

        async def event():
            return await asyncio.to_thread(_sse_event, resp, time.monotonic() + ARGS.timeout)

        hello = await event()
        require(hello is not None and hello.get("event") == "session", "first event %r" % hello)
        session = new_session_id(json.loads(hello["data"]).get("session"))
        await send_commands(session, 1, command_lines({"id": 1, "method": "connect", "params": {}},
                                                      {"id": 2, "method": "subscribe", "params": {"channel": ch}}))
        events = [await event(), await event()]
        await publish(ch, {"n": 1})
        events.append(await event())
        require(all(e is not None for e in events), "the stream ended early: %r" % events)
        require([e.get("id") for e in events] == ["1", "2", "3"], "event ids %r" % [e.get("id") for e in events])
        msgs = [json.loads(e["data"]) for e in events]
        require([m.get("id") for m in msgs[:2]] == [1, 2] and all("result" in m for m in msgs[:2]),
                "replies %r" % msgs[:2])
        require(msgs[2].get("push") == "publication" and msgs[2].get("data") == {"n": 1},
                "publication %r" % msgs[2])
        status, _, _ = await http("DELETE", "/connection/session?session=%s" % session)
        require(status == 204, "DELETE /connection/session -> %s" % status)
        end = await event()
        require(end is None, "after DELETE the stream went on: %r" % end)
    finally:
        resp.close()
    return "session event, replies and a publication as events 1-3, DELETE -> 204 and the stream ended"


async def check_demo_stdout():
    lines = open(ARGS.serve_stdout).read().splitlines()
    addr = ARGS.http[len("http://"):]
    require(lines and lines[0] == "volley serve listening on http://%s/" % addr,
            "first line %r" % (lines[:1],))
    rest = "\n".join(lines[1:])
    require("ws://%s/connection/websocket" % addr in rest, "no WebSocket URL in %r" % rest)
    # The keys were given (--api-key, --admin-key): the admin page is named
    # without its key and no key is echoed; only keys the demo generates are.
    require(re.search(r"(?m)^\s*admin:\s+http://%s/admin\s" % re.escape(addr), rest),
            "no admin URL line in %r" % rest)
    require(ARGS.api_key not in rest and ARGS.admin_key not in rest,
            "a given key was printed: %r" % rest)
    return "%d lines: listening, WebSocket URL, admin URL; no given key echoed" % len(lines)


async def check_demo_pages():
    got = {}
    for path in ("/", "/admin", "/volley.js"):
        status, body = await asyncio.to_thread(_http_get, path)
        require(status == 200 and body, "GET %s -> %s (%d bytes)" % (path, status, len(body)))
        got[path] = len(body)
    return "GET / %d B, /admin %d B, /volley.js %d B" % (got["/"], got["/admin"], got["/volley.js"])


async def check_demo_token():
    status, body = await asyncio.to_thread(_http_get, "/demo/token?name=Ada")
    require(status == 200, "GET /demo/token -> %s %r" % (status, body[:200]))
    token = json.loads(body).get("token")
    require(isinstance(token, str), "no token in %r" % body[:200])
    header, claims = jwt_claims(token)
    require(header.get("alg") == "HS256", "alg %r" % header.get("alg"))
    require(isinstance(claims.get("sub"), str) and claims["sub"], "sub %r" % claims.get("sub"))
    require(claims.get("info") == {"name": "Ada"}, "info %r" % claims.get("info"))
    require(abs(claims.get("exp", 0) - time.time() - 3600) < 120, "exp %r is not about an hour away" % claims.get("exp"))
    S.demo_token, S.demo_sub = token, claims["sub"]
    c = await Conn.open()
    try:
        r = await c.connect(token)
        require(r.get("user") == S.demo_sub, "connect user %r, want %r" % (r.get("user"), S.demo_sub))
        require(isinstance(r.get("expires_in_ms"), int) and 3_400_000 < r["expires_in_ms"] <= 3_600_000, "expires_in_ms %r" % r.get("expires_in_ms"))
    finally:
        await c.close()
    return "HS256 token, sub %s, info {name: Ada}, exp in 1 h; connect -> user %s" % (S.demo_sub, S.demo_sub)


async def check_demo_chat():
    c = await Conn.open()
    try:
        await c.connect(S.demo_token)
        r = await c.ok("subscribe", {"channel": "chat:lobby", "presence": True})
        require(r.get("recoverable") is True and r.get("join_leave") is True, "chat:lobby subscribe %r" % r)
        me = [p for p in r.get("presence", []) if p.get("client") == c.client_id]
        require(me and me[0].get("conn_info") == {"name": "Ada"}, "presence %r" % r.get("presence"))
        msg = {"name": "Ada", "text": "hello from python %s" % secrets.token_hex(2)}
        pr = await c.ok("publish", {"channel": "chat:lobby", "data": msg})
        require(pr.get("offset") == r["offset"] + 1, "publish %r after subscribe offset %r" % (pr, r["offset"]))
        p = await c.push("publication", "chat:lobby")
        require(p.get("data") == msg and p.get("offset") == pr["offset"], "own publication %r" % p)
    finally:
        await c.close()
    return "chat:lobby: presence with conn_info, join_leave, client publish at offset %d" % pr["offset"]


async def check_demo_ticker():
    c = await Conn.open()
    try:
        await c.connect()  # anonymous is allowed in the demo
        r = await c.ok("subscribe", {"channel": "ticker:demo"})
        require(r.get("recoverable") is True, "ticker:demo subscribe %r" % r)
        t0 = time.monotonic()
        p = await c.push("publication", "ticker:demo")
        d = p.get("data") or {}
        require(isinstance(d.get("t"), int) and abs(d["t"] / 1000 - time.time()) < 60, "ticker data t %r" % d)
        require(isinstance(d.get("price"), (int, float)), "ticker data price %r" % d)
        p2 = await c.push("publication", "ticker:demo")
        gap = p2["data"]["t"] - d["t"]
        require(300 <= gap <= 1500 and p2.get("offset") == p.get("offset") + 1, "ticker period %d ms, offsets %r %r" % (gap, p.get("offset"), p2.get("offset")))
        await c.err("publish", {"channel": "ticker:demo", "data": {"price": 1}}, 103)
    finally:
        await c.close()
    return "ticker:demo pushes {t, price} every %d ms (first after %.2f s); client publish -> 103" % (gap, time.monotonic() - t0)


async def check_demo_admin():
    status, body = await asyncio.to_thread(_http_get, "/admin/api/stats", {"Authorization": "Bearer " + ARGS.admin_key})
    require(status == 200, "admin stats -> %s %r" % (status, body[:200]))
    st = json.loads(body)
    for f in ("version", "uptime_ms", "connections", "subscriptions", "messages_in_per_s", "messages_out_per_s",
              "bytes_in_per_s", "bytes_out_per_s", "channels"):
        require(f in st, "admin stats lack %s: %r" % (f, st))
    require(any(ch.get("channel") == "ticker:demo" for ch in st["channels"]) or st["channels"] == [],
            "channels %r" % st["channels"])
    status, _ = await asyncio.to_thread(_http_get, "/admin/api/stats", {"Authorization": "Bearer wrong"})
    require(status == 401, "admin stats with a wrong key -> %s, want 401" % status)
    return "admin stats fields present; wrong key -> 401"


async def check_demo_api_key():
    r = await api("info", {})
    require("num_connections" in r, "info %r" % r)
    return "HTTP API accepts the --api-key given on the command line"


DEMO_CHECKS = [
    ("demo: stdout lines", check_demo_stdout),
    ("demo: pages and SDK", check_demo_pages),
    ("demo: /demo/token and connect with it", check_demo_token),
    ("demo: chat:lobby", check_demo_chat),
    ("demo: ticker:demo publisher", check_demo_ticker),
    ("demo: admin stats", check_demo_admin),
    ("demo: API key flag", check_demo_api_key),
]

CHECKS = [
    ("connect with an HS256 token", check_connect_token),
    ("subscribe with presence", check_subscribe),
    ("HTTP publish -> publication pushes with offsets", check_http_publish),
    ("ping", check_ping),
    ("presence and presence_stats", check_presence),
    ("join and leave pushes", check_join_leave),
    ("client publish", check_client_publish),
    ("history", check_history),
    ("error replies", check_errors),
    ("HTTP API errors", check_http_errors),
    ("HTTP info and channels", check_info_channels),
    ("HTTP send -> message push", check_send),
    ("HTTP disconnect with reconnect -> 4000", check_disconnect),
    ("publish while the client is away", check_publish_while_away),
    ("reconnect and recover exactly what was missed", check_recover),
    ("recover with nothing missed", check_recover_nothing_missed),
    ("recover from a bad epoch -> recovered false", check_bad_epoch),
    ("anonymous connection, namespace without history", check_anonymous_and_plain),
    ("bad and expired tokens", check_bad_token),
    ("protocol violations -> 4500", check_protocol_violations),
    ("HTTP disconnect without reconnect -> 4501", check_disconnect_forever),
    ("HTTP unsubscribe -> unsubscribe push 2500 (§7.4)", check_api_unsubscribe),
    ("health and metrics", check_health_metrics),
    ("HTTP broadcast; disconnect by user", check_broadcast_and_user_disconnect),
    ("handshake rejections", check_handshake_rejections),
    ("long-polling: session, commands, polls, a lost answer, DELETE (§2.5)", check_long_poll),
    ("Server-Sent Events: session, commands, events, DELETE (§2.5)", check_sse),
    ("slow consumer -> 4002, then exact recovery", check_slow_consumer),
    ("slow consumer -> 4002, then exact recovery, with join/leave", check_slow_consumer_join_leave),
    ("back-to-back recoveries larger than the queue limit together", check_back_to_back_recovery),
    ("refresh", check_refresh),
    ("private channels and the channels claim", check_private_channels),
    ("limits: channels, command rate, message size, connect timeout", check_limits),
    ("drain on SIGTERM", check_drain),
]

# Checks after which the rest cannot run meaningfully.
ESSENTIAL = {check_connect_token, check_subscribe, check_disconnect, check_recover, check_demo_token}


async def run_all():
    passed = failed = 0
    skip_rest = False
    for name, fn in (DEMO_CHECKS if ARGS.demo else CHECKS):
        if ARGS.only and ARGS.only not in name:
            continue
        if skip_rest:
            print("SKIP  %s (an essential check failed)" % name, flush=True)
            failed += 1
            continue
        if fn is check_drain and not ARGS.server_pid:
            print("SKIP  %s (no --server-pid given; not counted)" % name, flush=True)
            continue
        t = time.monotonic()
        try:
            detail = await asyncio.wait_for(fn(), ARGS.timeout * 4)
            passed += 1
            print("PASS  %s: %s (%.2fs)" % (name, detail, time.monotonic() - t), flush=True)
        except (CheckFailed, AssertionError) as e:
            failed += 1
            print("FAIL  %s: %s" % (name, e), flush=True)
            skip_rest = fn in ESSENTIAL
        except Exception as e:  # noqa: BLE001 -- every failure is reported
            failed += 1
            print("FAIL  %s: %s: %s" % (name, type(e).__name__, e), flush=True)
            traceback.print_exc(limit=3)
            skip_rest = fn in ESSENTIAL
    conn = getattr(S, "conn", None)
    if conn is not None:
        await conn.close()
    print("%d passed, %d failed" % (passed, failed), flush=True)
    return failed == 0


def main():
    global ARGS, SSL_CONTEXT
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ws", required=True, help="ws://ADDR/connection/websocket")
    ap.add_argument("--http", required=True, help="http://ADDR (no trailing slash)")
    ap.add_argument("--api-key", required=True)
    ap.add_argument("--token-secret", help="the HS256 secret (required unless --demo)")
    ap.add_argument("--cafile", help="a PEM certificate to trust (for wss:// and https:// URLs)")
    ap.add_argument("--server-pid", type=int, help="the server's pid: the last check sends it SIGTERM and checks the drain")
    ap.add_argument("--demo", action="store_true", help="check demo mode (volley serve without --config) instead")
    ap.add_argument("--admin-key", help="with --demo: the --admin-key the server was given")
    ap.add_argument("--serve-stdout", help="with --demo: a file with the server's stdout")
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds per wait")
    ap.add_argument("--only", metavar="TEXT", help="run only the checks whose name contains TEXT (to repeat one)")
    ARGS = ap.parse_args()
    ARGS.http = ARGS.http.rstrip("/")
    if ARGS.cafile:
        SSL_CONTEXT = ssl.create_default_context(cafile=ARGS.cafile)
    if ARGS.demo and not (ARGS.admin_key and ARGS.serve_stdout):
        ap.error("--demo needs --admin-key and --serve-stdout")
    if not ARGS.demo and not ARGS.token_secret:
        ap.error("--token-secret is required")
    ok = asyncio.run(run_all())
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
