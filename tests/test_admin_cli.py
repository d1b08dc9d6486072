"""``eir admin``: the control plane's command line, against a service in this process and a real `eir serve`."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import urllib.request
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
from tests.svc_fixtures import (
    CLONED,
    DEFAULT_RULES,
    OTHER,
    OWNED,
    OWNER,
    OWNER2,
    UNOWNED,
    build,
    close_all,
    make_config,
    registry,
    start,
)
from tests.test_serve_cli import Serve

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


# --- against a real `eir serve` process, end to end ------------------------------------------------------

CODE_KEY = "e2e-code-key-fedcba9876543210"
CODE = "731546"
CODED = "35693803564384"  # unowned, sold with the activation code CODE


def _admin(port: int, *args: str, token: str = TOKEN, stdin: str | None = None) -> tuple[int, Any, str]:
    """``eir admin`` as its own process: (exit status, JSON answer or None, stderr)."""
    env = {k: v for k, v in os.environ.items() if k not in ("EIR_ADMIN_TOKEN", "EIR_CODE_KEY")}
    p = subprocess.run([sys.executable, "-m", "eir", "admin", "--url", f"http://127.0.0.1:{port}", *args],
                       input=stdin, capture_output=True, text=True, timeout=60, env={**env, "EIR_ADMIN_TOKEN": token})
    return p.returncode, orjson.loads(p.stdout) if p.stdout.strip() else None, p.stderr


def _attach(port: int, imei: str, msisdn: str) -> tuple[str, str]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/check", method="POST",
                                 data=orjson.dumps({"imei": imei, "msisdn": msisdn}),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        doc = orjson.loads(r.read())
    return doc["verdict"], doc["reason"]


def _serve(snap: Path, db: Path) -> tuple[Serve, int]:
    s = Serve("--snapshot", str(snap), "--rules", str(DEFAULT_RULES), "--state", str(db), "--rpc", "off",
              "--http", "127.0.0.1:0", env={"EIR_ADMIN_TOKEN": TOKEN, "EIR_CODE_KEY": CODE_KEY})
    port = s.port("http")
    s.wait_for(lambda d: d["msg"] == "bundle loaded")
    return s, port


def _stop(s: Serve) -> None:
    """SIGTERM and a clean exit (kill -9 only if it does not stop)."""
    if s.proc.poll() is not None:
        return
    s.proc.send_signal(signal.SIGTERM)
    try:
        assert s.finish() == 0
    finally:
        if s.proc.poll() is None:
            s.proc.kill()
            s.finish()


@pytest.mark.slow
def test_end_to_end_activation_over_http_survives_a_crash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Activate with `eir admin` against `eir serve` (SQLite state): the next attach is ALLOW OWNER, and
    still is after kill -9 and a restart on the same snapshot (the change comes back from the journal)."""
    monkeypatch.setenv("EIR_CODE_KEY", CODE_KEY)  # the snapshot stores only the code's keyed hash
    snap = build(tmp_path, "reg", [*registry(), {"type": "device", "imeis": [CODED], "activation_code": CODE}])
    assert CODE.encode() not in snap.read_bytes()
    db = tmp_path / "state.db"
    s, port = _serve(snap, db)
    try:
        assert _attach(port, CODED, OWNER) == ("WARN", "ACTIVATION_GRACE")
        rc, doc, _ = _admin(port, "activate", "--imei", CODED, "--msisdn", OWNER, stdin="123456\n")
        assert (rc, doc["error"]) == (1, "wrong_code")
        rc, doc, _ = _admin(port, "activate", "--imei", CODED, "--msisdn", OWNER, token="not-the-token",
                            stdin=CODE + "\n")
        assert (rc, doc["error"]) == (1, "unauthorized")
        rc, doc, err = _admin(port, "activate", "--imei", CODED, "--msisdn", OWNER, stdin=CODE + "\n")
        assert rc == 0 and doc["result"] == "activated", (doc, err)
        assert _attach(port, CODED, OWNER) == ("ALLOW", "OWNER")
        assert _attach(port, CODED, OTHER) == ("ALLOW", "REGISTERED")
        rc, doc, _ = _admin(port, "authenticity", "--imei", CODED)
        assert rc == 0 and doc["status"] == "legal" and OWNER[1:] not in orjson.dumps(doc).decode()
    finally:
        s.proc.kill()  # kill -9: the acknowledged activation must already be durable
        s.finish()
    s2, port = _serve(snap, db)
    try:
        assert _attach(port, CODED, OWNER) == ("ALLOW", "OWNER")
        rc, doc, _ = _admin(port, "activate", "--imei", CODED, "--msisdn", OWNER, stdin=CODE + "\n")
        assert (rc, doc["error"]) == (1, "already_activated")  # one-time code, even across the restart
    finally:
        _stop(s2)
    assert _admin(port, "unblock", "--imei", OWNED)[0] == 2  # the service is gone: connection error
    for line in s.lines + s2.lines:
        assert TOKEN not in line and CODE not in line and CODE_KEY not in line


@pytest.mark.slow
def test_cli_operations_against_a_served_registry(tmp_path: Path) -> None:
    """A tour of the subcommands on a served registry (memory state): answers and exit statuses."""
    snap = build(tmp_path, "reg", registry())
    s = Serve("--snapshot", str(snap), "--rules", str(DEFAULT_RULES), "--state", "memory", "--rpc", "off",
              "--http", "127.0.0.1:0", env={"EIR_ADMIN_TOKEN": TOKEN})
    try:
        port = s.port("http")
        s.wait_for(lambda d: d["msg"] == "bundle loaded")
        rc, doc, _ = _admin(port, "operator-sim", "add", "--imei", CLONED, "--owner", OWNER2, "--slot", "1",
                            "--msisdn", OTHER)
        assert rc == 0 and doc["result"] == "operator_sim_added"
        assert _attach(port, CLONED, OTHER) == ("ALLOW", "OPERATOR_SIM")
        rc, doc, _ = _admin(port, "operator-sim", "remove", "--imei", CLONED, "--owner", OWNER2, "--slot", "1",
                            "--msisdn", OTHER)
        assert rc == 0 and doc["result"] == "operator_sim_removed"
        rc, doc, _ = _admin(port, "block", "--imei", OWNED, "--reason", "stolen")
        assert rc == 0 and doc["result"] == "blocked"
        assert _attach(port, OWNED, OWNER) == ("DENY", "BLACKLISTED")
        rc, doc, _ = _admin(port, "unblock", "--imei", OWNED)
        assert rc == 0 and doc["result"] == "unblocked"
        rc, doc, _ = _admin(port, "clone-flag", "--imei", OWNED, "--cloned", "true")
        assert rc == 0 and doc["result"] == "clone_flag_set"
        rc, doc, _ = _admin(port, "transfer", "--imei", UNOWNED, "--owner", OWNER, "--buyer", OTHER)
        assert (rc, doc["error"]) == (1, "not_owner")
        rc, doc, _ = _admin(port, "imei-correction", "--requester", OWNER, "--registered-imeis", OWNED,
                            "--observed-imeis", f"{OWNED},garbage")
        assert (rc, doc["error"]) == (1, "incorrect_imei_observed")
        rc, doc, _ = _admin(port, "imei-status", "--imei", UNOWNED, "--requester", OTHER)
        assert (rc, doc["error"]) == (1, "not_seen_with_requester")
        rc, doc, _ = _admin(port, "claim", "--imei", UNOWNED, "--msisdn", OTHER)
        assert (rc, doc["error"]) == (1, "not_pre_registry_user")
        rc, doc, _ = _admin(port, "recover", "--imei", OWNED, "--old-msisdn", OWNER, "--new-msisdn", OTHER)
        assert (rc, doc["error"]) == (1, "not_expired")
        rc, doc, _ = _admin(port, "repair", "--owner", OWNER, "--old-imei", OWNED, "--new-imei", UNOWNED)
        assert (rc, doc["error"]) == (1, "imei_in_use")
        rc, doc, err = _admin(port, "activate", "--imei", UNOWNED, "--msisdn", OWNER, "--code", "482913")
        assert (rc, doc) == (2, None) and "code_key_missing" in err  # served without EIR_CODE_KEY
    finally:
        _stop(s)
