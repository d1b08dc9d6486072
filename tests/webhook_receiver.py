"""A webhook receiver for the delivery and metrics tests: it can be told to fail or to be slow."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer


class Receiver:
    """A webhook receiver that can be told to fail or to be slow."""

    def __init__(self) -> None:
        self.seqs: list[int] = []
        self.posts: list[dict[str, Any]] = []
        self.fail = 0  # answer this many requests with 503
        self.delay = 0.0
        self.url = ""  # set by the fixture once the server listens
        self.app = web.Application()
        self.app.router.add_post("/hook", self.hook)

    async def hook(self, request: web.Request) -> web.Response:
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail:
            self.fail -= 1
            return web.Response(status=503)
        body = orjson.loads(await request.read())
        seqs = [e["seq"] for e in body["events"]]
        assert request.headers["Idempotency-Key"] == f"eir-{seqs[0]}-{seqs[-1]}"
        self.posts.append({"headers": dict(request.headers), "n": len(seqs)})
        self.seqs += seqs
        return web.Response(status=204)


@pytest.fixture(name="receiver")
async def receiver_fixture() -> AsyncIterator[Receiver]:
    """A running :class:`Receiver`; its URL is ``receiver.url``."""
    r = Receiver()
    server = TestServer(r.app)
    await server.start_server()
    r.url = str(server.make_url("/hook"))
    yield r
    await server.close()
