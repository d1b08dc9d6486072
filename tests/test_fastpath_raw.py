"""The raw entry point of the C accelerator (``FastCheck.check_raw``, eir/_ident.h) against the Python path.

The C parsers may decline any value (None: Python parses it), but whatever they do parse must be exactly
what eir.identifiers / eir.query make of it, and they must not decline the common forms. ``check_raw``
must give the decisions, events and state of ``build_query`` + the pure-Python engine, for every raw form.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eir import fastpath
from eir.demo import write_demo
from eir.engine import Bundle, Engine
from eir.identifiers import (
    IdentifierError,
    ImeiPolicy,
    NumberingPlan,
    imei15,
    parse_imei,
    parse_imsi,
    parse_msisdn,
    parse_slot,
)
from eir.index import Index
from eir.query import RequestError, build_query, parse_time
from eir.replay import read_rows
from eir.rules import RuleSet
from eir.snapshot import build_snapshot
from eir.state import MemoryState
from tests.conftest import T0, rules_with
from tests.strategies import (
    DIGITS,
    POOL_SUBSCRIBERS,
    attach_sequences,
    imei_forms,
    imsis,
    msisdn_forms,
    small_registries,
)
from tests.test_fastpath import RULES, _index, state_view

pytestmark = pytest.mark.skipif(not fastpath.available(), reason="eir._fastpath is not built")
if fastpath.available():
    from eir import _fastpath  # type: ignore[attr-defined]

POLICIES = [ImeiPolicy(a, b) for a in (True, False) for b in (True, False)]
PLANS = [NumberingPlan(), NumberingPlan(country_code="1"), NumberingPlan(country_code="44")]

# Anything a client may send: digits of every length around the valid ones, with and without the
# prefixes, blanks, letters, non-ASCII digits, test IMEIs, wrong check digits.
_junk = st.text(st.sampled_from([*DIGITS, " ", "\t", "\x1f", "-", "+", "a", "I", "e", "۴", "٣", "²"]), max_size=24)
_digit_runs = st.text(DIGITS, min_size=0, max_size=18)
_imei_text = st.one_of(
    imei_forms().map(lambda f: f[1]),
    st.tuples(st.sampled_from(["", "imei-", "IMEI-", "imeisv-", "ImeiSv-", "imei", " ", "imei- "]), _digit_runs,
              st.sampled_from(["", " ", "\n", "x"])).map("".join),
    st.integers(0, 9).map(lambda d: str(d) * 14),
    st.integers(0, 9).map(lambda d: imei15(int(str(d) * 14))),
    st.integers(10**13, 10**14 - 1).map(lambda c: f"{c}{(int(imei15(c)[-1]) + 1) % 10}"),  # wrong check digit
    _junk, st.text(max_size=70))
_msisdn_text = st.one_of(
    msisdn_forms().map(lambda f: f[1]),
    st.tuples(st.sampled_from(["", "+", "00", "0", "+0", "msisdn-", " ", "98", "0098", "+98"]), _digit_runs,
              st.sampled_from(["", " "])).map("".join),
    _junk, st.text(max_size=70))


@given(_imei_text)
def test_c_imei_parse_is_eir_identifiers(raw: str) -> None:
    for policy in POLICIES:
        got = _fastpath.parse_imei(raw, policy.deny_invalid_check_digit, policy.deny_test_imeis)
        if got is not None:
            assert got == parse_imei(raw, policy), (raw, policy)


@given(imei_forms())
def test_c_imei_parse_takes_every_common_form(form: tuple[int, str]) -> None:
    core, raw = form
    assert _fastpath.parse_imei(raw, True, True) == core


def _python_msisdn(raw: str, plan: NumberingPlan) -> tuple[int, bool] | None:
    try:
        m, home = parse_msisdn(raw, plan)
    except IdentifierError:
        return None
    return m, home


@given(_msisdn_text)
def test_c_msisdn_parse_is_eir_identifiers(raw: str) -> None:
    for plan in PLANS:
        got = _fastpath.parse_msisdn(raw, plan.country_code, plan.national_mobile_length)
        if got is not None:  # parsed in C: Python accepts it too, with the same result
            assert got == _python_msisdn(raw, plan), (raw, plan)


@given(st.one_of(msisdn_forms(), st.integers(10**7, 10**15 - 1).map(lambda m: (m, f"+{m}"))))
def test_c_msisdn_parse_takes_every_common_form(form: tuple[int, str]) -> None:
    msisdn, raw = form
    plan = NumberingPlan()
    assert _fastpath.parse_msisdn(raw, plan.country_code, plan.national_mobile_length) == (
        msisdn, str(msisdn).startswith("98"))


_imsi_text = st.one_of(
    imsis.map(str),
    st.tuples(st.sampled_from(["", "imsi-", "IMSI-", "iMsI-", "imsi", "imsi- ", " ", "0", "imei-"]), _digit_runs,
              st.sampled_from(["", " ", "\n", "x"])).map("".join),
    _junk, st.text(max_size=70))


@given(_imsi_text)
def test_c_imsi_parse_is_eir_identifiers(raw: str) -> None:
    got = _fastpath.parse_imsi(raw)
    if got is not None:  # parsed in C: Python accepts it too, with the same IMSI and MCC (str(imsi)[:3])
        imsi, mcc = got
        assert imsi == _python(parse_imsi, raw), raw
        assert str(mcc) == str(imsi)[:3], raw


@given(imsis, st.sampled_from(["", "imsi-", "IMSI-", "Imsi-"]))
def test_c_imsi_parse_takes_every_common_form(imsi: int, prefix: str) -> None:
    assert _fastpath.parse_imsi(prefix + str(imsi)) == (imsi, int(str(imsi)[:3]))


def _python(fn: Any, raw: object) -> object:
    try:
        return fn(raw)
    except IdentifierError:
        return None


@given(st.one_of(st.none(), st.booleans(), st.integers(-3, 20), st.integers(), st.floats(),
                 st.sampled_from(["", "1", "2", "9", "10", "16", "17", "0", "01", " 1", "a"]), st.text(max_size=3)))
def test_c_slot_and_time_parse_are_eir_query(raw: object) -> None:
    slot = _fastpath.parse_slot(raw)
    if slot is not None:
        assert slot == parse_slot(raw)
    t = _fastpath.parse_time(raw)
    if t is not None:
        assert t == _python(parse_time, raw)


@given(st.one_of(st.integers(946_684_800, 4_102_444_800), st.floats(946_684_800, 4_102_444_800.99)))
def test_c_time_parse_takes_epoch_numbers(raw: float) -> None:
    assert _fastpath.parse_time(raw) == parse_time(raw) == math.floor(raw)


# --- check_raw against build_query + the pure-Python engine --------------------------------------------

Raw = tuple[object, object, object, object, object]


def run_raw(index: Index, rules: RuleSet, rows: list[Raw], accelerate: bool) -> tuple[list[Any], list[Any], Any]:
    """Every row through check_raw (accelerated) or build_query + check; errors recorded as outcomes."""
    state, events = MemoryState(), []
    engine = Engine(Bundle.of(index, rules), state, (events.append,), accelerate=accelerate)
    fast = engine.fast
    assert (fast is not None) == accelerate
    out: list[Any] = []
    taken = 0
    for imei, msisdn, slot, t, imsi in rows:
        d = fast.check_raw(imei, msisdn, slot, t, imsi) if fast is not None else None
        if d is None:
            try:
                q = build_query(index, rules, parse_time(t), imei, msisdn, slot, imsi)
            except RequestError as e:
                out.append(("error", e.field, e.reason))
                continue
            d = engine.check(q)
        else:
            taken += 1
            assert not d.effects
        out.append((d.reason, d.deadline, d.effects))
    return out, [e.to_dict() for e in events], (state_view(state), taken)


@st.composite
def raw_rows(draw: st.DrawFn, rows: list[tuple[int, str, str, int]]) -> list[Raw]:
    """The attaches with their values in every raw form a client may send (and a few bad ones)."""
    out: list[Raw] = []
    for t, imei, msisdn, slot in rows:
        imei_raw = draw(st.sampled_from([imei, imei[:14], "imei-" + imei, f"imeisv-{imei[:14]}07", " " + imei,
                                         imei + "0", "x" + imei]))
        nsn = msisdn[1:]
        m: object = draw(st.sampled_from([msisdn, nsn, "+98" + nsn, "0098" + nsn, "98" + nsn, None, "",
                                          "+4915112345678", "0912", " " + msisdn, 989121234567]))
        s: object = draw(st.sampled_from([slot, str(slot), None, "", 0, "x", True]))
        tt: object = draw(st.sampled_from([t, t + 0.5, str(t), True]))
        imsi: object = draw(st.sampled_from([None, None, "", "432111234567890", "310111234567890"]))
        out.append((imei_raw, m, s, tt, imsi))
    return out


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_registries(), st.one_of(attach_sequences(T0, 60), attach_sequences(T0, 60, dense=True)).flatmap(raw_rows),
       st.sampled_from(sorted(RULES)))
def test_check_raw_equals_the_python_path(records: list[dict[str, Any]], rows: list[Raw], rules: str) -> None:
    index, r = _index(records), RULES[rules]
    fast, slow = run_raw(index, r, rows, True), run_raw(index, r, rows, False)
    assert fast[:2] == slow[:2]
    assert fast[2][0] == slow[2][0]


# The pool's subscribers with an IMSI record: home IMSIs (their MSISDN comes from the index when only the
# IMSI is given) and one in another MCC, home only under the "mcc2" rules.
_SUB_IMSIS = {POOL_SUBSCRIBERS[0]: 432110000000001, POOL_SUBSCRIBERS[1]: 432110000000002,
              POOL_SUBSCRIBERS[2]: 432351234567, POOL_SUBSCRIBERS[3]: 310150000000001}
_IMSI_RULES = {**RULES, "mcc2": rules_with(RULES["default"], policy={"home_mcc": ["432", "310"]}),
               "no_exempt": rules_with(RULES["default"], roamers={"exempt": False})}


@st.composite
def imsi_rows(draw: st.DrawFn, rows: list[tuple[int, str, str, int]]) -> list[Raw]:
    """The attaches carrying IMSIs in every form: the subscriber's own (with its MSISDN, without it, with a
    foreign one), unknown home and foreign IMSIs, and forms the C parser leaves to Python or Python refuses."""
    out: list[Raw] = []
    for t, imei, msisdn, slot in rows:
        own = _SUB_IMSIS.get(msisdn, 432999999999999)
        imsi: object = draw(st.sampled_from([
            str(own), str(own), "imsi-" + str(own), "IMSI-" + str(own), "432999999999999", "310260000000042",
            "99912345", None, "", " " + str(own), "0" + str(own), "43211", own, "imsi-", "imsi-" + str(own) + " "]))
        m: object = draw(st.sampled_from([msisdn, None, None, "", "+4915112345678", msisdn[1:], "0912"]))
        out.append((draw(st.sampled_from([imei, imei[:14], "imei-" + imei])), m,
                    draw(st.sampled_from([slot, None, str(slot)])), t, imsi))
    return out


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_registries(), st.one_of(attach_sequences(T0, 60), attach_sequences(T0, 60, dense=True)).flatmap(imsi_rows),
       st.sampled_from(sorted(_IMSI_RULES)))
def test_check_raw_with_imsis_equals_the_python_path(records: list[dict[str, Any]], rows: list[Raw],
                                                     rules: str) -> None:
    subs = [{"type": "subscriber", "msisdn": m, "imsi": str(i)} for m, i in _SUB_IMSIS.items()]
    index, r = _index(records + subs), _IMSI_RULES[rules]
    fast, slow = run_raw(index, r, rows, True), run_raw(index, r, rows, False)
    assert fast[:2] == slow[:2]
    assert fast[2][0] == slow[2][0]


def test_check_raw_on_the_demo_mix(tmp_path: Path) -> None:
    # The demo attach log as a replay reads it (strings as given, time already parsed): most rows are
    # decided by check_raw, all exactly as the Python path decides them.
    demo = tmp_path / "demo"
    write_demo(demo, 2_000, 30_000, 5)
    build_snapshot([demo / "registry.jsonl"], demo / "snap.eirsnap", skip_invalid=False)
    index = Index.from_snapshot(demo / "snap.eirsnap")
    rows: list[Raw] = [(imei, msisdn, slot, parse_time(t), imsi)
                       for _, t, imei, msisdn, slot, imsi in read_rows(demo / "attaches.csv")]  # type: ignore[misc]
    r = RULES["default"]
    fast, slow = run_raw(index, r, rows, True), run_raw(index, r, rows, False)
    assert fast[:2] == slow[:2]
    assert fast[2][0] == slow[2][0]
    assert fast[2][1] > len(rows) // 2  # the common attach dominates and is taken in C


def test_check_raw_declines_without_touching_state() -> None:
    index = _index([{"type": "device", "imeis": ["356938035643809"], "owner": "09121234567"}])
    state = MemoryState()
    fast = fastpath.accelerator(Bundle.of(index, RULES["default"]), state)
    assert fast is not None
    # An exempt roamer on an owned device is decided, and not recorded; so is a malformed IMEI.
    assert fast.check_raw("356938035643809", "+4915112345678", 1, T0).reason.value == "ROAMER_EXEMPT"
    assert fast.check_raw("356938035643809", "004915112345678", 1, T0).reason.value == "ROAMER_EXEMPT"
    assert fast.check_raw("356938035643808", "09121234567", 1, T0).reason.value == "MALFORMED_IMEI"  # check digit
    assert state.histories == {}
    ok = ("356938035643809", "09121234567", 1, T0)
    assert fast.check_raw(*ok).reason.value == "OWNER"
    assert fast.check_raw("imei-356938035643809", "+989127654321", "2", float(T0)).reason.value == "REGISTERED"
    before = state_view(state)
    for raw in [("356938035643809", "09121234567", 17, T0),  # bad slot
                ("356938035643809", "09121234567", 1, "2026-11-01T00:00:00Z"),  # ISO time
                ("356938035643809", "0912", 1, T0),  # not E.164
                ("356938035643809", 9121234567, 1, T0),  # an int MSISDN
                (" 356938035643809", "09121234567", 1, T0),  # blanks
                ("356938035643809", "09121234567", 1, T0)]:  # two subscribers seen: clone check in Python
        assert fast.check_raw(*raw) is None, raw
    assert state_view(state) == before
    with pytest.raises(TypeError):
        fast.check_raw("356938035643809", "09121234567", 1)



def test_check_raw_takes_imsis() -> None:
    index = _index([{"type": "device", "imeis": ["356938035643809"], "owner": "09121234567"},
                    {"type": "subscriber", "msisdn": "989121234567", "imsi": "432111234567890"}])
    state = MemoryState()
    fast = fastpath.accelerator(Bundle.of(index, RULES["default"]), state)
    assert fast is not None
    imei = "356938035643809"
    # Declined, nothing touched: forms the C parser leaves to Python, IMSIs Python refuses.
    for imsi in [" 432111234567890", "0432111234567890", "43211", "imsi-", "imsi 432111234567890",
                 432111234567890, "4321112345678901", "432111234567890\n", "۴32111234567890"]:
        assert fast.check_raw(imei, None, 1, T0, imsi) is None, imsi
    assert state.histories == {}
    # A foreign IMSI alone, or beside a home MSISDN: an (exempt) roamer, not recorded.
    assert fast.check_raw(imei, None, 1, T0, "310111234567890").reason.value == "ROAMER_EXEMPT"
    assert fast.check_raw(imei, "09121234567", 1, T0, "310111234567890").reason.value == "ROAMER_EXEMPT"
    assert state.histories == {}
    # A home IMSI alone: its subscriber from the index (the owner), recorded under the MSISDN.
    assert fast.check_raw(imei, None, 1, T0, "432111234567890").reason.value == "OWNER"
    assert fast.check_raw(imei, "", 1, T0 + 60, "IMSI-432111234567890").reason.value == "OWNER"
    assert fast.check_raw(imei, "09121234567", 1, T0 + 120, "imsi-432111234567890").reason.value == "OWNER"
    assert state_view(state)["histories"][35693803564380][:2] == (989121234567, T0 + 120)
    # decide_raw (the replay's C edge writes the row's own msisdn field) leaves every IMSI to Python.
    assert fast.decide_raw(imei, None, 1, T0 + 180, "432111234567890") is None
    # Index columns the accelerator cannot read in place: IMSIs go to Python.
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Index, "imsi_columns", lambda self: (list(self._imsi_key), list(self._imsi_msisdn)))
        other = fastpath.accelerator(Bundle.of(index, RULES["default"]), MemoryState())
        assert other is not None
        assert other.check_raw(imei, None, 1, T0, "432111234567890") is None
        assert other.check_raw(imei, "09121234567", 1, T0) is not None
