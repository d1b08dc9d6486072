"""SPEC §2 identifiers: the accepted forms and the malformed ones."""

from __future__ import annotations

import pytest

from eir.identifiers import (
    MALFORMED,
    IdentifierError,
    ImeiPolicy,
    NumberingPlan,
    imsi_is_home,
    luhn_check_digit,
    national_format,
    parse_imei,
    parse_imsi,
    parse_msisdn,
    parse_slot,
)

STRICT = ImeiPolicy()
LAX = ImeiPolicy(deny_invalid_check_digit=False, deny_test_imeis=False)
PLAN = NumberingPlan()


def test_spec_check_digit_example() -> None:
    assert luhn_check_digit("49015420323751") == 8


@pytest.mark.parametrize("text", ["49015420323751", "490154203237518", "4901542032375199",
                                  "imei-490154203237518", "imeisv-4901542032375101", " 490154203237518 "])
def test_accepted_imei_forms(text: str) -> None:
    assert parse_imei(text, STRICT) == 49015420323751


@pytest.mark.parametrize("text", ["", "4901542032375", "49015420323751999", "490154203237519",
                                  "49015420323751a", "۴۹۰۱۵۴۲۰۳۲۳۷۵۱۸", "11111111111111", "00000000000000",
                                  "imei-", "-490154203237518"])
def test_malformed_imeis(text: str) -> None:
    assert parse_imei(text, STRICT) == MALFORMED


def test_lax_imei_policy_keeps_core() -> None:
    assert parse_imei("490154203237519", LAX) == 49015420323751
    assert parse_imei("00000000000000", LAX) == 0


@pytest.mark.parametrize("text", ["09121234567", "9121234567", "+989121234567", "00989121234567",
                                  "989121234567", "msisdn-989121234567"])
def test_iranian_msisdn_forms(text: str) -> None:
    assert parse_msisdn(text, PLAN) == (989121234567, True)


def test_foreign_msisdn_is_a_roamer_and_kept() -> None:
    assert parse_msisdn("+447700900123", PLAN) == (447700900123, False)
    assert parse_msisdn("00447700900123", PLAN) == (447700900123, False)
    assert national_format(989121234567, PLAN) == "09121234567"
    assert national_format(447700900123, PLAN) == "+447700900123"


@pytest.mark.parametrize("text", ["", "abc", "0", "+", "1234567", "+0123456789", "9" * 16, "0912-123-4567"])
def test_bad_msisdns_are_request_errors(text: str) -> None:
    with pytest.raises(IdentifierError) as e:
        parse_msisdn(text, PLAN)
    assert e.value.field == "msisdn"


def test_imsi() -> None:
    assert parse_imsi("imsi-432111234567890") == 432111234567890
    assert imsi_is_home(432111234567890, PLAN)
    assert not imsi_is_home(234150999999999, PLAN)
    for bad in ("12345", "0321112345", "4321112345678901", "43211x"):
        with pytest.raises(IdentifierError):
            parse_imsi(bad)


def test_slot() -> None:
    assert parse_slot(None) == 1 and parse_slot("") == 1 and parse_slot("2") == 2 and parse_slot(3) == 3
    for bad in (0, 17, "x", True, 1.5, "-1"):
        with pytest.raises(IdentifierError):
            parse_slot(bad)
