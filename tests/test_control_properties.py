"""Properties of the control plane: random sequences of operations and attaches keep the invariants.

* an IMEI belongs to one device (and the IMEI map agrees with the devices' IMEI lists);
* the owner of a non-blocked device is allowed on every IMEI of it;
* snapshot + journal replay equals the live index, and so does the exported snapshot;
* the owner's number never leaks: not in answers to someone else, not in a text addressed to another number.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest
from hypothesis import HealthCheck, event, given, settings

from eir.control import ControlError
from eir.control_export import export_data
from eir.control_ops import replay
from eir.decide import decide
from eir.events import PERSIAN_DIGITS, Event
from eir.identifiers import NumberingPlan, national_format
from eir.index import BLOCKED, Index
from eir.model import Query, Reason
from eir.rules import RuleSet
from eir.snapshot import encode_snapshot
from eir.store import SqliteState
from tests.control_fixtures import CODE_KEY, Plane, build, canonical
from tests.strategies import (
    CONTROL_CODE,
    CONTROL_CORES,
    CONTROL_SUBSCRIBERS,
    ControlStep,
    control_registries,
    control_steps,
)

T = TypeVar("T")
SUBS = CONTROL_SUBSCRIBERS
_ADVANCE = (60, 3_600, 86_400, 8 * 86_400)
_FROM_PERSIAN = str.maketrans("".join(chr(0x6F0 + i) for i in range(10)), "0123456789")


def drive(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to the end without a loop: with the in-memory state control never suspends."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    coro.close()
    raise AssertionError("a control operation suspended on the in-memory state")


class Run:
    """Interprets the steps against a plane and checks the invariants after each one."""

    def __init__(self, plane: Plane) -> None:
        self.p = plane
        self.codes: dict[int, str] = {}  # device id -> last transfer code issued

    def dev(self, core: int) -> int:
        return self.p.index.device_of(core)

    def free(self, e: int) -> int:
        """A control core on no device (most of the time), else any."""
        free = [c for c in CONTROL_CORES if self.dev(c) < 0]
        return free[e % len(free)] if free and e % 4 else CONTROL_CORES[e]

    def who(self, core: int, i: int) -> int:
        """0 = the device's owner (if any), else a pool subscriber."""
        dev = self.dev(core)
        if i == 0 and dev >= 0 and self.p.index.owner[dev]:
            return int(self.p.index.owner[dev])
        return SUBS[(i - 1) % len(SUBS)]

    async def step(self, s: ControlStep) -> tuple[dict[str, Any] | None, set[int]]:
        """Run one step; returns its answer (None for a refusal or an attach) and the numbers the caller gave."""
        kind, a, b, c, d, e = s
        core, ctl, p = CONTROL_CORES[a], self.p.control, self.p
        if kind == "attach":
            p.attach(core, SUBS[b % len(SUBS)], slot=1 + d % 2)
            return None, set()
        if kind == "owner_attach":
            # The owner (or another number) uses its device's IMEIs and a free one: the observation
            # history an IMEI correction needs.
            who, dev = self.who(core, b), self.dev(core)
            free = [x for x in CONTROL_CORES if self.dev(x) < 0]
            for slot, imei in enumerate((*p.index.device_imeis(dev), *free) if dev >= 0 else (core,), 1):
                p.attach(imei, who, slot=min(slot, 2))
            return None, set()
        if kind == "advance":
            p.clock.t += _ADVANCE[d]
            return None, set()
        dev = self.dev(core)
        coro: Coroutine[Any, Any, dict[str, Any]]
        given: set[int]
        if kind == "activate":
            t = p.index.transfers.get(dev) if dev >= 0 else None
            if t is not None and c == 0:
                msisdn, code = t.buyer, self.codes.get(dev, CONTROL_CODE)
            else:
                msisdn, code = SUBS[b % len(SUBS)], (CONTROL_CODE, "654321", "012345", CONTROL_CODE)[d]
            coro, given = ctl.activate(core, msisdn, code), {msisdn}
        elif kind == "transfer":
            owner, buyer = self.who(core, b), SUBS[c % len(SUBS)]
            coro, given = ctl.transfer(core, owner, buyer), {owner, buyer}
        elif kind in ("opsim_add", "opsim_del"):
            owner, msisdn = self.who(core, b), SUBS[c % len(SUBS)]
            fn = ctl.add_operator_sim if kind == "opsim_add" else ctl.remove_operator_sim
            coro, given = fn(core, owner, 1 + d % 2, msisdn), {owner, msisdn}
        elif kind == "claim":
            msisdn = SUBS[b % len(SUBS)]
            coro, given = ctl.claim(core, msisdn), {msisdn}
        elif kind == "recover":
            old, new = self.who(core, b), SUBS[c % len(SUBS)]
            coro, given = ctl.recover(core, old, new), {old, new}
        elif kind == "correction":
            registered = list(p.index.device_imeis(dev)) if dev >= 0 else [core]
            observed = list(registered)
            observed[d % len(observed)] = self.free(e)
            requester = self.who(core, b)
            coro, given = ctl.imei_correction(requester, registered, observed, c % 2 == 0), {requester}
        elif kind == "repair":
            owner = self.who(core, b)
            coro, given = ctl.repair(owner, core, self.free(e)), {owner}
        elif kind == "block":
            coro, given = ctl.block(core, ("stolen", "lost")[d % 2]), set()
        elif kind == "unblock":
            coro, given = ctl.unblock(core), set()
        else:
            coro, given = ctl.clone_flag(core, d % 2 == 0), set()
        try:
            answer = await coro
        except ControlError as err:
            assert err.code and err.message and not re.search(r"\d{8}", err.message)
            event(f"{kind}: {err.code}")
            return None, given
        event(f"{kind}: {answer.get('result', answer.get('outcome'))}")
        if kind == "transfer":
            m = re.search(r"\b(\d{6})\b", p.last("TRANSFER_CODE_ISSUED").text_en or "")
            assert m is not None
            self.codes[dev] = m.group(1)
        return answer, given

    # --- invariants ------------------------------------------------------------------------------------

    def owners(self) -> set[int]:
        idx = self.p.index
        return {int(o) for o in idx.owner if o}

    def check_imeis(self) -> None:
        idx = self.p.index
        seen: dict[int, int] = {}
        for dev in range(idx.n_devices):
            for core in idx.device_imeis(dev):
                assert core not in seen, f"IMEI {core} on devices {seen[core]} and {dev}"
                seen[core] = dev
                assert idx.device_of(core) == dev
        for core in CONTROL_CORES:
            if core not in seen:
                assert idx.device_of(core) == -1

    def check_owners_allowed(self) -> None:
        idx, b, st = self.p.index, self.p.engine.bundle, self.p.state
        for dev in range(idx.n_devices):
            owner = int(idx.owner[dev])
            imeis = idx.device_imeis(dev)
            if not owner or idx.flags[dev] & BLOCKED or any(idx.blacklist_reason(i) for i in imeis):
                continue
            for slot, core in enumerate(imeis, 1):
                d = decide(Query(self.p.clock.t, core, owner, slot), idx, b.rules, st)
                assert d.reason is Reason.OWNER, (core, owner, d)

    def check_no_leak(self, answer: dict[str, Any] | None, given: set[int], owners: set[int],
                      events: list[Event], plan: NumberingPlan) -> None:
        if answer is not None and "previous_users" not in answer:
            text = orjson.dumps(answer).decode()
            for o in owners - given:
                assert str(o) not in text and national_format(o, plan) not in text, (o, answer)
        for ev in events:
            if ev.text_en is None and ev.text_fa is None:
                continue
            texts = f"{ev.text_en} {(ev.text_fa or '').translate(_FROM_PERSIAN)}"
            for o in owners:
                if o != ev.msisdn:
                    assert national_format(o, plan) not in texts and str(o) not in texts, (o, ev)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=control_registries(), steps=control_steps())
def test_random_operations_keep_the_invariants(records: list[dict[str, Any]], steps: list[ControlStep],
                                               tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               default_rules: RuleSet) -> None:
    monkeypatch.setenv("EIR_CODE_KEY", CODE_KEY.decode())
    snap = build(tmp_path, records, "prop")
    plane = Plane(Index.from_snapshot(snap), default_rules)
    run = Run(plane)
    plan = default_rules.plan
    for s in steps:
        before = run.owners()
        n_events = len(plane.events)
        answer, given = drive(run.step(s))
        run.check_imeis()
        run.check_owners_allowed()
        run.check_no_leak(answer, given, before | run.owners(), plane.events[n_events:], plan)
    live = canonical(plane.index)
    fresh = Index.from_snapshot(snap)
    replay(fresh, plane.state.changes, plane.state.journal_id)
    assert canonical(fresh) == live
    exported = Index.from_bytes(encode_snapshot(export_data(plane.index), created=1, sources=[],
                                                journal=(plane.state.journal_id, plane.state.next_change_seq - 1)))
    assert canonical(exported) == live
    assert replay(exported, plane.state.changes, plane.state.journal_id).applied == 0


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=control_registries(), steps=control_steps(max_size=25))
def test_the_durable_journal_replays_to_the_live_index(records: list[dict[str, Any]], steps: list[ControlStep],
                                                       tmp_path_factory: pytest.TempPathFactory,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       default_rules: RuleSet) -> None:
    """With the SQLite store: after a restart, snapshot + the journal read back equals the live index."""
    monkeypatch.setenv("EIR_CODE_KEY", CODE_KEY.decode())
    tmp = tmp_path_factory.mktemp("durable")
    snap = build(tmp, records, "prop")

    async def scenario() -> None:
        store = await SqliteState.open(tmp / "state.db")
        plane = Plane(Index.from_snapshot(snap), default_rules, state=store)
        run = Run(plane)
        try:
            for s in steps:
                await run.step(s)
                run.check_imeis()
                run.check_owners_allowed()
            live = canonical(plane.index)
            n_changes = len(store.changes)
        finally:
            await store.close()
        again = await SqliteState.open(tmp / "state.db")
        try:
            assert len(again.changes) == n_changes
            fresh = Index.from_snapshot(snap)
            replay(fresh, again.changes, again.journal_id)
            assert canonical(fresh) == live
        finally:
            await again.close()

    asyncio.run(scenario())


def test_persian_digit_table_matches_the_renderer() -> None:
    assert "0123456789".translate(PERSIAN_DIGITS).translate(_FROM_PERSIAN) == "0123456789"
