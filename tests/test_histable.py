"""The C table of observation histories (eir/_histable.h) against a dict: the same mapping, value for value.

MemoryState keeps its histories in the table when the accelerator is built (eir.state.new_histories);
every reader and writer (decide, the SQLite journal, pruning, start-up load) uses it as a mapping, so it
must behave as the dict it replaces for every value it can be given, packed or not.
"""

from __future__ import annotations

import gc
from collections.abc import MutableMapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eir import state as state_mod
from eir.state import (
    COUNT_MASK,
    KEY_SHIFT,
    SLOT_BITS,
    TIME_MASK,
    History,
    MemoryState,
    Observed,
    new_histories,
    packed_history,
    unpack_history,
)
from tests.conftest import T0

needs_table = pytest.mark.skipif(state_mod._TABLE is None, reason="eir._fastpath is not built")
M1 = 989120000001

# Values as MemoryState stores them (packed ints, Histories) and the ints that have no packed cell form:
# count 0, a key beyond 64 bits, negative, wider than the cell.
packed = st.builds(lambda m, slot, first, last, count:
                   (m << SLOT_BITS | slot) << KEY_SHIFT | count << 64 | first << 32 | last,
                   st.integers(1, (1 << 50) - 1), st.integers(0, 31), st.integers(0, TIME_MASK),
                   st.integers(0, TIME_MASK), st.integers(1, COUNT_MASK))
odd_ints = st.one_of(st.just(0), st.integers(-(1 << 70), -1), st.integers(1, (1 << 64) - 1),
                     st.integers(1 << 168, 1 << 200), st.integers(1 << 191, (1 << 192) - 1),
                     st.integers(0, 1 << 300))
histories = st.builds(lambda m, t: History(m, t, {m << SLOT_BITS | 1: [t, t, 2]}), st.integers(1, 99),
                      st.integers(0, 9))
values = st.one_of(packed, packed, odd_ints, histories)
keys = st.one_of(st.integers(0, 300), st.integers(0, (1 << 63) - 2))
ops = st.lists(st.tuples(st.sampled_from(["set", "set", "set", "del", "pop", "get"]), keys, values), max_size=400)


def new_table() -> MutableMapping[int, Observed]:
    assert state_mod._TABLE is not None
    return state_mod._TABLE()


@needs_table
@settings(max_examples=150, deadline=None)
@given(ops)
def test_the_table_is_the_dict_it_replaces(script: list[tuple[str, int, Any]]) -> None:
    table, ref = new_table(), {}
    for op, k, v in script:
        if op == "set":
            table[k] = ref[k] = v
        elif op == "del":
            if k in ref:
                del ref[k]
                del table[k]
            else:
                with pytest.raises(KeyError):
                    del table[k]
        elif op == "pop":
            assert table.pop(k, "none") == ref.pop(k, "none")
        else:
            assert table.get(k) == ref.get(k) and (k in table) == (k in ref)
        assert len(table) == len(ref)
    assert table == ref and dict(table.items()) == ref and sorted(table) == sorted(ref)
    for k, v in ref.items():
        assert table[k] == v and type(table[k]) is type(v)
        if isinstance(v, History):
            assert table[k] is v  # objects are held, not copied


@needs_table
def test_growth_and_removal_keep_every_entry() -> None:
    # Past the huge-page size (4 MB of cells) and back: linear probing with backward-shift removal.
    table = new_table()
    n = 150_000
    for i in range(n):
        table[i * 7919] = packed_history(M1 << SLOT_BITS | 1, T0 + i)
    assert len(table) == n and table.__sizeof__() >= 2 * n * 32
    for i in range(0, n, 3):
        del table[i * 7919]
    for i in range(n):
        assert table.get(i * 7919) == (None if i % 3 == 0 else packed_history(M1 << SLOT_BITS | 1, T0 + i))
    table.clear()
    assert len(table) == 0 and table == {}


@needs_table
def test_keys_and_errors() -> None:
    table = new_table()
    with pytest.raises(TypeError):
        table[-1] = 5  # IMEI cores are >= 0
    with pytest.raises(TypeError):
        table["x"] = 5  # type: ignore[index]
    with pytest.raises(KeyError):
        table[3]
    with pytest.raises(KeyError):
        table.pop(3)
    assert table.get(-1) is None and table.get("x") is None and "x" not in table  # type: ignore[call-overload, operator]
    with pytest.raises(TypeError):
        hash(table)


@needs_table
def test_histories_are_seen_by_the_garbage_collector() -> None:
    table = new_table()
    h = History(M1, T0, {M1 << SLOT_BITS | 1: [T0, T0, 2]})
    table[1] = h
    table[2] = packed_history(M1 << SLOT_BITS | 1, T0)
    assert gc.is_tracked(table) and any(r is h for r in gc.get_referents(table))
    del table[1]
    assert not any(r is h for r in gc.get_referents(table))


def test_memory_state_uses_the_table_when_built() -> None:
    assert isinstance(MemoryState().histories, dict) == (state_mod._TABLE is None)
    assert isinstance(new_histories(), MutableMapping)
    given_ = MemoryState(histories={}).histories
    assert isinstance(given_, dict) and given_ == {}


def view(v: Observed) -> tuple[Any, ...]:
    h = unpack_history(v)
    return h.last_msisdn, h.last_time, dict(h.seen), h.switchbacks


@needs_table
@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(1, 40), st.integers(0, 3), st.integers(-5, 60),
                          st.booleans()), max_size=300))
def test_observe_on_the_table_equals_observe_on_a_dict(script: list[tuple[int, int, int, int, bool]]) -> None:
    # Up to 40 subscribers on an IMEI: past the 32 a History keeps (eviction is left to Python), with
    # switch-backs, out-of-order times and times beyond 32 bits.
    table, ref = MemoryState(), MemoryState(histories={})
    assert not isinstance(table.histories, dict)
    t = T0
    for imei, m, slot, dt, switchback in script:
        t = t + dt if dt != 60 else TIME_MASK + dt  # now and then a time the packed form cannot hold
        for s in (table, ref):
            s.observe(imei, M1 + m, slot, t)
            if switchback:
                s.add_switchback(imei, t, 20)
        assert view(table.histories[imei]) == view(ref.histories[imei])
    assert {k: view(v) for k, v in table.histories.items()} == {k: view(v) for k, v in ref.histories.items()}
