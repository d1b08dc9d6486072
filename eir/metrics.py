"""Prometheus metrics of the service, in their own :class:`CollectorRegistry` (never the global one).

The hot path only increments plain ints: decisions are counted in a dict keyed by reason and request
latencies go into a bisect-bucket histogram; a custom collector turns them into metric families at
scrape time. Rare things (reloads, errors, connections) use prometheus-client objects directly.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from eir.events import Event
from eir.model import VERDICT_OF, Decision, Reason

#: Request latency buckets (seconds): the target is well under a millisecond of server time.
LATENCY_BUCKETS: Final = (
    0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
)  # fmt: skip
#: (transport, method) pairs whose latency is recorded.
ENDPOINTS: Final = (
    ("rpc", "check"), ("rpc", "check_batch"), ("http", "equipment_status"), ("http", "check"),
    ("http", "registry"),
)  # fmt: skip


class FastHistogram:
    """A cumulative-at-scrape histogram: ``observe`` is one bisect and two additions."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, v: float) -> None:
        self.counts[bisect_left(self.bounds, v)] += 1
        self.sum += v

    def buckets(self) -> list[tuple[str, float]]:
        """Cumulative ``(le, count)`` pairs ending with ``+Inf``."""
        out: list[tuple[str, float]] = []
        acc = 0
        for b, n in zip((*map(str, self.bounds), "+Inf"), self.counts, strict=True):
            acc += n
            out.append((b, acc))
        return out


class _HotCollector(Collector):
    """Exports the hot-path counters (decisions, latencies, events)."""

    def __init__(self, m: Metrics) -> None:
        self._m = m

    def collect(self) -> Iterator[Metric]:
        m = self._m
        dec = CounterMetricFamily("eir_decisions", "Decisions taken, by verdict and reason.",
                                  labels=["verdict", "reason"])
        for reason, n in m.decisions.items():
            dec.add_metric([VERDICT_OF[reason].name, reason.value], n)
        yield dec
        ev = CounterMetricFamily("eir_events", "Warning/operational events emitted, by type.", labels=["type"])
        for etype, n in sorted(m.events.items()):
            ev.add_metric([etype], n)
        yield ev
        lat = HistogramMetricFamily("eir_request_duration_seconds",
                                    "Server time per request (a batch is one request).",
                                    labels=["transport", "method"])
        for (transport, method), h in m.latency.items():
            lat.add_metric([transport, method], h.buckets(), h.sum)
        yield lat


class Metrics:
    """All metrics of one service instance."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.registry = CollectorRegistry()
        self.decisions: dict[Reason, int] = dict.fromkeys(Reason, 0)
        self.events: dict[str, int] = {}
        self.latency: dict[tuple[str, str], FastHistogram] = {ep: FastHistogram() for ep in ENDPOINTS}
        self._clock = clock
        self._snapshot_created = 0.0
        r = self.registry
        r.register(_HotCollector(self))
        self.rpc_connections = Gauge("eir_rpc_open_connections", "Open msgpack RPC connections.", registry=r)
        self.http_connections = Gauge("eir_http_open_connections", "Open HTTP connections.", registry=r)
        self.rpc_errors = Counter("eir_rpc_errors", "RPC error answers, by code.", ["code"], registry=r)
        self.rpc_rejected = Counter("eir_rpc_rejected_connections",
                                    "RPC connections refused at the connection limit.", registry=r)
        self.rpc_closed = Counter("eir_rpc_closed_connections",
                                  "RPC connections closed by the server, by cause.", ["cause"], registry=r)
        self.http_problems = Counter("eir_http_problems", "HTTP problem answers, by cause.", ["cause"],
                                     registry=r)
        self.reloads = Counter("eir_reloads", "Snapshot/rule loads, by result (ok, failed, refused).",
                               ["result"], registry=r)
        self.reload_failing = Gauge("eir_reload_last_failed",
                                    "1 when the last reload failed or was refused (the old bundle serves).",
                                    registry=r)
        self.ready = Gauge("eir_ready", "1 once a snapshot is loaded and requests are answered.", registry=r)
        self.snapshot_age = Gauge("eir_snapshot_age_seconds", "Age of the serving snapshot (since build).",
                                  registry=r)
        self.snapshot_age.set_function(self._age)
        self.snapshot_loaded = Gauge("eir_snapshot_loaded_timestamp_seconds",
                                     "When the serving snapshot was loaded (epoch seconds).", registry=r)
        self.snapshot_records = Gauge("eir_snapshot_records", "Record counts of the serving snapshot.",
                                      ["kind"], registry=r)
        self.snapshot_share = Gauge("eir_snapshot_imei_share",
                                    "Share of IMEIs that are blocked, cloned or unowned (reload safety check).",
                                    ["kind"], registry=r)

    def _age(self) -> float:
        return max(0.0, self._clock() - self._snapshot_created) if self._snapshot_created else 0.0

    # --- hot path --------------------------------------------------------------------------------------

    def count(self, d: Decision) -> None:
        """One decision taken."""
        self.decisions[d.reason] += 1

    def on_event(self, ev: Event) -> None:
        """Engine event sink: count emitted events by type."""
        self.events[ev.type] = self.events.get(ev.type, 0) + 1

    # --- rare ------------------------------------------------------------------------------------------

    def snapshot_swapped(self, created: int, counts: Mapping[str, int], shares: Mapping[str, float]) -> None:
        """A new snapshot serves: export its age, counts and risk shares."""
        self._snapshot_created = float(created)
        self.snapshot_loaded.set(self._clock())
        for kind, n in counts.items():
            self.snapshot_records.labels(kind).set(n)
        for kind, v in shares.items():
            self.snapshot_share.labels(kind).set(v)

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)
