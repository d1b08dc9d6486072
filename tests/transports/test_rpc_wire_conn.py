"""RpcConnection with the wire decoder (eir.transports.rpc_wire) against the pure-Python service.

Streams of requests (batches of usual, odd and invalid items, checks, pings, notifications, near misses
of the check_batch header, garbage) are fed in random chunks to an accelerated service, whose decoder
reads the usual check_batch from its bytes, and to a pure-Python one (msgpack decodes everything): the
answer bytes, the decision and error counters, the closing of the connection and the state must match.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any
from unittest.mock import patch

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eir import fastpath
from eir.service import Service
from eir.transports.rpc import RpcConnection, RpcServer
from eir.transports.rpc_codec import encode_request
from eir.transports.rpc_wire import WireDecoder
from tests.svc_fixtures import OWNED, OWNER, FixedClock, build, make_config, registry
from tests.test_fastpath import state_view
from tests.transports.test_rpc import FakeTransport
from tests.transports.test_rpc_fast import _item
from tests.transports.test_rpc_wire import _cuts

pytestmark = pytest.mark.skipif(not fastpath.available(), reason="eir._fastpath is not built")


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("rpcwire"), "reg", registry(n_filler=6, n_blocked_filler=1))


_odd = st.sampled_from([
    msgpack.packb([2, "check_batch", [[[OWNED, OWNER]]]]),  # a notification: never answered
    msgpack.packb([0, 5, b"check_batch", [[[OWNED, OWNER]]]], use_bin_type=True),  # bin method name
    msgpack.packb([0, 6, "check_batch", [[[OWNED, OWNER]], 1]]),  # params of two
    msgpack.packb([0, 7, "check_batch", [[[OWNED, {"a": 1}], [[OWNED]], [OWNED, OWNER]]]]),  # nested items
    msgpack.packb([0, 8, "check_batch", [[[OWNED, OWNER]] * 120]]),  # more than max_batch
    msgpack.packb([0, 9, "check_bitch", [[]]]),
    encode_request(10, "ping", []),
    b"\x94\x00\x0b\xabcheck_batch\x91\x91\x92\xa2\xff\xfe\xc0",  # not UTF-8: a violation
    b"\xc1",
])  # fmt: skip
_message = st.one_of(
    st.tuples(st.integers(0, 2**32 - 1), st.lists(_item, max_size=30)).map(
        lambda t: encode_request(t[0], "check_batch", [t[1]])),
    st.tuples(st.integers(0, 2**32 - 1), _item).map(lambda t: encode_request(t[0], "check", t[1])),
    _odd,
)


def serve(snapshot: Path, chunks: list[bytes], mode: str) -> tuple[Any, ...]:
    """mode: "wire" (accelerated, the wire decoder), "python" (no accelerator at all), "wire-no-fast" (the
    wire decoder, an engine without accelerator: the batch takes the items msgpack decodes)."""

    async def go() -> tuple[Any, ...]:
        svc = Service(make_config(snapshot, loop_budget=7, max_batch=100), clock=FixedClock())
        if mode == "wire":
            assert (await svc.reload(force=True)).ok
        elif mode == "python":
            with patch.object(fastpath, "_MODULE", None):
                assert (await svc.reload(force=True)).ok
        else:
            with patch("eir.engine.accelerator", lambda *a: None):
                assert (await svc.reload(force=True)).ok
        assert svc.engine is not None and (svc.engine.fast is not None) == (mode == "wire")
        server = RpcServer(svc)
        server.accepting = True
        if mode == "python":
            with patch.object(fastpath, "_MODULE", None):
                conn = RpcConnection(server)
        else:
            conn = RpcConnection(server)
        assert (type(conn.decoder) is WireDecoder) == (mode != "python")
        t = FakeTransport()
        conn.connection_made(t)  # type: ignore[arg-type]
        for chunk in chunks:
            conn.data_received(chunk)
            for _ in range(400):
                if not conn.queue and not conn.scheduled:
                    break
                await asyncio.sleep(0)
            assert not conn.queue
        errors = {s.labels["code"]: s.value for m in svc.metrics.rpc_errors.collect() for s in m.samples
                  if s.name.endswith("_total")}
        closed = {s.labels["cause"]: s.value for m in svc.metrics.rpc_closed.collect() for s in m.samples
                  if s.name.endswith("_total")}
        return (bytes(t.data), dict(svc.metrics.decisions), state_view(svc.state), errors, closed, t.closed,
                conn.decoder.buffered)

    return asyncio.run(go())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(_message, min_size=1, max_size=8), st.lists(st.integers(0, 10**5), max_size=8))
def test_wire_service_answers_as_the_python_service(snapshot: Path, messages: list[bytes], cuts: list[int]) -> None:
    chunks = _cuts(b"".join(messages), cuts)
    python = serve(snapshot, chunks, "python")
    assert serve(snapshot, chunks, "wire") == python
    assert serve(snapshot, chunks, "wire-no-fast") == python


def test_usual_batches_byte_by_byte(snapshot: Path) -> None:
    data = b"".join(encode_request(i, "check_batch", [[[OWNED, OWNER, 1], [OWNED, "+989121234567"]] * 3])
                    for i in range(3))
    chunks = [data[k : k + 1] for k in range(len(data))]
    python = serve(snapshot, chunks, "python")
    assert serve(snapshot, chunks, "wire") == python
    answers = list(msgpack.Unpacker(__import__("io").BytesIO(python[0]), raw=False))
    assert [a[1] for a in answers] == [0, 1, 2] and all(len(a[3]) == 6 for a in answers)
