"""Prometheus export of the durable store and the webhook deliveries, read at scrape time.

The store and each :class:`~eir.delivery.WebhookSink` keep plain dicts of numbers (``metrics()``); this
collector turns them into metric families only when Prometheus scrapes, so neither the decision path nor
the writer thread ever touches a prometheus-client object. The outbox backlog is the one figure an
operator must alert on: it grows while a receiver is slow or down, and decisions never wait for it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Final, Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

#: store.metrics() key -> (metric name, help, is a counter).
STORE_FIGURES: Final[dict[str, tuple[str, str, bool]]] = {
    "last_seq": ("eir_outbox_last_seq", "Sequence number of the newest event (committed or not).", False),
    "committed_seq": ("eir_outbox_committed_seq", "Sequence number of the newest durable event.", False),
    "outbox_backlog": ("eir_outbox_backlog_events",
                       "Durable events not yet acknowledged by the slowest consumer.", False),
    "pending_events": ("eir_state_pending_events", "Events waiting for the next group commit.", False),
    "pending_observations": ("eir_state_pending_observations",
                             "Observation-history updates waiting to be written.", False),
    "db_bytes": ("eir_state_db_bytes", "Size of the state database files on disk.", False),
    "commits": ("eir_state_commits", "Group commits of the state database.", True),
    "commit_errors": ("eir_state_commit_errors", "Failed group commits (retried).", True),
    "promise_rows": ("eir_state_promise_rows", "Promise rows (graces, windows, events...) committed.", True),
    "commit_seconds_total": ("eir_state_commit_seconds", "Time spent in group commits.", True),
    "commit_seconds_max": ("eir_state_commit_seconds_max", "Longest group commit so far.", False),
    "history_writes": ("eir_state_history_writes", "Observation-history write batches.", True),
    "history_errors": ("eir_state_history_errors", "Failed observation-history writes (retried).", True),
    "history_rows": ("eir_state_history_rows", "Observation-history rows written.", True),
    "prunes": ("eir_state_prunes", "Pruning passes.", True),
    "pruned": ("eir_state_pruned_entries", "State entries dropped by pruning.", True),
    "open_seconds": ("eir_state_open_seconds", "Time the last start-up took to open the state.", False),
}
#: In-memory entry counts of the store, exported as one gauge with a ``kind`` label.
STATE_KINDS: Final = ("graces", "activations", "windows", "quotas", "detections", "marks", "histories")
#: WebhookSink.metrics() key -> (metric name suffix, help, is a counter).
SINK_FIGURES: Final[dict[str, tuple[str, str, bool]]] = {
    "acked_seq": ("acked_seq", "Last event sequence number the receiver acknowledged.", False),
    "lag": ("lag_events", "Durable events the receiver has not acknowledged yet.", False),
    "delivered": ("delivered_events", "Events delivered and acknowledged.", True),
    "batches": ("batches", "Batches delivered and acknowledged.", True),
    "failures": ("failures", "Failed delivery attempts (retried with back-off).", True),
    "consecutive_failures": ("consecutive_failures", "Failed attempts since the last success.", False),
}


class HasMetrics(Protocol):
    """Anything with a ``metrics()`` dict of numbers (the store, a webhook sink)."""

    def metrics(self) -> Mapping[str, float]: ...


class NamedSink(HasMetrics, Protocol):
    """A webhook delivery: its consumer name labels its figures."""

    @property
    def name(self) -> str: ...


def _family(name: str, help_text: str, counter: bool, labels: list[str]) -> GaugeMetricFamily | CounterMetricFamily:
    if counter:
        return CounterMetricFamily(name, help_text, labels=labels)
    return GaugeMetricFamily(name, help_text, labels=labels)


class StateCollector(Collector):
    """Exports the durable store's figures and every webhook delivery's figures at scrape time."""

    def __init__(self, store: Callable[[], HasMetrics | None], sinks: Callable[[], Iterable[NamedSink]]) -> None:
        self._store = store
        self._sinks = sinks

    def collect(self) -> Iterator[Metric]:
        store = self._store()
        if store is not None:
            yield from self._store_families(store.metrics())
        yield from self._sink_families(list(self._sinks()))

    @staticmethod
    def _store_families(m: Mapping[str, float]) -> Iterator[Metric]:
        for key, (name, help_text, counter) in STORE_FIGURES.items():
            if key in m:
                fam = _family(name, help_text, counter, [])
                fam.add_metric([], m[key])
                yield fam
        entries = GaugeMetricFamily("eir_state_entries", "Dynamic state entries held, by kind.", labels=["kind"])
        for kind in STATE_KINDS:
            if kind in m:
                entries.add_metric([kind], m[kind])
        yield entries
        lag = GaugeMetricFamily("eir_outbox_consumer_lag_events",
                                "Durable events each named consumer has not acknowledged.", labels=["consumer"])
        for key, value in sorted(m.items()):
            if key.startswith("consumer_lag:"):
                lag.add_metric([key.partition(":")[2]], value)
        yield lag

    @staticmethod
    def _sink_families(sinks: list[NamedSink]) -> Iterator[Metric]:
        if not sinks:
            return
        figures = [(s.name, s.metrics()) for s in sinks]
        for key, (suffix, help_text, counter) in SINK_FIGURES.items():
            fam = _family(f"eir_webhook_{suffix}", help_text, counter, ["consumer"])
            for name, m in figures:
                if key in m:
                    fam.add_metric([name], m[key])
            yield fam
