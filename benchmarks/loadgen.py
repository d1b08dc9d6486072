"""Load generators of the service benchmark (uvloop, raw asyncio Protocols, no task per request).

* :func:`batch_load`: pipelined ``check_batch`` calls, ``window`` in flight per connection -> items/s.
* :func:`closed_loop`: ``check`` one request per round trip per connection, as fast as possible -> req/s.
* :func:`open_loop`: ``check`` at a fixed total rate, one request outstanding per connection; latency is
  measured from the *scheduled* send time, so a slow answer also delays (and is charged to) the next one
  (no coordinated omission).
* :func:`http_closed_loop`: HTTP/1.1 keep-alive GETs (fallback when wrk is not installed).

Requests are packed once up front; only the msgid bytes change per call.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable, Sequence
from typing import Any

import msgpack


def _frame(method: str, params: Any) -> tuple[bytes, bytes]:
    """(prefix, suffix) of a request: prefix + packb(msgid) + suffix."""
    return b"\x94\x00", msgpack.packb(method) + msgpack.packb(params)


class _Conn(asyncio.Protocol):
    def __init__(self, on_message: Callable[[_Conn, Any], None]) -> None:
        self.unpacker = msgpack.Unpacker(max_buffer_size=64 << 20)
        self.on_message = on_message
        self.transport: Any = None
        self.lost = asyncio.get_running_loop().create_future()
        self.state: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.unpacker.feed(data)
        for msg in self.unpacker:
            self.on_message(self, msg)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)


async def _connect(host: str, port: int, n: int, on_message: Callable[[_Conn, Any], None]) -> list[_Conn]:
    loop = asyncio.get_running_loop()
    return [(await loop.create_connection(lambda: _Conn(on_message), host, port))[1] for _ in range(n)]


async def batch_load(host: str, port: int, batches: Sequence[list[Any]], seconds: float, warmup: float,
                     connections: int = 2, window: int = 4) -> dict[str, float]:
    """Pipelined check_batch; returns items/s over ``seconds`` after ``warmup``."""
    frames = [_frame("check_batch", [b]) for b in batches]
    sizes = [len(b) for b in batches]
    counters = {"items": 0, "errors": 0, "msgid": 0}
    cycle = itertools.cycle(range(len(frames)))

    def send(c: _Conn) -> None:
        i = next(cycle)
        counters["msgid"] = msgid = (counters["msgid"] + 1) & 0xFFFFFFFF
        pre, suf = frames[i]
        c.state[msgid] = sizes[i]
        c.transport.write(pre + msgpack.packb(msgid) + suf)

    def on_message(c: _Conn, msg: Any) -> None:
        n = c.state.pop(msg[1])
        if msg[2] is not None:
            counters["errors"] += 1
        else:
            counters["items"] += n
        send(c)

    conns = await _connect(host, port, connections, on_message)
    for c in conns:
        c.state = {}
        for _ in range(window):
            send(c)
    await asyncio.sleep(warmup)
    start_items, t0 = counters["items"], asyncio.get_running_loop().time()
    await asyncio.sleep(seconds)
    items, t1 = counters["items"], asyncio.get_running_loop().time()
    for c in conns:
        c.on_message = lambda c, m: None
        c.transport.close()
    return {"items_per_s": (items - start_items) / (t1 - t0), "errors": counters["errors"]}


async def closed_loop(host: str, port: int, queries: Sequence[list[Any]], seconds: float, warmup: float,
                      connections: int = 64) -> dict[str, float]:
    """One check per round trip per connection, back to back; returns requests/s."""
    frames = [_frame("check", q) for q in queries]
    cycle = itertools.cycle(frames)
    counters = {"n": 0, "errors": 0}

    def send(c: _Conn) -> None:
        pre, suf = next(cycle)
        c.transport.write(pre + b"\x01" + suf)

    def on_message(c: _Conn, msg: Any) -> None:
        counters["n"] += 1
        if msg[2] is not None:
            counters["errors"] += 1
        send(c)

    conns = await _connect(host, port, connections, on_message)
    for c in conns:
        send(c)
    loop = asyncio.get_running_loop()
    await asyncio.sleep(warmup)
    n0, t0 = counters["n"], loop.time()
    await asyncio.sleep(seconds)
    n1, t1 = counters["n"], loop.time()
    for c in conns:
        c.on_message = lambda c, m: None
        c.transport.close()
    return {"requests_per_s": (n1 - n0) / (t1 - t0), "errors": counters["errors"]}


async def open_loop(host: str, port: int, queries: Sequence[list[Any]], rate: float, seconds: float,
                    warmup: float, connections: int = 64) -> dict[str, float]:
    """``rate`` checks/s in total, spread evenly over the connections, one outstanding per connection.

    A pacer spins on the (dedicated) load core instead of using timers, whose millisecond granularity
    would add up to 1 ms of client-made delay. ``p99_ms`` is measured from the scheduled send time
    (a late answer delays the next send and that delay is charged too: no coordinated omission);
    ``rtt_p99_ms`` from the actual send, for comparison.
    """
    clock = time.perf_counter  # uvloop's loop.time() has millisecond resolution
    frames = [_frame("check", q) for q in queries]
    cycle = itertools.cycle(frames)
    interval = connections / rate
    start = clock() + 0.05
    measure_from, measure_to = start + warmup, start + warmup + seconds
    lat: list[float] = []
    rtt: list[float] = []
    errors = [0]
    due: list[tuple[float, int, _Conn]] = []

    def on_message(c: _Conn, msg: Any) -> None:
        now = clock()
        scheduled, sent = c.state
        if measure_from <= scheduled < measure_to:
            lat.append(now - scheduled)
            rtt.append(now - sent)
            if msg[2] is not None:
                errors[0] += 1
        nxt = scheduled + interval
        if nxt < measure_to:
            heapq.heappush(due, (nxt, id(c), c))

    conns = await _connect(host, port, connections, on_message)
    for i, c in enumerate(conns):
        heapq.heappush(due, (start + i * interval / connections, id(c), c))  # staggered: a smooth total rate
    while due or clock() < measure_to:
        now = clock()
        while due and due[0][0] <= now:
            t, _, c = heapq.heappop(due)
            c.state = (t, now)
            pre, suf = next(cycle)
            c.transport.write(pre + b"\x01" + suf)
        if not due and now >= measure_to:
            break
        await asyncio.sleep(0)
    await asyncio.sleep(0.5)
    for c in conns:
        c.transport.close()
    lat.sort()
    rtt.sort()
    n = len(lat)

    def pct(xs: list[float], p: float) -> float:
        return xs[min(len(xs) - 1, int(p * len(xs)))] * 1000 if xs else float("nan")

    return {"rate": rate, "achieved_per_s": n / seconds, "samples": n, "errors": errors[0],
            "p50_ms": pct(lat, 0.50), "p90_ms": pct(lat, 0.90), "p99_ms": pct(lat, 0.99),
            "p999_ms": pct(lat, 0.999), "max_ms": lat[-1] * 1000 if n else float("nan"),
            "rtt_p50_ms": pct(rtt, 0.50), "rtt_p99_ms": pct(rtt, 0.99)}


class _Http(asyncio.Protocol):
    def __init__(self, paths: Sequence[bytes], counters: dict[str, int]) -> None:
        self.paths = itertools.cycle(paths)
        self.counters = counters
        self.buf = b""
        self.transport: Any = None
        self.active = True

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.send()

    def send(self) -> None:
        self.transport.write(b"GET " + next(self.paths) + b" HTTP/1.1\r\nHost: eir\r\n\r\n")

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            head_end = self.buf.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = self.buf[:head_end].lower()
            i = head.find(b"content-length:")
            eol = head.find(b"\r\n", i)
            length = int(head[i + 15 : eol if eol > 0 else None]) if i >= 0 else 0
            end = head_end + 4 + length
            if len(self.buf) < end:
                return
            if not head.startswith(b"http/1.1 200"):
                self.counters["errors"] += 1
            self.buf = self.buf[end:]
            self.counters["n"] += 1
            if self.active:
                self.send()


async def http_closed_loop(host: str, port: int, paths: Sequence[str], seconds: float, warmup: float,
                           connections: int = 64) -> dict[str, float]:
    """Fallback HTTP/1.1 keep-alive load (one request per round trip per connection)."""
    loop = asyncio.get_running_loop()
    counters = {"n": 0, "errors": 0}
    raw = [p.encode() for p in paths]
    conns = [(await loop.create_connection(lambda: _Http(raw, counters), host, port))[1] for _ in range(connections)]
    await asyncio.sleep(warmup)
    n0, t0 = counters["n"], loop.time()
    await asyncio.sleep(seconds)
    n1, t1 = counters["n"], loop.time()
    for c in conns:
        c.active = False
        c.transport.close()
    return {"requests_per_s": (n1 - n0) / (t1 - t0), "errors": counters["errors"]}
