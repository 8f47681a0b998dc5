#!/usr/bin/env python3
"""Slowloris against an actorchat server: does a new client still get in?

Opens N TCP sockets that each send half an HTTP request line and then
nothing, then, while they are open, times a fresh WebSocket client from TCP
connect to the echo of its first chat message (several trials). Finally it
waits until the server has closed every stalled socket and reports how long
that took, plus the server's own counters from /metrics.

    python3 crates/bench/scripts/slowloris.py --url http://127.0.0.1:3000 --sockets 10000

Standard library only. Loopback only: point it at your own server.
"""
import argparse
import asyncio
import base64
import json
import os
import resource
import struct
import time
import urllib.request


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


async def stalled(host, port):
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"GET / HTTP/1.1\r\nHo")
    await writer.drain()
    return reader, writer


async def wait_closed(reader, opened_at):
    try:
        while await reader.read(4096):
            pass
    except (ConnectionError, OSError):
        pass
    return time.monotonic() - opened_at


def frame(text):
    """A masked client text frame."""
    payload = text.encode()
    mask = os.urandom(4)
    head = bytes([0x81])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    else:
        head += bytes([0x80 | 126]) + struct.pack(">H", n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def read_frame(reader):
    b0, b1 = await reader.readexactly(2)
    n = b1 & 0x7F
    if n == 126:
        (n,) = struct.unpack(">H", await reader.readexactly(2))
    elif n == 127:
        (n,) = struct.unpack(">Q", await reader.readexactly(8))
    return b0 & 0x0F, await reader.readexactly(n)


async def newcomer(host, port, name):
    """Seconds from TCP connect to the echo of the first chat message."""
    start = time.monotonic()
    reader, writer = await asyncio.open_connection(host, port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET /ws?name={name}&room=slowloris HTTP/1.1\r\nHost: {host}:{port}\r\n"
            "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Key: {key}\r\n\r\n"
        ).encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(f"upgrade refused: {head[:60]!r}")
    writer.write(frame(json.dumps({"type": "chat", "text": "made it"})))
    await writer.drain()
    while True:
        op, payload = await read_frame(reader)
        if op == 1 and b'"type":"chat"' in payload and b"made it" in payload:
            elapsed = time.monotonic() - start
            writer.close()
            return elapsed


def metrics(url):
    with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
        text = r.read().decode()
    wanted = (
        "actorchat_pending_evicted_total",
        "actorchat_header_timeouts_total",
        "actorchat_pending_connections",
        "process_open_fds",
        "process_resident_memory_bytes",
    )
    out = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in wanted:
            out[name] = float(value)
    return out


async def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default="http://127.0.0.1:3000")
    ap.add_argument("--sockets", type=int, default=10000)
    ap.add_argument("--trials", type=int, default=5)
    args = ap.parse_args()
    host, port = args.url.removeprefix("http://").split(":")
    port = int(port)
    limit = raise_nofile()
    before = metrics(args.url)
    opened = []
    t0 = time.monotonic()
    for i in range(0, args.sockets, 500):
        batch = await asyncio.gather(
            *(stalled(host, port) for _ in range(min(500, args.sockets - i))),
            return_exceptions=True,
        )
        now = time.monotonic()
        # Keep the writers: a dropped StreamWriter closes its socket.
        opened += [(*s, now) for s in batch if not isinstance(s, BaseException)]
    open_secs = time.monotonic() - t0
    waits = [asyncio.create_task(wait_closed(r, at)) for r, _, at in opened]
    trials = []
    for t in range(args.trials):
        trials.append(await asyncio.wait_for(newcomer(host, port, f"newcomer{t}"), 30))
    lifetimes = await asyncio.gather(*waits)
    after = metrics(args.url)
    report = {
        "sockets_requested": args.sockets,
        "sockets_opened": len(opened),
        "client_fd_limit": limit,
        "open_secs": round(open_secs, 2),
        "newcomer_connect_to_echo_ms": [round(x * 1000, 1) for x in trials],
        "stalled_socket_lifetime_max_s": round(max(lifetimes), 2) if lifetimes else None,
        "stalled_socket_lifetime_median_s": round(sorted(lifetimes)[len(lifetimes) // 2], 2)
        if lifetimes
        else None,
        "evicted": after.get("actorchat_pending_evicted_total", 0)
        - before.get("actorchat_pending_evicted_total", 0),
        "header_timeouts": after.get("actorchat_header_timeouts_total", 0)
        - before.get("actorchat_header_timeouts_total", 0),
        "server_after": after,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
