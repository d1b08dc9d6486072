"""HTTP routes of the registry control plane: ``/v1/registry/*`` (issue 5; docs/control-plane.md).

Every route, GET included, needs the admin bearer token (``EIR_ADMIN_TOKEN``; unset = every request is
refused). A request goes: token -> body (at most 16 KiB, JSON object) -> fields parsed to typed ints
(:mod:`eir.transports.registry_edge`) -> the backend (:class:`eir.control.Control`) -> JSON answer.

Answers are ``application/json``: on success the dict the backend returns (what changed); on refusal
``{"error": code, "message": text}`` (plus ``"field"`` for a request error) with the status of
:data:`~eir.transports.registry_edge.STATUS` for the backend's codes, 400/413 for the edge's, 401/403 for
the token, 503 ``not_ready`` while the backend is not up and ``state_unavailable`` when the journal could
not be committed (the change is live, the store retries the commit).
The backend's refusals are domain errors (:class:`~eir.control.ControlError`); only this module turns
them into HTTP. Logs name the operation and the result code, never a number, a code or a token.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import partial
from time import perf_counter
from typing import TYPE_CHECKING, Any, Final

import orjson
from aiohttp import web

from eir.control import ControlError
from eir.log import fields
from eir.store_schema import StoreError
from eir.transports.auth import CHALLENGE, DISABLED, bearer_refusal
from eir.transports.registry_edge import (
    DEFAULT_STATUS,
    MAX_BODY_BYTES,
    OPERATIONS,
    STATUS,
    EdgeError,
    Operation,
    Parsers,
    parse_request,
)

if TYPE_CHECKING:
    from eir.service import Service

log = logging.getLogger("eir.registry")
JSON: Final = "application/json"

def error_body(code: str, message: str, field: str | None = None) -> bytes:
    """The refusal document."""
    doc = {"error": code, "message": message}
    if field is not None:
        doc["field"] = field
    return orjson.dumps(doc)


class RegistryRoutes:
    """The handlers of one service's control plane."""

    def __init__(self, service: Service) -> None:
        self.svc = service

    def _refuse(self, op: Operation, status: int, code: str, message: str, field: str | None = None,
                headers: dict[str, str] | None = None) -> web.Response:
        self.svc.metrics.http_problems.labels(code).inc()
        # Refused tokens and an unavailable backend are the operator's concern; refusals are ordinary.
        level = logging.WARNING if status >= 500 or code in ("unauthorized", "admin_disabled") else logging.INFO
        log.log(level, "registry operation refused", extra=fields(op=op.name, result=code, status=status))
        return web.Response(status=status, body=error_body(code, message, field), content_type=JSON,
                            headers=headers)

    async def _body(self, request: web.Request) -> bytes | None:
        """The body, or None when it is larger than :data:`MAX_BODY_BYTES` (read no further than that)."""
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            return None
        buf = bytearray()
        while len(buf) <= MAX_BODY_BYTES:  # chunked bodies: stop one byte past the limit
            chunk = await request.content.read(MAX_BODY_BYTES + 1 - len(buf))
            if not chunk:
                return bytes(buf)
            buf += chunk
        return None

    async def handle(self, op: Operation, request: web.Request) -> web.Response:
        """One operation: token, body, fields, backend, answer."""
        started = perf_counter()
        svc = self.svc
        refused = bearer_refusal(svc.config.admin_token, request.headers.get("Authorization", ""))
        if refused == DISABLED:
            return self._refuse(op, 403, "admin_disabled", "the control plane is disabled (EIR_ADMIN_TOKEN is not set)")
        if refused is not None:
            return self._refuse(op, 401, "unauthorized", "a valid bearer token is required", headers=dict(CHALLENGE))
        doc: object = None
        if op.has_body:
            raw = await self._body(request)
            if raw is None:
                return self._refuse(op, 413, "body_too_large", f"the body is larger than {MAX_BODY_BYTES} bytes")
            try:
                doc = orjson.loads(raw)
            except orjson.JSONDecodeError:
                return self._refuse(op, 400, "invalid_json", "the body is not JSON")
        engine = svc.engine
        if engine is None:
            return self._refuse(op, 503, "not_ready", "no snapshot loaded yet; retry")
        rules = engine.bundle.rules
        try:
            args = parse_request(op, doc, request.match_info, request.query, Parsers(rules.imei, rules.plan))
        except EdgeError as e:
            return self._refuse(op, e.status, e.code, e.message, e.field)
        control = svc.control
        if control is None:
            return self._refuse(op, 503, "not_ready", "the control plane is not ready yet; retry")
        call: Callable[..., Awaitable[dict[str, Any]]] = getattr(control, op.call)
        try:
            result = await call(**args)
        except ControlError as e:
            status = STATUS.get(e.code)
            if status is None:
                log.warning("registry refusal code without an HTTP status", extra=fields(op=op.name, result=e.code))
                status = DEFAULT_STATUS
            return self._refuse(op, status, e.code, e.message)
        except StoreError:
            # The backend applied the change live and queued its journal entry; the commit failed and the
            # store retries it. The caller must not take it as done (it is not durable yet) nor as refused.
            return self._refuse(op, 503, "state_unavailable", "the change is live but not confirmed durable yet (the "
                                "state store failed to commit; it retries): check the device before repeating")
        svc.metrics.latency[("http", "registry")].observe(perf_counter() - started)
        # A change is logged by the backend once it is durable; the transport logs only the reads.
        log.log(logging.DEBUG if op.has_body else logging.INFO, "registry operation",
                extra=fields(op=op.name, result=str(result.get("result", "ok"))))
        return web.Response(body=orjson.dumps(result), content_type=JSON, headers={"Cache-Control": "no-store"})


def add_registry_routes(app: web.Application, service: Service) -> RegistryRoutes:
    """Mount every ``/v1/registry/*`` route of :data:`~eir.transports.registry_edge.OPERATIONS` on ``app``."""
    routes = RegistryRoutes(service)
    for op in OPERATIONS:
        app.router.add_route(op.method, op.path, partial(routes.handle, op))
    return routes
