"""msgpack RPC: the connection handler without sockets, then end to end over real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgpack
import pytest

from eir.service import Service
from eir.transports.rpc import RpcConnection, RpcServer
from eir.transports.rpc_codec import encode_request
from tests.svc_fixtures import (
    BLOCKED,
    DAY,
    OTHER,
    OWNED,
    OWNER,
    OWNER_IMSI,
    T0,
    UNOWNED,
    UNREGISTERED,
    FixedClock,
    RpcClient,
    build,
    close_all,
    install,
    make_config,
    registry,
    start,
)

# --- the handler without sockets ------------------------------------------------------------------------


class FakeTransport:
    """Records what the connection writes and how it steers reading."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.closed = self.aborted = False
        self.paused = 0
        self.resumed = 0

    def write(self, data: bytes) -> None:
        assert not self.closed
        self.data += data

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = self.aborted = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.paused += 1

    def resume_reading(self) -> None:
        self.resumed += 1

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def messages(self) -> list[Any]:
        return list(msgpack.Unpacker(__import__("io").BytesIO(bytes(self.data)), raw=False))


@pytest.fixture
def snapshot(tmp_path: Path) -> Path:
    return build(tmp_path, "reg", registry())


@pytest.fixture
async def loaded(snapshot: Path) -> Service:
    """A service with its bundle loaded but no listener (handlers are driven by hand)."""
    svc = Service(make_config(snapshot, loop_budget=10, max_batch=100), clock=FixedClock())
    assert (await svc.reload(force=True)).ok
    return svc


def _conn(svc: Service) -> tuple[RpcConnection, FakeTransport]:
    server = RpcServer(svc)
    server.accepting = True
    conn = RpcConnection(server)
    t = FakeTransport()
    conn.connection_made(t)  # type: ignore[arg-type]
    return conn, t


async def _settle() -> None:
    for _ in range(50):
        await asyncio.sleep(0)


async def test_handler_answers_check_ping_and_errors(loaded: Service) -> None:
    conn, t = _conn(loaded)
    conn.data_received(encode_request(1, "check", [OWNED, OWNER]) + encode_request(2, "ping", [])
                       + encode_request(3, "check", [OWNED, "not-a-number"]) + encode_request(4, "nope", [])
                       + encode_request(5, "check", "wrong") + encode_request(6, "check", [OWNED, OWNER, 1, T0 - DAY]))
    m = t.messages()
    assert [x[1] for x in m] == [1, 2, 3, 4, 5, 6]
    assert m[0][3] == {"verdict": "ALLOW", "status": "WHITELISTED", "reason": "OWNER", "deadline": None}
    assert m[1][3] == "pong"
    assert m[2][2]["code"] == "invalid_params" and "msisdn" in m[2][2]["message"]
    assert m[3][2]["code"] == "unknown_method"
    assert m[4][2]["code"] == "invalid_params"
    assert m[5][2] is None and not t.closed


async def test_handler_not_ready(snapshot: Path) -> None:
    svc = Service(make_config(snapshot), clock=FixedClock())
    conn, t = _conn(svc)
    conn.data_received(encode_request(1, "check", [OWNED, OWNER]) + encode_request(2, "check_batch", [[]]))
    assert [m[2]["code"] for m in t.messages()] == ["not_ready", "not_ready"]


async def test_handler_batch_spreads_over_loop_turns(loaded: Service) -> None:
    conn, t = _conn(loaded)
    queries = [[OWNED, OWNER], [BLOCKED, OTHER], ["123", OTHER]] * 15  # 45 queries, budget 10 per turn
    conn.data_received(encode_request(1, "check_batch", [queries]) + encode_request(2, "ping", []))
    assert t.data == b"" and t.paused == 1  # nothing decided in one go; reading paused meanwhile
    await _settle()
    m = t.messages()
    assert [x[1] for x in m] == [1, 2]
    assert [r["reason"] for r in m[0][3]] == ["OWNER", "BLACKLISTED", "MALFORMED_IMEI"] * 15
    assert t.resumed == 1


async def test_handler_batch_is_validated_before_deciding(loaded: Service) -> None:
    conn, t = _conn(loaded)
    conn.data_received(encode_request(1, "check_batch", [[[UNOWNED, OTHER], [OWNED, "bad"]]])
                       + encode_request(2, "check_batch", [[[OWNED, OWNER]] * 101])
                       + encode_request(3, "check_batch", [[OWNED, OWNER]]))
    await _settle()
    m = t.messages()
    assert m[0][2] == {"code": "invalid_params", "message": "query 1: msisdn: not an E.164 number"}
    assert m[1][2]["code"] == "too_large"
    assert m[2][2]["code"] == "invalid_params"
    assert loaded.state.activations == {}  # the UNOWNED query was never decided


async def test_handler_garbage_answers_then_closes(loaded: Service) -> None:
    conn, t = _conn(loaded)
    conn.data_received(encode_request(1, "ping", []) + b"\xc1\xc1\xc1" + encode_request(2, "ping", []))
    m = t.messages()
    assert m[0] == [1, 1, None, "pong"]
    assert m[1][1] is None and m[1][2]["code"] == "invalid_request"
    assert len(m) == 2 and t.closed


async def test_handler_stops_while_writes_are_paused(loaded: Service) -> None:
    conn, t = _conn(loaded)
    conn.pause_writing()
    assert t.paused == 1
    conn.data_received(encode_request(1, "ping", []))
    assert t.data == b""  # a client that does not read gets nothing more computed
    conn.resume_writing()
    await _settle()
    assert t.messages() == [[1, 1, None, "pong"]] and t.resumed == 1


async def test_handler_half_close_answers_then_closes(loaded: Service) -> None:
    conn, t = _conn(loaded)
    conn.data_received(encode_request(1, "check_batch", [[[OWNED, OWNER]] * 30]))
    assert conn.eof_received() is True
    await _settle()
    assert t.messages()[0][1] == 1 and t.closed


# --- end to end over sockets ----------------------------------------------------------------------------


@pytest.fixture
async def svc(snapshot: Path) -> AsyncIterator[Service]:
    s = await start(make_config(snapshot, max_batch=2_000, max_connections=8, idle_timeout_s=30.0,
                                max_message_bytes=1 << 20, write_buffer_bytes=64 * 1024))
    yield s
    await close_all()
    await s.shutdown()


@pytest.fixture(autouse=True)
async def _close_clients() -> AsyncIterator[None]:
    yield
    await close_all()


async def test_pipelined_requests_on_one_connection(svc: Service) -> None:
    c = await RpcClient.connect(svc)
    ids = {c.send("check", [OWNED, OWNER] if i % 2 else [BLOCKED, OTHER]): i for i in range(1_000)}
    got = {}
    for _ in range(1_000):
        msg = await c.recv()
        got[msg[1]] = msg[3]["reason"]
    assert {ids[k]: v for k, v in got.items()} == {i: "OWNER" if i % 2 else "BLACKLISTED" for i in range(1_000)}
    err, res = await c.call("check_batch", [[[OWNED, None, 1, None, OWNER_IMSI], [UNREGISTERED, OTHER, 2, T0]]])
    assert err is None and [r["reason"] for r in res] == ["OWNER", "TRAVELER_ALLOWANCE"]
    assert res[1]["deadline"] == T0 + 30 * DAY and type(res[1]["deadline"]) is int
    await c.close()


async def test_garbage_closes_only_that_connection(svc: Service) -> None:
    good, bad = await RpcClient.connect(svc), await RpcClient.connect(svc)
    # 0xc1 is never valid msgpack: the stream is garbage from its first byte. (Pure random bytes may
    # instead start a valid but incomplete object, and the server then rightly waits for the rest.)
    bad.writer.write(b"\xc1" + os.urandom(4_096))
    msg = await bad.recv()
    assert msg[2]["code"] in ("invalid_request", "too_large")
    with pytest.raises((EOFError, ConnectionError)):
        await bad.recv()
    assert await good.call("ping", []) == (None, "pong")
    await good.close()


async def test_oversize_message_and_huge_batch(svc: Service) -> None:
    c = await RpcClient.connect(svc)
    err, _ = await c.call("check_batch", [[[OWNED, OWNER]] * 2_001])  # over max_batch: error, stays open
    assert err["code"] == "too_large"
    assert await c.call("ping", []) == (None, "pong")
    c.writer.write(encode_request(99, "check_batch", [[["3" * 60, "9" * 60]] * 20_000]))  # > 1 MiB
    msg = await c.recv()
    assert msg[2]["code"] == "too_large"
    with pytest.raises((EOFError, ConnectionError)):
        await c.recv()


async def test_wrong_types(svc: Service) -> None:
    c = await RpcClient.connect(svc)
    for params in ([None, OWNER], [OWNED, OWNER, "x"], [OWNED, OWNER, 1, "yesterday"],
                   [OWNED, OWNER, 1, None, "abc"], [OWNED, OWNER, True], [[OWNED], OWNER], [OWNED, {"a": 1}],
                   [OWNED], [OWNED, OWNER, 1, None, None, 1]):
        err, _ = await c.call("check", params)
        assert err["code"] == "invalid_params", params
    assert await c.call("ping", []) == (None, "pong")


async def test_connection_limit(svc: Service) -> None:
    clients = [await RpcClient.connect(svc) for _ in range(8)]
    for c in clients:
        assert await c.call("ping", []) == (None, "pong")
    extra = await RpcClient.connect(svc)
    msg = await extra.recv()
    assert msg[2]["code"] == "overloaded"
    with pytest.raises((EOFError, ConnectionError)):
        await extra.recv()
    await clients[0].close()
    await asyncio.sleep(0.05)
    again = await RpcClient.connect(svc)
    assert await again.call("ping", []) == (None, "pong")


async def test_idle_and_slowloris_connections_are_closed(snapshot: Path) -> None:
    s = await start(make_config(snapshot, idle_timeout_s=0.2))
    try:
        idle, slow = await RpcClient.connect(s), await RpcClient.connect(s)
        req = encode_request(1, "ping", [])
        for i in range(len(req) - 1):  # one byte at a time, never finishing the message
            slow.writer.write(req[i : i + 1])
            await asyncio.sleep(0.1)
        for c in (idle, slow):
            with pytest.raises((EOFError, ConnectionError)):
                await c.recv(timeout=2.0)
    finally:
        await close_all()
        await s.shutdown()


async def test_client_that_does_not_read_is_throttled_then_dropped(snapshot: Path) -> None:
    s = await start(make_config(snapshot, idle_timeout_s=0.5, write_buffer_bytes=16 * 1024))
    try:
        lazy = await RpcClient.connect(s)
        sock = lazy.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4_096)
        lazy.writer.transport.pause_reading()  # never read the answers
        (conn,) = s.rpc.conns
        batch = encode_request(1, "check_batch", [[[OWNED, OWNER]] * 1_000])
        for _ in range(2_000):  # up to ~80 MB of answers requested
            lazy.writer.write(batch)
            await asyncio.sleep(0.001)
            if conn.write_paused:
                break
        assert conn.write_paused and not conn.reading
        assert conn.decoder.buffered < 1 << 20 and len(conn.queue) < 300
        other = await RpcClient.connect(s)
        assert await other.call("ping", []) == (None, "pong")  # everyone else is served
        await asyncio.sleep(1.5)
        assert conn not in s.rpc.conns  # dropped after the idle timeout
        assert s.metrics.rpc_closed.labels("slow_reader")._value.get() == 1
    finally:
        await close_all()
        await s.shutdown()


async def test_reload_under_load_fails_no_request(tmp_path: Path, snapshot: Path) -> None:
    other_snap = build(tmp_path, "other", registry(n_filler=50))
    original = build(tmp_path, "original", registry())
    s = await start(make_config(snapshot))
    stop = asyncio.Event()
    errors: list[Any] = []
    answered = [0]

    async def hammer() -> None:
        c = await RpcClient.connect(s)
        while not stop.is_set():
            ids = [c.send("check", [OWNED, OWNER]) for _ in range(20)]
            ids.append(c.send("check_batch", [[[OWNED, OWNER]] * 300]))
            for _ in ids:
                msg = await c.recv()
                if msg[2] is not None:
                    errors.append(msg[2])
                answered[0] += 1
        await c.close()

    try:
        tasks = [asyncio.create_task(hammer()) for _ in range(4)]
        for i in range(6):
            install(other_snap if i % 2 == 0 else original, snapshot)
            outcome = await s.reload(force=True)
            assert outcome.ok, outcome
        stop.set()
        await asyncio.gather(*tasks)
    finally:
        await close_all()
        await s.shutdown()
    assert errors == [] and answered[0] > 100


async def test_batch_in_flight_finishes_on_its_bundle(tmp_path: Path, loaded: Service) -> None:
    # The second snapshot has no device for OWNED: deciding on it would say TRAVELER_ALLOWANCE.
    conn, t = _conn(loaded)
    conn.data_received(encode_request(1, "check_batch", [[[OWNED, OWNER]] * 50]))
    install(build(tmp_path, "empty", [registry()[4]]), loaded.config.snapshot)
    assert (await loaded.reload(force=True)).ok  # swapped while the batch is half done
    await _settle()
    (msg,) = t.messages()
    assert {r["reason"] for r in msg[3]} == {"OWNER"}
    conn.data_received(encode_request(2, "check", [OWNED, OWNER]))
    assert t.messages()[1][3]["reason"] == "TRAVELER_ALLOWANCE"


LOAD_CLIENT = """
import socket, sys, msgpack
host, port, imei, msisdn = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
s = socket.create_connection((host, port))
reqs = [msgpack.packb([0, i, "check_batch", [[[imei, msisdn]] * 10000]]) for i in range(8)]
reqs += [msgpack.packb([0, 100 + i, "check", [imei, msisdn]]) for i in range(300)]
s.sendall(b"".join(reqs))
u, n = msgpack.Unpacker(), 0
while n < len(reqs):
    u.feed(s.recv(1 << 16))
    for m in u:
        assert m[2] is None, m
        n += 1
print(n)
"""


async def test_event_loop_is_never_blocked(snapshot: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Debug mode reports every callback over 50 ms, and a 2 ms heartbeat measures the loop's lag, while
    separate client processes (their work must not count against the server's loop) load it."""
    loop = asyncio.get_running_loop()
    s = await start(make_config(snapshot, max_batch=10_000))
    host, port = s.rpc.address
    lag = [0.0]

    async def heartbeat() -> None:
        while True:
            t = loop.time()
            await asyncio.sleep(0.002)
            lag[0] = max(lag[0], loop.time() - t - 0.002)

    loop.set_debug(True)
    loop.slow_callback_duration = 0.05
    hb = None
    try:
        with caplog.at_level(logging.WARNING, logger="asyncio"):
            # One client process: with two cores, more would measure the OS scheduler, not the loop.
            procs = [await asyncio.create_subprocess_exec(
                sys.executable, "-c", LOAD_CLIENT, host, str(port), OWNED, OWNER, stdout=asyncio.subprocess.PIPE)]
            hb = asyncio.create_task(heartbeat())
            outs = [await p.communicate() for p in procs]
    finally:
        if hb is not None:
            hb.cancel()
        loop.set_debug(False)
        await s.shutdown()
    assert [o[0].strip() for o in outs] == [b"308"] and all(p.returncode == 0 for p in procs)
    slow = [r.getMessage() for r in caplog.records if "Executing" in r.getMessage()]
    assert slow == [], slow
    assert lag[0] < 0.05, lag


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(9 if depth < 3 else 7)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, -1, 1, 2**31, 2**63 - 1, -(2**63), 2**64 - 1, 1_795_000_000, 17])
    if kind == 3:
        return rng.choice([1.5, -0.0, float("inf"), 1e300, 1_795_000_000.7])
    if kind == 4:
        return rng.choice(["", OWNED, OWNER, "imei-" + OWNED, "x" * 70, "۰۹۱۲", "+98", "2026-11-01T00:00:00Z",
                           "2026-11-01T00:00:00", "0" * 14, "\x00"])
    if kind == 5:
        return rng.randbytes(rng.randrange(0, 20))
    if kind == 6:
        return msgpack.ExtType(rng.randrange(0, 100), rng.randbytes(3))
    if kind == 7:
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(0, 7))]
    return {str(i): _random_value(rng, depth + 1) for i in range(rng.randrange(0, 3))}


async def test_fuzzed_params_are_always_answered(svc: Service) -> None:
    """Random params of every msgpack type: each call gets a result or invalid_params, nothing crashes."""
    rng = random.Random(20261101)
    c = await RpcClient.connect(svc)
    for _ in range(600):
        method = rng.choice(["check", "check_batch", "ping"])
        if rng.random() < 0.3:
            params = _random_value(rng, 1)
        else:
            params = [_random_value(rng, 2) for _ in range(rng.randrange(0, 7))]
        if method == "check_batch" and rng.random() < 0.5:
            params = [[[_random_value(rng, 2) for _ in range(rng.randrange(1, 6))] for _ in range(rng.randrange(0, 5))]]
        err, _ = await c.call(method, params)
        assert err is None or err["code"] in ("invalid_params", "too_large"), err
    assert svc.metrics.rpc_closed.labels("internal_error")._value.get() == 0


async def test_random_garbage_streams(svc: Service) -> None:
    """Random byte streams: the server answers or closes each such connection, and stays healthy."""
    rng = random.Random(7)
    good = await RpcClient.connect(svc)
    for _ in range(40):
        bad = await RpcClient.connect(svc)
        bad.writer.write(rng.randbytes(rng.randrange(1, 5_000)))
        bad.writer.write_eof()
        with contextlib.suppress(EOFError, ConnectionError):
            while True:
                await bad.recv(timeout=5.0)  # answers, errors, then the close
        await bad.close()
        assert await good.call("ping", []) == (None, "pong")
    assert svc.metrics.rpc_closed.labels("internal_error")._value.get() == 0
