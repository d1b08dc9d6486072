"""Durable engine state (SPEC §7): SQLite in WAL mode behind the :class:`~eir.state.MemoryState` interface.

The decision core reads state synchronously, so the stores here *are* memory states (the hot state
lives in the inherited dicts) that also journal every change to SQLite (two files, see
:mod:`eir.store_schema`):

* :class:`SqliteState` (the service): a background writer task group-commits the *promise* writes
  (graces, activations, windows, quotas, detections, switch-backs, de-dup marks, events) of many requests
  into one transaction on a dedicated thread; the service awaits :meth:`SqliteState.barrier` before
  answering a decision that created or read one (:meth:`SqliteState.needs_barrier`). A second task
  writes the *soft* observation history every ``observation_flush_s`` on its own thread and file;
  nothing ever waits for it.
* :class:`~eir.store_sync.SyncSqliteState` (``eir replay --state``, :mod:`eir.store_sync`): the same
  journal, committed inline every ``replay_commit_rows`` attaches and at close; no event loop, no thread.

Both load only the hot state at open (:mod:`eir.store_hot`) and prune what can no longer change a
decision. Details, guarantees and what a crash can lose: ``docs/state.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

import orjson

from eir.events import Event
from eir.store_conn import HistoryRow, closer, connect_history, merge_pending, observations
from eir.store_journal import Journal, RulesProvider, StoreConfig
from eir.store_schema import (
    Batch,
    StoreError,
    connect,
    connect_reader,
    database_bytes,
    encode_batch,
    encode_history,
    history_path,
    read_events,
    write_batch,
    write_history,
)

if TYPE_CHECKING:
    from eir.model import Decision

__all__ = ["DEFAULT_STATE_PATH", "RulesProvider", "SqliteState", "StoreConfig", "StoreError"]

#: Where ``eir serve`` keeps its state when no ``--state`` is given (relative to the working directory).
DEFAULT_STATE_PATH: Final = Path("var/eir-state.db")

_T = TypeVar("_T")

log = logging.getLogger("eir.store")


class SqliteState(Journal):
    """The service's durable state: memory for ``decide``, group-committed to SQLite in the background.

    Open with ``await SqliteState.open(path)``; close with ``await state.close()``. Not thread-safe:
    every method is called from the event loop that opened it.
    """

    def __init__(self, path: Path, config: StoreConfig, rules: RulesProvider | None,
                 clock: Callable[[], float] | None = None) -> None:
        super().__init__(path, config, rules, clock)
        self._conn: sqlite3.Connection | None = None
        self._hconn: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._hreader: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None  # promise writes (state file)
        self._hexecutor: ThreadPoolExecutor | None = None  # history writes (history file)
        self._read_executor: ThreadPoolExecutor | None = None  # outbox and history reads
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        self._hwake = asyncio.Event()
        self._hlock = asyncio.Lock()
        self._hinflight: list[tuple[int, int, int]] = []
        self._events_changed = asyncio.Event()
        self._next: asyncio.Future[None] | None = None  # completes when the next batch commits
        self._inflight: asyncio.Future[None] | None = None  # the batch being written, if it has promises
        self._closing = False
        self._tasks: list[asyncio.Task[None]] = []
        self._done: asyncio.Future[None] | None = None
        self._observe_limit = config.history_batch_rows
        self.last_error: str | None = None
        #: Set when a background task died of a bug: every barrier fails from then on (readiness).
        self.broken: str | None = None
        self.stats: dict[str, float] = {
            "commits": 0, "commit_errors": 0, "promise_rows": 0, "commit_seconds_total": 0.0,
            "commit_seconds_max": 0.0, "history_writes": 0, "history_errors": 0, "history_rows": 0,
            "history_seconds_total": 0.0, "history_seconds_max": 0.0, "prunes": 0, "pruned": 0,
            "open_seconds": 0.0,
        }

    @classmethod
    async def open(cls, path: str | Path, config: StoreConfig | None = None, *,
                   rules: RulesProvider | None = None, clock: Callable[[], float] | None = None) -> SqliteState:
        """Open (or create) the state, load the hot state and start the writers and the pruner.

        ``rules`` returns the engine's current rule set; pruning needs its durations (without it only
        rule-independent state is pruned). ``clock`` (wall clock, epoch seconds; tests) caps the
        pruning clock. Raises :class:`StoreError` (locked, newer schema, unreadable).
        """
        started = time.perf_counter()
        self = cls(Path(path), config or StoreConfig(), rules, clock)
        self._lock.acquire()
        loop = self._loop = asyncio.get_running_loop()
        # One thread per connection: every statement of a connection runs on its thread, one batch
        # (one statement) per hop.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="eir-state")
        self._hexecutor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="eir-history")
        self._read_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="eir-state-read")
        try:
            sync = self.config.synchronous
            self._conn = await loop.run_in_executor(self._executor, connect, self.path, sync)
            self._hconn = await loop.run_in_executor(self._hexecutor, connect_history, self.path)
            # Both connections are idle until the writers start: loading reads them from one thread.
            await loop.run_in_executor(self._executor, self._load_both)
            # Delivery reads use their own connections: WAL readers never wait for the writers and
            # see only committed rows.
            self._reader = await loop.run_in_executor(self._read_executor, connect_reader, self.path)
            self._hreader = await loop.run_in_executor(self._read_executor, connect_reader,
                                                       history_path(self.path))
        except (sqlite3.Error, OSError) as e:
            await self._shutdown()
            raise StoreError(f"{self.path}: cannot open the state database: {e}") from e
        except BaseException:
            await self._shutdown()
            raise
        self._done = loop.create_future()
        self._done.set_result(None)
        self._tasks = [loop.create_task(self._writer(), name="eir-state-writer"),
                       loop.create_task(self._history_writer(), name="eir-history-writer")]
        if self.config.prune_interval_s > 0:
            self._tasks.append(loop.create_task(self._pruner(), name="eir-state-pruner"))
        for task in self._tasks:
            task.add_done_callback(self._task_ended)
        if self._dirty or self._maintenance:
            self._wake.set()
        self.stats["open_seconds"] = time.perf_counter() - started
        return self

    def _task_ended(self, task: asyncio.Task[None]) -> None:
        """A background task died of an unexpected error (a bug): fail loudly instead of hanging.

        Every answer waiting for a commit gets StoreError, and so does every later barrier: the store
        must not pretend promises are durable when nothing writes them any more.
        """
        if task.cancelled() or self._closing:
            return
        exc = task.exception()
        if exc is None:
            return
        self.broken = f"{task.get_name()} died: {type(exc).__name__}: {exc}"
        log.critical("state store stopped writing: %s", self.broken, exc_info=exc)
        for fut in (self._next, self._inflight):
            if fut is not None and not fut.done():
                fut.set_exception(StoreError(self.broken))
                fut.exception()
        self._next = self._inflight = None

    def _load_both(self) -> None:
        assert self._conn is not None and self._hconn is not None
        self._load(self._conn, self._hconn)

    # --- what the service calls --------------------------------------------------------------------

    def has_pending(self) -> bool:
        """Whether promise writes are queued or being committed (an answer may be reading one)."""
        return self._dirty or self._inflight is not None

    def needs_barrier(self, d: Decision) -> bool:
        """Whether the answer to ``d`` must wait for :meth:`barrier`.

        A decision that changed state or emitted an event waits for its own commit. One that carries a
        deadline may have read a promise another request just made (the second attach of a subscriber
        sees the grace the first one created): it waits while a grace, activation or window with that
        very deadline is uncommitted (an unrelated promise with an equal deadline only costs a wait).
        Everything else answers at once.
        """
        if d.effects:
            return True
        dl = d.deadline
        return dl is not None and (dl in self._dl_queued or dl in self._dl_writing)

    def barrier(self) -> Awaitable[None]:
        """An awaitable that completes once every promise changed before the call is committed.

        Raises :class:`StoreError` if that commit fails (the change stays queued and is retried; the
        answer that depends on it must not be sent) or the store is closed. Cancelling the await does
        not cancel the commit.
        """
        if self._closing:
            raise StoreError("state store is closed")
        if self.broken is not None:
            raise StoreError(f"state store is not writing: {self.broken}")
        if self._dirty:
            fut = self._next
            if fut is None:
                assert self._loop is not None
                fut = self._next = self._loop.create_future()
                self._wake.set()
            return asyncio.shield(fut)
        if self._inflight is not None:
            return asyncio.shield(self._inflight)
        assert self._done is not None
        return self._done

    def _changed(self) -> None:
        self._dirty = True
        self._wake.set()

    def _observed_enough(self) -> None:
        # A full batch: write it now rather than at the next tick (also bounds memory under bursts).
        if not self._hwake.is_set():
            self._hwake.set()

    async def flush(self) -> None:
        """Commit everything queued, the observation history included (shutdown, tests, benchmarks)."""
        while self._dirty or self._inflight is not None or self._maintenance:
            if self.broken is not None:
                raise StoreError(f"state store is not writing: {self.broken}")
            fut = self._next
            if fut is None:
                assert self._loop is not None
                fut = self._next = self._loop.create_future()
            self._wake.set()
            await asyncio.shield(fut)
        await self._write_history(drain=True)

    async def close(self) -> None:
        """Stop pruning, commit everything, stop the writers and release the database."""
        if self._closing:
            return
        pruner = [t for t in self._tasks if t.get_name() == "eir-state-pruner"]
        for t in pruner:
            t.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*pruner)
        try:
            await self.flush()
        finally:
            self._closing = True
            changed, self._events_changed = self._events_changed, asyncio.Event()
            changed.set()  # release long-polls
            await self._shutdown()

    async def _shutdown(self) -> None:
        for t in self._tasks:
            t.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        loop = asyncio.get_running_loop()
        for ex_name, conn_names in (("_read_executor", ("_reader", "_hreader")), ("_executor", ("_conn",)),
                                    ("_hexecutor", ("_hconn",))):
            executor: ThreadPoolExecutor | None = getattr(self, ex_name)
            if executor is None:
                continue
            for name in conn_names:
                conn: sqlite3.Connection | None = getattr(self, name)
                if conn is not None:
                    close = conn.close if name in ("_reader", "_hreader") else closer(conn)
                    await loop.run_in_executor(executor, close)
                    setattr(self, name, None)
            executor.shutdown(wait=True)
            setattr(self, ex_name, None)
        self._close_lock()

    async def __aenter__(self) -> SqliteState:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- delivery and reads ------------------------------------------------------------------------

    async def read_events(self, after: int, limit: int) -> list[tuple[int, bytes]]:
        """Committed events ``(seq, JSON bytes)`` with ``seq > after``, oldest first, at most ``limit``."""
        return await self._read(self._reader, read_events, after, limit)

    async def wait_for_events(self, after: int, timeout: float) -> bool:
        """Wait until an event with ``seq > after`` is committed; False if ``timeout`` passes first."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while self.committed_seq <= after:
            remaining = end - loop.time()
            if remaining <= 0 or self._closing:
                return False
            changed = self._events_changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), remaining)
        return True

    async def ack(self, consumer: str, seq: int) -> None:
        """Durably record that ``consumer`` has everything up to ``seq`` (webhook delivery)."""
        self.set_consumer(consumer, seq)
        await self.barrier()

    def events_after(self, seq: int, limit: int) -> Iterator[Event]:
        """Committed outbox events after ``seq`` (synchronous; prefer :meth:`read_events`)."""
        conn = connect_reader(self.path)
        try:
            rows = read_events(conn, seq, limit)
        finally:
            conn.close()
        for _, body in rows:
            yield Event.from_dict(orjson.loads(body))

    async def history_rows(self, imei: int) -> list[HistoryRow]:
        """The full observation history of an IMEI: ``(msisdn, slot, first, last, count)``, newest first.

        Merges the committed rows with the attaches not written yet (during the instant a history
        write commits, its attaches may be counted on both sides).
        """
        rows = await self._read(self._hreader, observations, imei)
        return merge_pending(rows, imei, (*self._hinflight, *self._obs))

    async def _read(self, conn: sqlite3.Connection | None, fn: Callable[..., _T], *args: Any) -> _T:
        """Run ``fn(conn, *args)`` on the reader thread."""
        executor = self._read_executor
        if conn is None or executor is None:
            raise StoreError("state database is closed")
        try:
            return await asyncio.get_running_loop().run_in_executor(executor, fn, conn, *args)
        except sqlite3.Error as e:
            raise StoreError(f"{self.path}: read failed: {e}") from e

    def metrics(self) -> dict[str, float]:
        """Gauges and counters for /metrics (outbox size, queue depths, commit timings)."""
        m = dict(self.stats)
        m.update({
            "last_seq": self.next_seq - 1,
            "committed_seq": self.committed_seq,
            "outbox_backlog": self.committed_seq - min(self.consumers.values(), default=self.committed_seq),
            "pending_events": len(self._new_events),
            "pendingobservations": len(self._obs) + len(self._hinflight),
            "graces": len(self.graces), "activations": len(self.activations), "windows": len(self.windows),
            "quotas": len(self.quotas), "detections": len(self.detections), "marks": len(self.marks),
            "histories": len(self.histories),
            "db_bytes": database_bytes(self.path),
        })
        for name, seq in self.consumers.items():
            m[f"consumer_lag:{name}"] = self.committed_seq - seq
        return m

    async def prune(self) -> int:
        """One pruning pass (the pruner task runs it every ``prune_interval_s``); returns entries dropped."""
        dropped = 0
        for n in self._prune_steps():
            dropped = n
            await asyncio.sleep(0)  # let decisions run between chunks
        self.stats["prunes"] += 1
        self.stats["pruned"] += dropped
        if self._maintenance:
            self._wake.set()
        return dropped

    # --- background tasks --------------------------------------------------------------------------

    async def _pruner(self) -> None:
        while True:
            await asyncio.sleep(self.config.prune_interval_s)
            await self.prune()

    async def _writer(self) -> None:
        """The group-commit loop of the promises: one batch per wake-up, written on the store's thread."""
        cfg = self.config
        loop = asyncio.get_running_loop()
        assert self._executor is not None and self._conn is not None
        executor, conn = self._executor, self._conn
        backoff = cfg.retry_backoff_s
        while True:
            await self._wake.wait()
            self._wake.clear()
            if cfg.commit_delay_s:
                await asyncio.sleep(cfg.commit_delay_s)
            b = Batch()
            if self._dirty:
                self._take_promises(b)
            if self._maintenance:
                self._take_maintenance(b, 1)
            fut, self._next = self._next, None
            if not len(b):
                if fut is not None:
                    fut.set_result(None)
                continue
            if b.promises:
                if fut is None:
                    fut = loop.create_future()
                self._inflight = fut
            started = loop.time()
            params = encode_batch(b) if b.promises else None
            try:
                await loop.run_in_executor(executor, write_batch, conn, b, params)
            except sqlite3.Error as e:
                self._inflight = None
                self._requeue(b)
                self.stats["commit_errors"] += 1
                self.last_error = str(e)
                log.error("state commit failed (%d rows kept, retrying): %s", len(b), e)
                if fut is not None and not fut.done():
                    fut.set_exception(StoreError(f"state commit failed: {e}"))
                    fut.exception()  # retrieved: the awaiters (if any) get it through their shields
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, cfg.retry_backoff_max_s)
                self._wake.set()
                continue
            backoff = cfg.retry_backoff_s
            elapsed = loop.time() - started
            self._inflight = None
            self._committed(b)
            st = self.stats
            st["commits"] += 1
            st["promise_rows"] += b.promises
            st["commit_seconds_total"] += elapsed
            if elapsed > st["commit_seconds_max"]:
                st["commit_seconds_max"] = elapsed
            if b.events:
                changed, self._events_changed = self._events_changed, asyncio.Event()
                changed.set()
            if fut is not None and not fut.done():
                fut.set_result(None)
            if self._dirty or self._maintenance:
                self._wake.set()

    async def _history_writer(self) -> None:
        """Writes the observation history every ``observation_flush_s``, or when a batch is full."""
        period = self.config.observation_flush_s or 2.0
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._hwake.wait(), period)
            self._hwake.clear()
            await self._write_history()

    async def _write_history(self, drain: bool = False) -> None:
        """Write what was observed so far: one batch, and more only while full batches wait (or until
        nothing is left with ``drain``). Attaches arriving meanwhile go with the next batch: writing
        each leftover at once would make the batches small again."""
        async with self._hlock:
            loop = asyncio.get_running_loop()
            assert self._hexecutor is not None and self._hconn is not None
            full = self.config.history_batch_rows
            first = True
            while (self._obs or self._trim) and (first or drain or len(self._obs) >= full):
                first = False
                hb = self._take_history(full)
                self._hinflight = hb.observations
                started = loop.time()
                try:
                    params = encode_history(hb)
                    await loop.run_in_executor(self._hexecutor, write_history, self._hconn, hb, params)
                except sqlite3.Error as e:
                    self._requeue_history(hb)
                    self.stats["history_errors"] += 1
                    self.last_error = str(e)
                    log.error("history write failed (%d attaches kept, retrying): %s", len(hb.observations), e)
                    return  # the next tick retries
                finally:
                    self._hinflight = []
                elapsed = loop.time() - started
                st = self.stats
                st["history_writes"] += 1
                st["history_rows"] += len(hb.observations)
                st["history_seconds_total"] += elapsed
                if elapsed > st["history_seconds_max"]:
                    st["history_seconds_max"] = elapsed
