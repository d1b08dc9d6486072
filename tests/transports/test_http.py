"""HTTP: N5g-eir, the JSON decision API, health/readiness/metrics/openapi, admin reload, nginx h2c."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from eir.identifiers import imei15
from eir.service import Service
from eir.transports.http import make_app
from tests.svc_fixtures import (
    BLOCKED,
    CLONED,
    DAY,
    OTHER,
    OTHER_E164,
    OWNED,
    OWNER_E164,
    OWNER_IMSI,
    ROOT,
    T0,
    UNOWNED,
    FixedClock,
    build,
    install,
    make_config,
    registry,
    start,
)

EIC = "/n5g-eir-eic/v1/equipment-status"
OWNED15 = imei15(int(OWNED))
TOKEN = "s3cret-token"


@pytest.fixture
def snapshot(tmp_path: Path) -> Path:
    return build(tmp_path, "reg", registry())


@pytest.fixture
async def client_for() -> AsyncIterator[Callable[..., Any]]:
    """Factory: an aiohttp test client over a service's application."""
    made: list[TestClient[Any, Any]] = []

    async def make(svc: Service) -> TestClient[Any, Any]:
        c: TestClient[Any, Any] = TestClient(TestServer(make_app(svc)))
        await c.start_server()
        made.append(c)
        return c

    yield make
    for c in made:
        await c.close()


@pytest.fixture
async def svc(snapshot: Path) -> Service:
    s = Service(make_config(snapshot, token=TOKEN, max_batch=50, max_message_bytes=8_192), clock=FixedClock())
    assert (await s.reload(force=True)).ok
    return s


@pytest.fixture
async def client(svc: Service, client_for: Callable[..., Any]) -> TestClient[Any, Any]:
    return await client_for(svc)  # type: ignore[no-any-return]


@pytest.mark.parametrize(("params", "status"), [
    ({"pei": "imei-" + OWNED15, "gpsi": "msisdn-" + OTHER_E164}, "WHITELISTED"),
    ({"pei": "imei-" + OWNED + str((int(OWNED15[-1]) + 1) % 10)}, "BLACKLISTED"),  # wrong check digit
    ({"pei": OWNED, "gpsi": "msisdn-" + OWNER_E164}, "WHITELISTED"),
    ({"pei": "imeisv-" + OWNED + "01", "supi": "imsi-" + OWNER_IMSI}, "WHITELISTED"),
    ({"pei": BLOCKED, "gpsi": "msisdn-" + OTHER_E164}, "BLACKLISTED"),
    ({"pei": UNOWNED, "gpsi": "msisdn-" + OTHER_E164}, "GREYLISTED"),
    ({"pei": CLONED, "gpsi": "msisdn-" + OTHER_E164}, "GREYLISTED"),
    ({"pei": "00000000000000"}, "BLACKLISTED"),  # test IMEI: a decision, not a 400
])  # fmt: skip
async def test_equipment_status(client: TestClient[Any, Any], params: dict[str, str], status: str) -> None:
    r = await client.get(EIC, params=params)
    assert r.status == 200 and r.content_type == "application/json"
    body = await r.json()
    assert set(body) == {"status"}
    assert body["status"] == status


@pytest.mark.parametrize(("params", "cause", "param"), [
    ({}, "MANDATORY_QUERY_PARAM_MISSING", "pei"),
    ({"pei": ""}, "MANDATORY_QUERY_PARAM_MISSING", "pei"),
    ({"pei": "imei-12"}, "MANDATORY_QUERY_PARAM_INCORRECT", "pei"),
    ({"pei": "mac-00-11-22-33-44-55"}, "MANDATORY_QUERY_PARAM_INCORRECT", "pei"),
    ({"pei": "imei-۳۵۶۹۳۸۰۳۵۶۴۳۸۰۹"}, "MANDATORY_QUERY_PARAM_INCORRECT", "pei"),
    ({"pei": "9" * 5000}, "MANDATORY_QUERY_PARAM_INCORRECT", "pei"),
    ({"pei": OWNED, "supi": "nai-x@y"}, "INVALID_QUERY_PARAM", "supi"),
    ({"pei": OWNED, "supi": "imsi-12"}, "INVALID_QUERY_PARAM", "supi"),
    ({"pei": OWNED, "gpsi": "extid-a@b"}, "INVALID_QUERY_PARAM", "gpsi"),
    ({"pei": OWNED, "gpsi": "msisdn-12"}, "INVALID_QUERY_PARAM", "gpsi"),
])  # fmt: skip
async def test_equipment_status_problems(client: TestClient[Any, Any], params: dict[str, str], cause: str,
                                         param: str) -> None:
    r = await client.get(EIC, params=params)
    assert r.status == 400 and r.content_type == "application/problem+json"
    body = await r.json(content_type=None)
    assert body["cause"] == cause and body["status"] == 400
    assert body["invalidParams"][0]["param"] == param


async def test_check_single_and_list(client: TestClient[Any, Any]) -> None:
    r = await client.post("/v1/check", json={"imei": OWNED, "imsi": OWNER_IMSI})
    assert r.status == 200
    d = await r.json()
    assert d == {"imei": OWNED, "msisdn": OWNER_E164, "slot": 1, "roamer": False, "time": "2026-11-01T00:00:00Z",
                 "time_epoch": T0, "verdict": "ALLOW", "status": "WHITELISTED", "reason": "OWNER",
                 "deadline": None, "deadline_epoch": None}
    r = await client.post("/v1/check", json=[
        {"imei": UNOWNED, "msisdn": OTHER, "slot": 2, "time": "2026-11-02T00:00:00Z"}, {"imei": "123", "msisdn": None}])
    a, b = await r.json()
    assert (a["reason"], a["deadline"], a["deadline_epoch"], a["slot"]) == (
        "ACTIVATION_GRACE", "2026-12-02T00:00:00Z", T0 + 31 * DAY, 2)
    assert (b["reason"], b["imei"], b["msisdn"]) == ("MALFORMED_IMEI", None, None)


@pytest.mark.parametrize(("body", "status", "param"), [
    (b"{not json", 400, None),
    (b"42", 400, None),
    (b'{"msisdn": "09121234567"}', 400, "imei"),
    (b'{"imei": "35693803564380", "colour": "red"}', 400, "colour"),
    (b'[{"imei": "35693803564380"}, {"imei": "35693803564380", "msisdn": "12"}]', 400, "[1].msisdn"),
    (b'[{"imei": "35693803564380"}, 7]', 400, None),
    (b'{"imei": "35693803564380", "slot": 99}', 400, "slot"),
    (b'{"imei": "35693803564380", "time": "yesterday"}', 400, "time"),
    (b"[" + b",".join([b'{"imei": "1"}'] * 51) + b"]", 413, None),
    (b'{"imei": "' + b"1" * 9_000 + b'"}', 413, None),
])  # fmt: skip
async def test_check_problems(client: TestClient[Any, Any], svc: Service, body: bytes, status: int,
                              param: str | None) -> None:
    r = await client.post("/v1/check", data=body, headers={"Content-Type": "application/json"})
    assert r.status == status and r.content_type == "application/problem+json"
    doc = await r.json(content_type=None)
    if param is not None:
        assert doc["invalidParams"][0]["param"] == param
    assert svc.state.histories == {}  # nothing was decided


async def test_health_readiness_openapi(snapshot: Path, client_for: Callable[..., Any]) -> None:
    svc = Service(make_config(snapshot), clock=FixedClock())
    c = await client_for(svc)
    assert (await c.get("/healthz")).status == 200
    assert (await c.get("/readyz")).status == 503
    assert (await c.get(EIC, params={"pei": OWNED})).status == 503
    await svc.reload(force=True)
    r = await c.get("/readyz")
    doc = await r.json()
    assert r.status == 200 and doc["ready"] and doc["snapshot"]["counts"]["devices"] == 4
    api = await (await c.get("/openapi.json")).json()
    assert {EIC, "/v1/check", "/healthz", "/readyz", "/metrics", "/v1/admin/reload"} <= set(api["paths"])


async def test_metrics(client: TestClient[Any, Any]) -> None:
    await client.get(EIC, params={"pei": UNOWNED, "gpsi": "msisdn-" + OTHER_E164})
    await client.get(EIC, params={})
    r = await client.get("/metrics")
    assert r.status == 200 and r.content_type == "text/plain"
    text = await r.text()
    for needle in ('eir_decisions_total{reason="ACTIVATION_GRACE",verdict="WARN"} 1.0',
                   'eir_events_total{type="ACTIVATION_REQUIRED"} 1.0',
                   'eir_request_duration_seconds_count{method="equipment_status",transport="http"} 1.0',
                   'eir_http_problems_total{cause="MANDATORY_QUERY_PARAM_MISSING"} 1.0',
                   "eir_snapshot_age_seconds", 'eir_snapshot_records{kind="devices"} 4.0',
                   'eir_snapshot_imei_share{kind="blocked"}', "eir_rpc_open_connections", "eir_http_open_connections",
                   'eir_reloads_total{result="ok"} 1.0', "eir_ready 1.0"):
        assert needle in text, needle


async def test_admin_refused_without_token(snapshot: Path, client_for: Callable[..., Any]) -> None:
    svc = Service(make_config(snapshot), clock=FixedClock())
    c = await client_for(svc)
    for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Bearer anything"}):
        r = await c.post("/v1/admin/reload", headers=headers)
        assert r.status == 403 and (await r.json(content_type=None))["cause"] == "ADMIN_DISABLED"
    assert not svc.ready


@pytest.mark.parametrize("auth", [None, "Bearer wrong", "Basic " + TOKEN, TOKEN, "Bearer " + TOKEN + "x", "Bearer ü"])
async def test_admin_wrong_token(client: TestClient[Any, Any], auth: str | None) -> None:
    r = await client.post("/v1/admin/reload", headers={"Authorization": auth} if auth else {})
    assert r.status == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")


async def test_admin_reload_outcomes(tmp_path: Path, svc: Service, client: TestClient[Any, Any]) -> None:
    auth = {"Authorization": "Bearer " + TOKEN}
    before = svc.engine.bundle if svc.engine else None
    r = await client.post("/v1/admin/reload", headers=auth)
    assert r.status == 200 and (await r.json())["result"] == "ok"
    assert svc.engine is not None and svc.engine.bundle is not before
    # Corrupt snapshot: 422, the old bundle keeps serving.
    good = svc.config.snapshot.read_bytes()
    svc.config.snapshot.write_bytes(good[:-10] + b"0123456789")
    serving = svc.engine.bundle
    r = await client.post("/v1/admin/reload", headers=auth)
    doc = await r.json(content_type=None)
    assert r.status == 422 and doc["cause"] == "RELOAD_FAILED" and "SnapshotError" in doc["detail"]
    assert svc.engine.bundle is serving
    assert (await client.get(EIC, params={"pei": OWNED, "gpsi": "msisdn-" + OWNER_E164})).status == 200
    # A snapshot where 60 % of IMEIs are blocked: refused unless forced.
    install(build(tmp_path, "risky", registry(n_filler=10, n_blocked_filler=9)), svc.config.snapshot)
    r = await client.post("/v1/admin/reload", headers=auth)
    doc = await r.json(content_type=None)
    assert r.status == 409 and doc["cause"] == "RELOAD_REFUSED" and "blocked IMEI share" in doc["detail"]
    assert svc.engine.bundle is serving
    assert (await client.post("/v1/admin/reload", params={"force": "maybe"}, headers=auth)).status == 400
    r = await client.post("/v1/admin/reload", params={"force": "true"}, headers=auth)
    assert r.status == 200 and svc.engine.bundle.index.n_devices == 14
    metrics = await (await client.get("/metrics")).text()
    for result, n in (("ok", 3), ("failed", 1), ("refused", 1)):
        assert f'eir_reloads_total{{result="{result}"}} {n}.0' in metrics


# --- HTTP/2 (h2c, prior knowledge) through the nginx front-end of deploy/ --------------------------------


async def test_nginx_h2c_front_end(tmp_path: Path, snapshot: Path, unused_tcp_port: int) -> None:
    nginx, curl = shutil.which("nginx") or "/usr/sbin/nginx", shutil.which("curl")
    if not Path(nginx).exists() or curl is None:
        pytest.skip("nginx and curl are needed for the h2c front-end test (apt-get install nginx curl)")
    svc = await start(make_config(snapshot))
    prefix = tmp_path / "nginx"
    (prefix / "logs").mkdir(parents=True)
    (prefix / "tmp").mkdir()
    shutil.copy(ROOT / "deploy" / "nginx" / "nginx.conf", prefix / "nginx.conf")
    conf = (ROOT / "deploy" / "nginx" / "eir-h2c.conf").read_text()
    assert "127.0.0.1:8443" in conf and "127.0.0.1:8080" in conf
    host, port = svc.http.address
    (prefix / "eir-h2c.conf").write_text(conf.replace("127.0.0.1:8443", f"127.0.0.1:{unused_tcp_port}")
                                         .replace("127.0.0.1:8080", f"{host}:{port}"))
    proc = await asyncio.create_subprocess_exec(nginx, "-p", str(prefix), "-c", "nginx.conf", "-g", "daemon off;",
                                                stderr=asyncio.subprocess.PIPE)
    try:
        base = f"http://127.0.0.1:{unused_tcp_port}"
        url = f"{base}{EIC}?pei=imei-{OWNED15}&gpsi=msisdn-{OWNER_E164}"
        for _ in range(100):  # wait for nginx to listen
            out = await _curl(curl, "-s", "--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_code}",
                              f"{base}/healthz")
            if out == "200":
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("nginx did not answer over h2c")
        body = await _curl(curl, "-s", "--http2-prior-knowledge", "-w", "\n%{http_version} %{http_code}", url)
        assert body.splitlines() == ['{"status":"WHITELISTED"}', "2 200"]
        body = await _curl(curl, "-s", "--http2-prior-knowledge", "-w", "\n%{http_version} %{http_code}",
                           f"{base}{EIC}?pei=bogus")
        problem, status = body.splitlines()
        assert status == "2 400" and '"cause":"MANDATORY_QUERY_PARAM_INCORRECT"' in problem
        # The control plane passes its own location (localhost only), and refuses without a token.
        body = await _curl(curl, "-s", "--http2-prior-knowledge", "-w", "\n%{http_version} %{http_code}",
                           f"{base}/v1/registry/authenticity/{OWNED}")
        refusal, status = body.splitlines()
        assert status == "2 403" and '"error":"admin_disabled"' in refusal
    finally:
        proc.terminate()
        await proc.wait()
        await svc.shutdown()


async def _curl(curl: str, *args: str) -> str:
    p = await asyncio.create_subprocess_exec(curl, *args, stdout=asyncio.subprocess.PIPE)
    out, _ = await p.communicate()
    return out.decode()


def test_nginx_config_syntax(tmp_path: Path) -> None:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        pytest.skip("nginx is needed to check deploy/nginx (apt-get install nginx)")
    for name in ("nginx.conf", "eir-h2c.conf"):
        shutil.copy(ROOT / "deploy" / "nginx" / name, tmp_path / name)
    (tmp_path / "logs").mkdir()
    (tmp_path / "tmp").mkdir()
    r = subprocess.run([nginx, "-t", "-p", str(tmp_path), "-c", "nginx.conf"], capture_output=True, text=True,
                       check=False)
    assert r.returncode == 0, r.stderr
