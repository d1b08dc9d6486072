"""The in-memory state: the compact (packed int) observation history equals the History form."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eir.engine import Bundle, Engine
from eir.events import Event
from eir.index import Index
from eir.rules import load_rules
from eir.snapshot import build_snapshot
from eir.state import (
    COUNT_MASK,
    COUNT_SHIFT,
    KEY_SHIFT,
    SLOT_BITS,
    TIME_BITS,
    TIME_MASK,
    History,
    MemoryState,
    Observed,
    history_last_time,
    observe_history,
    pack_history,
    packed_history,
    unpack_history,
)
from tests.conftest import RULES_DIR, T0, rules_with, write_jsonl
from tests.strategies import attach_sequences, small_registries

M1, M2 = 989120000001, 989120000002


class RichState(MemoryState):
    """The reference: every history in the History form (what MemoryState did before the packed form)."""

    def observe(self, imei: int, msisdn: int, slot: int, t: int) -> None:
        v = self.histories.get(imei)
        h = History() if v is None else unpack_history(v)
        self.histories[imei] = h
        observe_history(h, msisdn << SLOT_BITS | slot, t)


def view(v: Observed) -> tuple[Any, ...]:
    h = unpack_history(v)
    return h.last_msisdn, h.last_time, dict(h.seen), h.switchbacks


def test_one_subscriber_keeps_one_packed_int() -> None:
    st_ = MemoryState()
    st_.observe(7, M1, 1, T0)
    st_.observe(7, M1, 1, T0 + 5)
    st_.observe(7, M1, 1, T0 + 2)  # out of order: the last time stays
    key = M1 << SLOT_BITS | 1
    assert st_.histories[7] == key << KEY_SHIFT | 3 << COUNT_SHIFT | T0 << TIME_BITS | (T0 + 5)
    assert history_last_time(st_.histories[7]) == T0 + 5
    # first = the first attach processed, last = the latest time, count = attaches
    assert view(st_.histories[7]) == (M1, T0 + 5, {key: [T0, T0 + 5, 3]}, None)


def test_a_second_subscriber_or_slot_or_a_switchback_promotes_to_history() -> None:
    st_ = MemoryState()
    st_.observe(7, M1, 1, T0)
    st_.observe(7, M1, 2, T0 + 1)
    assert isinstance(st_.histories[7], History)
    assert view(st_.histories[7]) == (M1, T0 + 1, {M1 << SLOT_BITS | 1: [T0, T0, 1],
                                                   M1 << SLOT_BITS | 2: [T0 + 1, T0 + 1, 1]}, None)
    st_.observe(8, M1, 1, T0)
    st_.observe(8, M2, 1, T0 - 1)  # earlier: M1 stays the last subscriber
    assert view(st_.histories[8])[:2] == (M1, T0)
    st_.observe(9, M1, 1, T0)
    st_.add_switchback(9, T0, 3600)
    assert isinstance(st_.histories[9], History) and st_.histories[9].switchbacks == [T0]


def test_times_outside_the_packed_range_use_the_history_form() -> None:
    st_ = MemoryState()
    st_.observe(7, M1, 1, -5)
    st_.observe(8, M1, 1, TIME_MASK + 1)
    assert isinstance(st_.histories[7], History) and isinstance(st_.histories[8], History)
    st_.observe(9, M1, 1, T0)
    st_.observe(9, M1, 1, TIME_MASK + 1)
    assert view(st_.histories[9]) == (M1, TIME_MASK + 1, {M1 << SLOT_BITS | 1: [T0, TIME_MASK + 1, 2]}, None)


def test_pack_and_unpack_round_trip() -> None:
    h = History(M1, T0, {M1 << SLOT_BITS | 1: [T0 - 7, T0, 12]})
    packed = pack_history(h)
    assert isinstance(packed, int) and view(packed) == view(h)
    assert packed_history(M1 << SLOT_BITS | 1, T0) == pack_history(History(M1, T0, {M1 << SLOT_BITS | 1: [T0, T0, 1]}))
    two = History(M1, T0, {M1 << SLOT_BITS | 1: [T0, T0, 1], M2 << SLOT_BITS | 1: [T0 - 9, T0 - 9, 1]})
    assert pack_history(two) is two
    with_sb = History(M1, T0, {M1 << SLOT_BITS | 1: [T0, T0, 1]}, [T0])
    assert pack_history(with_sb) is with_sb
    huge = History(M1, T0, {M1 << SLOT_BITS | 1: [T0, T0, COUNT_MASK + 1]})
    assert pack_history(huge) is huge


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.sampled_from([M1, M2, M1 + 7]), st.integers(1, 2),
                          st.integers(-3, 40), st.booleans()), max_size=80))
def test_packed_histories_equal_the_history_form(ops: list[tuple[int, int, int, int, bool]]) -> None:
    fast, slow = MemoryState(), RichState()
    t = T0
    for imei, msisdn, slot, dt, switchback in ops:
        t += dt  # mostly forward, sometimes back (out-of-order attaches)
        for s in (fast, slow):
            s.observe(imei, msisdn, slot, t)
            if switchback:
                s.add_switchback(imei, t, 20)
        assert view(fast.histories[imei]) == view(slow.histories[imei])
        assert history_last_time(fast.histories[imei]) == history_last_time(slow.histories[imei])


def _index(records: list[dict[str, Any]]) -> Index:
    with tempfile.TemporaryDirectory() as d:
        src = write_jsonl(Path(d) / "r.jsonl", records)
        build_snapshot([src], Path(d) / "s.snap", skip_invalid=False)
        return Index.from_snapshot(Path(d) / "s.snap")


# Clone detection on, with threshold 1 and a week's window: detections (the reader of histories) are common.
CLONE_RULES = rules_with(load_rules(RULES_DIR / "default.toml"), clone={"min_switchbacks": 1, "window_hours": 168})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_registries(), st.one_of(attach_sequences(T0, 80), attach_sequences(T0, 80, dense=True)))
def test_decisions_with_packed_histories_equal_the_history_form(
        records: list[dict[str, Any]], rows: list[tuple[int, str, str, int]]) -> None:
    from eir.query import build_query

    index = _index(records)
    results = []
    for state in (MemoryState(), RichState()):
        events: list[Event] = []
        engine = Engine(Bundle.of(index, CLONE_RULES), state, (events.append,))
        out = []
        for t, imei, msisdn, slot in rows:
            d = engine.check(build_query(index, CLONE_RULES, t, imei, msisdn, slot))
            out.append((d.reason, d.deadline, d.effects))
        results.append((out, [e.to_dict() for e in events],
                        {k: view(v) for k, v in state.histories.items()}))
    assert results[0] == results[1]
