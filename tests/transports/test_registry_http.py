"""HTTP routes of the registry control plane: the handler without sockets, then over a real server."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from unittest import mock

import orjson
import pytest
from aiohttp import streams, web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request

from eir.service import Service
from eir.transports.http import make_app
from eir.transports.registry_edge import BY_NAME, MAX_BODY_BYTES, OPERATIONS, STATUS, Operation
from eir.transports.registry_http import RegistryRoutes
from tests.svc_fixtures import (
    BLOCKED,
    CLONED,
    OTHER,
    OTHER_E164,
    OWNED,
    OWNER,
    OWNER2,
    OWNER_E164,
    UNOWNED,
    FixedClock,
    build,
    make_config,
    registry,
)

TOKEN = "reg-s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ACTIVATE = BY_NAME["activate"]
VALID: dict[str, dict[str, Any]] = {
    "activate": {"imei": OWNED, "msisdn": OWNER, "code": "482913"},
    "transfer": {"imei": OWNED, "owner": OWNER, "buyer": OTHER},
    "operator-sim add": {"imei": OWNED, "owner": OWNER, "slot": 1, "msisdn": OTHER},
    "operator-sim remove": {"imei": OWNED, "owner": OWNER, "slot": 1, "msisdn": OTHER},
    "claim": {"imei": OWNED, "msisdn": OWNER},
    "recover": {"imei": OWNED, "old_msisdn": OWNER, "new_msisdn": OTHER},
    "imei-correction": {"requester": OWNER, "registered_imeis": [OWNED], "observed_imeis": [OWNED]},
    "repair": {"owner": OWNER, "old_imei": OWNED, "new_imei": "35693803564381"},
    "block": {"imei": OWNED, "reason": "stolen"},
    "unblock": {"imei": OWNED},
    "clone-flag": {"imei": OWNED, "cloned": True},
}


def url(op: Operation, imei: str = OWNED) -> str:
    path = op.path.replace("{imei}", imei)
    return path + (f"?requester={OWNER}" if op.name == "imei-status" else "")


@pytest.fixture
async def svc(tmp_path: Path) -> Service:
    s = Service(make_config(build(tmp_path, "reg", registry()), token=TOKEN), clock=FixedClock())
    assert (await s.reload(force=True)).ok
    return s


# --- the handler without sockets -----------------------------------------------------------------------


def mocked(op: Operation, body: bytes = b"", headers: dict[str, str] | None = None, imei: str = OWNED,
           eof: bool = True) -> web.Request:
    """A request as aiohttp's server would hand it to the handler (the body in a fed StreamReader)."""
    payload = streams.StreamReader(mock.Mock(_reading_paused=False), 2**16, loop=asyncio.get_running_loop())
    payload.feed_data(body)
    if eof:
        payload.feed_eof()
    target = url(op, imei)
    return make_mocked_request(op.method, target, headers=headers if headers is not None else AUTH,
                               payload=payload, match_info={"imei": imei} if "{imei}" in op.path else {})


async def answer(routes: RegistryRoutes, op: Operation, request: web.Request) -> tuple[int, dict[str, Any]]:
    resp = await routes.handle(op, request)
    assert resp.content_type == "application/json"
    assert isinstance(resp.body, bytes)
    return resp.status, orjson.loads(resp.body)


@pytest.mark.parametrize("op", OPERATIONS, ids=lambda op: op.name)
async def test_every_route_refuses_without_the_right_token(svc: Service, op: Operation) -> None:
    routes = RegistryRoutes(svc)
    body = orjson.dumps(VALID.get(op.name, {}))
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN},
                    {"Authorization": f"Basic {TOKEN}"}, {"Authorization": f"Bearer {TOKEN}x"}):
        resp = await routes.handle(op, mocked(op, body, headers))
        assert resp.status == 401 and resp.headers["WWW-Authenticate"].startswith("Bearer")
        assert isinstance(resp.body, bytes) and orjson.loads(resp.body)["error"] == "unauthorized"


@pytest.mark.parametrize("op", OPERATIONS, ids=lambda op: op.name)
async def test_unset_token_refuses_everything(tmp_path: Path, op: Operation) -> None:
    svc = Service(make_config(build(tmp_path, "reg", registry()), token=None), clock=FixedClock())
    assert (await svc.reload(force=True)).ok
    routes = RegistryRoutes(svc)
    for headers in ({}, AUTH, {"Authorization": "Bearer "}):
        status, doc = await answer(routes, op, mocked(op, orjson.dumps(VALID.get(op.name, {})), headers))
        assert (status, doc["error"]) == (403, "admin_disabled")


async def test_body_bounds(svc: Service) -> None:
    routes = RegistryRoutes(svc)
    big = orjson.dumps({"imei": OWNED, "msisdn": OWNER, "code": "4" * MAX_BODY_BYTES})
    status, doc = await answer(routes, ACTIVATE, mocked(ACTIVATE, big))
    assert (status, doc["error"]) == (413, "body_too_large")
    # Announced by Content-Length: refused before reading anything (the stream never ends here).
    req = mocked(ACTIVATE, b"", {**AUTH, "Content-Length": str(MAX_BODY_BYTES + 1)}, eof=False)
    status, doc = await answer(routes, ACTIVATE, req)
    assert (status, doc["error"]) == (413, "body_too_large")
    # Exactly at the limit is read (and then judged on its content).
    at_limit = b'{"imei": "' + OWNED.encode() + b'"' + b" " * (MAX_BODY_BYTES - 30) + b"}"
    at_limit = at_limit[:-1] + b" " * (MAX_BODY_BYTES - len(at_limit)) + b"}"
    assert len(at_limit) == MAX_BODY_BYTES
    status, doc = await answer(routes, ACTIVATE, mocked(ACTIVATE, at_limit))
    assert (status, doc["error"], doc["field"]) == (400, "missing_field", "msisdn")


@pytest.mark.parametrize(("body", "code"), [
    (b"", "invalid_json"), (b"{", "invalid_json"), (b"\xff\xfe", "invalid_json"), (b"[1]", "invalid_json"),
    (b'{"imei": "1", "msisdn": "09121234567", "code": "1"}', "invalid_imei"),
    (b'{"imei": "' + OWNED.encode() + b'", "msisdn": "12", "code": "1"}', "invalid_msisdn"),
    (b'{"imei": "' + OWNED.encode() + b'", "msisdn": "09121234567"}', "missing_field"),
])  # fmt: skip
async def test_edge_errors_are_400_with_a_code(svc: Service, body: bytes, code: str) -> None:
    status, doc = await answer(RegistryRoutes(svc), ACTIVATE, mocked(ACTIVATE, body))
    assert (status, doc["error"]) == (400, code) and doc["message"]


async def test_not_ready_without_a_snapshot(tmp_path: Path) -> None:
    svc = Service(make_config(build(tmp_path, "reg", registry()), token=TOKEN), clock=FixedClock())
    routes = RegistryRoutes(svc)
    status, doc = await answer(routes, ACTIVATE, mocked(ACTIVATE, orjson.dumps(VALID["activate"])))
    assert (status, doc["error"]) == (503, "not_ready")


async def test_not_ready_without_the_backend(svc: Service) -> None:
    svc.control = None
    routes = RegistryRoutes(svc)
    for op in OPERATIONS:
        status, doc = await answer(routes, op, mocked(op, orjson.dumps(VALID.get(op.name, {}))))
        assert (status, doc["error"]) == (503, "not_ready"), op.name


async def test_refusals_log_the_operation_and_code_only(svc: Service, caplog: pytest.LogCaptureFixture) -> None:
    routes = RegistryRoutes(svc)
    code = "736251"
    with caplog.at_level(logging.INFO, "eir.registry"):
        await routes.handle(ACTIVATE, mocked(ACTIVATE, orjson.dumps({"imei": "7", "msisdn": OWNER, "code": code})))
        await routes.handle(ACTIVATE, mocked(ACTIVATE, b"{}", {"Authorization": "Bearer " + code}))
    assert [r.levelname for r in caplog.records] == ["INFO", "WARNING"]
    for r in caplog.records:
        text = r.getMessage() + repr(r.__dict__)
        assert code not in text and TOKEN not in text and OWNER[1:] not in text


# --- over a real server -------------------------------------------------------------------------------


@pytest.fixture
async def client(svc: Service) -> AsyncIterator[TestClient[Any, Any]]:
    async with TestClient(TestServer(make_app(svc))) as c:
        yield c


async def test_routes_are_mounted_with_their_methods(client: TestClient[Any, Any]) -> None:
    for op in OPERATIONS:
        r = await client.request(op.method, url(op))
        assert r.status == 401 and (await r.json())["error"] == "unauthorized", op.name
    # Wrong methods are aiohttp's 405, unknown paths 404: neither reaches a handler.
    assert (await client.get("/v1/registry/activate", headers=AUTH)).status == 405
    assert (await client.post("/v1/registry/nope", headers=AUTH)).status == 404


async def test_chunked_body_over_the_limit(client: TestClient[Any, Any]) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(40):
            yield b" " * 1024

    r = await client.post("/v1/registry/activate", data=chunks(), headers=AUTH)
    assert r.status == 413 and (await r.json())["error"] == "body_too_large"
    # The server keeps serving others.
    r = await client.post("/v1/registry/activate", json={"imei": "1"}, headers=AUTH)
    assert r.status == 400 and (await r.json())["error"] == "invalid_imei"


async def test_openapi_describes_every_registry_route(client: TestClient[Any, Any]) -> None:
    from openapi_spec_validator import validate

    doc = await (await client.get("/openapi.json")).json()
    validate(doc)  # the whole document stays a valid OpenAPI 3.0
    for op in OPERATIONS:
        spec = doc["paths"][op.path][op.method.lower()]
        assert spec["security"] == [{"bearer": []}]
        assert {"200", "400", "401", "403", "503"} <= set(spec["responses"])
        for code in op.refusals:
            assert code in spec["responses"][str(STATUS[code])]["description"]
        body = spec.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
        assert set(body.get("properties", {})) | {p["name"] for p in spec["parameters"]} == {
            f.name for f in op.fields}


# --- with the backend (eir.control): status mapping, next attach, every route once ------------------------

CODE_KEY = "test-code-key-0123456789"
CODE = "482913"
CODED = "35693803564384"  # unowned import with an activation code
PRE = "35693803564385"  # unowned pre-registry device, used by OTHER before the registry
RECOVERABLE = "35693803564386"  # owned by LOST since 2024; LOST's line was reassigned in 2025
LOST, NEW_LINE = "09121111111", "09122222222"


def control_registry() -> list[dict[str, Any]]:
    return [*registry(),
            {"type": "device", "imeis": [CODED], "owner": None, "activation_code": CODE},
            {"type": "device", "imeis": [PRE], "owner": None, "origin": "pre_registry",
             "pre_registry_users": [OTHER]},
            {"type": "device", "imeis": [RECOVERABLE], "owner": LOST, "owner_since": "2024-01-01T00:00:00Z"},
            {"type": "subscriber", "msisdn": LOST, "since": "2025-06-01T00:00:00Z"},
            {"type": "subscriber", "msisdn": NEW_LINE, "since": "2023-01-01T00:00:00Z"}]


@pytest.fixture
async def live_svc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Service:
    """A service with the control backend (codes hashed with CODE_KEY)."""
    monkeypatch.setenv("EIR_CODE_KEY", CODE_KEY)
    snap = build(tmp_path, "ctl", control_registry())
    s = Service(make_config(snap, token=TOKEN), clock=FixedClock())
    assert (await s.reload(force=True)).ok and s.control is not None
    return s


@pytest.fixture
async def live(live_svc: Service) -> AsyncIterator[TestClient[Any, Any]]:
    async with TestClient(TestServer(make_app(live_svc))) as c:
        yield c


async def post(c: TestClient[Any, Any], name: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    op = BY_NAME[name]
    r = await c.request(op.method, op.path, json=body, headers=AUTH)
    assert r.content_type == "application/json"
    return r.status, await r.json()


async def get(c: TestClient[Any, Any], path: str) -> tuple[int, dict[str, Any]]:
    r = await c.get(path, headers=AUTH)
    return r.status, await r.json()


async def attach(c: TestClient[Any, Any], imei: str, msisdn: str) -> tuple[str, str]:
    r = await c.post("/v1/check", json={"imei": imei, "msisdn": msisdn})
    doc = await r.json()
    return doc["verdict"], doc["reason"]


async def test_activation_over_http_decides_the_next_attach(live: TestClient[Any, Any]) -> None:
    assert (await attach(live, CODED, OWNER))[0] == "WARN"  # not activated yet: activation grace
    status, doc = await post(live, "activate", {"imei": CODED, "msisdn": OWNER, "code": "12345"})
    assert (status, doc["error"]) == (422, "invalid_code_format")
    status, doc = await post(live, "activate", {"imei": CODED, "msisdn": OWNER, "code": "111111"})
    assert (status, doc["error"]) == (403, "wrong_code") and CODE not in doc["message"]
    status, doc = await post(live, "activate", {"imei": CODED, "msisdn": OWNER, "code": CODE})
    assert status == 200 and doc["result"] == "activated", doc
    assert await attach(live, CODED, OWNER) == ("ALLOW", "OWNER")
    status, doc = await post(live, "activate", {"imei": CODED, "msisdn": OWNER, "code": CODE})
    assert (status, doc["error"]) == (409, "already_activated")
    status, doc = await post(live, "activate", {"imei": CODED, "msisdn": OTHER, "code": CODE})
    assert (status, doc["error"]) == (409, "already_owned")
    status, doc = await post(live, "activate", {"imei": "35693803564398", "msisdn": OWNER, "code": CODE})
    assert (status, doc["error"]) == (404, "unknown_device")
    status, doc = await post(live, "activate", {"imei": BLOCKED, "msisdn": OWNER, "code": CODE})
    assert (status, doc["error"]) == (409, "device_blocked")


async def test_wrong_codes_are_limited(live: TestClient[Any, Any]) -> None:
    statuses = [(await post(live, "activate", {"imei": CODED, "msisdn": OTHER, "code": f"11111{i}"}))[0]
                for i in range(8)]
    assert statuses[0] == 403 and statuses[-1] == 429
    status, doc = await post(live, "activate", {"imei": CODED, "msisdn": OTHER, "code": CODE})
    assert (status, doc["error"]) == (429, "too_many_attempts")


async def test_transfer_keeps_the_seller_until_activation(live: TestClient[Any, Any]) -> None:
    status, doc = await post(live, "transfer", {"imei": OWNED, "owner": OTHER, "buyer": OWNER2})
    assert (status, doc["error"]) == (403, "not_owner")
    status, doc = await post(live, "transfer", {"imei": OWNED, "owner": OWNER, "buyer": OTHER})
    assert status == 200 and doc["result"] == "transfer_started"
    assert await attach(live, OWNED, OWNER) == ("ALLOW", "OWNER")


async def test_operator_sims(live: TestClient[Any, Any]) -> None:
    sim = {"imei": CLONED, "owner": OWNER2, "slot": 1, "msisdn": OTHER}
    assert (await attach(live, CLONED, OTHER))[1] == "CLONE_GRACE"
    status, doc = await post(live, "operator-sim add", sim)
    assert status == 200 and doc["result"] == "operator_sim_added", doc
    assert await attach(live, CLONED, OTHER) == ("ALLOW", "OPERATOR_SIM")
    status, doc = await post(live, "operator-sim add", {**sim, "msisdn": OWNER})
    assert (status, doc["error"]) == (409, "slot_in_use")
    status, doc = await post(live, "operator-sim add", {**sim, "slot": 2})
    assert (status, doc["error"]) == (422, "invalid_slot")  # the device has one slot
    status, doc = await post(live, "operator-sim add", {**sim, "owner": OTHER})
    assert (status, doc["error"]) == (403, "not_owner")
    status, doc = await post(live, "operator-sim add", {"imei": OWNED, "owner": OWNER, "slot": 1, "msisdn": OTHER})
    assert (status, doc["error"]) == (409, "not_eligible")
    status, doc = await post(live, "operator-sim remove", sim)
    assert status == 200 and doc["result"] == "operator_sim_removed"
    status, doc = await post(live, "operator-sim remove", sim)
    assert (status, doc["error"]) == (409, "no_operator_sim")


async def test_claim_recover_repair_correction(live: TestClient[Any, Any]) -> None:
    status, doc = await post(live, "claim", {"imei": PRE, "msisdn": OWNER})
    assert (status, doc["error"]) == (403, "not_pre_registry_user")
    status, doc = await post(live, "claim", {"imei": PRE, "msisdn": OTHER})
    assert status == 200 and doc["result"] == "claimed"
    assert await attach(live, PRE, OTHER) == ("ALLOW", "OWNER")
    status, doc = await post(live, "recover", {"imei": RECOVERABLE, "old_msisdn": OWNER, "new_msisdn": NEW_LINE})
    assert (status, doc["error"]) == (403, "wrong_previous_number")
    status, doc = await post(live, "recover", {"imei": OWNED, "old_msisdn": OWNER, "new_msisdn": NEW_LINE})
    assert (status, doc["error"]) == (409, "not_expired")
    status, doc = await post(live, "recover", {"imei": RECOVERABLE, "old_msisdn": LOST, "new_msisdn": "09123333333"})
    assert (status, doc["error"]) == (422, "unknown_subscriber")
    status, doc = await post(live, "recover", {"imei": RECOVERABLE, "old_msisdn": LOST, "new_msisdn": NEW_LINE})
    assert status == 200 and doc["result"] == "recovered"
    assert await attach(live, RECOVERABLE, NEW_LINE) == ("ALLOW", "OWNER")
    status, doc = await post(live, "repair", {"owner": OWNER, "old_imei": OWNED, "new_imei": UNOWNED})
    assert (status, doc["error"]) == (409, "imei_in_use")
    status, doc = await post(live, "repair", {"owner": OTHER, "old_imei": OWNED, "new_imei": "35693803564397"})
    assert (status, doc["error"]) == (403, "not_owner")
    ticket = {"requester": OWNER, "registered_imeis": [OWNED], "observed_imeis": ["garbage"]}
    status, doc = await post(live, "imei-correction", ticket)
    assert (status, doc["error"]) == (422, "incorrect_imei_observed")
    status, doc = await post(live, "imei-correction", {**ticket, "requester": OTHER, "observed_imeis": [OWNED]})
    assert (status, doc["error"]) == (403, "not_owner")
    status, doc = await post(live, "imei-correction", {**ticket, "observed_imeis": [OWNED]})
    assert (status, doc["error"]) == (409, "already_activated")


async def test_block_unblock_clone_flag(live: TestClient[Any, Any]) -> None:
    status, doc = await post(live, "block", {"imei": OWNED, "reason": "stolen"})
    assert status == 200 and doc["result"] == "blocked"
    assert await attach(live, OWNED, OWNER) == ("DENY", "BLACKLISTED")
    status, doc = await post(live, "unblock", {"imei": OWNED})
    assert status == 200 and doc["result"] == "unblocked"
    assert await attach(live, OWNED, OWNER) == ("ALLOW", "OWNER")
    status, doc = await post(live, "clone-flag", {"imei": OWNED, "cloned": True})
    assert status == 200 and doc["result"] == "clone_flag_set"
    assert (await attach(live, OWNED, OTHER))[1] == "CLONE_GRACE"
    status, doc = await post(live, "unblock", {"imei": "35693803564398"})
    assert (status, doc["error"]) == (404, "unknown_device")


async def test_inquiries(live: TestClient[Any, Any]) -> None:
    status, doc = await get(live, f"/v1/registry/authenticity/{OWNED}")
    assert status == 200 and doc["status"] == "legal" and doc["text_fa"] and doc["text_en"]
    assert OWNER_E164 not in orjson.dumps(doc).decode() and OWNER[1:] not in orjson.dumps(doc).decode()
    status, doc = await get(live, "/v1/registry/authenticity/not-an-imei")
    assert status == 200 and doc["status"] == "malformed"
    status, doc = await get(live, f"/v1/registry/authenticity/{CLONED}")
    assert status == 200 and doc["status"] == "restricted"
    status, doc = await get(live, f"/v1/registry/imei-status/{UNOWNED}?requester={OTHER}")
    assert (status, doc["error"]) == (403, "not_seen_with_requester")
    status, doc = await get(live, f"/v1/registry/imei-status/{BLOCKED}?requester={OTHER}")
    assert (status, doc["error"]) == (409, "device_blocked")


async def test_backend_failures_map_to_503_and_unknown_codes_to_409(
        live_svc: Service, live: TestClient[Any, Any], monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    from eir.control import ControlError
    from eir.store_schema import StoreError

    control = live_svc.control

    async def store_down(**kw: Any) -> dict[str, Any]:
        raise StoreError("disk full")

    async def new_code(**kw: Any) -> dict[str, Any]:
        raise ControlError("brand_new_code", "a refusal this transport does not know yet")

    monkeypatch.setattr(control, "unblock", store_down)
    status, doc = await post(live, "unblock", {"imei": OWNED})
    assert (status, doc["error"]) == (503, "state_unavailable")
    monkeypatch.setattr(control, "unblock", new_code)
    with caplog.at_level(logging.WARNING, "eir.registry"):
        status, doc = await post(live, "unblock", {"imei": OWNED})
    assert (status, doc["error"]) == (409, "brand_new_code")
    assert any("without an HTTP status" in r.getMessage() for r in caplog.records)


async def test_no_code_key_is_503(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EIR_CODE_KEY", CODE_KEY)
    snap = build(tmp_path, "ctl", control_registry())
    monkeypatch.delenv("EIR_CODE_KEY")
    s = Service(make_config(snap, token=TOKEN), clock=FixedClock())
    assert (await s.reload(force=True)).ok
    async with TestClient(TestServer(make_app(s))) as c:
        status, doc = await post(c, "activate", {"imei": CODED, "msisdn": OWNER, "code": CODE})
        assert (status, doc["error"]) == (503, "code_key_missing")


def test_every_backend_code_has_a_status() -> None:
    """The table has exactly the codes the backend can raise: none falls to the default, none is a ghost."""
    from eir.control import ERROR_CODES

    assert set(STATUS) == ERROR_CODES, sorted(set(STATUS) ^ ERROR_CODES)
    for op in OPERATIONS:
        assert set(op.refusals) <= ERROR_CODES, op.name


def test_every_operation_calls_a_backend_method_with_its_fields() -> None:
    import inspect

    from eir.control import Control

    for op in OPERATIONS:
        params = inspect.signature(getattr(Control, op.call)).parameters
        assert [p for p in params if p != "self"] == [f.name for f in op.fields], op.name
        assert inspect.iscoroutinefunction(getattr(Control, op.call)), op.name


async def test_sale_over_http_with_the_code_from_the_sms_feed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Seed 001's sale as the operator's systems run it: transfer, the buyer's SMS (GET /v1/events) carries
    the one-time code, the buyer activates with it; the seller owns until then, the buyer after."""
    import re
    from dataclasses import replace

    from tests.svc_fixtures import close_all, start

    monkeypatch.setenv("EIR_CODE_KEY", CODE_KEY)
    cfg = replace(make_config(build(tmp_path, "ctl", control_registry()), token=TOKEN), state=tmp_path / "st.db")
    svc = await start(cfg)
    try:
        async with TestClient(TestServer(make_app(svc))) as c:
            status, doc = await post(c, "transfer", {"imei": OWNED, "owner": OWNER, "buyer": OTHER})
            assert status == 200 and doc["result"] == "transfer_started"
            assert await attach(c, OWNED, OWNER) == ("ALLOW", "OWNER")  # the seller keeps every right
            status, feed = await get(c, "/v1/events?after=0&limit=100")
            sms = [e for e in feed["events"] if e["type"] == "TRANSFER_CODE_ISSUED"]
            assert status == 200 and len(sms) == 1 and sms[0]["msisdn"] == OTHER_E164
            code = re.findall(r"\b[1-9][0-9]{5}\b", sms[0]["text_en"])[0]
            status, doc = await post(c, "activate", {"imei": OWNED, "msisdn": OWNER2, "code": code})
            assert (status, doc["error"]) == (409, "already_owned")  # the code is the buyer's only
            status, doc = await post(c, "activate", {"imei": OWNED, "msisdn": OTHER, "code": code})
            assert status == 200 and doc["result"] == "activated" and doc["transferred"] is True
            assert await attach(c, OWNED, OTHER) == ("ALLOW", "OWNER")
            assert (await attach(c, OWNED, OWNER))[1] != "OWNER"
    finally:
        await close_all()
        await svc.shutdown()
