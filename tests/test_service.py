"""Service: configuration, logging, metrics registry, load/reload/safety check, durable answers."""

from __future__ import annotations

import asyncio
import io
import logging
from pathlib import Path

import orjson
import prometheus_client
import pytest

from eir.config import ConfigError, Endpoint, load_config, parse_endpoint
from eir.index import Index
from eir.log import JsonFormatter, configure, fields
from eir.service import Service, imei_shares, pinned, share_jumps
from tests.svc_fixtures import (
    DAY,
    OTHER,
    OWNED,
    OWNER,
    T0,
    UNOWNED,
    FixedClock,
    RpcClient,
    build,
    close_all,
    install,
    make_config,
    registry,
    start,
)

# --- configuration --------------------------------------------------------------------------------------


def test_config_defaults_env_and_cli_precedence() -> None:
    base = {"snapshot": "s.eirsnap", "rules": "r.toml"}
    c = load_config(base, {})
    assert c.rpc == Endpoint("127.0.0.1", 3869) and c.http == Endpoint("127.0.0.1", 8080)
    assert c.limits.max_message_bytes == 1 << 20 and c.limits.max_batch == 10_000
    assert c.admin_token is None and not c.admin_token_set and c.max_share_jump == 0.05
    env = {"EIR_MAX_BATCH": "500", "EIR_IDLE_TIMEOUT": "2.5", "EIR_ADMIN_TOKEN": "Zq9-secret",
           "EIR_MAX_SHARE_JUMP": "0.1"}
    c = load_config(base, env)
    assert (c.limits.max_batch, c.limits.idle_timeout_s, c.max_share_jump) == (500, 2.5, 0.1)
    assert c.admin_token == "Zq9-secret" and "Zq9" not in repr(c) and "Zq9" not in str(c.describe())
    c = load_config({**base, "max_batch": 7, "rpc": "off", "http": ":9000"}, env)
    assert c.limits.max_batch == 7 and c.rpc is None and c.http == Endpoint("0.0.0.0", 9000)
    assert load_config(base, {"EIR_ADMIN_TOKEN": ""}).admin_token is None  # empty = unset


def test_config_state_and_webhooks() -> None:
    from eir.store import DEFAULT_STATE_PATH

    base = {"snapshot": "s.eirsnap", "rules": "r.toml"}
    c = load_config(base, {})
    assert c.state == DEFAULT_STATE_PATH == Path("var/eir-state.db") and c.webhooks == ()  # the embedded default
    assert load_config({**base, "state": "memory"}, {}).state is None
    assert load_config({**base, "state": "/tmp/x.db"}, {}).state == Path("/tmp/x.db")
    url = "https://user:pw@gw.example:8443/eir?token=abc"
    c = load_config({**base, "state": "/tmp/x.db", "webhook": (url,)}, {})
    assert c.webhooks == (url,) and c.describe()["webhooks"] == ["https://gw.example:8443/eir"]
    assert "pw" not in str(c.describe()) and "abc" not in str(c.describe())


@pytest.mark.parametrize(("cli", "env", "needle"), [
    ({"snapshot": None}, {}, "--snapshot"),
    ({}, {"EIR_MAX_BATCH": "0"}, "EIR_MAX_BATCH"),
    ({"max_batch": "lots"}, {}, "--max-batch"),
    ({}, {"EIR_MAX_SHARE_JUMP": "nan"}, "EIR_MAX_SHARE_JUMP"),
    ({"idle_timeout_s": -1}, {}, "--idle-timeout-s"),
    ({"rpc": "localhost"}, {}, "--rpc"),
    ({"http": "h:70000"}, {}, "--http"),
    ({"log_level": "loud"}, {}, "log level"),
    ({"webhook": ("ftp://gw/x",)}, {}, "--webhook"),
    ({"webhook": ("http:///x",)}, {}, "--webhook"),
    ({"webhook": ("http://gw:99999/x",)}, {}, "--webhook"),
    ({"webhook": ("http://gw/x", "http://gw/x")}, {}, "twice"),
    ({"state": "memory", "webhook": ("http://gw/x",)}, {}, "durable state"),
    ({"state": "  "}, {}, "--state"),
])  # fmt: skip
def test_config_errors_name_the_option(cli: dict[str, object], env: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        load_config({"snapshot": "s", "rules": "r", **cli}, env)


def test_endpoint_forms() -> None:
    assert parse_endpoint("[::1]:3869", "--rpc") == Endpoint("::1", 3869)
    assert str(Endpoint("::1", 1)) == "[::1]:1" and parse_endpoint("OFF", "--rpc") is None


# --- logging --------------------------------------------------------------------------------------------


def test_json_lines_and_redaction() -> None:
    stream = io.StringIO()
    handler = configure("debug", stream)
    try:
        log = logging.getLogger("eir.test")
        log.info("reload %s in %.1f s", "ok", 1.25, extra=fields(admin_token="hunter2", admin_token_set=True,
                                                                   activation_code="123456", msg="x", n=3))
        log.debug("lazy %s", _Exploding())  # formatted because debug is on: proves args are lazy below
        logging.getLogger().setLevel(logging.INFO)
        log.debug("not formatted %s", _Exploding(fail=True))
    finally:
        logging.getLogger().removeHandler(handler)
    lines = [orjson.loads(x) for x in stream.getvalue().splitlines()]
    assert len(lines) == 2
    first = lines[0]
    assert first["msg"] == "reload ok in 1.2 s" and first["level"] == "info" and first["ts"].endswith("Z")
    assert first["admin_token"] == "[redacted]" and first["activation_code"] == "[redacted]"
    assert first["admin_token_set"] is True and first["field_msg"] == "x" and first["n"] == 3
    assert "hunter2" not in stream.getvalue() and "123456" not in stream.getvalue()


class _Exploding:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail

    def __str__(self) -> str:
        if self.fail:
            raise AssertionError("formatted a record that is not emitted")
        return "ok"


def test_formatter_handles_exceptions() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        rec = logging.LogRecord("eir", logging.ERROR, __file__, 1, "failed", None, __import__("sys").exc_info())
    doc = orjson.loads(JsonFormatter().format(rec))
    assert "ValueError: boom" in doc["exc"]


# --- shares and the safety check ------------------------------------------------------------------------


def test_imei_shares_and_jumps(tmp_path: Path) -> None:
    shares = imei_shares(Index.from_snapshot(build(tmp_path, "a", registry(n_filler=6, n_blocked_filler=1))))
    # 10 devices (1 IMEI each): blocked = BLOCKED + 1 filler, cloned = CLONED, unowned = UNOWNED.
    assert shares == pytest.approx({"blocked": 0.2, "cloned": 0.1, "unowned": 0.1})
    assert share_jumps(shares, {**shares, "blocked": 0.249}, 0.05) == []
    (why,) = share_jumps(shares, {**shares, "unowned": 0.5}, 0.05)
    assert why.startswith("unowned IMEI share 10.00% -> 50.00%")
    assert share_jumps(shares, {k: 0.0 for k in shares}, 0.0) == []  # drops never refuse


# --- load and reload ------------------------------------------------------------------------------------


async def test_reload_swaps_and_failures_keep_the_old_bundle(tmp_path: Path) -> None:
    snap = build(tmp_path, "reg", registry())
    svc = Service(make_config(snap), clock=FixedClock())
    assert not svc.ready and svc.engine is None
    assert (await svc.reload()).ok and svc.ready
    first = svc.engine.bundle if svc.engine else None
    assert (await svc.reload()).ok and svc.engine is not None and svc.engine.bundle is not first

    serving = svc.engine.bundle
    snap.write_bytes(b"EIRSNAP\0garbage")
    out = await svc.reload(force=True)
    assert out.result == "failed" and "SnapshotError" in out.reason and svc.engine.bundle is serving
    assert svc.last_reload["result"] == "failed" and svc.metrics.reload_failing._value.get() == 1

    install(build(tmp_path, "ok", registry()), snap)
    bad_rules = tmp_path / "bad.toml"
    default = Path(__file__).parent.parent / "rules" / "default.toml"
    bad_rules.write_text(f'base = "{default}"\n[clone]\ngrace_dayz = 3\n')
    svc2 = Service(make_config(snap, rules=bad_rules), clock=FixedClock())
    out = await svc2.reload()
    assert out.result == "failed" and "clone.grace_dayz" in out.reason


async def test_safety_check_refuses_unless_forced(tmp_path: Path) -> None:
    snap = build(tmp_path, "reg", registry(n_filler=20))
    svc = Service(make_config(snap), clock=FixedClock())
    assert (await svc.reload()).ok
    serving = svc.engine.bundle if svc.engine else None
    install(build(tmp_path, "risky", registry(n_filler=20, n_blocked_filler=5)), snap)
    out = await svc.reload()
    assert out.result == "refused" and "blocked IMEI share" in out.reason and "force" in out.reason
    assert svc.engine is not None and svc.engine.bundle is serving
    assert out.detail["shares"]["blocked"] > out.detail["previous_shares"]["blocked"]
    assert (await svc.reload(force=True)).ok and svc.engine.bundle is not serving


async def test_concurrent_reload_is_busy(tmp_path: Path) -> None:
    svc = Service(make_config(build(tmp_path, "reg", registry())), clock=FixedClock())
    a, b = await asyncio.gather(svc.reload(), svc.reload())
    assert sorted([a.result, b.result]) == ["busy", "ok"]


async def test_pinned_engine(tmp_path: Path) -> None:
    svc = Service(make_config(build(tmp_path, "reg", registry())), clock=FixedClock())
    await svc.reload()
    assert svc.engine is not None
    old = svc.engine.bundle
    assert pinned(svc.engine, old) is svc.engine
    await svc.reload()
    p = pinned(svc.engine, old)
    assert p is not svc.engine and p.bundle is old and p.state is svc.engine.state


def test_metrics_use_their_own_registry(tmp_path: Path) -> None:
    Service(make_config(tmp_path / "x"), clock=FixedClock())
    assert not [m for m in prometheus_client.REGISTRY.collect() if m.name.startswith("eir_")]


async def test_start_fails_cleanly_without_snapshot(tmp_path: Path) -> None:
    from eir.service import StartupError

    svc = Service(make_config(tmp_path / "missing.eirsnap"), clock=FixedClock())
    with pytest.raises(StartupError, match="first load failed"):
        await svc.start()
    assert svc.rpc.accepting is False


# --- durable state: answers that announce a deadline wait for the commit -------------------------------


async def test_durable_answers_wait_for_commit(tmp_path: Path) -> None:
    from dataclasses import replace

    cfg = replace(make_config(build(tmp_path, "reg", registry())), state=tmp_path / "state.db")
    svc = await start(cfg, FixedClock())
    try:
        assert svc.durable is not None
        c = await RpcClient.connect(svc)
        err, res = await c.call("check", [UNOWNED, OTHER])
        assert err is None and res["reason"] == "ACTIVATION_GRACE" and res["deadline"] == T0 + 30 * DAY
        assert not svc.durable.has_pending()  # type: ignore[attr-defined]  # committed before answering
        err, res = await c.call("check_batch", [[[OWNED, OWNER], [UNOWNED, OWNER]]])
        assert err is None and [r["reason"] for r in res] == ["OWNER", "ACTIVATION_GRACE"]
    finally:
        await close_all()
        await svc.shutdown()
    # A restart on the same database keeps the promised deadline.
    svc = await start(cfg, FixedClock(T0 + 5 * DAY))
    try:
        c = await RpcClient.connect(svc)
        _, res = await c.call("check", [UNOWNED, OTHER])
        assert res["deadline"] == T0 + 30 * DAY
    finally:
        await close_all()
        await svc.shutdown()
