"""The journal under the durable stores: a MemoryState that remembers what changed, in batches.

:class:`Journal` overrides every write of :class:`~eir.state.MemoryState`: memory first (``decide``
reads it), then the changed key is remembered. A batch (:class:`~eir.store_schema.Batch`) is built
from the *current* in-memory value of every changed key, so a key changed twice between commits is
written once and the database always converges to the memory state. :mod:`eir.store` decides when
batches are written (group commit on a thread, or inline for replay). Pruning lives here too: it drops
from memory what can no longer change a decision and marks those keys, so the next commit deletes them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from eir.events import Event
from eir.state import (
    COUNT_ONE,
    KEY_SHIFT,
    SLOT_BITS,
    TIME_BITS,
    TIME_MASK,
    Detection,
    History,
    MemoryState,
    TravelerWindow,
    history_last_time,
    observe_history,
    unpack_history,
)
from eir.store_hot import HOUR, Horizon, LoadStats, load_hot
from eir.store_schema import (
    DEL_SWITCHBACK_BEFORE,
    MAX_CHUNK,
    PRUNE_OUTBOX,
    Batch,
    DbLock,
    HistoryBatch,
    read_changes,
)

if TYPE_CHECKING:
    import sqlite3

    from eir.rules import RuleSet

RulesProvider = Callable[[], "RuleSet | None"]


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """Tuning of the durable store; the defaults are what ``eir serve`` uses."""

    #: ``FULL``: every commit is fsync'ed, so answered deadlines also survive power loss (default).
    #: ``NORMAL``: survives ``kill -9`` (the OS keeps the WAL) but a power cut may lose the last commits.
    synchronous: str = "FULL"
    #: Extra time the writer waits to gather more changes into a commit. 0 = commit as soon as the
    #: previous commit is done (requests arriving meanwhile form the next group).
    commit_delay_s: float = 0.0
    #: The observation history is written at least this often (what a crash can lose of it)...
    observation_flush_s: float = 2.0
    #: ...and as soon as this many attaches wait. Big batches are what make it cheap: every batch
    #: rewrites the history pages it touches, 100 000 attaches cost 3.2 us each, 25 000 cost 5 us.
    history_batch_rows: int = 100_000
    #: How often the pruner runs, and the margin it keeps for attaches that arrive out of time order.
    prune_interval_s: float = 60.0
    prune_slack_s: int = 86_400
    #: In-memory entries examined per event-loop turn while pruning.
    prune_chunk: int = 20_000
    #: Keep delivered events this long after their time (0 = keep every event); never deletes an event
    #: a registered consumer (webhook) has not acknowledged.
    outbox_retention_s: int = 0
    #: Outbox rows deleted per prune statement (outbox retention).
    outbox_prune_chunk: int = 10_000
    #: Replay (SyncSqliteState): commit every this many attaches, prune every this many.
    replay_commit_rows: int = 100_000
    replay_prune_rows: int = 2_000_000
    #: Back-off after a failed commit (doubles up to the maximum); waiting answers get StoreError.
    retry_backoff_s: float = 0.05
    retry_backoff_max_s: float = 2.0

    def __post_init__(self) -> None:
        if self.synchronous not in ("FULL", "NORMAL"):
            raise ValueError(f"synchronous must be FULL or NORMAL, not {self.synchronous!r}")
        for name in ("commit_delay_s", "observation_flush_s", "prune_interval_s", "retry_backoff_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        for name in ("history_batch_rows", "prune_chunk", "outbox_prune_chunk", "replay_commit_rows",
                     "replay_prune_rows"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        for name in ("history_batch_rows", "replay_commit_rows"):
            if getattr(self, name) > MAX_CHUNK:
                raise ValueError(f"{name} must be <= {MAX_CHUNK}")


class Journal(MemoryState):
    """A MemoryState that remembers which keys changed since the last commit, and builds batches.

    A batch is built from the *current* in-memory value of every changed key, so a key changed twice
    between commits is written once, and the database always converges to the memory state.
    """

    def __init__(self, path: Path, config: StoreConfig, rules: RulesProvider | None,
                 clock: Callable[[], float] | None = None) -> None:
        super().__init__(keep_outbox=False)  # committed events are read back from the outbox table
        self.path = path
        self.config = config
        self._rules = rules
        self._clock = clock or time.time
        self._lock = DbLock(path)
        self.high_water = 0  # latest attach time seen: the clock of pruning (log time in a replay)
        self._saved_high_water = 0
        self.committed_seq = 0
        self.load_stats = LoadStats()
        self.consumers: dict[str, int] = {}
        self._kinds: dict[str, int] = {}
        self._kind_names: dict[int, str] = {}
        self._new_kinds: list[tuple[int, str]] = []
        # Promise changes since the last batch.
        self._dirty = False
        # Deadlines of the graces, activations and windows not committed yet (queued / being written):
        # an answer carrying one of them may have read such a promise and must wait for it.
        self._dl_queued: set[int] = set()
        self._dl_writing: set[int] = set()
        self._d_grace: set[tuple[int, int, int]] = set()
        self._d_activation: set[int] = set()
        self._d_window: set[int] = set()
        self._d_quota: set[str] = set()
        self._d_detection: set[int] = set()
        self._d_switchback: set[int] = set()
        self._d_mark: set[tuple[str, int, int, int]] = set()
        self._d_consumer: dict[str, int] = {}
        self._new_events: list[Event] = []
        self._new_changes: list[tuple[int, int, bytes]] = []
        # Soft changes (history file): one (imei, msisdn << SLOT_BITS | slot, time) tuple per attach,
        # the cheapest thing to do on the hot path; SQLite aggregates them (GROUP BY) into one upsert
        # per (imei, msisdn, slot) when they are written, and trims the IMEIs in `_trim`.
        self._obs: list[tuple[int, int, int]] = []
        self._trim: set[int] = set()
        #: Attaches written so far: each written attach gets an ordinal (orders same-second attaches).
        self.attach_ord = 0
        self._maintenance: list[tuple[str, tuple[int, ...]]] = []
        self._observe_limit = 1 << 62

    # --- write overrides: memory first (decide reads it), then remember the key --------------------

    def _changed(self) -> None:
        """The first promise change since the last batch (the async store wakes its writer)."""
        self._dirty = True

    def observe(self, imei: int, msisdn: int, slot: int, t: int) -> None:
        # The hot path of every attach: MemoryState.observe inlined (tests/test_store.py checks that
        # both keep the same in-memory history) plus the observation delta for the next soft flush.
        hs = self.histories
        key = msisdn << SLOT_BITS | slot
        table_observe = self._table_observe
        done = False
        if table_observe is not None:
            # The accelerator's table updates the history in place (as MemoryState.observe); it never
            # evicts (it leaves a full History to the code below, which then sees it unchanged), so only
            # a cold IMEI needs its rows on disk trimmed.
            if imei not in hs:
                self._trim.add(imei)
            done = table_observe(imei, msisdn, slot, t, History)
        if not done:
            v = hs.get(imei)
            if v is None:
                # Cold IMEI: its rows on disk were not in memory, so the new ones may push it past the bound.
                self._trim.add(imei)
                if 0 <= t <= TIME_MASK:
                    hs[imei] = key << KEY_SHIFT | COUNT_ONE | t << TIME_BITS | t
                else:
                    h = hs[imei] = History()
                    observe_history(h, key, t)
            elif isinstance(v, int) and v >> KEY_SHIFT == key and t <= TIME_MASK:
                last = v & TIME_MASK
                hs[imei] = v + COUNT_ONE + t - last if t > last else v + COUNT_ONE
            else:
                if isinstance(v, int):
                    v = hs[imei] = unpack_history(v)
                if observe_history(v, key, t):
                    self._trim.add(imei)  # memory dropped its oldest row: the disk drops it too
        obs = self._obs
        obs.append((imei, key, t))
        if t > self.high_water:
            self.high_water = t
        if len(obs) >= self._observe_limit:
            self._observed_enough()

    def _observed_enough(self) -> None:
        """Called when ``_observe_limit`` attaches wait for the history (the replay store commits)."""

    def put_grace(self, kind: int, imei: int, msisdn: int, start: int, deadline: int) -> None:
        super().put_grace(kind, imei, msisdn, start, deadline)
        self._d_grace.add((imei, msisdn, kind))
        self._dl_queued.add(deadline)
        if not self._dirty:
            self._changed()

    def drop_graces(self, imei: int, msisdn: int) -> list[int]:
        dropped = super().drop_graces(imei, msisdn)
        for kind in dropped:
            self._d_grace.add((imei, msisdn, kind))
        if dropped and not self._dirty:
            self._changed()
        return dropped

    def drop_imei_graces(self, imei: int, kind: int | None = None) -> list[tuple[int, int, int]]:
        keys = super().drop_imei_graces(imei, kind)
        self._d_grace.update(keys)
        if keys and not self._dirty:
            self._changed()
        return keys

    def drop_activation(self, device_key: int) -> bool:
        dropped = super().drop_activation(device_key)
        if dropped:
            self._d_activation.add(device_key)
            if not self._dirty:
                self._changed()
        return dropped

    def drop_detection(self, imei: int) -> bool:
        dropped = super().drop_detection(imei)
        if dropped:
            self._d_detection.add(imei)
            if not self._dirty:
                self._changed()
        return dropped

    def clear_switchbacks(self, imei: int) -> bool:
        cleared = super().clear_switchbacks(imei)
        if cleared:
            self._d_switchback.add(imei)
            if not self._dirty:
                self._changed()
        return cleared

    def append_change(self, t: int, body: bytes) -> int:
        seq = super().append_change(t, body)
        self._new_changes.append((seq, t, body))
        if not self._dirty:
            self._changed()
        return seq

    def put_activation(self, device_key: int, first_seen: int, deadline: int) -> None:
        super().put_activation(device_key, first_seen, deadline)
        self._d_activation.add(device_key)
        self._dl_queued.add(deadline)
        if not self._dirty:
            self._changed()

    def put_window(self, imei: int, w: TravelerWindow) -> None:
        super().put_window(imei, w)
        self._d_window.add(imei)
        self._dl_queued.add(w.deadline)
        if not self._dirty:
            self._changed()

    def put_quota(self, identity: str, start: int) -> None:
        super().put_quota(identity, start)
        self._d_quota.add(identity)
        if not self._dirty:
            self._changed()

    def add_switchback(self, imei: int, t: int, window_s: int) -> None:
        super().add_switchback(imei, t, window_s)
        self._d_switchback.add(imei)
        if not self._dirty:
            self._changed()

    def put_detection(self, imei: int, d: Detection) -> None:
        super().put_detection(imei, d)
        self._d_detection.add(imei)
        if not self._dirty:
            self._changed()

    def put_mark(self, key: tuple[str, int, int, int], t: int) -> None:
        super().put_mark(key, t)
        self._d_mark.add(key)
        if t > self.high_water:
            self.high_water = t
        if not self._dirty:
            self._changed()

    def append_event(self, ev: Event) -> Event:
        ev = super().append_event(ev)
        self._new_events.append(ev)
        if not self._dirty:
            self._changed()
        return ev

    def set_consumer(self, name: str, seq: int) -> None:
        """Record a delivery consumer's last acknowledged ``seq`` (committed with the next batch)."""
        if seq > self.consumers.get(name, 0):
            self.consumers[name] = seq
            self._d_consumer[name] = seq
            if not self._dirty:
                self._changed()

    def consumer_seq(self, name: str) -> int:
        """The last ``seq`` a consumer acknowledged (0 = none yet)."""
        return self.consumers.get(name, 0)

    def attach_consumer(self, name: str) -> int:
        """Register a delivery consumer and return its last acknowledged ``seq``. From now on the outbox
        backlog counts what it has not acknowledged, even before its first acknowledgement (a receiver
        that is down from the start must show up as a growing backlog)."""
        return self.consumers.setdefault(name, 0)

    # --- batches -----------------------------------------------------------------------------------

    def _kind_id(self, name: str) -> int:
        i = self._kinds.get(name)
        if i is None:
            i = self._kinds[name] = len(self._kinds) + 1
            self._kind_names[i] = name
            self._new_kinds.append((i, name))
        return i

    def _take_promises(self, b: Batch) -> None:
        """Move every promise change into ``b`` (rows from the current memory values)."""
        self._dirty = False
        self._dl_writing, self._dl_queued = self._dl_queued, set()
        graces = self.graces
        for key in self._d_grace:
            g = graces.get(key)
            if g is None:
                b.grace_del.append(key)
            else:
                b.grace_put.append((key[0], key[1], key[2], g.start, g.deadline))
        self._d_grace = set()
        for dk in self._d_activation:
            a = self.activations.get(dk)
            if a is None:
                b.activation_del.append(dk)
            else:
                b.activation_put.append((dk, a.first_seen, a.deadline))
        self._d_activation = set()
        for imei in self._d_window:
            w = self.windows.get(imei)
            if w is None:
                b.window_del.append(imei)
            else:
                b.window_put.append((imei, w.start, w.deadline, w.period_end, w.identity, w.msisdn))
        self._d_window = set()
        for ident in self._d_quota:
            q = self.quotas.get(ident)
            if q is None:
                b.quota_del.append(ident)
            else:
                b.quota_put.append((ident, q))
        self._d_quota = set()
        for imei in self._d_detection:
            det = self.detections.get(imei)
            if det is None:
                b.detection_del.append(imei)
            else:
                b.detection_put.append((imei, det.time, int(det.enforced), list(det.subscribers)))
        self._d_detection = set()
        for imei in self._d_switchback:
            h = self.histories.get(imei)
            sb = h.switchbacks if isinstance(h, History) else None
            if sb:
                b.switchback_put.append((imei, max(sb), list(sb)))
            else:
                b.switchback_del.append(imei)
        self._d_switchback = set()
        marks = self.marks
        kid = self._kind_id
        for mk in self._d_mark:
            t = marks.get(mk)
            if t is None:
                b.mark_del.append((kid(mk[0]), mk[1], mk[2], mk[3]))
            else:
                b.mark_put.append((kid(mk[0]), mk[1], mk[2], mk[3], t))
        self._d_mark = set()
        b.mark_kinds, self._new_kinds = self._new_kinds, []
        b.events, self._new_events = self._new_events, []
        b.changes, self._new_changes = self._new_changes, []
        if b.changes:
            b.meta.append(("journal_id", self.journal_id))
        if b.events:
            b.meta.append(("last_seq", b.events[-1].seq))
        if self.high_water != self._saved_high_water:
            b.meta.append(("high_water", self.high_water))
            self._saved_high_water = self.high_water
        if self._d_consumer:
            b.consumers = list(self._d_consumer.items())
            self._d_consumer = {}

    def _take_history(self, limit: int = MAX_CHUNK) -> HistoryBatch:
        """The attaches observed so far (at most ``limit``), numbered from ``attach_ord``."""
        hb = HistoryBatch()
        obs = self._obs
        if len(obs) <= limit:
            hb.observations, self._obs = obs, []
        else:
            hb.observations, self._obs = obs[:limit], obs[limit:]
        if hb.observations:
            hb.ord_base = self.attach_ord
            self.attach_ord += len(hb.observations)
            hb.meta.append(("attach_ord", self.attach_ord))  # a restart numbers on from here
        if not self._obs and self._trim:
            hb.trim = list(self._trim)
            self._trim = set()
        hb.meta.append(("high_water", self.high_water))
        return hb

    def _requeue_history(self, hb: HistoryBatch) -> None:
        """Put a history batch that failed to commit back (its attaches are renumbered next time)."""
        self._obs = hb.observations + self._obs
        self._trim.update(hb.trim)

    def _take_maintenance(self, b: Batch, n: int) -> None:
        b.maintenance, self._maintenance = self._maintenance[:n], self._maintenance[n:]

    def _requeue(self, b: Batch) -> None:
        """Put a batch that failed to commit back: nothing it carried is lost, it is retried."""
        self._dl_queued |= self._dl_writing
        self._dl_writing = set()
        self._d_grace.update(r[:3] for r in b.grace_put)
        self._d_grace.update(b.grace_del)
        self._d_activation.update(r[0] for r in b.activation_put)
        self._d_activation.update(b.activation_del)
        self._d_window.update(r[0] for r in b.window_put)
        self._d_window.update(b.window_del)
        self._d_quota.update(r[0] for r in b.quota_put)
        self._d_quota.update(b.quota_del)
        self._d_detection.update(r[0] for r in b.detection_put)
        self._d_detection.update(b.detection_del)
        self._d_switchback.update(r[0] for r in b.switchback_put)
        self._d_switchback.update(b.switchback_del)
        names = self._kind_names
        self._d_mark.update((names[r[0]], r[1], r[2], r[3]) for r in b.mark_put)
        self._d_mark.update((names[r[0]], r[1], r[2], r[3]) for r in b.mark_del)
        self._new_kinds = b.mark_kinds + self._new_kinds
        self._new_events = b.events + self._new_events
        self._new_changes = b.changes + self._new_changes
        self._saved_high_water = -1  # rewrite it
        for name, seq in b.consumers:
            self._d_consumer.setdefault(name, seq)
        self._maintenance = b.maintenance + self._maintenance
        if b.promises:
            self._dirty = True

    def _committed(self, b: Batch) -> None:
        self._dl_writing = set()
        if b.events:
            self.committed_seq = b.events[-1].seq

    # --- load and prune ----------------------------------------------------------------------------

    def _current_rules(self) -> RuleSet | None:
        return self._rules() if self._rules is not None else None

    def _load(self, conn: sqlite3.Connection, hconn: sqlite3.Connection) -> LoadStats:
        """Fill memory from the two files (runs before the state is shared with anyone)."""
        stats = load_hot(conn, hconn, self, self.config.prune_slack_s, self._current_rules(), self._kinds,
                         self.consumers, int(self._clock()))
        self._kind_names = {i: n for n, i in self._kinds.items()}
        # The registry-change journal is small (control-plane operations) and replayed onto every
        # snapshot that is loaded: all of it stays in memory.
        self.changes = read_changes(conn)
        self.next_change_seq = self.changes[-1][0] + 1 if self.changes else 1
        row = conn.execute("SELECT value FROM meta WHERE key = 'journal_id'").fetchone()
        if row is not None:
            self.journal_id = int(row[0])
        self.high_water = self._saved_high_water = stats.high_water
        self.attach_ord = stats.attach_ord
        self.committed_seq = stats.next_seq - 1
        # Rows that load_hot skipped as expired are deleted by the first commit.
        self._d_mark.update(stats.expired_marks)
        self._d_window.update(stats.expired_windows)
        self._d_quota.update(stats.expired_quotas)
        self._maintenance.append((DEL_SWITCHBACK_BEFORE, (self._horizon().history_cutoff,)))
        if stats.expired_marks or stats.expired_windows or stats.expired_quotas:
            self._dirty = True
        stats.expired_marks, stats.expired_windows, stats.expired_quotas = [], [], []
        self.load_stats = stats
        return stats

    def _horizon(self) -> Horizon:
        # The engine clock is the latest attach time, but never later than the wall clock: a caller
        # sending a far-future time must not make the pruner forget live state.
        now = min(self.high_water, int(self._clock()))
        return Horizon.of(now, self.config.prune_slack_s, self._current_rules())

    def _prune_steps(self) -> Iterator[int]:
        """Drop from memory what can no longer change a decision; yields after every chunk.

        Dropped keys are marked changed, so the next commit deletes their rows. Between chunks the
        dicts may change (the service keeps deciding): each entry is re-checked before it is dropped.
        """
        hz = self._horizon()
        chunk = self.config.prune_chunk
        dropped = 0
        marks = self.marks
        items = list(marks.items())
        for i in range(0, len(items), chunk):
            for key, t in items[i:i + chunk]:
                if hz.mark_expired(key, t) and marks.get(key) == t:
                    del marks[key]
                    self._d_mark.add(key)
                    dropped += 1
            yield dropped
        windows = self.windows
        for imei, w in list(windows.items()):
            if hz.window_expired(w) and windows.get(imei) is w:
                del windows[imei]
                self._d_window.add(imei)
                dropped += 1
        quotas = self.quotas
        for ident, start in list(quotas.items()):
            if hz.quota_expired(start) and quotas.get(ident) == start:
                del quotas[ident]
                self._d_quota.add(ident)
                dropped += 1
        # Detection times older than the safety bound's hour no longer count (what load keeps, too).
        self.enforced_since(hz.now - HOUR - hz.slack)
        yield dropped
        cut = hz.history_cutoff
        hs = self.histories
        hitems = list(hs.items())
        for i in range(0, len(hitems), chunk):
            for imei, h in hitems[i:i + chunk]:
                # Unchanged since listed (attaches run between chunks): equal, not identical - the C table
                # of histories (eir.state.new_histories) builds a new int for a packed value on each read.
                if history_last_time(h) <= cut and hs.get(imei) == h:
                    del hs[imei]
                    if isinstance(h, History) and h.switchbacks:
                        self._d_switchback.add(imei)
                    dropped += 1
            yield dropped
        retention = self.config.outbox_retention_s
        if retention:
            # Only events every registered consumer has acknowledged, and old enough.
            upto = min(self.consumers.values(), default=self.committed_seq)
            n = self.config.outbox_prune_chunk
            self._maintenance.extend((PRUNE_OUTBOX, (upto, hz.now - retention, n)) for _ in range(8))
        if dropped and not self._dirty:
            self._changed()
        yield dropped

    def _close_lock(self) -> None:
        self._lock.release()
