"""The durable state of ``eir replay --state``: the service's journal (:mod:`eir.store_journal`), committed
inline every ``replay_commit_rows`` attaches, no event loop and no thread. See ``docs/state.md``."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson

from eir.events import Event
from eir.state import MAX_OBSERVATIONS_PER_IMEI
from eir.store_conn import HistoryRow, closer, connect_history, observations
from eir.store_journal import Journal, RulesProvider, StoreConfig
from eir.store_schema import Batch, StoreError, connect, iter_events, read_events, write_batch, write_history

__all__ = ["SyncSqliteState"]


class SyncSqliteState(Journal):
    """The durable state for ``eir replay --state``: same files and journal, committed inline.

    Commits every ``replay_commit_rows`` attaches (always between two attaches, so a crash leaves a
    consistent prefix) and at :meth:`close`. Use as a context manager or call :meth:`close`.
    """

    def __init__(self, path: Path, config: StoreConfig, rules: RulesProvider | None,
                 clock: Callable[[], float] | None = None) -> None:
        super().__init__(path, config, rules, clock)
        self._conn: sqlite3.Connection | None = None
        self._hconn: sqlite3.Connection | None = None
        self._since_prune = 0
        self.commits = 0

    @classmethod
    def open(cls, path: str | Path, config: StoreConfig | None = None, *,
             rules: RulesProvider | None = None, clock: Callable[[], float] | None = None) -> SyncSqliteState:
        """Open (or create) the state and load the hot state (``rules``, ``clock``: as in
        :meth:`SqliteState.open`)."""
        self = cls(Path(path), config or StoreConfig(), rules, clock)
        self._observe_limit = self.config.replay_commit_rows
        self._lock.acquire()
        try:
            self._conn = connect(self.path, self.config.synchronous)
            self._hconn = connect_history(self.path)
            self._load(self._conn, self._hconn)
        except sqlite3.Error as e:
            self._abort()
            raise StoreError(f"{self.path}: cannot open the state database: {e}") from e
        except BaseException:
            self._abort()
            raise
        return self

    def _abort(self) -> None:
        for conn in (self._conn, self._hconn):
            if conn is not None:
                conn.close()
        self._conn = self._hconn = None
        self._close_lock()

    def _observed_enough(self) -> None:
        # Engine.check applies a decision's effects before it observes the attach: committing here
        # always commits whole attaches.
        self.commit()

    def commit(self) -> None:
        """Write everything changed so far (promises, then the history)."""
        if self._conn is None or self._hconn is None:
            raise StoreError("state database is closed")
        self._since_prune += len(self._obs)
        if self._rules is not None and self._since_prune >= self.config.replay_prune_rows:
            self._since_prune = 0
            for _ in self._prune_steps():
                pass
        b = Batch()
        self._take_promises(b)
        self._take_maintenance(b, len(self._maintenance))
        try:
            if len(b):
                write_batch(self._conn, b)
        except sqlite3.Error as e:
            self._requeue(b)
            raise StoreError(f"{self.path}: state commit failed: {e}") from e
        self._committed(b)
        while self._obs or self._trim:
            hb = self._take_history()
            try:
                write_history(self._hconn, hb)
            except sqlite3.Error as e:
                self._requeue_history(hb)
                raise StoreError(f"{self.path}: history write failed: {e}") from e
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
        if self._hconn is None:
            raise StoreError("state database is closed")
        return observations(self._hconn, imei)[:MAX_OBSERVATIONS_PER_IMEI]

    def close(self) -> None:
        """Commit (pruning first when rules are known) and release the database."""
        if self._conn is None or self._hconn is None:
            return
        try:
            if self._rules is not None:
                self.prune()
            self.commit()
        finally:
            closer(self._conn)()
            closer(self._hconn)()
            self._conn = self._hconn = None
            self._close_lock()

    def __enter__(self) -> SyncSqliteState:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
