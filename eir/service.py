"""The service: owns the engine, loads and hot-reloads (snapshot, rules), runs the transports, drains.

Load and reload read the files in a worker thread (``run_in_executor``): the snapshot checksum and the
rule keys are validated there, the risk shares of the new index are computed, and the event loop only
performs the swap, one reference assignment in :meth:`Engine.swap`. Requests are synchronous on the
loop, so each finishes on the bundle it started with; a batch spread over several loop turns keeps its
bundle through :func:`pinned`. A failed or refused reload leaves the serving bundle alone and says why:
a log line, ``eir_reloads_total{result}`` and the HTTP answer.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol, cast, runtime_checkable

from eir import fastpath
from eir.config import ServiceConfig
from eir.control import Control, ControlConfig
from eir.control_ops import JournalError, replay
from eir.engine import Bundle, Engine
from eir.index import BLOCKED, CLONED, Index
from eir.log import fields
from eir.metrics import Metrics
from eir.metrics_state import HasMetrics, StateCollector
from eir.model import Decision
from eir.rules import RuleError, RuleSet, load_rules
from eir.snapshot import SnapshotError, code_key_from_env
from eir.state import MemoryState

Clock = Callable[[], int]
SHARE_KINDS: Final = ("blocked", "cloned", "unowned")
#: How often long-lived objects are moved out of the garbage collector's reach (see _gc_freezer).
GC_FREEZE_INTERVAL_S: Final = 60.0

log = logging.getLogger("eir.service")


@runtime_checkable
class Durable(Protocol):
    """What the transports need from a durable state store (eir.store.SqliteState)."""

    def needs_barrier(self, d: Decision) -> bool: ...
    def barrier(self) -> Awaitable[None]: ...


def wall_clock() -> int:
    """The production clock: epoch seconds."""
    return int(time.time())


def iso(t: int | float | None) -> str | None:
    """Epoch seconds -> ISO 8601 UTC with 'Z'."""
    return None if t is None else dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def imei_shares(index: Index) -> dict[str, float]:
    """Share of the registry's IMEIs that are blocked, cloned, or on a device without an owner.

    Block-list entries count as blocked IMEIs (an entry for an IMEI of a blocked device is counted
    twice, capped at the total: the bound is about sudden jumps, not exact accounting).
    """
    flags, owner = index.flags, index.owner
    blocked = cloned = unowned = 0
    for dev in range(index.n_devices):
        f = flags[dev]
        if f & (BLOCKED | CLONED) or not owner[dev]:
            k = len(index.device_imeis(dev))
            blocked += k if f & BLOCKED else 0
            cloned += k if f & CLONED else 0
            unowned += 0 if owner[dev] else k
    counts = index.counts()
    total = index.n_imeis + counts.get("blacklisted_unregistered", 0)
    if not total:
        return dict.fromkeys(SHARE_KINDS, 0.0)
    blocked = min(total, blocked + counts.get("blacklisted_imeis", 0))
    return {"blocked": blocked / total, "cloned": cloned / total, "unowned": unowned / total}


def share_jumps(old: Mapping[str, float], new: Mapping[str, float], bound: float) -> list[str]:
    """Human-readable reasons for every share that grows by more than ``bound`` (empty = safe)."""
    out = []
    for kind in SHARE_KINDS:
        a, b = old.get(kind, 0.0), new.get(kind, 0.0)
        if b - a > bound:
            out.append(f"{kind} IMEI share {a:.2%} -> {b:.2%} (bound +{bound:.2%})")
    return out


@dataclass(frozen=True, slots=True)
class Loaded:
    """A bundle read and validated off the event loop, with what the safety check needs."""

    bundle: Bundle
    shares: dict[str, float]
    seconds: float


def load_bundle(snapshot: Path, rules: Path) -> Loaded:
    """Read and verify a snapshot and a rule file (blocking: runs in a worker thread)."""
    started = time.perf_counter()
    ruleset = load_rules(rules)  # RuleError names the key
    index = Index.from_snapshot(snapshot)  # SnapshotError: header, length, checksum, columns
    shares = imei_shares(index)
    return Loaded(Bundle.of(index, ruleset), shares, time.perf_counter() - started)


def pinned(engine: Engine, bundle: Bundle) -> Engine:
    """An engine deciding on ``bundle`` (the engine itself unless a reload swapped it since)."""
    return engine if engine.bundle is bundle else Engine(bundle, engine.state, engine.sinks, engine.texts,
                                                         engine.accelerated)


@dataclass(frozen=True, slots=True)
class ReloadOutcome:
    """What a (re)load did: ``result`` is ok, failed, refused or busy; ``reason`` says why."""

    result: str
    reason: str = ""
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.result == "ok"


class StartupError(Exception):
    """The service cannot start (first load failed, address in use)."""


class Service:
    """One EIR service instance: engine, transports, reload, drain."""

    def __init__(self, config: ServiceConfig, *, clock: Clock = wall_clock, state: MemoryState | None = None,
                 ) -> None:
        self.config = config
        self.clock = clock
        self.metrics = Metrics(clock)
        #: The engine state; with ``config.state`` the durable store replaces it in :meth:`start`.
        self.state = state if state is not None else MemoryState()
        #: The durable store when there is one: answers of decisions that create state wait for its
        #: group commit (``needs_barrier`` / ``barrier``); None for the in-memory state.
        self.durable: Durable | None = self.state if isinstance(self.state, Durable) else None
        self.engine: Engine | None = None
        self.shares: dict[str, float] = {}
        self.last_reload: dict[str, Any] = {}
        #: Webhook deliveries (eir.delivery.WebhookSink), one per ``config.webhooks`` URL, once started.
        self.sinks: list[Any] = []
        #: The registry control plane (eir.control), once the first load is done (None before).
        self.control: Control | None = None
        self.rpc: Any = None  # eir.transports.rpc.RpcServer once started
        self.http: Any = None  # eir.transports.http.HttpServer once started
        self._reload_lock = asyncio.Lock()
        # Store and webhook figures are read only when Prometheus scrapes (outbox backlog, lag, ...).
        self.metrics.registry.register(StateCollector(self._metered_store, lambda: self.sinks))
        self._stop = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()

    # --- load / reload ---------------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self.engine is not None

    async def reload(self, force: bool = False) -> ReloadOutcome:
        """Load the configured snapshot and rule files again and swap them in (the first call loads)."""
        if self._reload_lock.locked():
            log.warning("reload not started: a reload is already running")
            self.metrics.reloads.labels("busy").inc()
            return ReloadOutcome("busy", "a reload is already running")
        async with self._reload_lock:
            outcome = await self._reload(force)
        self.metrics.reloads.labels(outcome.result).inc()
        self.metrics.reload_failing.set(0 if outcome.ok else 1)
        self.last_reload = {"result": outcome.result, "reason": outcome.reason, "at": iso(self.clock())}
        return outcome

    async def _reload(self, force: bool) -> ReloadOutcome:
        cfg = self.config
        loop = asyncio.get_running_loop()
        # The registry-change journal is replayed onto the new index off the loop; the changes journaled
        # meanwhile are applied on the loop right before the swap (no change can fall in between).
        changes, journal_id = list(self.state.changes), self.state.journal_id
        try:
            loaded = await loop.run_in_executor(None, load_bundle, cfg.snapshot, cfg.rules)
            replayed = await loop.run_in_executor(None, replay, loaded.bundle.index, changes, journal_id)
        except (SnapshotError, RuleError, OSError, JournalError) as e:
            why = f"{type(e).__name__}: {e}"
            log.error("reload failed, the serving bundle stays: %s", why, extra=fields(
                snapshot=str(cfg.snapshot), rules=str(cfg.rules), result="failed"))
            return ReloadOutcome("failed", why)
        new = loaded.bundle
        detail = self.describe_bundle(new) | {"shares": loaded.shares, "previous_shares": self.shares,
                                              "load_seconds": round(loaded.seconds, 3)}
        if self.engine is not None and not force:
            jumps = share_jumps(self.shares, loaded.shares, cfg.max_share_jump)
            if jumps:
                why = "safety check: " + "; ".join(jumps) + " (force to accept)"
                log.error("reload refused, the serving bundle stays: %s", why, extra=fields(
                    checksum=new.index.meta.checksum, result="refused"))
                return ReloadOutcome("refused", why, detail)
        replay(new.index, self.state.changes, journal_id, replayed)
        detail["journal"] = {"applied": replayed.applied, "skipped": replayed.skipped, "seq": replayed.last_seq}
        if self.engine is None:
            self.engine = Engine(new, self.state, (self.metrics.on_event,))
            code_key = code_key_from_env()
            self.control = Control(self.engine, clock=self.clock, config=ControlConfig(code_key=code_key))
            log.info("control plane ready", extra=fields(code_key_set=code_key is not None))
        else:
            self.engine.swap(new)  # the swap: one reference assignment; in-flight requests keep theirs
        self.shares = loaded.shares
        self.metrics.snapshot_swapped(new.index.meta.created, new.index.counts(), loaded.shares)
        self.metrics.ready.set(1)
        gc.freeze()  # the loaded bundle and state are long-lived: keep them out of full collections
        log.info("bundle loaded", extra=fields(
            checksum=new.index.meta.checksum, rules=new.rules.name, rules_digest=new.rules.digest[:16],
            devices=new.index.n_devices, imeis=new.index.n_imeis, forced=force,
            seconds=round(loaded.seconds, 3), journal_applied=replayed.applied, journal_skipped=replayed.skipped,
            journal_seq=replayed.last_seq, result="ok"))
        return ReloadOutcome("ok", "", detail)

    def describe_bundle(self, b: Bundle | None = None) -> dict[str, Any]:
        """Snapshot and rule identity of a bundle (the serving one by default)."""
        if b is None:
            if self.engine is None:
                return {}
            b = self.engine.bundle
        m = b.index.meta
        return {
            "snapshot": {"path": str(self.config.snapshot), "checksum": m.checksum, "created": iso(m.created),
                         "created_epoch": m.created, "format_version": m.format_version, "counts": dict(m.counts)},
            "rules": {"path": str(self.config.rules), "name": b.rules.name, "digest": b.rules.digest},
        }

    def status(self) -> dict[str, Any]:
        """Readiness document (``GET /readyz``)."""
        return {"ready": self.ready, **self.describe_bundle(), "shares": self.shares,
                "last_reload": self.last_reload}

    # --- lifecycle -------------------------------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run a background task, keeping a reference until it ends."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def request_stop(self) -> None:
        """Begin the drain (SIGTERM / SIGINT)."""
        if not self._stop.is_set():
            log.info("stop requested: draining")
            self._stop.set()

    def request_reload(self) -> None:
        """SIGHUP: reload in the background (never forced)."""
        log.info("reload requested (SIGHUP)")
        self.spawn(self.reload(force=False))

    async def start(self) -> None:
        """Open the durable store, the listeners (so /healthz and /readyz answer during the load), load."""
        from eir.transports.http import HttpServer
        from eir.transports.rpc import RpcServer

        cfg = self.config
        # Whether the C accelerator runs is part of what the operator must know: off means several times
        # slower, and the status says why (not built, disabled, a stale build).
        log.info("starting", extra=fields(**cfg.describe(), accelerator=fastpath.status()))
        if cfg.state is not None and self.durable is None:
            await self._open_store(cfg.state)  # before the listeners: the HTTP app mounts its event feed
        try:
            self._start_sinks()
        except StartupError:
            await self._close_state()
            raise
        try:
            if cfg.rpc is not None:
                self.rpc = RpcServer(self)
                await self.rpc.start(cfg.rpc.host, cfg.rpc.port)
            if cfg.http is not None:
                self.http = HttpServer(self)
                await self.http.start(cfg.http.host, cfg.http.port)
        except OSError as e:
            await self.close_transports()
            await self._close_state()
            raise StartupError(f"cannot listen: {e}") from e
        outcome = await self.reload(force=True)
        if not outcome.ok:
            await self.close_transports()
            await self._close_state()
            raise StartupError(f"first load failed: {outcome.reason}")
        self.spawn(self._gc_freezer())

    async def _gc_freezer(self) -> None:
        """Freeze the objects that survived the last interval (mostly engine state: graces, histories).

        A full collection scans every tracked object; with millions of history entries it would stall
        the loop for hundreds of milliseconds. State objects hold no reference cycles, so keeping them
        out of the collector's reach loses nothing (they are still freed by reference counting).
        """
        while True:
            await asyncio.sleep(GC_FREEZE_INTERVAL_S)
            gc.freeze()

    async def _open_store(self, path: Path) -> None:
        from eir.store import SqliteState, StoreError

        try:
            path.parent.mkdir(parents=True, exist_ok=True)  # the default ./var/ may not exist yet
            store = await SqliteState.open(path, rules=self._current_rules)
        except (StoreError, OSError) as e:
            raise StartupError(f"cannot open the state {path}: {e}") from e
        self.state = store
        self.durable = store
        log.info("durable state opened", extra=fields(path=str(path)))

    def _start_sinks(self) -> None:
        """Start one webhook delivery per configured URL (they read the durable store's outbox)."""
        if not self.config.webhooks:
            return
        from eir.delivery import DeliveryError, Outbox, WebhookConfig, WebhookSink

        store = self.durable
        if store is None or not hasattr(store, "read_events"):
            raise StartupError("--webhook needs a durable state (not --state memory)")
        try:
            configs = [WebhookConfig(url=url, name="webhook" if i == 0 else f"webhook-{i + 1}")
                       for i, url in enumerate(self.config.webhooks)]
        except DeliveryError as e:
            raise StartupError(str(e)) from e
        for wc in configs:
            sink = WebhookSink(cast(Outbox, store), wc)
            sink.start()
            self.sinks.append(sink)
            log.info("webhook delivery started", extra=fields(consumer=wc.name, acked_seq=sink.acked))

    async def _stop_sinks(self) -> None:
        sinks, self.sinks = self.sinks, []
        await asyncio.gather(*(sink.stop() for sink in sinks))

    def _metered_store(self) -> HasMetrics | None:
        metrics = getattr(self.durable, "metrics", None)  # the SQLite store; the memory state has none
        return cast(HasMetrics, self.durable) if callable(metrics) else None

    def _current_rules(self) -> RuleSet | None:
        return self.engine.bundle.rules if self.engine is not None else None

    async def run(self) -> int:
        """Start, serve until SIGTERM/SIGINT, drain; returns the exit status."""
        loop = asyncio.get_running_loop()
        for sig, handler in ((signal.SIGTERM, self.request_stop), (signal.SIGINT, self.request_stop),
                             (signal.SIGHUP, self.request_reload)):
            loop.add_signal_handler(sig, handler)
        try:
            try:
                await self.start()
            except StartupError as e:
                log.error("cannot start: %s", e)
                return 1
            await self._stop.wait()
            await self.shutdown()
            return 0
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)

    async def shutdown(self) -> None:
        """Stop accepting, finish in-flight requests (bounded), flush the state, close."""
        started = time.perf_counter()
        await self.close_transports()
        for task in list(self._tasks):
            task.cancel()  # a reload still reading files: nobody waits for its answer any more
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._close_state()
        log.info("stopped", extra=fields(drain_seconds=round(time.perf_counter() - started, 3)))

    async def _close_state(self) -> None:
        """Stop the webhook deliveries, then commit and close the durable store (after the transports)."""
        await self._stop_sinks()
        close = getattr(self.state, "close", None)
        if callable(close):
            await close()  # the durable store commits everything queued, then closes

    async def close_transports(self) -> None:
        """Stop listening and drain both transports concurrently."""
        timeout = self.config.limits.drain_timeout_s
        waits = []
        if self.rpc is not None:
            waits.append(self.rpc.drain(timeout))
        if self.http is not None:
            waits.append(self.http.drain(timeout))
        await asyncio.gather(*waits)
