"""The hot part of the durable state: loading it into memory at open, and deciding what can be pruned.

``decide`` reads state synchronously from memory, so the store keeps in memory everything a decision
can read (graces, activations, windows, quotas, detections, unexpired de-dup marks, and the clone-window
part of the observation histories) and loads exactly that at start-up: a handful of full-table SELECTs,
no replay. Pruning only ever removes what can no longer change a decision, so that a restarted engine
decides exactly as one that never stopped (see docs/state.md, "Pruning").
"""

from __future__ import annotations

import sqlite3
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from eir.state import (
    MAX_OBSERVATIONS_PER_IMEI,
    SLOT_BITS,
    Activation,
    Detection,
    Grace,
    History,
    MemoryState,
    TravelerWindow,
    pack_history,
)
from eir.store_schema import last_committed_seq, unpack_ints

if TYPE_CHECKING:
    from eir.rules import RuleSet

HOUR: Final = 3_600
DAY: Final = 86_400
#: Clone window assumed when no rule set is known (pruning then keeps more, never less).
DEFAULT_HISTORY_WINDOW_S: Final = 7 * DAY

# De-dup mark kinds by how long they can matter (decide.py reads marks with these keys).
#: DENY notices repeat after ``events.repeat_deny_notice_days``: an older mark reads as "no mark".
DENY_MARKS: Final = frozenset(
    {"CLONE_BLOCKED", "OWNERSHIP_BLOCKED", "NOT_ACTIVATED", "ALLOWANCE_EXPIRED", "UNREGISTERED_DEVICE"})
#: Marks keyed by a deadline (the key's last element) that are only read before that deadline.
DEADLINE_MARKS: Final = frozenset({
    "GRACE_REMINDER", "ACTIVATION_REQUIRED", "CLONE_GRACE_STARTED", "OWNERSHIP_GRACE_STARTED",
    "TRAVELER_ALLOWANCE_STARTED",
})
#: SAFETY_BRAKE is re-reported at most hourly.
HOURLY_MARKS: Final = frozenset({"SAFETY_BRAKE"})
#: CLONE_DETECTED marks are keyed by the detection time and never read back (the detection is).
WINDOW_MARKS: Final = frozenset({"CLONE_DETECTED"})
# Any other kind (BLACKLISTED_DEVICE_SEEN: once per (IMEI, subscriber) ever, and kinds added later) is
# never pruned: keeping a mark too long costs bytes, dropping it too early re-sends an SMS.


@dataclass(frozen=True, slots=True)
class Horizon:
    """What pruning and loading keep, computed from the engine time ``now`` and the rule set."""

    now: int
    slack: int
    clone_window: int
    repeat_deny: int | None
    traveler_period: int | None

    @classmethod
    def of(cls, now: int, slack: int, rules: RuleSet | None) -> Horizon:
        """Without rules, only what needs no rule value is pruned."""
        if rules is None:
            return cls(now, slack, DEFAULT_HISTORY_WINDOW_S, None, None)
        return cls(now, slack, rules.clone_window_s, rules.repeat_deny_notice_s, rules.traveler_period_s)

    @property
    def history_cutoff(self) -> int:
        """Histories whose last attach is at or before this cannot produce a switch-back any more."""
        return self.now - self.clone_window - self.slack

    def mark_expired(self, key: tuple[str, int, int, int], t: int) -> bool:
        """Whether a de-dup mark recorded at ``t`` can no longer change a decision."""
        kind = key[0]
        cut = self.now - self.slack
        if kind in DENY_MARKS:
            return self.repeat_deny is not None and t + self.repeat_deny <= cut
        if kind in DEADLINE_MARKS:
            return 0 < key[3] <= cut
        if kind in HOURLY_MARKS:
            return t + HOUR <= cut
        if kind in WINDOW_MARKS:
            return t + self.clone_window <= cut
        return False

    def window_expired(self, w: TravelerWindow) -> bool:
        """A window past its period reads as "no window" (decide checks ``t < period_end``)."""
        return w.period_end <= self.now - self.slack

    def quota_expired(self, start: int) -> bool:
        """A quota older than the traveler period reads as "no quota"."""
        return self.traveler_period is not None and start + self.traveler_period <= self.now - self.slack


@dataclass(slots=True)
class LoadStats:
    """Rows loaded at open, per table (reported by the benchmark and the service log)."""

    graces: int = 0
    activations: int = 0
    windows: int = 0
    quotas: int = 0
    detections: int = 0
    marks: int = 0
    histories: int = 0
    observations: int = 0
    switchbacks: int = 0
    next_seq: int = 1
    high_water: int = 0
    attach_ord: int = 0
    # Rows skipped as expired: the store deletes them with its first commit.
    expired_marks: list[tuple[str, int, int, int]] = field(default_factory=list, repr=False)
    expired_windows: list[int] = field(default_factory=list, repr=False)
    expired_quotas: list[str] = field(default_factory=list, repr=False)


def read_meta(conn: sqlite3.Connection) -> dict[str, int]:
    """The ``meta`` table as a dict."""
    return {str(k): int(v) for k, v in conn.execute("SELECT key, value FROM meta")}


def load_hot(conn: sqlite3.Connection, hconn: sqlite3.Connection, st: MemoryState, slack: int,
             rules: RuleSet | None, kinds: dict[str, int], consumers: dict[str, int], wall_clock: int) -> LoadStats:
    """Fill an empty in-memory state from the state file and the history file; returns what was loaded.

    Expired rows are skipped (and listed in the stats, for the store to delete). "Now" is the latest
    attach time committed to either file, capped at ``wall_clock`` as in pruning.
    """
    meta = read_meta(conn)
    hmeta = read_meta(hconn)
    hw = max(meta.get("high_water", 0), hmeta.get("high_water", 0))
    hz = Horizon.of(min(hw, wall_clock), slack, rules)
    stats = LoadStats(high_water=hw, attach_ord=hmeta.get("attach_ord", 0))

    graces, grace_imeis = st.graces, st.grace_imeis
    for imei, msisdn, kind, start, deadline in conn.execute("SELECT imei, msisdn, kind, start, deadline FROM grace"):
        graces[(imei, msisdn, kind)] = Grace(start, deadline)
        grace_imeis[imei] = grace_imeis.get(imei, 0) + 1
    stats.graces = len(graces)

    acts = st.activations
    for key, first_seen, deadline in conn.execute("SELECT device_key, first_seen, deadline FROM activation"):
        acts[key] = Activation(first_seen, deadline)
    stats.activations = len(acts)

    windows = st.windows
    for imei, start, deadline, period_end, identity, msisdn in conn.execute(
            "SELECT imei, start, deadline, period_end, identity, msisdn FROM traveler_window"):
        w = TravelerWindow(start, deadline, period_end, identity, msisdn)
        if hz.window_expired(w):
            stats.expired_windows.append(imei)
        else:
            windows[imei] = w
    stats.windows = len(windows)

    quotas = st.quotas
    for identity, start in conn.execute("SELECT identity, start FROM quota"):
        if hz.quota_expired(start):
            stats.expired_quotas.append(identity)
        else:
            quotas[identity] = start
    stats.quotas = len(quotas)

    dets = st.detections
    enforced: list[int] = []
    for imei, t, enf, subs in conn.execute("SELECT imei, time, enforced, subscribers FROM detection"):
        dets[imei] = Detection(t, bool(enf), tuple(unpack_ints(subs)))
        if enf and t >= hz.now - HOUR - slack:
            enforced.append(t)
    enforced.sort()
    st.enforced = deque(enforced)
    stats.detections = len(dets)

    names = {int(i): str(n) for i, n in conn.execute("SELECT id, name FROM mark_kind")}
    kinds.update({n: i for i, n in names.items()})
    marks = st.marks
    for kind, subject, msisdn, extra, t in conn.execute("SELECT kind, subject, msisdn, extra, time FROM mark"):
        key = (names[kind], subject, msisdn, extra)
        if hz.mark_expired(key, t):
            stats.expired_marks.append(key)
        else:
            marks[key] = t
    stats.marks = len(marks)

    _load_histories(conn, hconn, st, hz, stats)

    consumers.update({str(n): int(s) for n, s in conn.execute("SELECT name, seq FROM consumer")})
    stats.next_seq = last_committed_seq(conn) + 1
    st.next_seq = stats.next_seq
    return stats


def _load_histories(conn: sqlite3.Connection, hconn: sqlite3.Connection, st: MemoryState, hz: Horizon,
                    stats: LoadStats) -> None:
    """The clone-window part of the observation history: rows seen after the history cutoff.

    One scan of the observation table (no index on ``last`` to maintain on every upsert). Rows come in
    primary-key order, so each IMEI's rows are consecutive. Its last attach is the row with the
    greatest ``(last, ord)``: the attach ordinal orders attaches of the same second exactly as they
    were decided.
    """
    cut = hz.history_cutoff
    hs = st.histories
    n = 0
    cur = -1
    h = History()
    best = (0, 0)
    rows = hconn.execute("SELECT imei, msisdn, slot, first, last, count, ord FROM observation WHERE last > ?",
                         (cut,))
    for imei, msisdn, slot, first, last, count, ord_ in rows:
        if imei != cur:
            cur, h, best = imei, History(), (0, 0)
            hs[imei] = h
        seen = h.seen
        if len(seen) >= MAX_OBSERVATIONS_PER_IMEI:
            # Keep the most recent entries, as MemoryState.observe does.
            oldest = min(seen, key=lambda k: seen[k][1])
            if seen[oldest][1] >= last:
                continue
            del seen[oldest]
        seen[msisdn << SLOT_BITS | slot] = [first, last, count]
        if (last, ord_) > best:
            best = (last, ord_)
            h.last_msisdn, h.last_time = msisdn, last
        n += 1
    stats.observations = n
    for imei, times in conn.execute("SELECT imei, times FROM switchback WHERE last > ?", (cut,)):
        h2 = hs.get(imei)
        if isinstance(h2, History):
            h2.switchbacks = unpack_ints(times)
            stats.switchbacks += 1
    for imei, v in hs.items():
        # Back to the compact form where it fits (the common single-subscriber IMEI).
        if isinstance(v, History):
            hs[imei] = pack_history(v)
    stats.histories = len(hs)
