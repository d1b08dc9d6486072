"""Dynamic engine state (SPEC §7) behind one interface, with the in-memory implementation.

The decision core only *reads* state (the ``StateView`` part); the engine writes it by applying the
effects a decision returns, and records every attach in the observation history. Keys are stable
identifiers (IMEI cores, MSISDNs, a device's slot-1 IMEI), never snapshot-local ids, so state survives
snapshot reloads. A durable store (SQLite) subclasses :class:`MemoryState`: the hot state stays in
memory for the synchronous decision, and the store persists every change.
"""

from __future__ import annotations

import secrets
from collections import deque
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from eir.events import Event
from eir.native import FASTPATH_ABI, load

#: Observation history entries kept per IMEI (distinct subscriber+slot pairs, most recent kept).
MAX_OBSERVATIONS_PER_IMEI: Final = 32
#: An observation entry key packs (msisdn, slot): slot < 32.
SLOT_BITS: Final = 5


#: One registry change of the control plane's journal: ``(seq, time, JSON body)`` (see eir.control_ops).
Change = tuple[int, int, bytes]


@dataclass(slots=True)
class Grace:
    """A grace for (IMEI, subscriber, kind): the deadline never moves once given."""

    start: int
    deadline: int


@dataclass(slots=True)
class Activation:
    """Activation grace of a device (keyed by its slot-1 IMEI)."""

    first_seen: int
    deadline: int


@dataclass(slots=True)
class TravelerWindow:
    """Traveler allowance window of an unregistered IMEI."""

    start: int
    deadline: int
    period_end: int
    identity: str
    msisdn: int


@dataclass(slots=True)
class Detection:
    """A clone detection (enforced) or a withheld one (safety brake)."""

    time: int
    enforced: bool
    subscribers: tuple[int, ...]


#: An IMEI seen with a single (subscriber, slot) - the common case - keeps its history as one packed int
#: instead of a :class:`History` with a dict and a list (about 6x less memory, one dict store per attach):
#: ``key << KEY_SHIFT | count << COUNT_SHIFT | first << TIME_BITS | last``, with ``key`` =
#: ``msisdn << SLOT_BITS | slot``, 32-bit times and a 40-bit count (10^12 attaches: never full). It becomes a
#: History when a second (subscriber, slot) or a switch-back appears. Times outside ``0..TIME_MASK`` (not
#: epoch seconds before 2106) always use the History form.
TIME_BITS: Final = 32
TIME_MASK: Final = (1 << TIME_BITS) - 1
COUNT_SHIFT: Final = 2 * TIME_BITS
COUNT_MASK: Final = (1 << 40) - 1
KEY_SHIFT: Final = COUNT_SHIFT + 40
#: One attach of the same (subscriber, slot) added to a packed history.
COUNT_ONE: Final = 1 << COUNT_SHIFT


@dataclass(slots=True)
class History:
    """Observation history of one IMEI: last attach, and per (subscriber, slot) first/last/count.

    ``seen`` maps ``msisdn << SLOT_BITS | slot`` to ``[first, last, count]``; ``switchbacks`` holds the
    times of recent switch-backs (clone detection, pruned to the window).
    """

    last_msisdn: int = 0
    last_time: int = 0
    seen: dict[int, list[int]] = field(default_factory=dict)
    switchbacks: list[int] | None = None

    def last_seen(self, msisdn: int) -> int:
        """The last time ``msisdn`` attached this IMEI on any slot (0 if never)."""
        best = 0
        for key, rec in self.seen.items():
            if key >> SLOT_BITS == msisdn and rec[1] > best:
                best = rec[1]
        return best

    def subscribers(self) -> list[tuple[int, int, int, int, int]]:
        """``(msisdn, slot, first, last, count)`` rows, most recently seen first."""
        rows = [(k >> SLOT_BITS, k & ((1 << SLOT_BITS) - 1), r[0], r[1], r[2]) for k, r in self.seen.items()]
        rows.sort(key=lambda r: -r[3])
        return rows


#: What ``MemoryState.histories`` holds per IMEI.
Observed = int | History


def packed_history(key: int, t: int) -> int:
    """The packed history of a first attach (``0 <= t <= TIME_MASK``)."""
    return key << KEY_SHIFT | COUNT_ONE | t << TIME_BITS | t


def unpack_history(v: Observed) -> History:
    """The History form of a histories value (a new History for the packed form, else ``v`` itself)."""
    if isinstance(v, History):
        return v
    key = v >> KEY_SHIFT
    last = v & TIME_MASK
    return History(key >> SLOT_BITS, last, {key: [v >> TIME_BITS & TIME_MASK, last, v >> COUNT_SHIFT & COUNT_MASK]})


def pack_history(h: History) -> Observed:
    """The compact form of a History when it has one (subscriber, slot) and no switch-backs, else ``h``."""
    if len(h.seen) == 1 and not h.switchbacks:
        ((key, (first, last, count)),) = h.seen.items()
        if (0 <= first <= TIME_MASK and 0 <= last <= TIME_MASK and 0 < count <= COUNT_MASK
                and last == h.last_time and key >> SLOT_BITS == h.last_msisdn):
            return key << KEY_SHIFT | count << COUNT_SHIFT | first << TIME_BITS | last
    return h


def _histories_table() -> Callable[[], MutableMapping[int, Observed]] | None:
    """The C table of histories (eir/_histable.h) when the accelerator is built and enabled, else None."""
    mod, _ = load("eir._fastpath", FASTPATH_ABI)
    if mod is None:
        return None
    built = (mod.KEY_SHIFT, mod.SLOT_BITS, mod.TIME_BITS, mod.MAX_OBSERVATIONS)
    if built != (KEY_SHIFT, SLOT_BITS, TIME_BITS, MAX_OBSERVATIONS_PER_IMEI):
        return None  # built from another version of the packed history
    table: type[MutableMapping[int, Observed]] = mod.Histories
    MutableMapping.register(table)
    return table


_TABLE: Final = _histories_table()


def new_histories() -> MutableMapping[int, Observed]:
    """An empty histories mapping: the C table when available (one cache miss per attach instead of a
    dict's four, updated in place), else a dict. Both hold and return the same values."""
    return new_imei_map()


def new_imei_map() -> MutableMapping[int, Any]:
    """An empty mapping keyed by IMEI cores (detections, grace_imeis): the same C table when available, so
    the accelerator's lookups of every attach are one prefetched cell instead of a dict probe; else a
    dict. Both hold and return the same values (the table keeps any object)."""
    return {} if _TABLE is None else _TABLE()


def history_last_time(v: Observed) -> int:
    """The time of the IMEI's last attach."""
    return v & TIME_MASK if isinstance(v, int) else v.last_time


class StateView(Protocol):
    """What the decision core may read.

    The three mappings are read directly on the hot path (one C-level lookup instead of a method call per
    attach); everything else goes through methods.
    """

    @property
    def histories(self) -> Mapping[int, Observed]: ...
    @property
    def detections(self) -> Mapping[int, Detection]: ...
    @property
    def grace_imeis(self) -> Mapping[int, int]: ...

    def grace(self, imei: int, msisdn: int, kind: int) -> Grace | None: ...
    def has_graces(self, imei: int) -> bool: ...
    def activation(self, device_key: int) -> Activation | None: ...
    def window(self, imei: int) -> TravelerWindow | None: ...
    def quota(self, identity: str) -> int | None: ...
    def history(self, imei: int) -> History | None: ...
    def detection(self, imei: int) -> Detection | None: ...
    def mark(self, key: tuple[str, int, int, int]) -> int | None: ...
    def enforced_since(self, t: int) -> int: ...


class MemoryState:
    """All engine state in process memory (replay default; the cache under the durable store)."""

    def __init__(self, keep_outbox: bool = True, histories: MutableMapping[int, Observed] | None = None) -> None:
        self.keep_outbox = keep_outbox  # a replay streams events to a file instead of keeping them
        self.graces: dict[tuple[int, int, int], Grace] = {}
        self.grace_imeis: MutableMapping[int, int] = new_imei_map()  # imei -> grace records (fast "has any")
        self.activations: dict[int, Activation] = {}
        self.windows: dict[int, TravelerWindow] = {}
        self.quotas: dict[str, int] = {}
        #: IMEI core -> packed int | History: a dict, or the accelerator's table (see new_histories).
        self.histories: MutableMapping[int, Observed] = new_histories() if histories is None else histories
        # The table records most attaches itself (observe below): packed in place, Histories in C.
        self._table_observe: Callable[[int, int, int, int, type[History]], bool] | None = (
            getattr(self.histories, "observe", None) if type(self.histories) is _TABLE else None)
        self.detections: MutableMapping[int, Detection] = new_imei_map()
        self.marks: dict[tuple[str, int, int, int], int] = {}
        self.enforced: deque[int] = deque()  # times of enforced detections (safety bound, last hour)
        self.events: list[Event] = []
        self.next_seq = 1
        # The control plane's registry-change journal (eir.control). In memory it lives as long as the
        # process; the durable store writes it with the promises and loads it back at open.
        self.changes: list[Change] = []
        self.next_change_seq = 1
        #: Identifies this journal: a snapshot exported with its changes records (journal_id, seq).
        self.journal_id = secrets.randbits(62) + 1

    # --- reads (StateView) -------------------------------------------------------------------------

    def grace(self, imei: int, msisdn: int, kind: int) -> Grace | None:
        return self.graces.get((imei, msisdn, kind))

    def has_graces(self, imei: int) -> bool:
        return imei in self.grace_imeis

    def activation(self, device_key: int) -> Activation | None:
        return self.activations.get(device_key)

    def window(self, imei: int) -> TravelerWindow | None:
        return self.windows.get(imei)

    def quota(self, identity: str) -> int | None:
        return self.quotas.get(identity)

    def history(self, imei: int) -> History | None:
        v = self.histories.get(imei)
        return None if v is None else unpack_history(v)

    def detection(self, imei: int) -> Detection | None:
        return self.detections.get(imei)

    def mark(self, key: tuple[str, int, int, int]) -> int | None:
        return self.marks.get(key)

    def enforced_since(self, t: int) -> int:
        q = self.enforced
        while q and q[0] < t:
            q.popleft()
        return len(q)

    # --- writes (engine) ---------------------------------------------------------------------------

    def observe(self, imei: int, msisdn: int, slot: int, t: int) -> None:
        """Record an attach of a known home subscriber in the IMEI's history (the hot path of every attach)."""
        table_observe = self._table_observe
        if table_observe is not None and table_observe(imei, msisdn, slot, t, History):
            return  # done by the C table, as below
        hs = self.histories
        v = hs.get(imei)
        key = msisdn << SLOT_BITS | slot
        if v is None:
            if 0 <= t <= TIME_MASK:
                hs[imei] = key << KEY_SHIFT | COUNT_ONE | t << TIME_BITS | t
                return
            h = hs[imei] = History()
        elif isinstance(v, int):
            if v >> KEY_SHIFT == key and t <= TIME_MASK:
                last = v & TIME_MASK
                hs[imei] = v + COUNT_ONE + t - last if t > last else v + COUNT_ONE
                return
            h = hs[imei] = unpack_history(v)
        else:
            h = v
        observe_history(h, key, t)

    def put_grace(self, kind: int, imei: int, msisdn: int, start: int, deadline: int) -> None:
        key = (imei, msisdn, kind)
        if key not in self.graces:
            self.grace_imeis[imei] = self.grace_imeis.get(imei, 0) + 1
        self.graces[key] = Grace(start, deadline)

    def drop_graces(self, imei: int, msisdn: int) -> list[int]:
        """Drop every grace of (IMEI, subscriber); returns the kinds dropped."""
        dropped = []
        for kind in (1, 2):
            if self.graces.pop((imei, msisdn, kind), None) is not None:
                dropped.append(kind)
                n = self.grace_imeis[imei] - 1
                if n:
                    self.grace_imeis[imei] = n
                else:
                    del self.grace_imeis[imei]
        return dropped

    def drop_imei_graces(self, imei: int, kind: int | None = None) -> list[tuple[int, int, int]]:
        """Drop the grace records of every subscriber on an IMEI (of one kind, or all); returns their keys.

        A scan of every grace (about 35 ms per million): only the rare control-plane operations call it.
        """
        if imei not in self.grace_imeis:
            return []
        keys = [k for k in self.graces if k[0] == imei and (kind is None or k[2] == kind)]
        for key in keys:
            del self.graces[key]
            self._grace_dropped(key)
        return keys

    def _grace_dropped(self, key: tuple[int, int, int]) -> None:
        imei = key[0]
        left = self.grace_imeis[imei] - 1
        if left:
            self.grace_imeis[imei] = left
        else:
            del self.grace_imeis[imei]

    def put_activation(self, device_key: int, first_seen: int, deadline: int) -> None:
        self.activations[device_key] = Activation(first_seen, deadline)

    def drop_activation(self, device_key: int) -> bool:
        """The device is activated (or claimed): its activation grace ends. True if there was one."""
        return self.activations.pop(device_key, None) is not None

    def drop_detection(self, imei: int) -> bool:
        """The registry cleared the IMEI's clone status: forget the network detection. True if any."""
        return self.detections.pop(imei, None) is not None

    def clear_switchbacks(self, imei: int) -> bool:
        """Forget the IMEI's recent switch-backs (the registry cleared its clone status). True if any."""
        h = self.histories.get(imei)
        if not isinstance(h, History) or not h.switchbacks:
            return False
        h.switchbacks = None
        return True

    def append_change(self, t: int, body: bytes) -> int:
        """Journal one registry change; returns its ``seq``."""
        seq = self.next_change_seq
        self.next_change_seq = seq + 1
        self.changes.append((seq, t, body))
        return seq

    def put_window(self, imei: int, w: TravelerWindow) -> None:
        self.windows[imei] = w

    def put_quota(self, identity: str, start: int) -> None:
        self.quotas[identity] = start

    def add_switchback(self, imei: int, t: int, window_s: int) -> None:
        v = self.histories.get(imei)
        if v is None:
            h = self.histories[imei] = History()
        elif isinstance(v, int):
            h = self.histories[imei] = unpack_history(v)
        else:
            h = v
        sb = h.switchbacks
        if sb is None:
            h.switchbacks = [t]
        else:
            sb[:] = [x for x in sb if x > t - window_s]
            sb.append(t)

    def put_detection(self, imei: int, d: Detection) -> None:
        if d.enforced:
            self.detections[imei] = d
            self.enforced.append(d.time)
        elif imei not in self.detections:
            self.detections[imei] = d

    def put_mark(self, key: tuple[str, int, int, int], t: int) -> None:
        self.marks[key] = t

    def append_event(self, ev: Event) -> Event:
        """Assign the next ``seq`` and put the event in the outbox."""
        ev.seq = self.next_seq
        self.next_seq += 1
        if self.keep_outbox:
            self.events.append(ev)
        return ev

    def events_after(self, seq: int, limit: int) -> Iterator[Event]:
        """Outbox events with ``seq`` greater than the given one, oldest first."""
        lo, hi = 0, len(self.events)
        while lo < hi:  # the outbox is sorted by seq: binary search the first one after `seq`
            mid = (lo + hi) // 2
            if self.events[mid].seq <= seq:
                lo = mid + 1
            else:
                hi = mid
        yield from self.events[lo : lo + limit]


def observe_history(h: History, key: int, t: int) -> bool:
    """Record an attach (``key`` = ``msisdn << SLOT_BITS | slot``) in a History; True when the oldest
    (subscriber, slot) was dropped to make room (MAX_OBSERVATIONS_PER_IMEI)."""
    seen = h.seen
    rec = seen.get(key)
    dropped = False
    if rec is None:
        if len(seen) >= MAX_OBSERVATIONS_PER_IMEI:
            del seen[min(seen, key=lambda k: seen[k][1])]
            dropped = True
        seen[key] = [t, t, 1]
    else:
        if t > rec[1]:
            rec[1] = t
        rec[2] += 1
    if t >= h.last_time:
        h.last_msisdn = key >> SLOT_BITS
        h.last_time = t
    return dropped
