"""The C accelerator of the common attach (eir/_fastpath.c) against the pure-Python path (the reference).

Every test runs the same attaches through an engine with the accelerator and one without, and compares
decisions, events and the whole decision-relevant state. CI requires the extension to be built
(``EIR_REQUIRE_FASTPATH=1`` in .ci/run); elsewhere the comparisons are skipped when it is not.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import eir.engine
from eir import fastpath
from eir.demo import write_demo
from eir.engine import Bundle, Engine
from eir.events import Event
from eir.identifiers import imei15
from eir.index import Index
from eir.model import CONST, Query, Reason
from eir.query import build_query
from eir.replay import parse_rows, read_rows
from eir.rules import RuleSet, load_rules
from eir.snapshot import build_snapshot
from eir.state import MemoryState, unpack_history
from eir.store_sync import SyncSqliteState
from tests.conftest import RULES_DIR, T0, rules_with, write_jsonl
from tests.strategies import attach_sequences, small_registries

needs_fastpath = pytest.mark.skipif(not fastpath.available(), reason="eir._fastpath is not built")
RULES = {
    "default": load_rules(RULES_DIR / "default.toml"),
    "strict": load_rules(RULES_DIR / "strict.toml"),
    "clone1": rules_with(load_rules(RULES_DIR / "default.toml"), clone={"min_switchbacks": 1}),
}


def test_the_accelerator_is_built_where_required() -> None:
    if os.environ.get("EIR_REQUIRE_FASTPATH"):
        assert fastpath.available(), "eir._fastpath was not built (C compiler and Python headers needed)"


def state_view(s: MemoryState) -> dict[str, Any]:
    def hist(v: Any) -> Any:
        h = unpack_history(v)
        return h.last_msisdn, h.last_time, {k: list(r) for k, r in h.seen.items()}, h.switchbacks

    return {
        "histories": {k: hist(v) for k, v in s.histories.items()},
        "graces": {k: (g.start, g.deadline) for k, g in s.graces.items()},
        "grace_imeis": dict(s.grace_imeis),
        "activations": {k: (a.first_seen, a.deadline) for k, a in s.activations.items()},
        "windows": {k: (w.start, w.deadline, w.period_end, w.identity) for k, w in s.windows.items()},
        "quotas": dict(s.quotas), "marks": dict(s.marks),
        "detections": {k: (d.time, d.enforced, d.subscribers) for k, d in s.detections.items()},
        "next_seq": s.next_seq,
    }


def run(index: Index, rules: RuleSet, queries: list[Query], state: MemoryState,
        accelerate: bool) -> tuple[list[Any], list[dict[str, Any]], dict[str, Any]]:
    events: list[Event] = []
    engine = Engine(Bundle.of(index, rules), state, (events.append,), accelerate=accelerate)
    assert engine.accelerated == (accelerate and fastpath.available())
    out = [(d.reason, d.deadline, d.effects) for d in map(engine.check, queries)]
    return out, [e.to_dict() for e in events], state_view(state)


class _OtherMap(dict[int, int]):
    """An IMEI map that is not a PreshMap (read through PyObject_GetItem): None for a missing key."""

    def __missing__(self, key: int) -> None:
        return None


def _index(records: list[dict[str, Any]]) -> Index:
    with tempfile.TemporaryDirectory() as d:
        src = write_jsonl(Path(d) / "r.jsonl", records)
        build_snapshot([src], Path(d) / "s.snap", skip_invalid=False)
        return Index.from_snapshot(Path(d) / "s.snap")


@needs_fastpath
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_registries(), st.one_of(attach_sequences(T0, 80), attach_sequences(T0, 80, dense=True)),
       st.sampled_from(sorted(RULES)), st.sampled_from([None, "imsi"]))
def test_accelerated_engine_equals_the_python_path(records: list[dict[str, Any]],
                                                   rows: list[tuple[int, str, str, int]], rules: str,
                                                   subscriber: str | None) -> None:
    index, r = _index(records), RULES[rules]
    queries = []
    for t, imei, msisdn, slot in rows:
        # Some attaches without a subscriber, and some by roamers: the paths the accelerator declines.
        m = None if subscriber and t % 7 == 0 else ("+4915112345678" if t % 11 == 0 else msisdn)
        queries.append(build_query(index, r, t, imei, m, slot))
    # The reference: the Python path over a dict of histories; the accelerated one over the C table (when
    # built) - and the Python path over the table, too.
    reference = run(index, r, queries, MemoryState(histories={}), False)
    assert run(index, r, queries, MemoryState(), True) == reference
    assert run(index, r, queries, MemoryState(), False) == reference
    # The accelerator's other layouts: a dict of histories, and an IMEI map it does not read directly.
    assert run(index, r, queries, MemoryState(histories={}), True) == reference
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Index, "imei_table", lambda self: _OtherMap(self._map.items()))
        assert run(index, r, queries, MemoryState(), True) == reference


@needs_fastpath
def test_accelerated_engine_equals_the_python_path_on_the_demo_with_durable_state(tmp_path: Path) -> None:
    # The demo mix (every population), in memory and with the SQLite journal (whose observe the C code
    # calls instead of updating the packed history itself).
    demo = tmp_path / "demo"
    write_demo(demo, 2_000, 30_000, 5)
    build_snapshot([demo / "registry.jsonl"], demo / "snap.eirsnap", skip_invalid=False)
    index = Index.from_snapshot(demo / "snap.eirsnap")
    r = RULES["default"]
    probe = Engine(Bundle.of(index, r), MemoryState())
    queries = [q for _, _, q in parse_rows(read_rows(demo / "attaches.csv"), probe, lambda bad: None)]
    fast = run(index, r, queries, MemoryState(), True)
    assert fast == run(index, r, queries, MemoryState(histories={}), False)
    assert sum(d[0] is Reason.OWNER for d in fast[0]) > len(queries) // 2  # the accelerated case dominates
    with SyncSqliteState.open(tmp_path / "a.db") as a, SyncSqliteState.open(tmp_path / "b.db") as b:
        durable = run(index, r, queries, a, True)
        assert durable == run(index, r, queries, b, False)
        a.commit()
        b.commit()
        assert a.history_rows(queries[0].imei) == b.history_rows(queries[0].imei)
    assert durable[:2] == fast[:2]


@needs_fastpath
def test_control_plane_changes_in_place_are_seen(tmp_path: Path) -> None:
    owner, other = 989121234567, 989127654321
    index = _index([{"type": "device", "imeis": ["356938035643809"], "owner": "09121234567"}])
    r = RULES["default"]
    engine = Engine(Bundle.of(index, r), MemoryState())
    assert engine.accelerated
    core = 35693803564380
    assert engine.check(Query(T0, core, owner)).reason is Reason.OWNER
    dev = (index.lookup(core) >> 1) - 1
    index.set_owner(dev, other, T0)
    assert engine.check(Query(T0 + 1, core, owner)).reason is Reason.REGISTERED
    assert engine.check(Query(T0 + 2, core, other)).reason is Reason.OWNER
    index.set_blacklist(core, "stolen")
    assert engine.check(Query(T0 + 3, core, other)).reason is Reason.BLACKLISTED


def test_pure_python_when_disabled() -> None:
    index = _index([{"type": "device", "imeis": ["356938035643809"], "owner": "09121234567"}])
    engine = Engine(Bundle.of(index, RULES["default"]), MemoryState(), accelerate=False)
    assert not engine.accelerated
    assert engine.check(Query(T0, 35693803564380, 989121234567)).reason is Reason.OWNER


@needs_fastpath
def test_the_accelerator_decides_only_the_common_attach() -> None:
    index = _index([{"type": "device", "imeis": ["356938035643809"], "owner": "09121234567"},
                    {"type": "device", "imeis": ["356938035643817"], "owner": None}])
    state = MemoryState()
    fast = fastpath.accelerator(Bundle.of(index, RULES["default"]), state)
    assert fast is not None
    owned, unowned, unknown = 35693803564380, 35693803564381, 35693803564399
    assert fast(Query(T0, owned, 989121234567)) is CONST[Reason.OWNER]
    assert fast(Query(T0, owned, 989127654321, 2)) is CONST[Reason.REGISTERED]
    assert set(state.histories) == {owned}  # recorded: promoted to a History by the second subscriber
    before = state_view(state)
    # Decided, with nothing to record: an exempt roamer (not observed), a malformed IMEI.
    assert fast(Query(T0, owned, 4915112345678, roamer=True)) is CONST[Reason.ROAMER_EXEMPT]
    assert fast(Query(T0, unknown, 4915112345678, roamer=True)) is CONST[Reason.ROAMER_EXEMPT]
    assert fast(Query(T0, -1, 989121234567)) is CONST[Reason.MALFORMED_IMEI]
    # Declined: Python's.
    assert fast(Query(T0, owned, 989121234567)) is None  # another subscriber came last: maybe a switch-back
    assert fast(Query(T0, unowned, 989121234567)) is None  # activation
    assert fast(Query(T0, unknown, 989121234567)) is None  # traveler
    assert state_view(state) == before  # none of these touched the state
    assert fast(Query(T0, owned, 989127654321, 2)) is CONST[Reason.REGISTERED]  # the last one again


@needs_fastpath
def test_a_subscriber_holding_a_grace_is_left_to_python() -> None:
    # Strict rules: B, not the owner, gets an ownership grace. Then B becomes the owner: B's next attach
    # (B came last: no switch-back) is an ALLOW that drops B's grace (GracesDrop), which only Python does.
    a, b, core = 989121234567, 989127654321, 35693803564380
    rows = [(T0, a), (T0 + 60, b), (T0 + 120, b), ("owner", b), (T0 + 180, b), (T0 + 240, b)]
    runs = []
    for accelerate in (True, False):
        index = _index([{"type": "device", "imeis": ["356938035643809"], "owner": "09121234567"}])
        state = MemoryState()
        engine = Engine(Bundle.of(index, RULES["strict"]), state, accelerate=accelerate)
        fast = engine.fast
        out = []
        for t, sub in rows:
            if t == "owner":
                index.set_owner((index.lookup(core) >> 1) - 1, sub, T0)
                continue
            q = Query(int(t), core, sub)
            taken = fast(q) if fast is not None else None
            d = taken or engine.check(q)
            out.append((d.reason, d.deadline, d.effects, taken is not None))
        runs.append((out, state_view(state)))
    fast_run, slow_run = runs
    assert [x[:3] for x in fast_run[0]] == [x[:3] for x in slow_run[0]] and fast_run[1] == slow_run[1]
    reasons = [(x[0].value, x[3]) for x in fast_run[0]]
    # The grace starts in Python; the second attach within it is answered in C with its deadline.
    assert reasons == [("OWNER", True), ("OWNERSHIP_GRACE", False), ("OWNERSHIP_GRACE", True), ("OWNER", False),
                       ("OWNER", True)]
    assert fast_run[0][1][1] == fast_run[0][2][1] is not None
    assert [type(e).__name__ for e in fast_run[0][3][2]] == ["GracesDrop"]


@needs_fastpath
def test_after_a_clone_detection_the_device_counts_as_cloned() -> None:
    # clone1: one switch-back detects a clone (A, B, A). Then the device counts as cloned: the owner is
    # still ALLOW OWNER, an unknown subscriber CLONE_BLOCKED, and B's grace starts (Python), then goes on.
    index = _index([{"type": "device", "imeis": ["356938035643809"], "owner": "09121234567"}])
    a, b, core = 989121234567, 989127654321, 35693803564380
    queries = [Query(T0, core, a), Query(T0 + 60, core, b), Query(T0 + 120, core, a), Query(T0 + 180, core, a),
               Query(T0 + 240, core, 0), Query(T0 + 300, core, b), Query(T0 + 360, core, b), Query(T0 + 370, core, a)]
    state = MemoryState()
    fast = run(index, RULES["clone1"], queries, state, True)
    assert fast == run(index, RULES["clone1"], queries, MemoryState(histories={}), False)
    assert [d[0].value for d in fast[0]] == ["OWNER", "REGISTERED", "OWNER", "OWNER", "CLONE_BLOCKED",
                                             "CLONE_GRACE", "CLONE_GRACE", "OWNER"]
    assert state.detections[core].enforced
    accel = fastpath.accelerator(Bundle.of(index, RULES["clone1"]), state)
    assert accel is not None
    assert accel(Query(T0 + 420, core, a)) is CONST[Reason.OWNER]
    assert accel(Query(T0 + 480, core, 0)) is CONST[Reason.CLONE_BLOCKED]
    d = accel(Query(T0 + 540, core, b))  # detected: no clone check runs; B's grace goes on
    assert d is not None and d.reason is Reason.CLONE_GRACE and d.deadline == fast[0][5][1] and not d.effects


@needs_fastpath
def test_a_running_activation_grace_without_a_notice_is_decided_in_c() -> None:
    # eir/_outcomes.h: the first attach starts the grace and sends ACTIVATION_REQUIRED (Python: effects);
    # later ones with nothing to emit are decided in C, with the deadline, as Python decides them. (The
    # running traveler window is the same code path; the demo and hypothesis comparisons above cover it.)
    rules = RULES["default"]
    index = _index([{"type": "device", "imeis": ["356938035643817", "356938035643825"], "owner": None}])
    unowned, second, sub = 35693803564381, 35693803564382, 989121234567
    ref_state, state = MemoryState(histories={}), MemoryState()
    ref = Engine(Bundle.of(index, rules), ref_state, accelerate=False)
    engine = Engine(Bundle.of(index, rules), state)
    fast = engine.fast
    assert fast is not None
    first = Query(T0, unowned, sub)
    assert fast(first) is None and engine.check(first).effects == ref.check(first).effects != ()
    for q in (Query(T0 + 60, unowned, sub), Query(T0 + 120, second, sub, 2), Query(T0 + 180, second, 0)):
        made, expected = fast(q), ref.check(q)
        assert made is not None and made.reason is Reason.ACTIVATION_GRACE and not made.effects
        assert (made.reason, made.deadline) == (expected.reason, expected.deadline)
    assert state_view(state) == state_view(ref_state)
    # A device whose IMEIs the control plane changed: its device key is Python's to find.
    index.set_imeis(index.device_of(unowned), (unowned, second))
    assert fast(Query(T0 + 300, unowned, sub)) is None


def _python_decides(engine: Engine, steps: list[Query | tuple[int, int, int]], index: Index,
                    mp: pytest.MonkeyPatch) -> tuple[list[tuple[Reason, bool]], list[Any]]:
    """Run the steps (a Query: an attach; (dev, slot, msisdn): Index.set_operator_sim) -> per attach its
    reason and whether the Python decide ran, and the (reason, deadline, effects) of each."""
    calls: list[Query] = []
    real = eir.engine.decide

    def counting(q: Query, *args: Any) -> Any:
        calls.append(q)
        return real(q, *args)

    mp.setattr(eir.engine, "decide", counting)
    taken, out = [], []
    for step in steps:
        if isinstance(step, tuple):
            index.set_operator_sim(*step)
            continue
        n = len(calls)
        d = engine.check(step)
        taken.append((d.reason, len(calls) > n))
        out.append((d.reason, d.deadline, d.effects))
    return taken, out


def _fast_and_python(records: list[dict[str, Any]], rules: RuleSet,
                     steps: list[Query | tuple[int, int, int]]
                     ) -> tuple[list[tuple[Reason, bool]], list[Any], list[dict[str, Any]]]:
    """Run the steps (as _python_decides) with the accelerator and without it, on fresh indexes; both must
    give the same decisions, events and state. Returns the accelerated run's per-attach (reason, decided in
    Python), its (reason, deadline, effects) of each attach, and its events as dicts."""
    runs = []
    for accelerate in (True, False):
        index = _index(records)
        state = MemoryState() if accelerate else MemoryState(histories={})
        events: list[Event] = []
        engine = Engine(Bundle.of(index, rules), state, (events.append,), accelerate=accelerate)
        with pytest.MonkeyPatch.context() as mp:
            taken, out = _python_decides(engine, steps, index, mp)
        runs.append((taken, out, [e.to_dict() for e in events], state_view(state)))
    (taken, *fast), (_, *slow) = runs
    assert fast == slow
    return taken, fast[0], fast[1]


@needs_fastpath
def test_exceptions_and_blocked_devices_seen_again_are_decided_in_c() -> None:
    # eir/_allowed.h: OPERATOR_SIM, PRE_REGISTRY_USER, and BLACKLISTED without a notice are decided in C,
    # exactly as Python decides them; the first sighting of a blocked device by a subscriber (a notice), a
    # grace to drop, and the grace rules stay Python's. The control plane's operator SIM changes are seen.
    a, b, c, roamer = 989121234567, 989127654321, 989120000003, 4915112345678
    cloned, prereg, owned, blocked, listed = (35693803100001, 35693803100003, 35693803100004, 35693803100005,
                                              35693803100006)
    records = [
        {"type": "device", "imeis": [imei15(cloned), imei15(cloned + 1)], "owner": "09121234567", "cloned": True,
         "operator_sims": {"2": "09120000003"}},
        {"type": "device", "imeis": [imei15(prereg)], "origin": "pre_registry", "cloned": True,
         "pre_registry_users": ["09127654321", "09120000003"]},
        {"type": "device", "imeis": [imei15(owned)], "owner": "09121234567", "operator_sims": {"1": "09127654321"}},
        {"type": "device", "imeis": [imei15(blocked)], "owner": "09121234567", "block": "stolen"},
        {"type": "blacklist", "imei": imei15(listed), "reason": "stolen"},
    ]
    steps: list[Query | tuple[int, int, int]] = [
        Query(T0, cloned + 1, c, 2), Query(T0 + 10, cloned + 1, c, 2),  # operator SIM of slot 2 (cloned)
        Query(T0 + 20, cloned, c, 1),  # not slot 1's: the clone grace starts (Python)
        Query(T0 + 30, prereg, b), Query(T0 + 40, prereg, c), Query(T0 + 50, prereg, a),  # users; a: grace
        Query(T0 + 60, owned, b), Query(T0 + 70, owned, c),  # strict: b is slot 1's operator SIM; c: grace
        Query(T0 + 80, blocked, a), Query(T0 + 90, blocked, a), Query(T0 + 100, blocked, 0),
        Query(T0 + 110, blocked, b), Query(T0 + 120, listed, b), Query(T0 + 130, listed, b),
        Query(T0 + 140, blocked, roamer, roamer=True), Query(T0 + 150, blocked, roamer, roamer=True),
        (0, 1, c), Query(T0 + 160, cloned, c, 1),  # c holds a clone grace on this IMEI: dropped (Python)
        Query(T0 + 170, cloned, c, 1),  # then slot 1's operator SIM
        (0, 2, 0), Query(T0 + 180, cloned + 1, c, 2),  # removed: the clone grace starts
    ]
    taken, _, _ = _fast_and_python(records, RULES["strict"], steps)
    assert [(r.value, py) for r, py in taken] == [
        ("OPERATOR_SIM", False), ("OPERATOR_SIM", False), ("CLONE_GRACE", True),
        ("PRE_REGISTRY_USER", False), ("PRE_REGISTRY_USER", False), ("CLONE_GRACE", True),
        ("OPERATOR_SIM", False), ("OWNERSHIP_GRACE", True),
        ("BLACKLISTED", True), ("BLACKLISTED", False), ("BLACKLISTED", False), ("BLACKLISTED", True),
        ("BLACKLISTED", True), ("BLACKLISTED", False), ("BLACKLISTED", True), ("BLACKLISTED", False),
        ("OPERATOR_SIM", True), ("OPERATOR_SIM", False), ("CLONE_GRACE", True),
    ]


@needs_fastpath
def test_the_new_outcomes_on_the_raw_entry_points() -> None:
    # check_raw gives the same shared Decisions (the RPC batch and the replay edge use the same decision).
    index = _index([{"type": "device", "imeis": ["356938035643809"], "owner": "09121234567", "cloned": True},
                    {"type": "device", "imeis": ["356938035643817"], "origin": "pre_registry", "cloned": True,
                     "pre_registry_users": ["09127654321"]},
                    {"type": "blacklist", "imei": "356938035643825", "reason": "stolen"}])
    state = MemoryState()
    fast = fastpath.accelerator(Bundle.of(index, RULES["default"]), state)
    assert fast is not None
    assert fast.check_raw("356938035643817", "09127654321", 1, T0) is CONST[Reason.PRE_REGISTRY_USER]
    assert fast.check_raw("356938035643825", "", 1, T0) is CONST[Reason.BLACKLISTED]
    assert fast.check_raw("356938035643825", "09127654321", 1, T0) is None  # the notice is due: Python
    assert set(state.histories) == {35693803564381}


@needs_fastpath
@pytest.mark.parametrize("require_entry", [False, True])
def test_unregistered_without_effects_is_decided_in_c(require_entry: bool) -> None:
    # eir/_unregistered.h: UNREGISTERED is decided in C when no window starts (an unknown subscriber, or an
    # identity - national id, else MSISDN - whose quota was used within the period) and the notice is not
    # due; the window start and the notice stay Python's, as does everything where an entry record counts.
    a, b, c = 989121234567, 989127654321, 989120000003  # a and b: one national id (one quota); c: none
    x, y, z = 35693803100001, 35693803100002, 35693803100003  # unregistered IMEIs
    records = [{"type": "device", "imeis": [imei15(35693803100009)], "owner": "09121234567"},
               {"type": "subscriber", "msisdn": "09121234567", "national_id": "0012345678"},
               {"type": "subscriber", "msisdn": "09127654321", "national_id": "0012345678"},
               {"type": "subscriber", "msisdn": "09120000003"}]
    day, year = 86_400, 365 * 86_400
    steps: list[Query | tuple[int, int, int]] = [
        Query(T0, x, a), Query(T0 + 60, y, b),  # a's window on x; b shares a's quota: UNREGISTERED + notice
        Query(T0 + 120, y, b), Query(T0 + 180, y, 0), Query(T0 + 240, z, 0),  # no notice due, no subscriber
        Query(T0 + 300, y, c), Query(T0 + 360, z, c),  # c's window on y (its own quota); z: notice
        Query(T0 + 420, z, c, 2), Query(T0 + 31 * day, z, c),  # the notice again only after 30 days
        Query(T0 + year + 60, z, b),  # the period is over: a new window
    ]
    rules = rules_with(RULES["default"], traveler={"require_entry_record": require_entry})
    taken, _, _ = _fast_and_python(records, rules, steps)
    if require_entry:  # no entry records: never a window, and a known subscriber's UNREGISTERED is Python's
        assert {r for r, _ in taken} == {Reason.UNREGISTERED}
        assert [py for _, py in taken] == [q.msisdn != 0 for q in steps if isinstance(q, Query)]
        return
    assert [(r.value, py) for r, py in taken] == [
        ("TRAVELER_ALLOWANCE", True), ("UNREGISTERED", True), ("UNREGISTERED", False), ("UNREGISTERED", False),
        ("UNREGISTERED", False), ("TRAVELER_ALLOWANCE", True), ("UNREGISTERED", True), ("UNREGISTERED", False),
        ("UNREGISTERED", True), ("TRAVELER_ALLOWANCE", True),
    ]


@needs_fastpath
def test_a_grace_past_its_deadline_or_reminder_without_a_due_notice_is_decided_in_c() -> None:
    # eir/_allowed.h grace_quiet: within the reminder window once the GRACE_REMINDER went out, and past the
    # deadline once OWNERSHIP_BLOCKED went out (until it may repeat), a running grace is decided in C.
    r = RULES["strict"]
    b, core = 989127654321, 35693803564380
    t1 = T0 + 60
    deadline = t1 + r.ownership_grace_s
    remind, repeat = deadline - r.reminder_before_s, r.repeat_deny_notice_s
    steps: list[Query | tuple[int, int, int]] = [
        Query(t1, core, b), Query(t1 + 60, core, b),  # the grace starts (Python), then runs (C)
        Query(remind, core, b), Query(remind + 60, core, b),  # GRACE_REMINDER (Python), then none (C)
        Query(deadline, core, b), Query(deadline + 60, core, b),  # OWNERSHIP_BLOCKED notice, then none
        Query(deadline + repeat, core, b), Query(deadline + repeat + 60, core, b),  # the notice again, then none
    ]
    taken, _, events = _fast_and_python([{"type": "device", "imeis": ["356938035643809"], "owner": "09121234567"}],
                                        r, steps)
    assert [(x.value, py) for x, py in taken] == [
        ("OWNERSHIP_GRACE", True), ("OWNERSHIP_GRACE", False), ("OWNERSHIP_GRACE", True), ("OWNERSHIP_GRACE", False),
        ("OWNERSHIP_BLOCKED", True), ("OWNERSHIP_BLOCKED", False), ("OWNERSHIP_BLOCKED", True),
        ("OWNERSHIP_BLOCKED", False),
    ]
    assert [e["type"] for e in events] == ["OWNERSHIP_GRACE_STARTED", "GRACE_REMINDER", "OWNERSHIP_BLOCKED",
                                            "OWNERSHIP_BLOCKED"]


@needs_fastpath
def test_a_clone_check_that_cannot_find_a_switch_back_is_decided_in_c() -> None:
    # eir/_allowed.h seen_within_window: the clone check runs when someone other than the last subscriber
    # attaches; only an attach by one seen within the clone window can be a switch-back (Python: effects).
    r = RULES["default"]
    a, b, core, w = 989121234567, 989127654321, 35693803564380, r.clone_window_s
    steps: list[Query | tuple[int, int, int]] = [
        Query(T0, core, a), Query(T0 + 60, core, b),  # b: never seen before (C)
        Query(T0 + 120, core, a),  # a, seen within the window: a switch-back (Python)
        Query(T0 + 2 * w, core, b),  # b, last seen longer ago than the window: no switch-back (C)
        Query(T0 + 2 * w + 60, core, a, 2),  # a on another slot, last seen long ago (C)
        Query(T0 + 2 * w + 120, core, b),  # b within the window again (Python)
    ]
    taken, out, _ = _fast_and_python([{"type": "device", "imeis": ["356938035643809"], "owner": "09121234567"}],
                                     r, steps)
    assert [(x.value, py) for x, py in taken] == [("OWNER", False), ("REGISTERED", False), ("OWNER", True),
                                                   ("REGISTERED", False), ("OWNER", False), ("REGISTERED", True)]
    assert [type(e).__name__ for e in out[2][2]] == ["Switchback"]
