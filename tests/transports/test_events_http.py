"""GET /v1/events (eir.transports.events_http): committed events, cursors, long-poll, bounds."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from eir.events import Event
from eir.store import SqliteState, StoreConfig
from eir.transports.events_http import EventRoutes, add_event_routes
from tests.conftest import T0


def event(i: int) -> Event:
    return Event("UNREGISTERED_DEVICE", T0 + i, 35693803000011, 989120000000 + i, 1, "UNREGISTERED", None,
                 text_fa="x", text_en="y")


class Env:
    def __init__(self, st: SqliteState, client: TestClient[web.Request, web.Application], routes: EventRoutes) -> None:
        self.st, self.client, self.routes = st, client, routes

    async def emit(self, n: int) -> None:
        for i in range(n):
            self.st.append_event(event(i))
        await self.st.barrier()


def guard(request: web.Request) -> web.StreamResponse | None:
    if request.headers.get("Authorization") != "Bearer s3cret":
        return web.Response(status=401)
    return None


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    st = await SqliteState.open(tmp_path / "state.db")
    app = web.Application()
    routes = add_event_routes(app, st, max_limit=50, default_limit=10, max_timeout_s=5.0, guard=guard)
    client = TestClient(TestServer(app), headers={"Authorization": "Bearer s3cret"})
    await client.start_server()
    yield Env(st, client, routes)
    await client.close()
    await st.close()


async def test_serves_committed_events_from_a_cursor(env: Env) -> None:
    await env.emit(25)
    r = await env.client.get("/v1/events")
    assert r.status == 200 and r.headers["Content-Type"].startswith("application/json")
    doc = await r.json()
    assert [e["seq"] for e in doc["events"]] == list(range(1, 11)) and doc["next"] == 10
    assert doc["committed_seq"] == 25 and doc["events"][0]["type"] == "UNREGISTERED_DEVICE"
    doc = await (await env.client.get("/v1/events", params={"after": "20", "limit": "50"})).json()
    assert [e["seq"] for e in doc["events"]] == [21, 22, 23, 24, 25] and doc["next"] == 25
    doc = await (await env.client.get("/v1/events", params={"after": "25"})).json()
    assert doc == {"events": [], "next": 25, "committed_seq": 25}


async def test_uncommitted_events_are_never_served(tmp_path: Path) -> None:
    # A slow group commit keeps the event sequenced in memory but uncommitted for a while.
    st = await SqliteState.open(tmp_path / "state.db", StoreConfig(commit_delay_s=0.3))
    app = web.Application()
    add_event_routes(app, st)
    async with TestClient(TestServer(app)) as client:
        st.append_event(event(0))
        doc = await (await client.get("/v1/events")).json()
        assert doc == {"events": [], "next": 0, "committed_seq": 0}
        await st.barrier()
        doc = await (await client.get("/v1/events")).json()
        assert [e["seq"] for e in doc["events"]] == [1] and doc["committed_seq"] == 1
    await st.close()


async def test_long_poll_returns_on_commit(env: Env) -> None:
    started = time.monotonic()
    poll = asyncio.ensure_future(env.client.get("/v1/events", params={"after": "0", "timeout": "5"}))
    await asyncio.sleep(0.1)
    assert not poll.done() and env.routes.waiting == 1
    await env.emit(2)
    doc = await (await poll).json()
    assert [e["seq"] for e in doc["events"]] == [1, 2]
    assert time.monotonic() - started < 2


async def test_long_poll_times_out_empty_and_is_released_on_close(env: Env) -> None:
    started = time.monotonic()
    doc = await (await env.client.get("/v1/events", params={"timeout": "0.2"})).json()
    assert doc["events"] == [] and 0.15 < time.monotonic() - started < 2
    poll = asyncio.ensure_future(env.client.get("/v1/events", params={"timeout": "5"}))
    await asyncio.sleep(0.1)
    env.routes.close()  # the service drains: pending polls answer now
    doc = await (await asyncio.wait_for(poll, 2)).json()
    assert doc["events"] == []


@pytest.mark.parametrize(("params", "param"), [
    ({"after": "-1"}, "after"), ({"after": "x"}, "after"), ({"after": "9" * 30}, "after"),
    ({"limit": "0"}, "limit"), ({"limit": "51"}, "limit"), ({"timeout": "6"}, "timeout"),
    ({"timeout": "nan"}, "timeout"), ({"timeout": "-1"}, "timeout"),
])
async def test_bad_parameters_are_problems(env: Env, params: dict[str, str], param: str) -> None:
    r = await env.client.get("/v1/events", params=params)
    assert r.status == 400 and r.headers["Content-Type"].startswith("application/problem+json")
    doc = await r.json()
    assert doc["cause"] == "INVALID_QUERY_PARAM" and doc["invalidParams"][0]["param"] == param


async def test_guard_refuses_without_token(env: Env) -> None:
    r = await env.client.get("/v1/events", headers={"Authorization": "Bearer wrong"})
    assert r.status == 401
