"""N5g-eir over HTTP with the C accelerator (check_raw) against the pure-Python service.

The same requests go to a service whose engine is accelerated and to one that is not: every status and
body, the decision counters and the state must be the same, for every PEI/GPSI/SUPI form (common,
unusual, invalid).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any
from unittest.mock import patch

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eir import fastpath
from eir.identifiers import imei15
from eir.service import Service
from eir.transports.http import EQUIPMENT_STATUS, make_app
from tests.svc_fixtures import (
    BLOCKED,
    CLONED,
    OTHER,
    OWNED,
    OWNER,
    OWNER_IMSI,
    UNOWNED,
    UNREGISTERED,
    FixedClock,
    build,
    make_config,
    registry,
)
from tests.test_fastpath import state_view

pytestmark = pytest.mark.skipif(not fastpath.available(), reason="eir._fastpath is not built")

_PEIS = [form for core in (OWNED, UNOWNED, BLOCKED, CLONED, UNREGISTERED)
         for form in ("imei-" + imei15(int(core)), "imeisv-" + core + "01", "IMEI-" + imei15(int(core)),
                      "imei-" + core + "0")] + ["imei-123", "", "mac-00-11-22-33-44-55"]
_GPSIS = [None, "msisdn-" + OWNER[1:], "msisdn-98" + OWNER[1:], "msisdn-" + OWNER, "msisdn-98" + OTHER[1:],
          "msisdn-4915112345678", "msisdn-0912", "tel-1", ""]
_SUPIS = [None, None, None, "imsi-" + OWNER_IMSI, "imsi-310111234567890", "imsi-12", "nai-x"]
_query = st.tuples(st.sampled_from(_PEIS), st.sampled_from(_GPSIS), st.sampled_from(_SUPIS)).map(
    lambda t: {k: v for k, v in zip(("pei", "gpsi", "supi"), t, strict=True) if v is not None})


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("httpfast"), "reg", registry(n_filler=6, n_blocked_filler=1))


def serve(snapshot: Path, queries: list[dict[str, str]], accelerate: bool) -> tuple[list[Any], Any, Any]:
    async def go() -> tuple[list[Any], Any, Any]:
        svc = Service(make_config(snapshot), clock=FixedClock())
        if accelerate:
            assert (await svc.reload(force=True)).ok
        else:
            with patch.object(fastpath, "_MODULE", None):
                assert (await svc.reload(force=True)).ok
        assert svc.engine is not None and (svc.engine.fast is not None) == accelerate
        client: TestClient[Any, Any] = TestClient(TestServer(make_app(svc)))
        await client.start_server()
        try:
            answers = []
            for q in queries:
                r = await client.get(EQUIPMENT_STATUS, params=q)
                answers.append((r.status, r.content_type, await r.read()))
        finally:
            await client.close()
        return answers, dict(svc.metrics.decisions), state_view(svc.state)

    return asyncio.run(go())


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_query, min_size=1, max_size=12))
def test_accelerated_n5g_eir_answers_as_the_python_service(snapshot: Path, queries: list[dict[str, str]]) -> None:
    assert serve(snapshot, queries, True) == serve(snapshot, queries, False)


def test_common_attaches_are_decided_in_c(snapshot: Path) -> None:
    # The owner's attach never reaches the Python parse (build_query) when the accelerator is on.
    queries = [{"pei": "imei-" + imei15(int(OWNED)), "gpsi": "msisdn-98" + OWNER[1:]}] * 3
    refuse = AssertionError("the common attach took the Python path")
    with patch("eir.transports.http.build_query", side_effect=refuse):
        answers, decisions, _ = serve(snapshot, queries, True)
    assert answers == [(200, "application/json", b'{"status":"WHITELISTED"}')] * 3
    assert {r.value: n for r, n in decisions.items() if n} == {"OWNER": 3}
