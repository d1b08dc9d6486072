"""``eir admin``: the registry control plane's command line, against a service in this process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner, Result

from eir.cli import main
from eir.cli.admin import build_request
from eir.service import Service
from eir.transports.registry_edge import BY_NAME, OPERATIONS
from tests.svc_fixtures import OTHER, OWNED, OWNER, build, close_all, make_config, registry, start

TOKEN = "cli-s3cret-token"


def run(args: list[str], token: str | None = TOKEN, stdin: str | None = None) -> Result:
    env = {"EIR_ADMIN_TOKEN": token} if token is not None else {"EIR_ADMIN_TOKEN": ""}
    return CliRunner().invoke(main, ["admin", *args], env=env, input=stdin)


async def arun(args: list[str], token: str | None = TOKEN, stdin: str | None = None) -> Result:
    """The CLI (blocking urllib) in a thread, so the service on this loop can answer it."""
    return await asyncio.to_thread(run, args, token, stdin)


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[Service]:
    svc = await start(make_config(build(tmp_path, "reg", registry()), token=TOKEN))
    yield svc
    await close_all()
    await svc.shutdown()


def base(svc: Service) -> list[str]:
    host, port = svc.http.address
    return ["--url", f"http://{host}:{port}"]


def test_help_lists_every_operation() -> None:
    r = CliRunner().invoke(main, ["admin", "--help"])
    assert r.exit_code == 0
    for op in OPERATIONS:
        assert op.name.split(" ")[0] in r.output
    r = CliRunner().invoke(main, ["admin", "operator-sim", "add", "--help"])
    assert r.exit_code == 0 and "--slot" in r.output and "not_eligible" in r.output


def test_usage_errors_exit_2() -> None:
    assert run(["activate", "--imei", OWNED, "--msisdn", OWNER, "--code", "1"], token=None).exit_code == 2
    r = run(["activate", "--imei", OWNED, "--msisdn", OWNER, "--code", "1"], token=None)
    assert "EIR_ADMIN_TOKEN" in r.output and TOKEN not in r.output
    assert run(["activate", "--imei", OWNED]).exit_code == 2  # missing options
    assert run(["--url", "ftp://x", "unblock", "--imei", OWNED]).exit_code == 2
    assert run(["operator-sim", "add", "--imei", OWNED, "--owner", OWNER, "--slot", "x",
                "--msisdn", OTHER]).exit_code == 2
    r = run(["activate", "--imei", OWNED, "--msisdn", OWNER], stdin="")  # no code anywhere
    assert r.exit_code == 2 and "activation code" in r.output


def test_unreachable_service_exits_2() -> None:
    r = run(["--url", "http://127.0.0.1:9", "--timeout", "5", "unblock", "--imei", OWNED])
    assert r.exit_code == 2 and "cannot reach" in r.output


def test_build_request_quotes_and_places_fields() -> None:
    url, body = build_request(BY_NAME["imei-status"], "http://h:1/", {"imei": "35 69/38", "requester": "+98912"})
    assert url == "http://h:1/v1/registry/imei-status/35%2069%2F38?requester=%2B98912" and body is None
    url, body = build_request(BY_NAME["imei-correction"], "http://h:1", {
        "requester": OWNER, "registered_imeis": ("1,2", "3"), "observed_imeis": ("4",), "apply": True})
    assert url == "http://h:1/v1/registry/imei-correction"
    assert body is not None and orjson.loads(body) == {
        "requester": OWNER, "registered_imeis": ["1", "2", "3"], "observed_imeis": ["4"], "apply": True}
    url, body = build_request(BY_NAME["operator-sim remove"], "http://h:1", {
        "imei": OWNED, "owner": OWNER, "slot": 2, "msisdn": OTHER})
    assert body is not None and orjson.loads(body)["slot"] == 2


async def test_refusals_exit_1_and_print_the_answer(service: Service) -> None:
    r = await arun([*base(service), "activate", "--imei", "123", "--msisdn", OWNER], stdin="482913\n")
    assert r.exit_code == 1, r.output
    doc: dict[str, Any] = orjson.loads(r.output)
    assert doc["error"] == "invalid_imei" and doc["field"] == "imei"
    r = await arun([*base(service), "unblock", "--imei", OWNED], token="wrong")
    assert r.exit_code == 1 and orjson.loads(r.output)["error"] == "unauthorized"
    r = await arun([*base(service), "imei-status", "--imei", OWNED, "--requester", "abc"])
    assert r.exit_code == 1 and orjson.loads(r.output)["error"] == "invalid_msisdn"
