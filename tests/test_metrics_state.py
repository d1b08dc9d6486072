"""Store and webhook figures on /metrics (eir.metrics_state): the outbox backlog an operator alerts on."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from eir.delivery import WebhookConfig, WebhookSink
from eir.metrics_state import StateCollector
from eir.store import SqliteState
from tests.svc_fixtures import FixedClock, build, make_config, registry, start
from tests.test_delivery import emit, wait_until
from tests.webhook_receiver import Receiver, receiver_fixture  # noqa: F401  (the ``receiver`` fixture)


def scrape(collector: StateCollector) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Render through prometheus-client and parse the text back: what Prometheus would see."""
    reg = CollectorRegistry()
    reg.register(collector)
    out = {}
    for fam in text_string_to_metric_families(generate_latest(reg).decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_without_store_or_sinks_nothing_is_exported() -> None:
    assert scrape(StateCollector(lambda: None, list)) == {}


async def test_outbox_backlog_and_webhook_lag_follow_the_receiver(tmp_path: Path, receiver: Receiver) -> None:
    st = await SqliteState.open(tmp_path / "state.db")
    sinks: list[WebhookSink] = []
    collector = StateCollector(lambda: st, lambda: sinks)
    try:
        await emit(st, 12)
        m = scrape(collector)
        assert m[("eir_outbox_committed_seq", ())] == 12
        assert m[("eir_outbox_last_seq", ())] == 12
        assert m[("eir_state_commits_total", ())] >= 1
        assert m[("eir_state_db_bytes", ())] > 0
        assert ("eir_state_entries", (("kind", "graces"),)) in m
        # No consumer yet: nothing counts as backlog (the outbox is kept for `eir events tail`).
        assert m[("eir_outbox_backlog_events", ())] == 0

        receiver.fail = 1_000  # the receiver is down: the backlog must show it
        sink = WebhookSink(st, WebhookConfig(receiver.url, name="sms", backoff_s=0.01, backoff_max_s=0.02))
        sinks.append(sink)
        sink.start()
        await wait_until(lambda: sink.failures >= 2)
        m = scrape(collector)
        assert m[("eir_outbox_backlog_events", ())] == 12
        assert m[("eir_outbox_consumer_lag_events", (("consumer", "sms"),))] == 12
        assert m[("eir_webhook_lag_events", (("consumer", "sms"),))] == 12
        assert m[("eir_webhook_failures_total", (("consumer", "sms"),))] >= 2
        assert m[("eir_webhook_consecutive_failures", (("consumer", "sms"),))] >= 2

        receiver.fail = 0  # back up: everything is delivered and the backlog drains
        await wait_until(lambda: sink.acked == 12)
        m = scrape(collector)
        assert m[("eir_webhook_delivered_events_total", (("consumer", "sms"),))] == 12
        assert m[("eir_webhook_acked_seq", (("consumer", "sms"),))] == 12
        assert m[("eir_webhook_consecutive_failures", (("consumer", "sms"),))] == 0
        assert m[("eir_outbox_backlog_events", ())] == 0
    finally:
        for s in sinks:
            await s.stop()
        await st.close()


@pytest.mark.parametrize("durable", [False, True])
async def test_service_metrics_page_includes_the_store(tmp_path: Path, durable: bool) -> None:
    cfg = make_config(build(tmp_path, "reg", registry()))
    if durable:
        cfg = replace(cfg, state=tmp_path / "state.db")
    svc = await start(cfg, FixedClock())
    try:
        text = svc.metrics.render().decode()
        # The SQLite store exports its outbox; the in-memory state has no outbox to watch.
        assert ("eir_outbox_backlog_events 0.0" in text) is durable
        assert ("eir_state_db_bytes" in text) is durable
    finally:
        await svc.shutdown()
