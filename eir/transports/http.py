"""HTTP transport (aiohttp): 3GPP TS 29.511 N5g-eir, the JSON decision API, health, metrics, admin.

Routes: ``GET /n5g-eir-eic/v1/equipment-status`` (N5g-eir), ``POST /v1/check`` (full decisions),
``GET /healthz``, ``GET /readyz``, ``GET /metrics``, ``GET /openapi.json``, ``POST /v1/admin/reload``,
and the registry control plane ``/v1/registry/*`` (:mod:`eir.transports.registry_http`).
Errors are ``application/problem+json`` (TS 29.571 ProblemDetails with a TS 29.500 ``cause``); handlers
return them, they never raise HTTP exceptions. HTTP/2 (h2c, prior knowledge) is served by the nginx
front-end of ``deploy/`` (docs/service.md).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from time import perf_counter
from typing import TYPE_CHECKING, Any, Final, cast

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from eir.events import iso_utc
from eir.identifiers import format_imei
from eir.log import fields
from eir.model import Decision, Query, Verdict
from eir.query import RequestError, build_query, parse_time
from eir.service import pinned
from eir.store_schema import StoreError
from eir.transports.auth import CHALLENGE, DISABLED, bearer_refusal
from eir.transports.events_http import EventFeed, add_event_routes
from eir.transports.openapi import openapi_document
from eir.transports.registry_http import add_registry_routes

if TYPE_CHECKING:
    from eir.service import Service

log = logging.getLogger("eir.http")
JSON: Final = "application/json"
PROBLEM: Final = "application/problem+json"
EQUIPMENT_STATUS: Final = "/n5g-eir-eic/v1/equipment-status"
#: TS 29.571 Pei restricted to the IMEI forms (bare 14-16 digits accepted as well).
PEI_RE: Final = re.compile(r"(?:imei-|imeisv-)?[0-9]{14,16}")
CHECK_KEYS: Final = frozenset({"imei", "msisdn", "imsi", "slot", "time"})
_STATUS_BODY: Final = {v: orjson.dumps({"status": v.status}) for v in Verdict}
_TITLES: Final = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 409: "Conflict",
                  413: "Payload Too Large", 422: "Unprocessable Entity", 503: "Service Unavailable"}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def problem(status: int, cause: str, detail: str, invalid: list[tuple[str, str]] | None = None,
            headers: dict[str, str] | None = None) -> web.Response:
    """A TS 29.571 ProblemDetails answer."""
    doc: dict[str, Any] = {"title": _TITLES.get(status, "Error"), "status": status, "detail": detail,
                           "cause": cause}
    if invalid:
        doc["invalidParams"] = [{"param": p, "reason": r} for p, r in invalid]
    return web.Response(status=status, body=orjson.dumps(doc), content_type=PROBLEM, headers=headers)


def decision_json(q: Query, d: Decision) -> dict[str, Any]:
    """The full decision: ISO 8601 UTC 'Z' strings plus epoch seconds."""
    return {
        "imei": format_imei(q.imei) if q.imei >= 0 else None,
        "msisdn": str(q.msisdn) if q.msisdn else None, "slot": q.slot, "roamer": q.roamer,
        "time": iso_utc(q.time), "time_epoch": q.time,
        "verdict": d.verdict.name, "status": d.verdict.status, "reason": d.reason.value,
        "deadline": iso_utc(d.deadline), "deadline_epoch": d.deadline,
    }  # fmt: skip


class Api:
    """Request handlers bound to one service."""

    def __init__(self, service: Service) -> None:
        self.svc = service
        self.limits = service.config.limits
        self.metrics = service.metrics
        self._openapi = orjson.dumps(openapi_document())

    def _problem(self, status: int, cause: str, detail: str, invalid: list[tuple[str, str]] | None = None,
                 headers: dict[str, str] | None = None) -> web.Response:
        self.metrics.http_problems.labels(cause).inc()
        return problem(status, cause, detail, invalid, headers)

    def _unavailable(self, e: StoreError) -> web.Response:
        log.error("state commit failed; answer withheld: %s", e)
        return self._problem(503, "STATE_UNAVAILABLE", "the state store could not commit; retry")

    def _not_ready(self) -> web.Response:
        return self._problem(503, "NOT_READY", "no snapshot loaded yet")

    async def equipment_status(self, request: web.Request) -> web.Response:
        """N5g-eir EIR_EquipmentIdentityCheck: ``{"status": WHITELISTED|GREYLISTED|BLACKLISTED}``."""
        started = perf_counter()
        args = request.query
        pei = args.get("pei")
        if not pei:
            return self._problem(400, "MANDATORY_QUERY_PARAM_MISSING", "pei is mandatory",
                                 [("pei", "missing")])
        if len(pei) > 64 or not PEI_RE.fullmatch(pei):
            return self._problem(400, "MANDATORY_QUERY_PARAM_INCORRECT", "pei is not an IMEI or IMEISV PEI",
                                 [("pei", "expected imei-<15 digits> or imeisv-<16 digits>")])
        imsi = msisdn = None
        supi, gpsi = args.get("supi"), args.get("gpsi")
        if supi:
            if not supi.startswith("imsi-"):
                return self._problem(400, "INVALID_QUERY_PARAM", "supi is not an IMSI SUPI",
                                     [("supi", "expected imsi-<digits>")])
            imsi = supi[5:]
        if gpsi:
            if not gpsi.startswith("msisdn-"):
                return self._problem(400, "INVALID_QUERY_PARAM", "gpsi is not an MSISDN GPSI",
                                     [("gpsi", "expected msisdn-<digits>")])
            msisdn = gpsi[7:]
        engine = self.svc.engine
        if engine is None:
            return self._not_ready()
        try:
            d = engine.check_values(self.svc.clock(), pei, msisdn, None, None, imsi)
        except RequestError as e:
            param = {"msisdn": "gpsi", "imsi": "supi"}.get(e.field, e.field)
            return self._problem(400, "INVALID_QUERY_PARAM", f"{param}: {e.reason}", [(param, e.reason)])
        self.metrics.decisions[d.reason] += 1
        durable = self.svc.durable
        if durable is not None and durable.needs_barrier(d):
            try:
                await durable.barrier()  # the answer that announces a deadline is durable first
            except StoreError as e:
                return self._unavailable(e)
        self.metrics.latency[("http", "equipment_status")].observe(perf_counter() - started)
        return web.Response(body=_STATUS_BODY[d.verdict], content_type=JSON)

    async def check(self, request: web.Request) -> web.Response:
        """``POST /v1/check``: one query object or a list of them -> full decision(s)."""
        started = perf_counter()
        limit = self.limits.max_message_bytes
        if request.content_length is not None and request.content_length > limit:
            return self._problem(413, "TOO_LARGE", f"body larger than {limit} bytes")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:  # chunked body over client_max_size (aiohttp's own check)
            return self._problem(413, "TOO_LARGE", f"body larger than {limit} bytes")
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as e:
            return self._problem(400, "INVALID_MSG_FORMAT", f"body is not JSON: {e}")
        single = isinstance(doc, dict)
        items = [doc] if single else doc
        if not isinstance(items, list):
            return self._problem(400, "INVALID_MSG_FORMAT", "body must be a query object or a list of them")
        if len(items) > self.limits.max_batch:
            return self._problem(413, "TOO_LARGE", f"{len(items)} queries > {self.limits.max_batch}")
        engine = self.svc.engine
        if engine is None:
            return self._not_ready()
        bundle, now, budget = engine.bundle, self.svc.clock(), self.limits.loop_budget
        queries: list[Query] = []
        for i, item in enumerate(items):  # parse every item before deciding any
            prefix = "" if single else f"[{i}]."
            if not isinstance(item, dict):
                return self._problem(400, "INVALID_MSG_FORMAT", f"{prefix or 'body'} is not an object")
            unknown = sorted(set(item) - CHECK_KEYS)
            if unknown:
                return self._problem(400, "INVALID_MSG_FORMAT", "unknown fields",
                                     [(prefix + k, "unknown field") for k in unknown[:10]])
            if "imei" not in item:
                return self._problem(400, "INVALID_MSG_FORMAT", "imei is mandatory", [(prefix + "imei", "missing")])
            try:
                t = item.get("time")
                queries.append(build_query(bundle.index, bundle.rules, now if t is None else parse_time(t),
                                           item["imei"], item.get("msisdn"), item.get("slot"), item.get("imsi")))
            except RequestError as e:
                return self._problem(400, "INVALID_MSG_FORMAT", f"{prefix}{e.field}: {e.reason}",
                                     [(prefix + e.field, e.reason)])
            if i % budget == budget - 1:
                await asyncio.sleep(0)  # a long list must not hold the event loop
        out = []
        durable, wait = self.svc.durable, False
        eng = engine
        for i, q in enumerate(queries):
            if i % budget == 0:
                eng = pinned(engine, bundle)  # the bundle the request started with, even across a reload
            d = eng.check(q)
            self.metrics.decisions[d.reason] += 1
            wait = wait or (durable is not None and durable.needs_barrier(d))
            out.append(decision_json(q, d))
            if i % budget == budget - 1:
                await asyncio.sleep(0)
        if wait and durable is not None:
            try:
                await durable.barrier()
            except StoreError as e:
                return self._unavailable(e)
        self.metrics.latency[("http", "check")].observe(perf_counter() - started)
        return web.Response(body=orjson.dumps(out[0] if single else out), content_type=JSON)

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(body=b'{"status":"ok"}', content_type=JSON)

    async def readyz(self, request: web.Request) -> web.Response:
        return web.Response(status=200 if self.svc.ready else 503, body=orjson.dumps(self.svc.status()),
                            content_type=JSON)

    async def metrics_text(self, request: web.Request) -> web.Response:
        return web.Response(body=self.metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def openapi(self, request: web.Request) -> web.Response:
        return web.Response(body=self._openapi, content_type=JSON)

    def guard(self, request: web.Request) -> web.Response | None:
        """None when the bearer token matches; the answer to send otherwise."""
        refused = bearer_refusal(self.svc.config.admin_token, request.headers.get("Authorization", ""))
        if refused == DISABLED:
            return self._problem(403, "ADMIN_DISABLED", "admin routes are disabled (EIR_ADMIN_TOKEN is not set)")
        if refused is not None:
            return self._problem(401, "UNAUTHORIZED", "a valid bearer token is required", headers=dict(CHALLENGE))
        return None

    async def admin_reload(self, request: web.Request) -> web.Response:
        """``POST /v1/admin/reload[?force=true]``: reload snapshot and rules, answer what happened."""
        denied = self.guard(request)
        if denied is not None:
            return denied
        raw = request.query.get("force", "false").lower()
        if raw not in ("true", "false", "1", "0"):
            return self._problem(400, "INVALID_QUERY_PARAM", "force must be true or false", [("force", raw[:16])])
        log.info("reload requested (admin API)", extra=fields(force=raw in ("true", "1"), peer=request.remote))
        outcome = await self.svc.reload(force=raw in ("true", "1"))
        if outcome.ok:
            return web.Response(body=orjson.dumps({"result": "ok", **outcome.detail}), content_type=JSON)
        status, cause = {"failed": (422, "RELOAD_FAILED"), "refused": (409, "RELOAD_REFUSED"),
                         "busy": (409, "RELOAD_IN_PROGRESS")}[outcome.result]
        return self._problem(status, cause, outcome.reason)


def make_app(service: Service) -> web.Application:
    """The aiohttp application of a service (tests use it with aiohttp's test server)."""
    api = Api(service)
    app = web.Application(client_max_size=service.config.limits.max_message_bytes)
    app.router.add_get(EQUIPMENT_STATUS, api.equipment_status)
    app.router.add_post("/v1/check", api.check)
    app.router.add_get("/healthz", api.healthz)
    app.router.add_get("/readyz", api.readyz)
    app.router.add_get("/metrics", api.metrics_text)
    app.router.add_get("/openapi.json", api.openapi)
    app.router.add_post("/v1/admin/reload", api.admin_reload)
    add_registry_routes(app, service)  # the control plane (issue 5), behind the same token
    store = service.durable
    if hasattr(store, "read_events") and hasattr(store, "wait_for_events"):
        # The durable store serves its committed outbox (the SMS gateway's feed), behind the admin token.
        add_event_routes(app, cast(EventFeed, store), max_limit=service.config.limits.loop_budget,
                         guard=api.guard)
    return app


class HttpServer:
    """Runs the application on one address; drains through aiohttp's graceful shutdown."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.runner: web.AppRunner | None = None
        self.address: tuple[str, int] | None = None

    async def start(self, host: str, port: int) -> tuple[str, int]:
        limits = self.service.config.limits
        runner = web.AppRunner(make_app(self.service), access_log=None, handle_signals=False,
                               keepalive_timeout=limits.idle_timeout_s, shutdown_timeout=limits.drain_timeout_s)
        await runner.setup()
        self.runner = runner
        await web.TCPSite(runner, host, port, backlog=1024).start()
        addr = runner.addresses[0]
        self.address = (str(addr[0]), int(addr[1]))
        server = runner.server
        self.service.metrics.http_connections.set_function(lambda: len(server.connections) if server else 0)
        log.info("listening", extra=fields(transport="http", host=self.address[0], port=self.address[1]))
        return self.address

    async def drain(self, timeout: float) -> None:
        """Stop accepting, wait for in-flight handlers (up to the runner's shutdown timeout), close."""
        if self.runner is not None:
            runner, self.runner = self.runner, None
            await runner.cleanup()
