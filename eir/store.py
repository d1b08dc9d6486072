"""Durable engine state (SPEC §7): SQLite in WAL mode behind the :class:`~eir.state.MemoryState` interface.

The decision core reads state synchronously, so the stores here *are* memory states (the hot state
lives in the inherited dicts) that also journal every change to SQLite:

* :class:`SqliteState` (the service): a background writer task group-commits the changes of many
  requests into one transaction on a dedicated thread. *Promise* writes (graces, activations, windows,
  quotas, detections, switch-backs, de-dup marks, events) are what an answer may depend on: the service
  awaits :meth:`SqliteState.barrier` before answering a decision that created or read one (see
  :meth:`SqliteState.needs_barrier`). *Soft* writes (observation counts) are flushed in the background and
  never awaited.
* :class:`SyncSqliteState` (``eir replay --state``): the same journal, committed inline every
  ``replay_commit_rows`` attaches and at close; no event loop, no thread.

Both load only the hot state at open (``eir.store_hot``) and prune what can no longer change a decision.
Details, guarantees and what a crash can lose: ``docs/state.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

import orjson

from eir.events import Event
from eir.state import MAX_OBSERVATIONS_PER_IMEI
from eir.store_journal import Journal, RulesProvider, StoreConfig
from eir.store_schema import (
    SELECT_OBSERVATIONS,
    Batch,
    StoreError,
    connect,
    connect_reader,
    database_bytes,
    iter_events,
    read_events,
    write_batch,
)

if TYPE_CHECKING:
    from eir.model import Decision

__all__ = ["DEFAULT_STATE_PATH", "RulesProvider", "SqliteState", "StoreConfig", "StoreError", "SyncSqliteState"]

#: Where ``eir serve`` keeps its state when no ``--state`` is given (relative to the working directory).
DEFAULT_STATE_PATH: Final = Path("var/eir-state.db")

HistoryRow = tuple[int, int, int, int, int]  # msisdn, slot, first, last, count
_T = TypeVar("_T")


class SqliteState(Journal):
    """The service's durable state: memory for ``decide``, group-committed to SQLite in the background.

    Open with ``await SqliteState.open(path)``; close with ``await state.close()``. Not thread-safe:
    every method is called from the event loop that opened it.
    """

    def __init__(self, path: Path, config: StoreConfig, rules: RulesProvider | None,
                 clock: Callable[[], float] | None = None) -> None:
        super().__init__(path, config, rules, clock)
        self._conn: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._read_executor: ThreadPoolExecutor | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        self._events_changed = asyncio.Event()
        self._next: asyncio.Future[None] | None = None  # completes when the next batch commits
        self._inflight: asyncio.Future[None] | None = None  # the batch being written, if it has promises
        self._soft_due = False
        self._closing = False
        self._tasks: list[asyncio.Task[None]] = []
        self._done: asyncio.Future[None] | None = None
        self.last_error: str | None = None
        self.stats: dict[str, float] = {
            "commits": 0, "commit_errors": 0, "rows": 0, "promise_rows": 0, "commit_seconds_total": 0.0,
            "commit_seconds_max": 0.0, "prunes": 0, "pruned": 0, "open_seconds": 0.0,
        }

    @classmethod
    async def open(cls, path: str | Path, config: StoreConfig | None = None, *,
                   rules: RulesProvider | None = None, clock: Callable[[], float] | None = None) -> SqliteState:
        """Open (or create) the state database, load the hot state and start the writer and pruner.

        ``rules`` returns the engine's current rule set; pruning needs its durations (without it only
        rule-independent state is pruned). ``clock`` (wall clock, epoch seconds; tests) caps the
        pruning clock. Raises :class:`StoreError` (locked, newer schema, unreadable).
        """
        started = time.perf_counter()
        self = cls(Path(path), config or StoreConfig(), rules, clock)
        self._observe_limit = 16 * self.config.observation_chunk
        self._lock.acquire()
        loop = self._loop = asyncio.get_running_loop()
        # One thread owns the write connection: every statement runs there, one batch per hop.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="eir-state")
        try:
            self._conn = await loop.run_in_executor(self._executor, connect, self.path, self.config.synchronous)
            await loop.run_in_executor(self._executor, self._load, self._conn)
            # Delivery reads (outbox, history) use their own connection on their own thread: WAL readers
            # never wait for the writer and see only committed rows.
            self._read_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="eir-state-read")
            self._reader = await loop.run_in_executor(self._read_executor, connect_reader, self.path)
        except (sqlite3.Error, OSError) as e:
            await self._shutdown()
            raise StoreError(f"{self.path}: cannot open the state database: {e}") from e
        except BaseException:
            await self._shutdown()
            raise
        self._done = loop.create_future()
        self._done.set_result(None)
        self._tasks = [loop.create_task(self._writer(), name="eir-state-writer"),
                       loop.create_task(self._ticker(), name="eir-state-ticker")]
        if self.config.prune_interval_s > 0:
            self._tasks.append(loop.create_task(self._pruner(), name="eir-state-pruner"))
        if self._dirty or self._maintenance:
            self._wake.set()
        self.stats["open_seconds"] = time.perf_counter() - started
        return self

    # --- what the service calls --------------------------------------------------------------------

    def has_pending(self) -> bool:
        """Whether promise writes are queued or being committed (an answer may be reading one)."""
        return self._dirty or self._inflight is not None

    def needs_barrier(self, d: Decision) -> bool:
        """Whether the answer to ``d`` must wait for :meth:`barrier`.

        A decision that changed state or emitted an event waits for its own commit; one that carries a
        deadline may have read a promise another request just made (its grace, its window) and waits
        while any promise is uncommitted. Everything else answers at once.
        """
        return bool(d.effects) or (d.deadline is not None and (self._dirty or self._inflight is not None))

    def barrier(self) -> Awaitable[None]:
        """An awaitable that completes once everything changed before the call is committed.

        Raises :class:`StoreError` if that commit fails (the change stays queued and is retried; the
        answer that depends on it must not be sent). Cancelling the await does not cancel the commit.
        """
        if self._closing:
            raise StoreError("state store is closed")
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
        # A burst of attaches: flush the observation counts before the next tick (bounds memory).
        self._observed = 0
        self._soft_due = True
        self._wake.set()

    async def flush(self) -> None:
        """Commit everything queued, observation counts included (tests, shutdown, benchmarks)."""
        self._queue_soft()  # what was observed up to now; later attaches go with the next ticks
        while self._dirty or self._inflight is not None or self._soft_queued() or self._maintenance:
            fut = self._next
            if fut is None:
                assert self._loop is not None
                fut = self._next = self._loop.create_future()
            self._wake.set()
            await asyncio.shield(fut)

    async def close(self) -> None:
        """Stop pruning, commit everything, stop the writer and release the database."""
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
            await self._shutdown()

    async def _shutdown(self) -> None:
        for t in self._tasks:
            t.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        loop = asyncio.get_running_loop()
        if self._read_executor is not None:
            if self._reader is not None:
                await loop.run_in_executor(self._read_executor, self._reader.close)
                self._reader = None
            self._read_executor.shutdown(wait=True)
            self._read_executor = None
        if self._executor is not None:
            conn = self._conn
            if conn is not None:
                await loop.run_in_executor(self._executor, _close_conn, conn)
                self._conn = None
            self._executor.shutdown(wait=True)
            self._executor = None
        self._close_lock()

    async def __aenter__(self) -> SqliteState:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- delivery ----------------------------------------------------------------------------------

    async def read_events(self, after: int, limit: int) -> list[tuple[int, bytes]]:
        """Committed events ``(seq, JSON bytes)`` with ``seq > after``, oldest first, at most ``limit``."""
        return await self._read(read_events, after, limit)

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

        Merges the committed rows with the counts not flushed yet (a flush running at the same moment
        may be counted on either side for an instant).
        """
        rows = await self._read(_observations, imei)
        merged: dict[tuple[int, int], list[int]] = {(m, s): [f, la, c] for m, s, f, la, c in rows}
        for i, m, s, t in (*self._obs_q, *self._obs):
            if i != imei:
                continue
            rec = merged.get((m, s))
            if rec is None:
                merged[(m, s)] = [t, t, 1]
            else:
                rec[0], rec[1], rec[2] = min(rec[0], t), max(rec[1], t), rec[2] + 1
        out = [(m, s, r[0], r[1], r[2]) for (m, s), r in merged.items()]
        out.sort(key=lambda r: -r[3])
        return out[:MAX_OBSERVATIONS_PER_IMEI]

    async def _read(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run ``fn(reader_connection, *args)`` on the reader thread."""
        reader, executor = self._reader, self._read_executor
        if reader is None or executor is None:
            raise StoreError("state database is closed")
        try:
            return await asyncio.get_running_loop().run_in_executor(executor, fn, reader, *args)
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
            "pending_observations": len(self._obs) + len(self._obs_q),
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

    async def _ticker(self) -> None:
        """Makes the soft part due every ``observation_flush_s``."""
        period = self.config.observation_flush_s or 0.5
        while True:
            await asyncio.sleep(period)
            if self._obs or self._soft_queued() or self._maintenance:
                self._soft_due = True
                self._wake.set()

    async def _pruner(self) -> None:
        while True:
            await asyncio.sleep(self.config.prune_interval_s)
            await self.prune()

    async def _writer(self) -> None:
        """The group-commit loop: one batch per wake-up, written on the store's thread."""
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
            if self._soft_due:
                self._soft_due = False
                self._queue_soft()
            if self._soft_queued():
                self._take_soft(b, cfg.observation_chunk)
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
            try:
                await loop.run_in_executor(executor, write_batch, conn, b)
            except sqlite3.Error as e:
                self._inflight = None
                self._requeue(b)
                self.stats["commit_errors"] += 1
                self.last_error = str(e)
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
            st["rows"] += len(b)
            st["promise_rows"] += b.promises
            st["commit_seconds_total"] += elapsed
            if elapsed > st["commit_seconds_max"]:
                st["commit_seconds_max"] = elapsed
            if b.events:
                changed, self._events_changed = self._events_changed, asyncio.Event()
                changed.set()
            if fut is not None and not fut.done():
                fut.set_result(None)
            if self._dirty or self._soft_queued() or self._maintenance:
                self._wake.set()


def _observations(conn: sqlite3.Connection, imei: int) -> list[HistoryRow]:
    return [(int(m), int(s), int(f), int(la), int(c)) for m, s, f, la, c in conn.execute(SELECT_OBSERVATIONS, (imei,))]


def _close_conn(conn: sqlite3.Connection) -> None:
    # A clean close checkpoints the WAL into the database file, so the next open reads one file.
    with contextlib.suppress(sqlite3.Error):
        conn.execute("PRAGMA optimize")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


class SyncSqliteState(Journal):
    """The durable state for ``eir replay --state``: same schema and journal, committed inline.

    Commits every ``replay_commit_rows`` attaches (always between two attaches, so a crash leaves a
    consistent prefix) and at :meth:`close`. Use as a context manager or call :meth:`close`.
    """

    def __init__(self, path: Path, config: StoreConfig, rules: RulesProvider | None,
                 clock: Callable[[], float] | None = None) -> None:
        super().__init__(path, config, rules, clock)
        self._conn: sqlite3.Connection | None = None
        self._since_prune = 0
        self.commits = 0

    @classmethod
    def open(cls, path: str | Path, config: StoreConfig | None = None, *,
             rules: RulesProvider | None = None, clock: Callable[[], float] | None = None) -> SyncSqliteState:
        """Open (or create) the state database and load the hot state (``rules``, ``clock``: as in
        :meth:`SqliteState.open`)."""
        self = cls(Path(path), config or StoreConfig(), rules, clock)
        self._observe_limit = self.config.replay_commit_rows
        self._lock.acquire()
        try:
            self._conn = connect(self.path, self.config.synchronous)
            self._load(self._conn)
        except sqlite3.Error as e:
            self._abort()
            raise StoreError(f"{self.path}: cannot open the state database: {e}") from e
        except BaseException:
            self._abort()
            raise
        return self

    def _abort(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._close_lock()

    def _observed_enough(self) -> None:
        # Engine.check applies a decision's effects before it observes the attach: committing here
        # always commits whole attaches.
        self.commit()

    def commit(self) -> None:
        """Write everything changed so far in one transaction."""
        if self._conn is None:
            raise StoreError("state database is closed")
        self._since_prune += self._observed
        if self._rules is not None and self._since_prune >= self.config.replay_prune_rows:
            self._since_prune = 0
            for _ in self._prune_steps():
                pass
        self._queue_soft()
        b = Batch()
        self._take_promises(b)
        self._take_soft(b, len(self._obs_q) + len(self._trim_q) + 1)
        self._take_maintenance(b, len(self._maintenance))
        if not len(b):
            return
        try:
            write_batch(self._conn, b)
        except sqlite3.Error as e:
            self._requeue(b)
            raise StoreError(f"{self.path}: state commit failed: {e}") from e
        self._committed(b)
        self.commits += 1

    def prune(self) -> int:
        """One pruning pass now (also run every ``replay_prune_rows`` attaches)."""
        dropped = 0
        for n in self._prune_steps():
            dropped = n
        return dropped

    def events_after(self, seq: int, limit: int) -> Iterator[Event]:
        """Committed outbox events after ``seq`` (call :meth:`commit` first to include the latest)."""
        if self._conn is None:
            raise StoreError("state database is closed")
        for _, body in read_events(self._conn, seq, limit):
            yield Event.from_dict(orjson.loads(body))

    def iter_event_rows(self, after: int = 0) -> Iterator[tuple[int, bytes]]:
        """Every committed ``(seq, JSON bytes)`` after ``after``."""
        if self._conn is None:
            raise StoreError("state database is closed")
        return iter_events(self._conn, after)

    def history_rows(self, imei: int) -> list[HistoryRow]:
        """The committed observation history of an IMEI (commit first to include the latest)."""
        if self._conn is None:
            raise StoreError("state database is closed")
        rows: list[Any] = self._conn.execute(SELECT_OBSERVATIONS, (imei,)).fetchall()
        return [tuple(r) for r in rows[:MAX_OBSERVATIONS_PER_IMEI]]

    def close(self) -> None:
        """Commit (pruning first when rules are known) and release the database."""
        if self._conn is None:
            return
        try:
            if self._rules is not None:
                self.prune()
            self.commit()
        finally:
            _close_conn(self._conn)
            self._conn = None
            self._close_lock()

    def __enter__(self) -> SyncSqliteState:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
