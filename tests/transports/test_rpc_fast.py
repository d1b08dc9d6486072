"""msgpack RPC with the C accelerator (check_raw, parse_items/decide_items) against the pure-Python service.

The same requests go to a service whose engine is accelerated and to one that is not; every answer byte,
the decision counters and the state must be the same, for every item form (common, unusual, invalid),
for batches spread over several loop turns and for single checks.
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
from eir.identifiers import imei15
from eir.service import Service
from eir.transports.rpc import RpcConnection, RpcServer
from eir.transports.rpc_codec import encode_request
from tests.svc_fixtures import (
    BLOCKED,
    CLONED,
    OTHER,
    OWNED,
    OWNER,
    OWNER2,
    OWNER_IMSI,
    T0,
    UNOWNED,
    UNREGISTERED,
    FixedClock,
    build,
    make_config,
    registry,
)
from tests.test_fastpath import state_view
from tests.transports.test_rpc import FakeTransport

pytestmark = pytest.mark.skipif(not fastpath.available(), reason="eir._fastpath is not built")


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("rpcfast"), "reg", registry(n_filler=6, n_blocked_filler=1))


def _imeis(core: str) -> list[str]:
    return [core, imei15(int(core)), "imei-" + imei15(int(core)), f"imeisv-{core}01", f" {core}", core + "9"]


_IMEIS = [form for core in (OWNED, UNOWNED, BLOCKED, CLONED, UNREGISTERED, "35000000000007", "35000000000014")
          for form in _imeis(core)] + ["123", "", "00000000000000"]


def _mostly(valid: list[Any], invalid: list[Any]) -> st.SearchStrategy[Any]:
    """A valid value most of the time: one invalid item makes a whole batch an invalid_params answer."""
    return st.sampled_from(valid * 12 + invalid)


_MSISDNS = _mostly([OWNER, OWNER[1:], "+98" + OWNER[1:], "0098" + OWNER[1:], "98" + OWNER[1:], OWNER2, OTHER,
                    "09120000001", None, "", "+4915112345678", "004915112345678", 9121234567,
                    "msisdn-989121234567"], ["0912", "bad"])
_item = st.tuples(
    st.sampled_from(_IMEIS), _MSISDNS,
    _mostly([None, 1, 2, "2", ""], [0, 17, "x", True]),
    _mostly([None, T0 + 60, T0 + 3 * 86_400 + 0.5, "2026-11-02T00:00:00Z"], ["bad", True, 10]),
    _mostly([None, "", None, "", OWNER_IMSI, "310111234567890", "imsi-" + OWNER_IMSI, "IMSI-432111234567891",
             "432999999999999", " " + OWNER_IMSI], [12, "0" + OWNER_IMSI, "imsi-"]),
    _mostly([2, 3, 4, 5], [1, 6]),
).map(lambda t: list(t[: t[5]]) if t[5] <= 5 else 7)  # 7: not a list; 6 fields are not a query either
_request = st.one_of(
    st.tuples(st.just("check"), _item),
    st.tuples(st.just("check_batch"), st.lists(st.one_of(_item, _item, _item, st.just([OWNED, OWNER])), max_size=30)
              .map(lambda items: [items])),
)


def serve(snapshot: Path, requests: list[tuple[str, Any]], accelerate: bool) -> tuple[bytes, Any, Any]:
    async def go() -> tuple[bytes, Any, Any]:
        svc = Service(make_config(snapshot, loop_budget=7, max_batch=100), clock=FixedClock())
        if accelerate:
            assert (await svc.reload(force=True)).ok
        else:
            with patch.object(fastpath, "_MODULE", None):
                assert (await svc.reload(force=True)).ok
        assert svc.engine is not None and (svc.engine.fast is not None) == accelerate
        server = RpcServer(svc)
        server.accepting = True
        conn = RpcConnection(server)
        t = FakeTransport()
        conn.connection_made(t)  # type: ignore[arg-type]
        conn.data_received(b"".join(encode_request(i, m, p) for i, (m, p) in enumerate(requests)))
        for _ in range(200):
            if not conn.queue and not conn.scheduled:
                break
            await asyncio.sleep(0)
        assert not conn.queue
        return bytes(t.data), dict(svc.metrics.decisions), state_view(svc.state)

    return asyncio.run(go())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_request, min_size=1, max_size=8))
def test_accelerated_rpc_answers_as_the_python_service(snapshot: Path, requests: list[tuple[str, Any]]) -> None:
    assert serve(snapshot, requests, True) == serve(snapshot, requests, False)


def test_common_items_are_decided_in_c(snapshot: Path) -> None:
    # A batch of common attaches with a few others among them, answered in order, counted per reason.
    items = [[OWNED, OWNER], [OWNED, OTHER, 2], [BLOCKED, OWNER], ["imei-" + imei15(int(OWNED)), "+989121234567"],
             [UNOWNED, OTHER, None, None, OWNER_IMSI], [OWNED, "+4915112345678"]] * 4
    fast = serve(snapshot, [("check_batch", [items]), ("check", [OWNED, OWNER])], True)
    assert fast == serve(snapshot, [("check_batch", [items]), ("check", [OWNED, OWNER])], False)
    decisions = {r.value: n for r, n in fast[1].items() if n}
    assert decisions["OWNER"] == 9 and decisions["BLACKLISTED"] == 4


def test_imsi_items_are_decided_in_c(snapshot: Path) -> None:
    # Attaches carrying an IMSI (with or without the MSISDN, home or foreign) take no Python decision.
    items = [[OWNED, None, None, None, OWNER_IMSI], [OWNED, "", 1, None, "imsi-" + OWNER_IMSI],
             [OWNED, OWNER, 1, None, OWNER_IMSI], [OWNED, None, None, None, "310111234567890"],
             [OWNED, OWNER, 1, None, "310111234567890"]]
    requests = [("check_batch", [items]), ("check", [OWNED, None, None, None, OWNER_IMSI])]
    from eir.engine import Engine
    from eir.transports import rpc_batch

    python = AssertionError("decided in Python")
    with patch.object(rpc_batch.Batch, "_check_one", side_effect=python), \
            patch.object(Engine, "check", side_effect=python):
        fast = serve(snapshot, requests, True)
    assert fast == serve(snapshot, requests, False)
    decisions = {r.value: n for r, n in fast[1].items() if n}
    assert decisions == {"OWNER": 4, "ROAMER_EXEMPT": 2}


def test_a_non_ascii_digit_time_is_invalid_params(snapshot: Path) -> None:
    # str.isdigit() says yes to '²', float() says no: parse_time must refuse it, not raise ValueError (which
    # would cost the client its connection).
    data, _, _ = serve(snapshot, [("check", [OWNED, OWNER, 1, "²"]), ("check_batch", [[[OWNED, OWNER, 1, "1²"]]])],
                       True)
    answers = list(msgpack.Unpacker(__import__("io").BytesIO(data), raw=False))
    assert [(a[1], a[2]["code"]) for a in answers] == [(0, "invalid_params"), (1, "invalid_params")]
