"""Hypothesis properties of the pure core: identifiers and the engine's promises."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eir.identifiers import (
    MALFORMED,
    ImeiPolicy,
    NumberingPlan,
    imei15,
    luhn_check_digit,
    parse_imei,
    parse_msisdn,
)
from eir.index import Index
from eir.model import Reason, Verdict
from eir.rules import load_rules
from eir.snapshot import build_snapshot
from eir.state import MemoryState
from tests.conftest import RULES_DIR, T0, Harness, write_jsonl
from tests.strategies import attach_sequences, imei_cores, imei_forms, msisdn_forms, small_registries

POLICY = ImeiPolicy()
PLAN = NumberingPlan()
RULES = {name: load_rules(RULES_DIR / f"{name}.toml") for name in ("default", "strict")}
ENGINE_SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@given(imei_forms())
def test_every_imei_form_normalises_to_its_core(form: tuple[int, str]) -> None:
    core, text = form
    assert parse_imei(text, POLICY) == core


@given(msisdn_forms(), msisdn_forms())
def test_every_msisdn_form_normalises_equal(a: tuple[int, str], b: tuple[int, str]) -> None:
    number, text = a
    assert parse_msisdn(text, PLAN) == (number, True)
    # Two forms normalise equal exactly when they denote the same number.
    assert (parse_msisdn(text, PLAN) == parse_msisdn(b[1], PLAN)) == (number == b[0])


@given(imei_cores, st.integers(0, 14), st.integers(1, 9))
def test_luhn_detects_every_single_digit_error(core: int, pos: int, delta: int) -> None:
    good = imei15(core)
    assert parse_imei(good, POLICY) == core
    assert luhn_check_digit(good[:14]) == int(good[14])
    bad = good[:pos] + str((int(good[pos]) + delta) % 10) + good[pos + 1 :]
    assert parse_imei(bad, POLICY) == MALFORMED


def _index(records: list[dict[str, Any]]) -> Index:
    with tempfile.TemporaryDirectory() as d:
        src = write_jsonl(Path(d) / "r.jsonl", records)
        build_snapshot([src], Path(d) / "s.snap", skip_invalid=False)
        return Index.from_snapshot(Path(d) / "s.snap")


FAMILY = {
    Reason.CLONE_GRACE: "clone", Reason.CLONE_BLOCKED: "clone",
    Reason.OWNERSHIP_GRACE: "own", Reason.OWNERSHIP_BLOCKED: "own",
    Reason.ACTIVATION_GRACE: "act", Reason.NOT_ACTIVATED: "act",
    Reason.TRAVELER_ALLOWANCE: "trav", Reason.ALLOWANCE_EXPIRED: "trav",
}


@ENGINE_SETTINGS
@given(small_registries(), attach_sequences(T0), st.sampled_from(sorted(RULES)))
def test_an_announced_deadline_never_moves(records: list[dict[str, Any]],
                                           rows: list[tuple[int, str, str, int]], rules: str) -> None:
    index = _index(records)
    h = Harness(index, RULES[rules])
    r = RULES[rules]
    given_: dict[tuple[str, int, int], int] = {}
    for t, imei, msisdn, slot in rows:
        d = h.check(t, imei, msisdn, slot)
        q_imei, q_sub = int(imei[:14]), int("98" + msisdn[1:])
        if d.verdict is Verdict.ALLOW:
            given_.pop(("clone", q_imei, q_sub), None)  # allowed again: a later grace may start afresh
            given_.pop(("own", q_imei, q_sub), None)
            continue
        fam = FAMILY.get(d.reason)
        if fam is None:
            continue
        if fam == "act":
            code = index.lookup(q_imei)
            key = ("act", index.device_key((code >> 1) - 1), 0)
        elif fam == "trav":
            key = ("trav", q_imei, 0)
        else:
            key = (fam, q_imei, q_sub)
        first = given_.setdefault(key, d.deadline)  # type: ignore[arg-type]
        if fam == "trav" and d.deadline != first:
            # Only a new period may open a new window.
            assert t >= first - r.traveler_allowance_s + r.traveler_period_s
            given_[key] = d.deadline  # type: ignore[assignment]
            continue
        assert d.deadline == first, (key, d)


@ENGINE_SETTINGS
@given(small_registries(), attach_sequences(T0), st.sampled_from(sorted(RULES)))
def test_the_owner_of_a_non_blocked_device_is_always_allowed(
        records: list[dict[str, Any]], rows: list[tuple[int, str, str, int]], rules: str) -> None:
    h = Harness(_index(records), RULES[rules])
    owners = {}
    listed = {rec["imei"] for rec in records if rec["type"] == "blacklist"}
    for rec in records:
        if rec.get("owner") and not rec.get("block"):
            for i in rec["imeis"]:
                if i not in listed:  # an IMEI on the block list is BLACKLISTED whoever attaches
                    owners[i] = rec["owner"]
    for t, imei, msisdn, slot in rows + [(rows[-1][0] + 60, i, o, 1) for i, o in owners.items()]:
        d = h.check(t, imei, msisdn, slot)
        if owners.get(imei) == msisdn:
            assert (d.verdict, d.reason) == (Verdict.ALLOW, Reason.OWNER)


@ENGINE_SETTINGS
@given(small_registries(), attach_sequences(T0), st.integers(0, 60), st.sampled_from(sorted(RULES)))
def test_replaying_in_two_halves_equals_one_replay(records: list[dict[str, Any]],
                                                   rows: list[tuple[int, str, str, int]], cut: int,
                                                   rules: str) -> None:
    from eir.engine import Bundle, Engine

    index = _index(records)
    whole = Harness(index, RULES[rules])
    expected = [whole.check(*row) for row in rows]
    first = Harness(index, RULES[rules])
    got = [first.check(*row) for row in rows[:cut]]
    # The second half runs on a fresh engine with the index loaded again and the state carried over.
    second = Harness(_index(records), RULES[rules])
    second.state = first.state
    second.engine = Engine(Bundle.of(second.engine.bundle.index, RULES[rules]), first.state,
                           (second.events.append,))
    got += [second.check(*row) for row in rows[cut:]]
    assert [(d.reason, d.deadline) for d in got] == [(d.reason, d.deadline) for d in expected]
    assert [e.to_dict() for e in first.events + second.events] == [e.to_dict() for e in whole.events]
    assert isinstance(first.state, MemoryState)
