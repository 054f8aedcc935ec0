#!/usr/bin/env python3
"""Interop check of a WebSocket echo server with the `websockets` package.

    python_client.py ws://127.0.0.1:PORT [--timeout SECONDS]

The server must echo every message back unchanged (same type). Checks, each
on its own connection and bounded by a timeout:

  text round trip (non-ASCII), binary round trip, 16 MiB binary round trip,
  fragmented text message (echoed back whole), ping with payload -> pong,
  close with 4000/"bye" -> the server's close frame carries 4000/"bye".

The permessage-deflate negotiation result is printed, not asserted.
Prints one line per check and ends with `N passed, M failed`; exit 1 on any failure.
"""

import argparse
import asyncio
import os
import sys
import time
import traceback

import websockets
from websockets.asyncio.client import connect

MAX_SIZE = 64 * 1024 * 1024


def ws_connect(url):
    # proxy=None: never route loopback traffic through an environment proxy.
    return connect(
        url,
        max_size=MAX_SIZE,
        open_timeout=10,
        close_timeout=10,
        ping_interval=None,
        proxy=None,
    )


async def recv_exact(ws, expected):
    got = await ws.recv()
    assert type(got) is type(expected), "echo has type %s, sent %s" % (type(got).__name__, type(expected).__name__)
    assert len(got) == len(expected), "echo has %d %s, sent %d" % (len(got), "chars" if isinstance(got, str) else "bytes", len(expected))
    assert got == expected, "echo differs from what was sent"
    return got


async def check_handshake(url):
    async with ws_connect(url) as ws:
        header = ws.response.headers.get("Sec-WebSocket-Extensions")
        names = [type(e).__name__ for e in ws.protocol.extensions]
        negotiated = any(getattr(e, "name", "") == "permessage-deflate" for e in ws.protocol.extensions)
        await ws.close()
    return "permessage-deflate %s (response header: %r, extensions: %s)" % (
        "negotiated" if negotiated else "not negotiated", header, names or "none")


async def check_text(url):
    msg = "Hello, Volley! héllo wörld — ✓ 你好 Привет 🎉🦀"
    async with ws_connect(url) as ws:
        await ws.send(msg)
        await recv_exact(ws, msg)
    return "%d chars, %d UTF-8 bytes" % (len(msg), len(msg.encode()))


async def check_binary(url):
    msg = bytes(range(256)) + os.urandom(4096) + b"\x00\xff" * 100
    async with ws_connect(url) as ws:
        await ws.send(msg)
        await recv_exact(ws, msg)
    return "%d bytes" % len(msg)


async def check_big_binary(url):
    size = 16 * 1024 * 1024
    block = os.urandom(1 << 16)
    msg = block * (size // len(block))
    assert len(msg) == size
    async with ws_connect(url) as ws:
        t = time.monotonic()
        await ws.send(msg)
        await recv_exact(ws, msg)
        dt = time.monotonic() - t
    return "%d bytes in %.2fs" % (size, dt)


async def check_fragmented(url):
    fragments = ["frag-1 ", "frag-2 ünïcödé ", "", "frag-4 ✓", " end"]

    async def gen():
        for frag in fragments:
            yield frag
            await asyncio.sleep(0.01)

    async with ws_connect(url) as ws:
        await ws.send(gen())
        await recv_exact(ws, "".join(fragments))
    return "%d fragments echoed as one message" % len(fragments)


async def check_ping(url):
    payload = b"volley-ping-\x00\x01\xfe"
    async with ws_connect(url) as ws:
        pong_waiter = await ws.ping(payload)
        latency = await pong_waiter
    return "pong for %d-byte payload after %.1f ms" % (len(payload), latency * 1000)


async def check_close(url):
    async with ws_connect(url) as ws:
        await ws.close(code=4000, reason="bye")
        await ws.wait_closed()
        rcvd = ws.protocol.close_rcvd
        assert rcvd is not None, "server sent no close frame"
        assert rcvd.code == 4000, "server close frame has code %s, want 4000" % rcvd.code
        assert rcvd.reason == "bye", "server close frame has reason %r, want 'bye'" % rcvd.reason
        assert ws.close_code == 4000 and ws.close_reason == "bye", (ws.close_code, ws.close_reason)
    return "server echoed close code %d reason %r" % (rcvd.code, rcvd.reason)


CHECKS = [
    ("text round trip", check_text, 1),
    ("binary round trip", check_binary, 1),
    ("16 MiB binary round trip", check_big_binary, 4),
    ("fragmented message", check_fragmented, 1),
    ("ping/pong", check_ping, 1),
    ("close 4000 'bye' echoed", check_close, 1),
]


async def main():
    ap = argparse.ArgumentParser(description="websockets interop client for an echo server")
    ap.add_argument("url", help="ws:// URL of an echo server")
    ap.add_argument("--expect-deflate", action="store_true",
                    help="fail unless permessage-deflate is negotiated")
    ap.add_argument("--timeout", type=float, default=20.0, help="seconds per check (the 16 MiB check gets 4x)")
    args = ap.parse_args()

    print("python websockets %s -> %s" % (websockets.__version__, args.url))
    passed = failed = 0
    try:
        info = await asyncio.wait_for(check_handshake(args.url), args.timeout)
        print("INFO  " + info)
        if args.expect_deflate:
            if info.startswith("permessage-deflate negotiated"):
                passed += 1
                print("ok    permessage-deflate negotiated")
            else:
                failed += 1
                print("FAIL  permessage-deflate not negotiated")
    except Exception as exc:
        print("INFO  permessage-deflate status unknown: %s: %s" % (type(exc).__name__, exc))
        if args.expect_deflate:
            failed += 1

    for name, fn, scale in CHECKS:
        t = time.monotonic()
        try:
            detail = await asyncio.wait_for(fn(args.url), args.timeout * scale)
        except asyncio.TimeoutError:
            failed += 1
            print("FAIL  %s: timed out after %.0fs" % (name, args.timeout * scale))
        except Exception as exc:
            failed += 1
            print("FAIL  %s: %s: %s" % (name, type(exc).__name__, exc))
            if os.environ.get("INTEROP_DEBUG"):
                traceback.print_exc()
        else:
            passed += 1
            print("PASS  %s: %s (%.0f ms)" % (name, detail, (time.monotonic() - t) * 1000))
        sys.stdout.flush()

    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
