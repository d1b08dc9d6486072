"""Every rule and reason of SPEC §4, with the boundaries, through the real snapshot and engine."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from eir.engine import Bundle
from eir.events import Renderer
from eir.identifiers import imei15
from eir.index import Index
from eir.model import Reason, Verdict
from eir.rules import RuleSet
from tests.conftest import DAY, T0, Harness, rules_with

OWNER = "09121111111"
OWNER_E164 = 989121111111
OTHER = "09122222222"
OTHER_E164 = 989122222222
THIRD = "09123333333"
OPSIM = "09124444444"
PRE_USER = "09125555555"
TRAVELER = "09126666666"
TRAVELER_SAME_PERSON = "09127777777"
NEWBIE = "09128888888"
ROAMER = "+447700900123"


def imei(n: int) -> str:
    """A valid 15-digit IMEI with core 35693803000000 + n."""
    return imei15(35693803000000 + n)


OWNED_1, OWNED_2 = imei(1), imei(2)
CLONED_1, CLONED_2 = imei(3), imei(4)
PRE, PRE_CLONED = imei(5), imei(6)
UNACT_1, UNACT_2 = imei(7), imei(8)
BLOCKED, BLACKLISTED = imei(9), imei(10)
UNREG, UNREG_2, UNREG_3 = imei(11), imei(12), imei(13)

REGISTRY: list[dict[str, Any]] = [
    {"type": "device", "imeis": [OWNED_1, OWNED_2], "model": "Samsung SM-J700F", "owner": OWNER,
     "owner_since": "2024-03-01T00:00:00Z"},
    {"type": "device", "imeis": [CLONED_1, CLONED_2], "owner": OWNER, "cloned": True,
     "operator_sims": {"2": OPSIM}},
    {"type": "device", "imeis": [PRE], "origin": "pre_registry", "pre_registry_users": [PRE_USER]},
    {"type": "device", "imeis": [PRE_CLONED], "origin": "pre_registry", "cloned": True,
     "pre_registry_users": [PRE_USER]},
    {"type": "device", "imeis": [UNACT_1, UNACT_2], "origin": "import"},
    {"type": "device", "imeis": [BLOCKED], "owner": OWNER, "block": "stolen"},
    {"type": "blacklist", "imei": BLACKLISTED, "reason": "lost"},
    {"type": "subscriber", "msisdn": TRAVELER, "imsi": "432111234567890", "national_id": "0012345678"},
    {"type": "subscriber", "msisdn": TRAVELER_SAME_PERSON, "national_id": "0012345678"},
    {"type": "subscriber", "msisdn": OWNER, "imsi": "432119999999999"},
    {"type": "traveler_entry", "national_id": "0012345678", "entered": "2026-10-20T08:00:00Z"},
]


@pytest.fixture
def index(make_index: Callable[[list[dict[str, Any]]], Index]) -> Index:
    return make_index(REGISTRY)


@pytest.fixture
def h(index: Index, default_rules: RuleSet) -> Harness:
    return Harness(index, default_rules)


def test_malformed_imei_is_a_decision(h: Harness) -> None:
    wrong_check = OWNED_1[:14] + str((int(OWNED_1[14]) + 1) % 10)
    for bad in ("1234", "", "00000000000000", "3569380300000a1", "35693803000001234", wrong_check, "٣٥٦٩٣٨٠٣٠٠٠٠٠١٢"):
        d = h.check(T0, bad, OWNER)
        assert (d.verdict, d.reason, d.deadline) == (Verdict.DENY, Reason.MALFORMED_IMEI, None), bad
    # 14 digits (core), 16 (IMEISV) and the 3GPP prefixes are fine.
    for good in (OWNED_1[:14], OWNED_1[:14] + "07", "imei-" + OWNED_1, "imeisv-" + OWNED_1[:14] + "01"):
        assert h.check(T0, good, OWNER).reason is Reason.OWNER, good
    assert h.events == []


def test_lenient_imei_policy(index: Index, default_rules: RuleSet) -> None:
    lenient = Harness(index, rules_with(default_rules, imei={"deny_invalid_check_digit": False,
                                                             "deny_test_imeis": False}))
    wrong = OWNED_1[:14] + str((int(OWNED_1[14]) + 1) % 10)
    assert lenient.check(T0, wrong, OWNER).reason is Reason.OWNER
    assert lenient.check(T0, "00000000000000", OWNER).reason is Reason.TRAVELER_ALLOWANCE


def test_blocked_and_blacklisted(h: Harness) -> None:
    for i in (BLOCKED, BLACKLISTED):
        d = h.check(T0, i, OTHER)
        assert (d.verdict, d.reason, d.deadline) == (Verdict.DENY, Reason.BLACKLISTED, None)
    # Even the owner, even a roamer: blocked comes before everything but a malformed IMEI.
    assert h.check(T0, BLOCKED, OWNER).reason is Reason.BLACKLISTED
    assert h.check(T0, BLOCKED, ROAMER).reason is Reason.BLACKLISTED
    h.check(T0 + 60, BLOCKED, OTHER)  # second attach by the same subscriber: no second event
    assert h.types() == ["BLACKLISTED_DEVICE_SEEN"] * 4
    assert {e.msisdn for e in h.events} == {OTHER_E164, OWNER_E164, 447700900123}


def test_roamers(h: Harness, index: Index, default_rules: RuleSet) -> None:
    assert h.check(T0, UNREG, ROAMER).reason is Reason.ROAMER_EXEMPT
    assert h.check(T0, CLONED_1, ROAMER).reason is Reason.ROAMER_EXEMPT
    assert h.check(T0, UNREG, None, imsi="234150999999999").reason is Reason.ROAMER_EXEMPT
    not_exempt = Harness(index, rules_with(default_rules, roamers={"exempt": False}))
    assert not_exempt.check(T0, OWNED_1, ROAMER).reason is Reason.REGISTERED
    assert h.events == []


def test_owned_device_default_policy(h: Harness) -> None:
    assert h.check(T0, OWNED_1, OWNER).reason is Reason.OWNER
    assert h.check(T0, OWNED_2, OWNER, slot=2).reason is Reason.OWNER
    d = h.check(T0, OWNED_1, OTHER)
    assert (d.verdict, d.reason, d.deadline) == (Verdict.ALLOW, Reason.REGISTERED, None)
    # Owner identified by IMSI only.
    assert h.check(T0, OWNED_1, None, imsi="432119999999999").reason is Reason.OWNER
    assert h.events == []


def test_owned_device_strict_policy(index: Index, strict_rules: RuleSet) -> None:
    s = Harness(index, strict_rules)
    assert s.check(T0, OWNED_1, OWNER).reason is Reason.OWNER
    d = s.check(T0, OWNED_1, OTHER)
    deadline = T0 + 30 * DAY
    assert (d.verdict, d.reason, d.deadline) == (Verdict.WARN, Reason.OWNERSHIP_GRACE, deadline)
    assert s.check(deadline - 1, OWNED_1, OTHER).deadline == deadline
    d = s.check(deadline, OWNED_1, OTHER)  # exactly at the deadline: the restriction applies
    assert (d.verdict, d.reason, d.deadline) == (Verdict.DENY, Reason.OWNERSHIP_BLOCKED, deadline)
    assert s.types() == ["OWNERSHIP_GRACE_STARTED", "GRACE_REMINDER", "OWNERSHIP_BLOCKED"]
    # An unknown subscriber cannot be given a grace.
    assert s.check(T0, OWNED_1, None, imsi="432110000000001").reason is Reason.OWNERSHIP_BLOCKED


def test_cloned_device(h: Harness) -> None:
    assert h.check(T0, CLONED_1, OWNER).reason is Reason.OWNER
    assert h.check(T0, CLONED_2, OPSIM, slot=2).reason is Reason.OPERATOR_SIM
    d = h.check(T0, CLONED_1, OPSIM, slot=1)  # an operator SIM counts only in its own slot
    assert (d.verdict, d.reason, d.deadline) == (Verdict.WARN, Reason.CLONE_GRACE, T0 + 30 * DAY)
    d = h.check(T0 + 3600, CLONED_1, OTHER)
    deadline = T0 + 3600 + 30 * DAY
    assert (d.reason, d.deadline) == (Reason.CLONE_GRACE, deadline)
    assert h.check(deadline - 1, CLONED_1, OTHER).reason is Reason.CLONE_GRACE
    d = h.check(deadline, CLONED_1, OTHER)
    assert (d.verdict, d.reason, d.deadline) == (Verdict.DENY, Reason.CLONE_BLOCKED, deadline)
    # The grace is per (IMEI, subscriber): the same subscriber on the other IMEI starts its own.
    assert h.check(deadline, CLONED_2, OTHER).deadline == deadline + 30 * DAY


def test_clone_grace_event_texts(h: Harness) -> None:
    h.check(T0, CLONED_1, OTHER)
    ev = h.events[-1]
    assert ev.type == "CLONE_GRACE_STARTED"
    # 2026-12-01 (deadline) is 1405/09/10 in the Jalali calendar; Persian digits in text_fa.
    assert "۱۴۰۵/۰۹/۱۰" in ev.text_fa and "۰۹۱۲۲۲۲۲۲۲۲" in ev.text_fa
    assert "2026-12-01" in ev.text_en and "09122222222" in ev.text_en
    h.check(T0 + 30 * DAY, CLONED_1, OTHER)
    blocked = h.events[-1]
    assert blocked.type == "CLONE_BLOCKED" and "***" in blocked.text_fa and "***" in blocked.text_en
    for e in h.events:  # the owner's number never reaches someone else
        assert "9121111111" not in (e.text_fa or "") + (e.text_en or "")
        assert "۹۱۲۱۱۱۱۱۱۱" not in (e.text_fa or "")


def test_pre_registry_devices(h: Harness) -> None:
    assert h.check(T0, PRE, OTHER).reason is Reason.REGISTERED
    assert h.check(T0, PRE, PRE_USER).reason is Reason.REGISTERED
    assert h.check(T0, PRE_CLONED, PRE_USER).reason is Reason.PRE_REGISTRY_USER
    assert h.check(T0, PRE_CLONED, OTHER).reason is Reason.CLONE_GRACE


def test_activation_grace_is_per_device(h: Harness) -> None:
    d = h.check(T0, UNACT_1, NEWBIE)
    deadline = T0 + 30 * DAY
    assert (d.verdict, d.reason, d.deadline) == (Verdict.WARN, Reason.ACTIVATION_GRACE, deadline)
    # The device's other IMEI, another subscriber, later: same deadline (one grace per device).
    assert h.check(T0 + 5 * DAY, UNACT_2, OTHER, slot=2).deadline == deadline
    assert h.check(T0 + 6 * DAY, UNACT_1, NEWBIE).deadline == deadline
    assert h.types() == ["ACTIVATION_REQUIRED", "ACTIVATION_REQUIRED"]
    d = h.check(deadline, UNACT_1, NEWBIE)
    assert (d.verdict, d.reason, d.deadline) == (Verdict.DENY, Reason.NOT_ACTIVATED, deadline)
    assert h.types()[-1] == "NOT_ACTIVATED"


def test_traveler_allowance(h: Harness) -> None:
    d = h.check(T0, UNREG, TRAVELER)
    deadline = T0 + 30 * DAY
    assert (d.verdict, d.reason, d.deadline) == (Verdict.WARN, Reason.TRAVELER_ALLOWANCE, deadline)
    assert h.types() == ["TRAVELER_ALLOWANCE_STARTED"]
    # Everyone on that IMEI during the window gets the window's deadline.
    assert h.check(T0 + DAY, UNREG, OTHER).deadline == deadline
    d = h.check(deadline, UNREG, TRAVELER)
    assert (d.verdict, d.reason) == (Verdict.DENY, Reason.ALLOWANCE_EXPIRED)
    # Quota is per person (national id): the same person's other SIM cannot start another window.
    assert h.check(T0 + 2 * DAY, UNREG_2, TRAVELER_SAME_PERSON).reason is Reason.UNREGISTERED
    # Someone else can start one on another IMEI; an unknown subscriber cannot.
    assert h.check(T0 + 2 * DAY, UNREG_3, None, imsi="432110000000002").reason is Reason.UNREGISTERED
    assert h.check(T0 + 2 * DAY, UNREG_3, OTHER).reason is Reason.TRAVELER_ALLOWANCE
    # After the period the IMEI and the person may start again.
    period_end = T0 + 365 * DAY
    assert h.check(period_end - 1, UNREG, TRAVELER).reason is Reason.ALLOWANCE_EXPIRED
    d = h.check(period_end, UNREG, TRAVELER)
    assert (d.reason, d.deadline) == (Reason.TRAVELER_ALLOWANCE, period_end + 30 * DAY)


def test_traveler_entry_record_required(index: Index, default_rules: RuleSet) -> None:
    r = rules_with(default_rules, traveler={"require_entry_record": True})
    s = Harness(index, r)
    entered = T0 - 12 * DAY + 8 * 3600  # 2026-10-20T08:00Z
    assert s.check(T0, UNREG, OTHER).reason is Reason.UNREGISTERED  # no entry record
    assert s.check(entered + 30 * DAY + 1, UNREG, TRAVELER).reason is Reason.UNREGISTERED  # entry too old
    assert s.check(entered + 30 * DAY, UNREG, TRAVELER).reason is Reason.TRAVELER_ALLOWANCE  # window edge


def test_clone_detection_switchbacks(h: Harness) -> None:
    # A lend-and-return (A B A) is one switch-back: not a clone.
    assert h.check(T0, OWNED_1, OWNER).reason is Reason.OWNER
    assert h.check(T0 + 600, OWNED_1, OTHER).reason is Reason.REGISTERED
    assert h.check(T0 + 1200, OWNED_1, OWNER).reason is Reason.OWNER
    assert "CLONE_DETECTED" not in h.types()
    # B again: the second switch-back reaches the threshold; this attach is already decided as cloned.
    d = h.check(T0 + 1800, OWNED_1, OTHER)
    assert (d.verdict, d.reason, d.deadline) == (Verdict.WARN, Reason.CLONE_GRACE, T0 + 1800 + 30 * DAY)
    det = [e for e in h.events if e.type == "CLONE_DETECTED"]
    assert len(det) == 1 and set(det[0].subscribers) == {OWNER_E164, OTHER_E164}
    # Permanent: the owner stays allowed, others are restricted, the other IMEI is not affected.
    assert h.check(T0 + 5 * DAY, OWNED_1, OWNER).reason is Reason.OWNER
    assert h.check(T0 + 5 * DAY, OWNED_1, THIRD).reason is Reason.CLONE_GRACE
    assert h.check(T0 + 5 * DAY, OWNED_2, THIRD).reason is Reason.REGISTERED


def test_clone_window_edge(h: Harness) -> None:
    window = 24 * 3600
    h.check(T0, OWNED_1, OWNER)
    h.check(T0 + 10, OWNED_1, OTHER)
    h.check(T0 + window - 1, OWNED_1, OWNER)  # A's earlier attach still inside the window: switch-back
    h.check(T0 + window, OWNED_1, OTHER)  # B's earlier attach at T0+10 is inside: 2nd switch-back
    assert "CLONE_DETECTED" in h.types()


def test_clone_window_expired(h: Harness) -> None:
    window = 24 * 3600
    h.check(T0, OWNED_1, OWNER)
    h.check(T0 + 10, OWNED_1, OTHER)
    h.check(T0 + window, OWNED_1, OWNER)  # A's earlier attach is exactly a window ago: not inside
    h.check(T0 + window + 10, OWNED_1, OTHER)  # B's is older than the window too
    assert "CLONE_DETECTED" not in h.types()


def test_safety_brake(index: Index, default_rules: RuleSet) -> None:
    s = Harness(index, rules_with(default_rules, safety={"max_new_restrictions_per_hour": 1}))
    for dev in (OWNED_1, OWNED_2):
        for i, who in enumerate((OWNER, OTHER, OWNER, OTHER)):
            d = s.check(T0 + i * 60, dev, who)
    assert d.reason is Reason.REGISTERED  # second detection in the hour withheld
    assert s.types() == ["CLONE_DETECTED", "CLONE_GRACE_STARTED", "SAFETY_BRAKE"]
    # An hour later the next switch-back is enforced.
    s.check(T0 + 3600 + 400, OWNED_2, OWNER)
    assert s.check(T0 + 3600 + 500, OWNED_2, OTHER).reason is Reason.CLONE_GRACE


def test_grace_dropped_when_allowed_again(make_index: Callable[[list[dict[str, Any]]], Index],
                                          index: Index, strict_rules: RuleSet) -> None:
    from eir.engine import Bundle

    s = Harness(index, strict_rules)
    first = s.check(T0, OWNED_1, OTHER).deadline
    # The registry makes OTHER the owner: allowed, and its grace record is dropped...
    transferred = [dict(r) for r in REGISTRY]
    transferred[0] = {**transferred[0], "owner": OTHER}
    s.engine.swap(Bundle.of(make_index(transferred), strict_rules))
    assert s.check(T0 + DAY, OWNED_1, OTHER).reason is Reason.OWNER
    assert s.state.grace(int(OWNED_1[:14]), OTHER_E164, 2) is None
    # ...so when it is restricted again later, a fresh grace starts.
    s.engine.swap(Bundle.of(index, strict_rules))
    d = s.check(T0 + 2 * DAY, OWNED_1, OTHER)
    assert d.reason is Reason.OWNERSHIP_GRACE and d.deadline == T0 + 2 * DAY + 30 * DAY != first


def test_rule_reload_never_moves_a_deadline(index: Index, strict_rules: RuleSet) -> None:
    from eir.engine import Bundle

    s = Harness(index, strict_rules)
    announced = s.check(T0, OWNED_1, OTHER).deadline
    s.engine.swap(Bundle.of(index, rules_with(strict_rules, ownership={"grace_days": 90})))
    assert s.check(T0 + DAY, OWNED_1, OTHER).deadline == announced
    assert s.check(T0 + DAY, OWNED_2, OTHER).deadline == T0 + DAY + 90 * DAY  # new graces use new rules


def test_reminder_and_repeated_deny_notices(h: Harness) -> None:
    h.check(T0, CLONED_1, OTHER)
    deadline = T0 + 30 * DAY
    h.check(deadline - 4 * DAY, CLONED_1, OTHER)
    assert "GRACE_REMINDER" not in h.types()
    h.check(deadline - 3 * DAY, CLONED_1, OTHER)
    h.check(deadline - 2 * DAY, CLONED_1, OTHER)
    assert h.types().count("GRACE_REMINDER") == 1
    h.check(deadline, CLONED_1, OTHER)
    h.check(deadline + 29 * DAY, CLONED_1, OTHER)
    assert h.types().count("CLONE_BLOCKED") == 1
    h.check(deadline + 30 * DAY, CLONED_1, OTHER)
    assert h.types().count("CLONE_BLOCKED") == 2
    seqs = [e.seq for e in h.events]
    assert seqs == list(range(1, len(seqs) + 1))


def test_unregistered_device_notice(h: Harness) -> None:
    h.check(T0, UNREG, TRAVELER)  # starts a window for this person
    d = h.check(T0 + DAY, UNREG_2, TRAVELER)
    assert (d.verdict, d.reason, d.deadline) == (Verdict.DENY, Reason.UNREGISTERED, None)
    h.check(T0 + 2 * DAY, UNREG_2, TRAVELER)
    assert h.types().count("UNREGISTERED_DEVICE") == 1


def test_event_texts_are_those_of_the_bundle_of_the_decision(index: Index, default_rules: RuleSet) -> None:
    # Texts render when read (the outbox writer), with the renderer of the bundle that decided: a reload
    # in between changes nothing.
    h = Harness(index, default_rules)
    h.check(T0, CLONED_1, OTHER)
    ev = h.events[-1]
    assert ev.type == "CLONE_GRACE_STARTED" and ev._pending is not None
    r = default_rules
    changed = {"fa": dict(r.messages["fa"]), "en": {**r.messages["en"], "CLONE_GRACE_STARTED": "changed {imei}"}}
    h.engine.swap(Bundle(index, r, Renderer(changed, r.tz, r.plan)))
    eager = Renderer(r.messages, r.tz, r.plan).render(ev, "")
    assert (ev.text_fa, ev.text_en) == eager and "changed" not in (ev.text_en or "")
    h.check(T0 + 1, CLONED_2, OTHER)
    assert h.events[-1].text_en == "changed " + imei(4)
