"""The durable state (eir.store): persistence, group commit and barriers, restart, pruning, bounds."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eir import store as store_mod
from eir.demo import write_demo
from eir.engine import Bundle, Engine
from eir.events import Event
from eir.identifiers import imei15
from eir.index import Index
from eir.model import Decision, Reason
from eir.query import build_query
from eir.replay import parse_rows, read_rows
from eir.rules import RuleSet
from eir.snapshot import build_snapshot
from eir.state import MAX_OBSERVATIONS_PER_IMEI, Detection, MemoryState, Observed, TravelerWindow, unpack_history
from eir.store import SqliteState, StoreConfig, StoreError
from eir.store_schema import history_path
from eir.store_sync import SyncSqliteState
from tests.conftest import DAY, T0

#: Wall clocks for the stores under test: the pruning clock never runs ahead of it.
LATE = lambda: T0 + 1000 * DAY  # noqa: E731
EARLY = lambda: T0  # noqa: E731  # nothing of the scenarios below counts as expired yet

OWNER, OTHER, THIRD, TRAVELER = "09121111111", "09122222222", "09123333333", "09126666666"
E164 = {OWNER: 989121111111, OTHER: 989122222222, THIRD: 989123333333, TRAVELER: 989126666666}


def imei(n: int) -> str:
    return imei15(35693803000000 + n)


OWNED, CLONED, UNACT, BLOCKED, UNREG, UNREG2, SHARED = (imei(n) for n in (1, 3, 7, 9, 11, 12, 20))
REGISTRY: list[dict[str, Any]] = [
    {"type": "device", "imeis": [OWNED], "owner": OWNER},
    {"type": "device", "imeis": [CLONED], "owner": OWNER, "cloned": True},
    {"type": "device", "imeis": [UNACT], "origin": "import"},
    {"type": "device", "imeis": [BLOCKED], "owner": OWNER, "block": "stolen"},
    {"type": "device", "imeis": [SHARED], "owner": OWNER},
    {"type": "subscriber", "msisdn": TRAVELER, "national_id": "0012345678"},
]


@pytest.fixture
def index(make_index: Callable[[list[dict[str, Any]]], Index]) -> Index:
    return make_index(REGISTRY)


@pytest.fixture
def bundle(index: Index, default_rules: RuleSet) -> Bundle:
    return Bundle.of(index, default_rules)


def check(engine: Engine, t: int, imei_: str, msisdn: str | None, slot: int = 1) -> Decision:
    b = engine.bundle
    return engine.check(build_query(b.index, b.rules, t, imei_, msisdn, slot))


def scenario(engine: Engine) -> list[tuple[str, int | None]]:
    """Attaches that create every kind of promise: grace, activation, window, quota, switch-backs,
    a detection, marks and events."""
    out = []
    steps = [
        (T0, CLONED, OTHER), (T0 + 60, UNACT, THIRD), (T0 + 120, UNREG, TRAVELER), (T0 + 180, BLOCKED, OTHER),
        (T0 + 240, OWNED, OWNER), (T0 + 300, OWNED, OTHER),
        # A B A B A on SHARED within the clone window: two switch-backs -> detected as cloned.
        (T0 + 1000, SHARED, OWNER), (T0 + 2000, SHARED, OTHER), (T0 + 3000, SHARED, OWNER),
        (T0 + 4000, SHARED, OTHER), (T0 + 5000, SHARED, OWNER), (T0 + 6000, SHARED, THIRD),
        (T0 + 29 * DAY, CLONED, OTHER), (T0 + 31 * DAY, CLONED, OTHER), (T0 + 31 * DAY + 5, UNACT, THIRD),
    ]
    for t, i, m in steps:
        d = check(engine, t, i, m)
        out.append((d.reason.value, d.deadline))
    return out


def hot(st: MemoryState) -> dict[str, Any]:
    """The decision-relevant in-memory state, comparable across stores."""
    return {
        "graces": {k: (g.start, g.deadline) for k, g in st.graces.items()},
        "grace_imeis": dict(st.grace_imeis),
        "activations": {k: (a.first_seen, a.deadline) for k, a in st.activations.items()},
        "windows": {k: (w.start, w.deadline, w.period_end, w.identity, w.msisdn) for k, w in st.windows.items()},
        "quotas": dict(st.quotas),
        "detections": {k: (d.time, d.enforced, d.subscribers) for k, d in st.detections.items()},
        "marks": dict(st.marks),
        "histories": {k: _history(v) for k, v in st.histories.items()},
        "enforced": list(st.enforced),
        "next_seq": st.next_seq,
    }


def _history(v: Observed) -> tuple[Any, ...]:
    # The packed and the History form of one history compare equal.
    h = unpack_history(v)
    return h.last_msisdn, h.last_time, dict(sorted(h.seen.items())), h.switchbacks


def db_rows(path: Path, table: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        return list(conn.execute(f"SELECT * FROM {table}"))  # noqa: S608 (test: constant table names)
    finally:
        conn.close()


# --- the replay store (synchronous) -----------------------------------------------------------------


def test_sync_store_restores_the_hot_state(tmp_path: Path, bundle: Bundle) -> None:
    mem = MemoryState(keep_outbox=True)
    expected = scenario(Engine(bundle, mem))
    path = tmp_path / "state.db"
    with SyncSqliteState.open(path, rules=lambda: bundle.rules, clock=LATE) as st:
        assert scenario(Engine(bundle, st)) == expected
        assert hot(st) == hot(mem)
    # close() pruned what can no longer matter (e.g. reminder marks of passed deadlines); the reopened
    # store holds exactly what was left.
    assert hot(st) != hot(mem)
    with SyncSqliteState.open(path, rules=lambda: bundle.rules, clock=LATE) as again:
        assert hot(again) == hot(st)
        assert [e.to_dict() for e in again.events_after(0, 1000)] == [e.to_dict() for e in mem.events]
        assert again.committed_seq == len(mem.events)
    graces = {(r[0], r[1], r[2]) for r in db_rows(path, "grace")}
    assert graces == set(mem.graces) and len(graces) == 3  # OTHER on both clones, THIRD on SHARED


def test_replay_in_two_halves_equals_one_replay(tmp_path: Path, default_rules: RuleSet) -> None:
    """Issue 4 §5: the same --state across two runs decides and emits exactly like one run."""
    demo = tmp_path / "demo"
    write_demo(demo, 3_000, 40_000, 11)
    build_snapshot([demo / "registry.jsonl"], demo / "snap.eirsnap", skip_invalid=False)
    bundle = Bundle.of(Index.from_snapshot(demo / "snap.eirsnap"), default_rules)
    rows = list(read_rows(demo / "attaches.csv"))

    def run(state: MemoryState, part: list[Any]) -> tuple[list[Any], list[dict[str, Any]]]:
        events: list[dict[str, Any]] = []
        engine = Engine(bundle, state, (lambda ev: events.append(ev.to_dict()),))
        decisions = []
        for n, _, q in parse_rows(iter(part), engine, lambda bad: None):
            d = engine.check(q)
            decisions.append((n, d.reason.value, d.deadline))
        return decisions, events

    whole = run(MemoryState(keep_outbox=False), rows)
    assert len(whole[1]) > 300  # the demo mix does emit events of many kinds
    path = tmp_path / "state.db"
    # Small commit/prune intervals so that both happen many times inside each half.
    cfg = StoreConfig(replay_commit_rows=3_000, replay_prune_rows=5_000)
    decisions: list[Any] = []
    events: list[dict[str, Any]] = []
    half = len(rows) // 2
    for part in (rows[:half], rows[half:]):
        with SyncSqliteState.open(path, cfg, rules=lambda: default_rules) as st:
            d, e = run(st, part)
        decisions += d
        events += e
    assert decisions == whole[0]
    assert events == whole[1]
    with SyncSqliteState.open(path, cfg) as st:
        outbox = [orjson.loads(b) for _, b in st.iter_event_rows()]
    assert outbox == whole[1]


def test_uncommitted_changes_are_gone_after_a_crash_and_seq_continues(tmp_path: Path, bundle: Bundle) -> None:
    path = tmp_path / "state.db"
    st = SyncSqliteState.open(path)
    engine = Engine(bundle, st)
    check(engine, T0, CLONED, OTHER)
    st.commit()
    committed = hot(st)
    check(engine, T0 + 10, CLONED, THIRD)  # a second grace and event, never committed
    assert st.next_seq == 3
    st._conn.close()  # type: ignore[union-attr]  # the process dies: no close(), no commit
    st._close_lock()
    with SyncSqliteState.open(path) as again:
        assert hot(again) == committed
        assert again.next_seq == 2 and again.committed_seq == 1


def test_store_refuses_a_second_owner_and_foreign_databases(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with SyncSqliteState.open(path), pytest.raises(StoreError, match="in use"):
        SyncSqliteState.open(path)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(StoreError, match="newer"):
        SyncSqliteState.open(path)
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE x (a)")
    conn.close()
    with pytest.raises(StoreError, match="not an eir state"):
        SyncSqliteState.open(other)
    # The two files of a state cannot be swapped or mixed up with another state's.
    good = tmp_path / "good.db"
    SyncSqliteState.open(good).close()
    history_path(good).rename(tmp_path / "swapped.db")
    with pytest.raises(StoreError, match="not an eir state database"):
        SyncSqliteState.open(tmp_path / "swapped.db")
    (tmp_path / "junk.db").write_bytes(b"not a database at all" * 100)
    with pytest.raises(StoreError):
        SyncSqliteState.open(tmp_path / "junk.db")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(1, 45), st.integers(1, 2), st.integers(0, 50)),
                max_size=200))
def test_observe_keeps_the_same_history_as_memory_state(tmp_path_factory: pytest.TempPathFactory,
                                                       ops: list[tuple[int, int, int, int]]) -> None:
    """SqliteState inlines MemoryState.observe (hot path): both must keep identical histories."""
    mem = MemoryState()
    path = tmp_path_factory.mktemp("obs") / "state.db"
    with SyncSqliteState.open(path) as stored:
        t = T0
        for i, m, slot, dt in ops:
            t += dt
            mem.observe(10 + i, 989120000000 + m, slot, t)
            stored.observe(10 + i, 989120000000 + m, slot, t)
            assert mem.histories[10 + i] == stored.histories[10 + i]  # the same form, too
        assert hot(stored)["histories"] == hot(mem)["histories"]
        stored.commit()
        counts: dict[tuple[int, int, int], int] = {}
        for i, m, slot, _ in ops:
            key = (10 + i, 989120000000 + m, slot)
            counts[key] = counts.get(key, 0) + 1
        for i in range(4):
            rows = stored.history_rows(10 + i)
            assert len(rows) <= MAX_OBSERVATIONS_PER_IMEI
            for m, slot, _, _, c in rows:
                assert counts[(10 + i, m, slot)] == c


def test_observation_history_is_bounded_per_imei_and_counts_add_up(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with SyncSqliteState.open(path) as st:
        for round_ in range(3):
            for m in range(40):
                st.observe(42, 989120000000 + m, 1, T0 + round_ * 1000 + m)
            st.commit()
        rows = st.history_rows(42)
    assert len(rows) == MAX_OBSERVATIONS_PER_IMEI
    assert {r[0] - 989120000000 for r in rows} == set(range(8, 40))  # the most recently seen
    assert all(r[4] == 3 and r[2] == T0 + r[0] - 989120000000 for r in rows)  # count and first seen
    assert len(db_rows(history_path(path), "observation")) == MAX_OBSERVATIONS_PER_IMEI


def test_history_of_a_cold_imei_is_trimmed_when_it_comes_back(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with SyncSqliteState.open(path) as st:
        for m in range(30):
            st.observe(42, 989120000000 + m, 1, T0 + m)
        st.commit()
        del st.histories[42]  # pruned from memory: the IMEI went quiet
        for m in range(30, 50):
            st.observe(42, 989120000000 + m, 1, T0 + m)
        st.commit()
        rows = st.history_rows(42)
    assert len(db_rows(history_path(path), "observation")) == MAX_OBSERVATIONS_PER_IMEI
    assert {r[0] - 989120000000 for r in rows} == set(range(18, 50))


# --- pruning ----------------------------------------------------------------------------------------


def test_prune_drops_only_what_can_no_longer_change_a_decision(tmp_path: Path, default_rules: RuleSet) -> None:
    now = T0 + 400 * DAY
    path = tmp_path / "state.db"
    st = SyncSqliteState.open(path, StoreConfig(prune_slack_s=DAY), rules=lambda: default_rules, clock=LATE)
    old, recent = T0, now - DAY // 2
    st.put_grace(1, 1, 5, old, old + 30 * DAY)  # a deadline long past: still a promise, kept
    st.put_activation(2, old, old + 30 * DAY)
    st.put_detection(3, Detection(old, True, (5, 6)))
    st.put_window(4, TravelerWindow(old, old + 30 * DAY, old + 365 * DAY, "msisdn:5", 5))
    st.put_window(5, TravelerWindow(recent, recent + 30 * DAY, recent + 365 * DAY, "msisdn:6", 6))
    st.put_quota("msisdn:5", old)
    st.put_quota("msisdn:6", recent)
    marks = {
        ("UNREGISTERED_DEVICE", 4, 5, 0): old,  # deny notice older than the repeat window: drop
        ("UNREGISTERED_DEVICE", 5, 6, 0): recent,
        ("GRACE_REMINDER", 1, 5, old + 30 * DAY): old + 27 * DAY,  # its deadline passed: drop
        ("ACTIVATION_REQUIRED", 2, 5, now + 10 * DAY): recent,
        ("BLACKLISTED_DEVICE_SEEN", 9, 5, 0): old,  # once per (IMEI, subscriber), ever: keep
        ("SAFETY_BRAKE", 3, 0, 0): old,
        ("SOME_FUTURE_KIND", 3, 0, 0): old,  # unknown kinds are never pruned
    }
    for k, t in marks.items():
        st.put_mark(k, t)
    st.observe(7, 5, 1, old)
    st.observe(8, 5, 1, recent)
    st.add_switchback(7, old, default_rules.clone_window_s)
    st.high_water = now
    st.commit()
    st.prune()
    st.commit()
    assert set(st.marks) == {("UNREGISTERED_DEVICE", 5, 6, 0), ("ACTIVATION_REQUIRED", 2, 5, now + 10 * DAY),
                             ("BLACKLISTED_DEVICE_SEEN", 9, 5, 0), ("SOME_FUTURE_KIND", 3, 0, 0)}
    assert set(st.windows) == {5} and set(st.quotas) == {"msisdn:6"}
    assert set(st.histories) == {8}
    assert set(st.graces) == {(1, 5, 1)} and set(st.activations) == {2} and set(st.detections) == {3}
    assert len(db_rows(path, "mark")) == 4
    assert len(db_rows(path, "traveler_window")) == 1 and len(db_rows(path, "quota")) == 1
    assert db_rows(path, "switchback") == []
    assert len(db_rows(history_path(path), "observation")) == 2  # the history itself stays (bounded per IMEI)
    st.close()


def test_prune_clock_never_runs_ahead_of_the_wall_clock(tmp_path: Path, default_rules: RuleSet) -> None:
    # A caller sending a time in 2099 must not make the store forget today's state.
    with SyncSqliteState.open(tmp_path / "state.db", rules=lambda: default_rules, clock=EARLY) as st:
        st.put_mark(("UNREGISTERED_DEVICE", 4, 5, 0), T0 - DAY)
        st.observe(1, 5, 1, 4_070_908_800)
        assert st.high_water == 4_070_908_800
        assert st.prune() == 0 and st.marks


def test_expired_rows_are_deleted_on_open(tmp_path: Path, default_rules: RuleSet) -> None:
    path = tmp_path / "state.db"
    with SyncSqliteState.open(path) as st:
        st.put_mark(("UNREGISTERED_DEVICE", 4, 5, 0), T0)
        st.put_window(4, TravelerWindow(T0, T0 + DAY, T0 + 2 * DAY, "msisdn:5", 5))
        st.observe(1, 5, 1, T0 + 400 * DAY)
    with SyncSqliteState.open(path, rules=lambda: default_rules, clock=LATE) as st:
        assert not st.marks and not st.windows
    assert db_rows(path, "mark") == [] and db_rows(path, "traveler_window") == []


# --- the service store (asynchronous, group commit) -------------------------------------------------


async def test_barrier_makes_promises_durable_before_the_answer(tmp_path: Path, bundle: Bundle) -> None:
    path = tmp_path / "state.db"
    st = await SqliteState.open(path)
    try:
        engine = Engine(bundle, st)
        d = check(engine, T0, CLONED, OTHER)
        assert d.reason is Reason.CLONE_GRACE and st.needs_barrier(d) and st.has_pending()
        assert db_rows(path, "grace") == []  # nothing written before the writer runs
        await st.barrier()
        assert not st.has_pending()
        assert db_rows(path, "grace") == [(int(CLONED[:14]), E164[OTHER], 1, T0, d.deadline)]
        [(seq, _, body)] = db_rows(path, "outbox")
        assert seq == 1 and orjson.loads(body)["type"] == "CLONE_GRACE_STARTED"
        assert st.committed_seq == 1
        # A decision that creates nothing answers at once: no barrier, and a barrier would not wait.
        allow = check(engine, T0 + 5, OWNED, OWNER)
        assert not allow.effects and not st.needs_barrier(allow)
        assert st.barrier().done()  # type: ignore[attr-defined]
    finally:
        await st.close()


async def test_a_deadline_read_from_a_pending_promise_waits_too(tmp_path: Path, bundle: Bundle) -> None:
    st = await SqliteState.open(tmp_path / "state.db")
    try:
        engine = Engine(bundle, st)
        first = check(engine, T0, CLONED, OTHER)
        second = check(engine, T0 + 1, CLONED, OTHER)  # reads the grace the first just made
        assert not second.effects and second.deadline == first.deadline
        assert st.needs_barrier(second)
        await st.barrier()
        third = check(engine, T0 + 2, CLONED, OTHER)
        assert third.deadline == first.deadline and not st.needs_barrier(third)
        # Another subscriber's new grace is pending: an answer with an already durable deadline
        # does not wait for it.
        other = check(engine, T0 + 3, CLONED, THIRD)
        assert other.effects and st.has_pending()
        fourth = check(engine, T0 + 4, CLONED, OTHER)
        assert fourth.deadline == first.deadline and not st.needs_barrier(fourth)
        assert st.needs_barrier(check(engine, T0 + 5, CLONED, THIRD))
    finally:
        await st.close()


async def test_group_commit_batches_many_requests(tmp_path: Path, bundle: Bundle) -> None:
    st = await SqliteState.open(tmp_path / "state.db")
    try:
        engine = Engine(bundle, st)

        async def request(i: int) -> int | None:
            d = check(engine, T0 + i, UNREG2 if i % 2 else UNREG, f"0912{i:07d}")
            if st.needs_barrier(d):
                await st.barrier()
            return d.deadline

        await asyncio.gather(*(request(i) for i in range(200)))
        assert st.stats["commits"] < 50  # 200 requests with events, far fewer transactions
        assert st.committed_seq == st.next_seq - 1
        assert [s for s, _ in await st.read_events(0, 1000)] == list(range(1, st.next_seq))
    finally:
        await st.close()


async def test_async_and_sync_stores_share_one_format(tmp_path: Path, bundle: Bundle) -> None:
    path = tmp_path / "state.db"
    mem = MemoryState()
    scenario(Engine(bundle, mem))
    st = await SqliteState.open(path, clock=EARLY)
    scenario(Engine(bundle, st))
    await st.close()
    with SyncSqliteState.open(path, clock=EARLY) as again:
        assert hot(again) == hot(mem)
    st = await SqliteState.open(path, clock=EARLY)
    try:
        assert hot(st) == hot(mem)
        assert [orjson.loads(b)["seq"] for _, b in await st.read_events(0, 100)] == list(range(1, mem.next_seq))
        assert [e.seq for e in st.events_after(3, 2)] == [4, 5]
    finally:
        await st.close()


async def test_wait_for_events_wakes_on_commit(tmp_path: Path, bundle: Bundle) -> None:
    st = await SqliteState.open(tmp_path / "state.db")
    try:
        assert not await st.wait_for_events(0, 0.05)
        engine = Engine(bundle, st)
        waiter = asyncio.ensure_future(st.wait_for_events(0, 5.0))
        await asyncio.sleep(0.01)
        assert not waiter.done()
        check(engine, T0, CLONED, OTHER)
        assert await asyncio.wait_for(waiter, 2.0)
    finally:
        await st.close()


async def test_observation_counts_flush_in_the_background(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    st = await SqliteState.open(path, StoreConfig(observation_flush_s=0.05))
    try:
        for i in range(10):
            st.observe(42, 989120000001, 1, T0 + i)
        assert not st.has_pending()  # observations are soft: nobody waits for them
        assert await st.history_rows(42) == [(989120000001, 1, T0, T0 + 9, 10)]  # pending, merged
        for _ in range(100):
            await asyncio.sleep(0.02)
            if db_rows(history_path(path), "observation"):
                break
        assert db_rows(history_path(path), "observation") == [(42, 989120000001, 1, T0, T0 + 9, 10, 9)]
        st.observe(42, 989120000001, 1, T0 + 20)
        assert await st.history_rows(42) == [(989120000001, 1, T0, T0 + 20, 11)]
    finally:
        await st.close()
    assert db_rows(history_path(path), "observation") == [(42, 989120000001, 1, T0, T0 + 20, 11, 10)]


async def test_a_failed_commit_fails_the_barrier_and_is_retried(tmp_path: Path, bundle: Bundle,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "state.db"
    st = await SqliteState.open(path, StoreConfig(retry_backoff_s=0.01))
    real = store_mod.write_batch
    failures = [1]

    def flaky(conn: sqlite3.Connection, b: Any, params: Any = None) -> None:
        if failures[0]:
            failures[0] -= 1
            raise sqlite3.OperationalError("disk I/O error")
        real(conn, b, params)

    monkeypatch.setattr(store_mod, "write_batch", flaky)
    try:
        engine = Engine(bundle, st)
        d = check(engine, T0, CLONED, OTHER)
        with pytest.raises(StoreError, match="disk I/O"):
            await st.barrier()
        assert st.has_pending() or st.committed_seq == 1
        await st.barrier()  # the retry commits the same promise
        assert st.committed_seq == 1 and st.stats["commit_errors"] == 1
        assert db_rows(path, "grace")[0][4] == d.deadline
    finally:
        await st.close()


async def test_a_writer_that_dies_fails_every_barrier_instead_of_hanging(
        tmp_path: Path, bundle: Bundle, monkeypatch: pytest.MonkeyPatch) -> None:
    st = await SqliteState.open(tmp_path / "state.db")

    def bug(conn: sqlite3.Connection, b: Any, params: Any = None) -> None:
        raise ZeroDivisionError("a bug, not a disk error")

    monkeypatch.setattr(store_mod, "write_batch", bug)
    try:
        check(Engine(bundle, st), T0, CLONED, OTHER)
        with pytest.raises(StoreError, match="ZeroDivisionError"):
            await asyncio.wait_for(st.barrier(), 5)
        with pytest.raises(StoreError, match="not writing"):
            st.barrier()
    finally:
        st._closing = True  # the promise can never be written: skip the final flush
        await st._shutdown()


async def test_consumer_ack_is_durable(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    st = await SqliteState.open(path)
    await st.ack("sms", 7)
    await st.ack("sms", 3)  # never moves back
    assert st.consumer_seq("sms") == 7
    await st.close()
    assert db_rows(path, "consumer") == [("sms", 7)]
    st = await SqliteState.open(path)
    try:
        assert st.consumer_seq("sms") == 7 and st.metrics()["consumer_lag:sms"] == -7
    finally:
        await st.close()


async def test_async_prune_runs_between_decisions(tmp_path: Path, default_rules: RuleSet) -> None:
    path = tmp_path / "state.db"
    st = await SqliteState.open(path, StoreConfig(prune_chunk=10), rules=lambda: default_rules, clock=LATE)
    try:
        for i in range(100):
            st.put_mark(("UNREGISTERED_DEVICE", i, 5, 0), T0)
        st.put_mark(("UNREGISTERED_DEVICE", 1000, 5, 0), T0 + 400 * DAY)
        st.high_water = T0 + 400 * DAY
        assert await st.prune() == 100
        await st.flush()
        assert len(db_rows(path, "mark")) == 1
    finally:
        await st.close()


def test_event_roundtrip_through_the_outbox(tmp_path: Path) -> None:
    ev = Event("CLONE_DETECTED", T0, 35693803000003, 989121111111, 2, None, None, subscribers=(1, 2))
    with SyncSqliteState.open(tmp_path / "state.db") as st:
        st.append_event(ev)
        st.commit()
        [back] = st.events_after(0, 10)
    assert back == ev


def test_history_sql_matches_the_slot_packing() -> None:
    from eir.state import SLOT_BITS
    from eir.store_schema import UPSERT_OBSERVATIONS

    assert SLOT_BITS == 5 and "sub >> 5, sub & 31" in UPSERT_OBSERVATIONS


def test_store_config_is_validated() -> None:
    with pytest.raises(ValueError, match="synchronous"):
        StoreConfig(synchronous="OFF")
    with pytest.raises(ValueError, match="history_batch_rows"):
        StoreConfig(history_batch_rows=0)
