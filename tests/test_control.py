"""The control plane (eir.control): every operation, every refusal code, and the decision on the next
attach after each change."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from eir.control import ERROR_CODES, ControlConfig, ControlError
from eir.identifiers import MALFORMED
from eir.index import Index
from eir.model import GraceKind, Reason
from eir.rules import RuleSet
from tests.control_fixtures import (
    BLOCKED,
    BUYER,
    CLONED_1,
    CLONED_2,
    CODE,
    CODE_KEY,
    DAY,
    EXPIRED,
    FREE_OTHER_TAC,
    FREE_SAME_TAC,
    FREE_TWIN_TAC,
    NEW,
    NEW_NUMBER,
    OPSIM,
    OTHER,
    OWNED_1,
    OWNED_2,
    OWNER,
    PRE,
    PRE_USER,
    REASSIGNED,
    REASSIGNED_DEV,
    RECOVER,
    STRANGER_DEV,
    T0,
    UNOWNED_NOCODE,
    Plane,
    build,
    registry,
)


@pytest.fixture
def snap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("EIR_CODE_KEY", CODE_KEY.decode())
    return build(tmp_path, registry())


@pytest.fixture
def plane(snap: Path, default_rules: RuleSet) -> Plane:
    return Plane(Index.from_snapshot(snap), default_rules)


async def refused(code: str, coro: object) -> ControlError:
    with pytest.raises(ControlError) as exc:
        await coro  # type: ignore[misc]
    assert exc.value.code == code, exc.value
    return exc.value


# --- activation ------------------------------------------------------------------------------------------


async def test_activation_ends_the_activation_grace_on_the_next_attach(plane: Plane) -> None:
    d = plane.attach(NEW, BUYER)
    assert d.reason is Reason.ACTIVATION_GRACE
    assert plane.state.activations
    plane.clock.t += DAY
    answer = await plane.control.activate(NEW, BUYER, CODE)
    assert answer["result"] == "activated" and answer["activation_grace_ended"] is True
    assert not plane.state.activations
    assert plane.attach(NEW, BUYER).reason is Reason.OWNER
    assert plane.attach(NEW, OTHER).reason is Reason.REGISTERED
    ev = plane.last("DEVICE_ACTIVATED")
    assert ev.msisdn == BUYER and ev.text_fa and ev.text_en and "Samsung" in ev.text_en
    assert plane.state.changes and plane.state.changes[-1][0] == 1


async def test_activation_codes_are_one_time(plane: Plane) -> None:
    await plane.control.activate(NEW, BUYER, CODE)
    await refused("already_activated", plane.control.activate(NEW, BUYER, CODE))
    await refused("already_owned", plane.control.activate(NEW, OTHER, CODE))
    assert plane.index.code_hash(plane.index.device_of(NEW)) is None


@pytest.mark.parametrize("code", ["12345", "1234567", "012345", "12a456", "", "۱۲۳۴۵۶"])
async def test_invalid_code_format(plane: Plane, code: str) -> None:
    await refused("invalid_code_format", plane.control.activate(NEW, BUYER, code))


async def test_activation_refusals_in_order(plane: Plane) -> None:
    await refused("invalid_code_format", plane.control.activate(35000000000001, BUYER, "0"))
    await refused("unknown_device", plane.control.activate(35000000000001, BUYER, CODE))
    await refused("unknown_device", plane.control.activate(MALFORMED, BUYER, CODE))
    await refused("device_blocked", plane.control.activate(BLOCKED, BUYER, CODE))
    await refused("already_activated", plane.control.activate(OWNED_1, OWNER, CODE))
    await refused("already_owned", plane.control.activate(OWNED_2, BUYER, CODE))
    await refused("wrong_code", plane.control.activate(NEW, BUYER, "654321"))
    await refused("wrong_code", plane.control.activate(UNOWNED_NOCODE, BUYER, CODE))
    assert plane.index.owner[plane.index.device_of(NEW)] == 0
    assert not plane.state.changes  # refusals change nothing


async def test_wrong_codes_are_limited_per_device_and_reset_on_success(plane: Plane) -> None:
    for _ in range(4):
        await refused("wrong_code", plane.control.activate(NEW, BUYER, "654321"))
    await refused("wrong_code", plane.control.activate(NEW, OTHER, "654322"))  # per device, any number
    await refused("too_many_attempts", plane.control.activate(NEW, BUYER, CODE))  # even the right code
    plane.clock.t += 3601  # the window passes
    await plane.control.activate(NEW, BUYER, CODE)
    assert NEW not in plane.control._wrong and plane.index.device_key(plane.index.device_of(NEW)) not in \
        plane.control._wrong


async def test_without_a_code_key_codes_are_refused_explicitly(snap: Path, default_rules: RuleSet) -> None:
    p = Plane(Index.from_snapshot(snap), default_rules, config=ControlConfig(code_key=None))
    await refused("code_key_missing", p.control.activate(NEW, BUYER, CODE))
    await refused("code_key_missing", p.control.transfer(OWNED_1, OWNER, BUYER))


async def test_activation_drops_the_new_owners_grace_records(plane: Plane, strict_rules: RuleSet) -> None:
    plane.engine.swap(type(plane.engine.bundle).of(plane.index, strict_rules))
    # Under the strict policy the buyer of a sold device gets an ownership grace until the transfer.
    assert plane.attach(OWNED_1, BUYER).reason is Reason.OWNERSHIP_GRACE
    assert plane.state.grace(OWNED_1, BUYER, GraceKind.OWNERSHIP) is not None
    await plane.control.transfer(OWNED_1, OWNER, BUYER)
    code = re.search(r"\b(\d{6})\b", plane.last("TRANSFER_CODE_ISSUED").text_en or "")
    assert code is not None
    answer = await plane.control.activate(OWNED_2, BUYER, code.group(1))
    assert answer["graces_dropped"] == 1 and answer["transferred"] is True
    assert plane.state.grace(OWNED_1, BUYER, GraceKind.OWNERSHIP) is None
    assert plane.attach(OWNED_1, BUYER).reason is Reason.OWNER
    # The seller is now a non-owner: a fresh grace starts for it.
    assert plane.attach(OWNED_1, OWNER).reason is Reason.OWNERSHIP_GRACE


# --- transfer --------------------------------------------------------------------------------------------


def issued_code(plane: Plane) -> str:
    m = re.search(r"\b(\d{6})\b", plane.last("TRANSFER_CODE_ISSUED").text_en or "")
    assert m is not None
    return m.group(1)


async def test_transfer_keeps_the_seller_owner_until_the_buyer_activates(plane: Plane) -> None:
    answer = await plane.control.transfer(OWNED_1, OWNER, BUYER)
    assert answer["result"] == "transfer_started" and "code" not in answer
    assert CODE not in str(answer)
    ev = plane.last("TRANSFER_CODE_ISSUED")
    assert ev.msisdn == BUYER and ev.detail is None
    code = issued_code(plane)
    assert code[0] != "0" and code in (ev.text_fa or "").translate(str.maketrans("۰۱۲۳۴۵۶۷۸۹", "0123456789"))
    assert str(OWNER) not in (ev.text_en or "") and "9121000001" not in (ev.text_en or "")
    # Not yet: the seller keeps every right.
    assert plane.attach(OWNED_1, OWNER).reason is Reason.OWNER
    assert plane.index.owner[plane.index.device_of(OWNED_1)] == OWNER
    await refused("already_owned", plane.control.activate(OWNED_1, OTHER, code))  # not the buyer
    await refused("wrong_code", plane.control.activate(OWNED_1, BUYER, "999999" if code != "999999" else "888888"))
    await plane.control.activate(OWNED_1, BUYER, code)
    assert plane.attach(OWNED_1, BUYER).reason is Reason.OWNER
    assert plane.attach(OWNED_1, OWNER).reason is Reason.REGISTERED
    assert "OWNERSHIP_TRANSFERRED" in plane.types()
    await refused("already_owned", plane.control.activate(OWNED_1, OWNER, code))  # one-time


async def test_transfer_refusals_and_a_new_transfer_replaces_the_code(plane: Plane) -> None:
    await refused("unknown_device", plane.control.transfer(35000000000001, OWNER, BUYER))
    await refused("device_blocked", plane.control.transfer(BLOCKED, OWNER, BUYER))
    await refused("not_owner", plane.control.transfer(OWNED_1, OTHER, BUYER))
    await refused("not_owner", plane.control.transfer(NEW, BUYER, OTHER))  # unowned: nobody can sell it
    await refused("already_activated", plane.control.transfer(OWNED_1, OWNER, OWNER))
    await plane.control.transfer(OWNED_1, OWNER, BUYER)
    first = issued_code(plane)
    again = await plane.control.transfer(OWNED_1, OWNER, OTHER)
    assert again["replaced_pending_transfer"] is True
    await refused("already_owned", plane.control.activate(OWNED_1, BUYER, first))
    await plane.control.activate(OWNED_1, OTHER, issued_code(plane))
    assert plane.index.owner[plane.index.device_of(OWNED_1)] == OTHER


async def test_an_expired_transfer_code_no_longer_works(plane: Plane) -> None:
    await plane.control.transfer(OWNED_1, OWNER, BUYER)
    code = issued_code(plane)
    plane.clock.t += 7 * DAY
    await refused("already_owned", plane.control.activate(OWNED_1, BUYER, code))
    assert plane.attach(OWNED_1, OWNER).reason is Reason.OWNER


# --- operator SIMs ---------------------------------------------------------------------------------------


async def test_an_operator_sim_is_allowed_on_the_next_attach(plane: Plane) -> None:
    d = plane.attach(CLONED_2, OPSIM, slot=2)
    assert d.reason is Reason.CLONE_GRACE
    answer = await plane.control.add_operator_sim(CLONED_1, OWNER, 2, OPSIM)
    assert answer["result"] == "operator_sim_added" and answer["graces_dropped"] == 1
    assert plane.attach(CLONED_2, OPSIM, slot=2).reason is Reason.OPERATOR_SIM
    assert plane.attach(CLONED_2, OPSIM, slot=1).reason is Reason.CLONE_GRACE  # only on its slot
    assert (await plane.control.add_operator_sim(CLONED_1, OWNER, 2, OPSIM))["result"] == "unchanged"
    await refused("slot_in_use", plane.control.add_operator_sim(CLONED_1, OWNER, 2, OTHER))
    removed = await plane.control.remove_operator_sim(CLONED_1, OWNER, 2, OPSIM)
    assert removed["result"] == "operator_sim_removed"
    assert plane.attach(CLONED_2, OPSIM, slot=2).reason is Reason.CLONE_GRACE
    assert plane.types().count("OPERATOR_SIM_ADDED") == 1 and "OPERATOR_SIM_REMOVED" in plane.types()


async def test_operator_sim_refusals(plane: Plane) -> None:
    await refused("unknown_device", plane.control.add_operator_sim(35000000000001, OWNER, 1, OPSIM))
    await refused("device_blocked", plane.control.add_operator_sim(BLOCKED, OWNER, 1, OPSIM))
    await refused("not_owner", plane.control.add_operator_sim(CLONED_1, OTHER, 2, OPSIM))
    await refused("not_eligible", plane.control.add_operator_sim(OWNED_1, OWNER, 2, OPSIM))
    await refused("invalid_slot", plane.control.add_operator_sim(CLONED_1, OWNER, 3, OPSIM))
    await refused("no_operator_sim", plane.control.remove_operator_sim(CLONED_1, OWNER, 2, OPSIM))
    await refused("not_owner", plane.control.remove_operator_sim(CLONED_1, OTHER, 2, OPSIM))
    await refused("invalid_slot", plane.control.remove_operator_sim(CLONED_1, OWNER, 4, OPSIM))


async def test_a_network_detection_makes_a_device_eligible(plane: Plane) -> None:
    t = plane.clock.t
    for i, who in enumerate([OWNER, OTHER, OWNER, OTHER, OWNER]):
        plane.attach(OWNED_1, who, t=t + i * 60)
    assert OWNED_1 in plane.state.detections
    answer = await plane.control.add_operator_sim(OWNED_1, OWNER, 2, OPSIM)
    assert answer["result"] == "operator_sim_added"


# --- claim and recovery ----------------------------------------------------------------------------------


async def test_claim_of_a_pre_registry_device(plane: Plane) -> None:
    await refused("not_pre_registry_user", plane.control.claim(PRE, OTHER))
    answer = await plane.control.claim(PRE, PRE_USER)
    assert answer["result"] == "claimed"
    assert plane.attach(PRE, PRE_USER).reason is Reason.OWNER
    await refused("already_activated", plane.control.claim(PRE, PRE_USER))
    await refused("unknown_device", plane.control.claim(35000000000001, PRE_USER))
    await refused("device_blocked", plane.control.claim(BLOCKED, PRE_USER))
    assert "DEVICE_CLAIMED" in plane.types()


async def test_claim_refused_while_owned_by_another(plane: Plane, tmp_path: Path, default_rules: RuleSet,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EIR_CODE_KEY", CODE_KEY.decode())
    recs = [{"type": "device", "imeis": [f"{PRE:014d}"], "origin": "pre_registry", "owner": str(OTHER),
             "pre_registry_users": [str(PRE_USER)]}]
    p = Plane(Index.from_snapshot(build(tmp_path, recs, "owned_pre")), default_rules)
    await refused("already_owned", p.control.claim(PRE, PRE_USER))


async def test_recover_from_an_expired_or_reassigned_number(plane: Plane) -> None:
    await refused("wrong_previous_number", plane.control.recover(RECOVER, OTHER, NEW_NUMBER))
    await refused("not_expired", plane.control.recover(OWNED_1, OWNER, NEW_NUMBER))
    await refused("unknown_subscriber", plane.control.recover(RECOVER, EXPIRED, 989129999999))
    await refused("unknown_subscriber", plane.control.recover(RECOVER, EXPIRED, EXPIRED))
    await refused("unknown_device", plane.control.recover(35000000000001, EXPIRED, NEW_NUMBER))
    await refused("device_blocked", plane.control.recover(BLOCKED, OWNER, NEW_NUMBER))
    answer = await plane.control.recover(RECOVER, EXPIRED, NEW_NUMBER)
    assert answer["result"] == "recovered"
    assert plane.attach(RECOVER, NEW_NUMBER).reason is Reason.OWNER
    # Reassigned: the subscriber record starts after the number took ownership.
    assert (await plane.control.recover(REASSIGNED_DEV, REASSIGNED, NEW_NUMBER))["result"] == "recovered"
    ev = plane.last("DEVICE_RECOVERED")
    assert ev.subscribers == (REASSIGNED, NEW_NUMBER) and ev.text_en is None


# --- IMEI correction and repair --------------------------------------------------------------------------


async def test_imei_correction_outcomes_in_order(plane: Plane) -> None:
    ctl = plane.control
    await refused("incorrect_imei_observed", ctl.imei_correction(OWNER, [OWNED_1, OWNED_2], [OWNED_1, MALFORMED], True))
    await refused("incorrect_imei_observed", ctl.imei_correction(OWNER, [OWNED_1, OWNED_2], [OWNED_1, OWNED_1], True))
    five = [OWNED_1, FREE_SAME_TAC, FREE_TWIN_TAC, FREE_OTHER_TAC, NEW]
    await refused("incorrect_imei_observed", ctl.imei_correction(OWNER, [OWNED_1, OWNED_2], five, True))
    await refused("not_owner", ctl.imei_correction(OTHER, [OWNED_1, OWNED_2], [OWNED_1, FREE_SAME_TAC], True))
    await refused("not_owner", ctl.imei_correction(OWNER, [OWNED_1, CLONED_1], [OWNED_1, FREE_SAME_TAC], True))
    await refused("illegal_device", ctl.imei_correction(OWNER, [BLOCKED], [BLOCKED, FREE_SAME_TAC], True))
    await refused("already_activated", ctl.imei_correction(OWNER, [OWNED_1, OWNED_2], [OWNED_2, OWNED_1], True))
    await refused("full_change_not_allowed", ctl.imei_correction(OWNER, [OWNED_1, OWNED_2], [FREE_SAME_TAC], True))
    await refused("target_owned_by_other",
                  ctl.imei_correction(OWNER, [OWNED_1, OWNED_2], [OWNED_1, STRANGER_DEV], True))
    await refused("not_seen_on_all_slots",
                  ctl.imei_correction(OWNER, [OWNED_1, OWNED_2], [OWNED_1, FREE_SAME_TAC], True))
    assert not plane.state.changes


async def test_an_approved_correction_moves_the_imeis(plane: Plane) -> None:
    # The requester's SIM on both slots: the true second IMEI is unregistered (traveler rules).
    plane.attach(OWNED_1, OWNER, slot=1)
    assert plane.attach(FREE_SAME_TAC, OWNER, slot=2).reason is Reason.TRAVELER_ALLOWANCE
    check = await plane.control.imei_correction(OWNER, [OWNED_1, OWNED_2], [OWNED_1, FREE_SAME_TAC], False)
    assert check["outcome"] == "approved" and check["applied"] is False and not plane.state.changes
    done = await plane.control.imei_correction(OWNER, [OWNED_1, OWNED_2], [OWNED_1, FREE_SAME_TAC], True)
    assert done["imeis"] == [f"{OWNED_1:014d}", f"{FREE_SAME_TAC:014d}"]
    idx = plane.index
    assert idx.device_of(FREE_SAME_TAC) == idx.device_of(OWNED_1) and idx.device_of(OWNED_2) == -1
    assert plane.attach(FREE_SAME_TAC, OWNER, slot=2).reason is Reason.OWNER
    assert plane.attach(OWNED_2, OTHER).reason is Reason.TRAVELER_ALLOWANCE  # the wrong IMEI is free now
    assert "IMEI_CORRECTED" in plane.types()


async def test_repair_replaces_an_imei_of_the_same_model(plane: Plane) -> None:
    ctl = plane.control
    await refused("unknown_device", ctl.repair(OWNER, 35000000000001, FREE_SAME_TAC))
    await refused("device_blocked", ctl.repair(OWNER, BLOCKED, FREE_SAME_TAC))
    await refused("not_owner", ctl.repair(OTHER, OWNED_2, FREE_SAME_TAC))
    await refused("model_mismatch", ctl.repair(OWNER, OWNED_2, FREE_OTHER_TAC))
    await refused("imei_in_use", ctl.repair(OWNER, OWNED_2, NEW))
    await refused("imei_in_use", ctl.repair(OWNER, OWNED_2, OWNED_1))
    answer = await ctl.repair(OWNER, OWNED_2, FREE_TWIN_TAC)  # another TAC of the same model
    assert answer == {"result": "repaired", "imeis": [f"{OWNED_1:014d}", f"{FREE_TWIN_TAC:014d}"],
                      "origin": "repair"}
    idx = plane.index
    dev = idx.device_of(FREE_TWIN_TAC)
    assert idx.origin(dev) == "repair" and idx.device_of(OWNED_2) == -1
    assert plane.attach(FREE_TWIN_TAC, OWNER, slot=2).reason is Reason.OWNER


# --- block, unblock, clone flag --------------------------------------------------------------------------


async def test_block_and_unblock(plane: Plane) -> None:
    assert plane.attach(OWNED_1, OWNER).reason is Reason.OWNER
    assert (await plane.control.block(OWNED_2, "stolen"))["scope"] == "device"
    assert plane.attach(OWNED_1, OWNER).reason is Reason.BLACKLISTED
    assert (await plane.control.block(OWNED_1, "stolen"))["result"] == "unchanged"
    await plane.control.unblock(OWNED_1)
    assert plane.attach(OWNED_1, OWNER).reason is Reason.OWNER
    assert (await plane.control.unblock(OWNED_1))["result"] == "unchanged"
    # An unregistered IMEI goes on the block list.
    assert (await plane.control.block(FREE_OTHER_TAC, "lost"))["scope"] == "imei"
    assert plane.attach(FREE_OTHER_TAC, OTHER).reason is Reason.BLACKLISTED
    await plane.control.unblock(FREE_OTHER_TAC)
    assert plane.attach(FREE_OTHER_TAC, OTHER).reason is Reason.TRAVELER_ALLOWANCE
    await refused("unknown_device", plane.control.unblock(FREE_OTHER_TAC))
    # The registry's own block is lifted too.
    await plane.control.unblock(BLOCKED)
    assert plane.attach(BLOCKED, OWNER).reason is Reason.OWNER
    assert plane.types().count("DEVICE_BLOCKED") == 2 and plane.types().count("DEVICE_UNBLOCKED") == 3


async def test_clone_flag_set_and_cleared_with_the_network_detection(plane: Plane) -> None:
    await refused("unknown_device", plane.control.clone_flag(35000000000001, True))
    await plane.control.clone_flag(OWNED_1, True)
    assert plane.attach(OWNED_2, OTHER).reason is Reason.CLONE_GRACE
    assert plane.attach(OWNED_2, OWNER).reason is Reason.OWNER
    assert (await plane.control.clone_flag(OWNED_1, True))["result"] == "unchanged"
    cleared = await plane.control.clone_flag(OWNED_1, False)
    assert cleared["graces_dropped"] == 1
    assert plane.attach(OWNED_2, OTHER).reason is Reason.REGISTERED
    # A network detection is cleared by clearing the flag, even when the flag was never set.
    t = plane.clock.t + DAY
    for i, who in enumerate([OWNER, OTHER, OWNER, OTHER, OWNER]):
        plane.attach(STRANGER_DEV, who, t=t + i * 60)
    assert STRANGER_DEV in plane.state.detections
    plane.clock.t = t + 600
    answer = await plane.control.clone_flag(STRANGER_DEV, False)
    assert answer["detections_cleared"] is True and STRANGER_DEV not in plane.state.detections
    assert plane.attach(STRANGER_DEV, OWNER, t=t + 700).reason is Reason.REGISTERED


# --- queries ---------------------------------------------------------------------------------------------


async def test_authenticity_statuses_never_show_a_number(plane: Plane) -> None:
    q = plane.control.authenticity
    cases = {OWNED_1: "legal", CLONED_1: "restricted", NEW: "not_activated", BLOCKED: "blocked",
             FREE_OTHER_TAC: "unregistered", MALFORMED: "malformed", PRE: "legal"}
    for imei, status in cases.items():
        a = await q(imei)
        assert a["status"] == status, imei
        assert a["text_fa"] and a["text_en"]
        assert "98912" not in str(a) and "0912" not in str(a)
    a = await q(OWNED_1)
    assert a["model"] == "Apple iPhone 8" and a["origin"] == "import" and a["legal"] is True
    assert (await q(FREE_SAME_TAC))["model"] == "Apple iPhone 8"  # from the TAC table
    assert "محدود به شماره مالک" in (await q(CLONED_1))["text_fa"]


async def test_imei_status_lists_the_previous_users(plane: Plane) -> None:
    ctl = plane.control
    await refused("unknown_device", ctl.imei_status(FREE_OTHER_TAC, BUYER))
    await refused("device_blocked", ctl.imei_status(BLOCKED, BUYER))
    plane.attach(UNOWNED_NOCODE, OTHER, t=T0)
    plane.attach(UNOWNED_NOCODE, PRE_USER, t=T0 + 10)
    await refused("not_seen_with_requester", ctl.imei_status(UNOWNED_NOCODE, BUYER))
    plane.attach(UNOWNED_NOCODE, BUYER, t=T0 + 20)
    plane.attach(UNOWNED_NOCODE, OTHER, t=T0 + 30)  # after the requester came, still a previous user
    answer = await ctl.imei_status(UNOWNED_NOCODE, BUYER)
    assert [u["msisdn"] for u in answer["previous_users"]] == [str(OTHER), str(PRE_USER)]
    # Owned devices and abused IMEIs answer nothing.
    plane.attach(OWNED_1, BUYER)
    plane.attach(OWNED_2, BUYER, slot=2)
    await refused("owned", ctl.imei_status(OWNED_1, BUYER))
    await ctl.clone_flag(UNOWNED_NOCODE, True)
    await refused("abused", ctl.imei_status(UNOWNED_NOCODE, BUYER))


def test_error_codes_lists_every_code_raised() -> None:
    root = Path(__file__).resolve().parent.parent / "eir"
    raised = set()
    for f in root.glob("control*.py"):
        raised |= set(re.findall(r'ControlError\(\s*"([a-z_]+)"', f.read_text(encoding="utf-8")))
    assert raised == ERROR_CODES


async def test_control_events_round_trip_through_their_json(plane: Plane) -> None:
    """The durable outbox stores to_dict(): detail and subscribers come back; ops events carry no text."""
    from eir.events import Event

    await plane.control.block(OWNED_1, "stolen")
    await plane.control.transfer(CLONED_1, OWNER, BUYER)
    for ev in plane.events:
        d = ev.to_dict()
        back = Event.from_dict(d)
        assert back.to_dict() == d
    blocked = plane.last("DEVICE_BLOCKED").to_dict()
    assert blocked["detail"] == {"reason": "stolen", "scope": "block"} and "text_en" not in blocked
    started = plane.last("TRANSFER_STARTED").to_dict()
    assert started["subscribers"] == [str(OWNER), str(BUYER)] and "text_fa" not in started
