"""HTTP event feed for the SMS gateway: ``GET /v1/events?after=SEQ&limit=N&timeout=S`` (long-poll).

Only committed events are served (an event is visible once it survives a crash), oldest first, as::

    {"events": [{"seq": 42, "type": "...", ...}, ...], "next": 57, "committed_seq": 57}

``next`` is the ``after`` of the following call (the last returned ``seq``, or ``after`` itself when none
was returned). With ``timeout`` > 0 and nothing after ``after`` yet, the answer waits until an event is
committed or the timeout passes (then ``events`` is empty). Delivery is at least once: the consumer keeps
its own cursor and de-duplicates on ``seq``. Errors are ``application/problem+json``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Final, Protocol

import orjson
from aiohttp import web

from eir.store_schema import StoreError

EVENTS_PATH: Final = "/v1/events"
PROBLEM: Final = "application/problem+json"

#: Returns a response to refuse the request (authentication), or None to serve it.
Guard = Callable[[web.Request], "web.StreamResponse | None"]


class EventFeed(Protocol):
    """What the feed needs from the store (:class:`eir.store.SqliteState`)."""

    committed_seq: int

    async def read_events(self, after: int, limit: int) -> list[tuple[int, bytes]]: ...
    async def wait_for_events(self, after: int, timeout: float) -> bool: ...


def _problem(status: int, cause: str, detail: str, param: str | None = None) -> web.Response:
    doc: dict[str, Any] = {"title": "Bad Request" if status == 400 else "Service Unavailable",
                           "status": status, "detail": detail, "cause": cause}
    if param is not None:
        doc["invalidParams"] = [{"param": param, "reason": detail}]
    return web.Response(status=status, body=orjson.dumps(doc), content_type=PROBLEM)


class EventRoutes:
    """The handler and its long-poll bookkeeping; :meth:`close` releases every waiting poll at once."""

    def __init__(self, store: EventFeed, *, max_limit: int, default_limit: int, max_timeout_s: float,
                 guard: Guard | None) -> None:
        self.store = store
        self.max_limit = max_limit
        self.default_limit = default_limit
        self.max_timeout_s = max_timeout_s
        self.guard = guard
        self.waiting = 0
        self._closing = asyncio.Event()

    def close(self) -> None:
        """Answer every pending long-poll now (service drain) and stop waiting in new ones."""
        self._closing.set()

    async def _on_shutdown(self, app: web.Application) -> None:
        self.close()

    def _int(self, request: web.Request, name: str, default: int, lo: int, hi: int) -> int | web.Response:
        raw = request.query.get(name)
        if raw is None or raw == "":
            return default
        if len(raw) > 20 or not raw.isdigit():
            return _problem(400, "INVALID_QUERY_PARAM", f"{name} must be an integer {lo}..{hi}", name)
        v = int(raw)
        if not lo <= v <= hi:
            return _problem(400, "INVALID_QUERY_PARAM", f"{name} must be an integer {lo}..{hi}", name)
        return v

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """``GET /v1/events``."""
        if self.guard is not None:
            refused = self.guard(request)
            if refused is not None:
                return refused
        after = self._int(request, "after", 0, 0, (1 << 63) - 1)
        if isinstance(after, web.Response):
            return after
        limit = self._int(request, "limit", self.default_limit, 1, self.max_limit)
        if isinstance(limit, web.Response):
            return limit
        timeout = self._timeout(request)
        if isinstance(timeout, web.Response):
            return timeout
        try:
            rows = await self.store.read_events(after, limit)
            if not rows and timeout > 0 and not self._closing.is_set():
                self.waiting += 1
                try:
                    if await self._wait(after, timeout):
                        rows = await self.store.read_events(after, limit)
                finally:
                    self.waiting -= 1
        except StoreError as e:
            return _problem(503, "STATE_UNAVAILABLE", f"outbox unavailable: {e}")
        nxt = rows[-1][0] if rows else after
        # The stored bodies are the events' JSON already: splice them, no decode/encode round trip.
        body = b'{"events":[' + b",".join(b for _, b in rows) + b'],"next":%d,"committed_seq":%d}' % (
            nxt, self.store.committed_seq)
        return web.Response(body=body, content_type="application/json",
                            headers={"Cache-Control": "no-store"})

    def _timeout(self, request: web.Request) -> float | web.Response:
        raw = request.query.get("timeout")
        if raw is None or raw == "":
            return 0.0
        try:
            v = float(raw) if len(raw) <= 16 else -1.0
        except ValueError:
            v = -1.0
        if not 0 <= v <= self.max_timeout_s:  # also rejects NaN
            return _problem(400, "INVALID_QUERY_PARAM", f"timeout must be 0..{self.max_timeout_s:g} seconds",
                            "timeout")
        return v

    async def _wait(self, after: int, timeout: float) -> bool:
        """Wait for a commit after ``after``, the timeout, or :meth:`close`, whichever comes first."""
        got = asyncio.ensure_future(self.store.wait_for_events(after, timeout))
        closing = asyncio.ensure_future(self._closing.wait())
        try:
            await asyncio.wait((got, closing), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for f in (got, closing):
                f.cancel()
        return got.done() and not got.cancelled() and bool(got.result())


def add_event_routes(app: web.Application, store: EventFeed, *, max_limit: int = 1_000,
                     default_limit: int = 100, max_timeout_s: float = 30.0, guard: Guard | None = None,
                     path: str = EVENTS_PATH) -> EventRoutes:
    """Add ``GET /v1/events`` to ``app``; returns the routes object (``close()`` it when draining).

    ``guard`` (e.g. the service's bearer-token check) may refuse a request by returning a response.
    Long-polls are also released by the app's ``on_shutdown``.
    """
    if not 1 <= default_limit <= max_limit:
        raise ValueError("default_limit must be 1..max_limit")
    if max_timeout_s < 0:
        raise ValueError("max_timeout_s must be >= 0")
    routes = EventRoutes(store, max_limit=max_limit, default_limit=default_limit, max_timeout_s=max_timeout_s,
                         guard=guard)
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]] = routes.handle
    app.router.add_get(path, handler)
    app.on_shutdown.append(routes._on_shutdown)
    return routes
