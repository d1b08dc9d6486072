"""Webhook delivery (eir.delivery): batches, at least once, durable cursor, never blocks decisions."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from eir.delivery import DeliveryError, WebhookConfig, WebhookSink, safe_url
from eir.events import Event
from eir.store import SqliteState
from tests.conftest import T0
from tests.webhook_receiver import Receiver, receiver_fixture  # noqa: F401  (the ``receiver`` fixture)


def event(i: int) -> Event:
    return Event("UNREGISTERED_DEVICE", T0 + i, 35693803000011, 989120000000 + i, 1, "UNREGISTERED", None,
                 text_fa="x", text_en="y")


async def emit(st: SqliteState, n: int) -> None:
    for i in range(n):
        st.append_event(event(i))
    await st.barrier()


async def wait_until(cond: Any, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "condition not reached in time"
        await asyncio.sleep(0.01)


async def test_delivers_every_event_in_order_in_batches(tmp_path: Path, receiver: Any) -> None:
    st = await SqliteState.open(tmp_path / "state.db")
    sink = WebhookSink(st, WebhookConfig(receiver.url, name="sms", batch_size=40))
    try:
        await emit(st, 100)
        sink.start()
        await wait_until(lambda: sink.acked == 100)
        assert receiver.seqs == list(range(1, 101))
        assert [p["n"] for p in receiver.posts] == [40, 40, 20]
        await emit(st, 5)  # new events wake the idle sink at once
        await wait_until(lambda: sink.acked == 105)
        assert sink.lag == 0 and sink.metrics()["delivered"] == 105
    finally:
        await sink.stop()
        await st.close()
    # The cursor is durable: a restarted sink sends nothing twice after a clean stop.
    st = await SqliteState.open(tmp_path / "state.db")
    sink = WebhookSink(st, WebhookConfig(receiver.url, name="sms"))
    try:
        assert sink.acked == 105
        await emit(st, 1)
        sink.start()
        await wait_until(lambda: sink.acked == 106)
        assert receiver.seqs == list(range(1, 107))
    finally:
        await sink.stop()
        await st.close()


async def test_receiver_down_retries_and_never_blocks_decisions(tmp_path: Path, receiver: Any) -> None:
    st = await SqliteState.open(tmp_path / "state.db")
    receiver.fail = 4
    sink = WebhookSink(st, WebhookConfig(receiver.url, batch_size=10, backoff_s=0.02, backoff_max_s=0.05))
    sink.start()
    try:
        started = time.monotonic()
        for _ in range(20):
            await emit(st, 3)  # commits keep their pace while the receiver fails
        assert time.monotonic() - started < 5
        await wait_until(lambda: sink.acked == 60)
        assert sink.failures == 4
        assert sorted(set(receiver.seqs)) == list(range(1, 61))  # everything, at least once
    finally:
        await sink.stop()
        await st.close()


async def test_slow_receiver_makes_the_backlog_grow_not_the_decisions_wait(tmp_path: Path,
                                                                         receiver: Any) -> None:
    st = await SqliteState.open(tmp_path / "state.db")
    receiver.delay = 0.3
    sink = WebhookSink(st, WebhookConfig(receiver.url, batch_size=5))
    sink.start()
    try:
        await emit(st, 5)
        await asyncio.sleep(0.05)  # the first batch is now in flight at the slow receiver
        started = time.monotonic()
        await emit(st, 50)
        assert time.monotonic() - started < 0.25
        assert sink.lag >= 50 and st.metrics()["committed_seq"] == 55
        await wait_until(lambda: sink.acked == 55)
    finally:
        await sink.stop()
        await st.close()


async def test_unreachable_receiver_is_retried(tmp_path: Path) -> None:
    st = await SqliteState.open(tmp_path / "state.db")
    sink = WebhookSink(st, WebhookConfig("http://127.0.0.1:9/hook", timeout_s=0.2, backoff_s=0.01,
                                         backoff_max_s=0.02))
    sink.start()
    try:
        await emit(st, 2)
        await wait_until(lambda: sink.failures >= 3)
        assert sink.acked == 0 and sink.lag == 2 and sink.last_error
    finally:
        await sink.stop()
        await st.close()


def test_webhook_config_is_validated() -> None:
    with pytest.raises(DeliveryError, match="http"):
        WebhookConfig("ftp://example.org/x")
    with pytest.raises(DeliveryError, match="batch size"):
        WebhookConfig("http://example.org/x", batch_size=0)
    with pytest.raises(DeliveryError, match="timeout_s"):
        WebhookConfig("http://example.org/x", timeout_s=0)
    # Logs never show credentials or query tokens.
    assert safe_url("https://user:secret@gw.example:8443/hook?token=abc") == "https://gw.example:8443/hook"


# --- eir events tail / status -------------------------------------------------------------------------


def test_events_tail_prints_committed_events_as_json_lines(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from eir.cli import main
    from eir.store_sync import SyncSqliteState

    path = tmp_path / "state.db"
    with SyncSqliteState.open(path) as st:
        for i in range(7):
            st.append_event(event(i))
    runner = CliRunner()
    r = runner.invoke(main, ["events", "tail", "--state", str(path)])
    assert r.exit_code == 0, r.output
    lines = [orjson.loads(x) for x in r.output.splitlines()]
    assert [e["seq"] for e in lines] == list(range(1, 8)) and lines[0]["type"] == "UNREGISTERED_DEVICE"
    r = runner.invoke(main, ["events", "tail", "--state", str(path), "--after", "5"])
    assert [orjson.loads(x)["seq"] for x in r.output.splitlines()] == [6, 7]
    r = runner.invoke(main, ["events", "tail", "--state", str(path), "--follow", "--limit", "3"])
    assert r.exit_code == 0 and len(r.output.splitlines()) == 3  # --limit ends a --follow
    r = runner.invoke(main, ["events", "status", "--state", str(path)])
    assert orjson.loads(r.output) == {"last_seq": 7, "outbox_rows": 7, "first_seq": 1, "consumers": {}}
    r = runner.invoke(main, ["events", "tail", "--state", str(tmp_path / "missing.db")])
    assert r.exit_code != 0 and "no such state database" in r.output


def test_events_tail_follow_sees_events_of_a_running_writer(tmp_path: Path) -> None:
    import subprocess
    import sys

    from eir.store_sync import SyncSqliteState

    path = tmp_path / "state.db"
    st = SyncSqliteState.open(path)
    st.append_event(event(0))
    st.commit()
    proc = subprocess.Popen([sys.executable, "-m", "eir", "events", "tail", "--state", str(path), "--follow",
                             "--limit", "3", "--poll", "0.05"], stdout=subprocess.PIPE)
    try:
        time.sleep(0.5)
        st.append_event(event(1))
        st.append_event(event(2))
        st.commit()
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        st.close()
    assert [orjson.loads(x)["seq"] for x in out.splitlines()] == [1, 2, 3]
