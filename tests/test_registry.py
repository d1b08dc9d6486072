"""Registry JSONL validation (SPEC §3): every error kind, located by file and line."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eir.identifiers import MALFORMED, IdentifierError, ImeiPolicy, NumberingPlan, imei15, parse_imei, parse_msisdn
from eir.registry import (
    MAX_LINE_BYTES,
    MAX_REPORTED_ERRORS,
    RegistryBuilder,
    RegistryError,
    _Invalid,
    _msisdn,
    activation_code_hash,
    parse_time,
)
from eir.snapshot import build_snapshot
from tests.strategies import time_forms

IMEI_A = "356938035643809"  # core 35693803564380
IMEI_B = "356938035643817"  # core 35693803564381
DEVICE = {"type": "device", "imeis": [IMEI_A]}


def jsonl(path: Path, *records: dict[str, Any] | bytes) -> Path:
    """Write records (dicts as JSON, bytes as the raw line) one per line."""
    path.write_bytes(b"".join((r if isinstance(r, bytes) else orjson.dumps(r)) + b"\n" for r in records))
    return path


def errors_of(tmp_path: Path, *records: dict[str, Any] | bytes, code_key: bytes | None = b"k") -> list[str]:
    builder = RegistryBuilder(code_key)
    builder.read(jsonl(tmp_path / "registry.jsonl", *records))
    builder.finish()
    prefix = f"{tmp_path / 'registry.jsonl'}:"
    return [e.removeprefix(prefix) for e in builder.errors]


# Each case: one invalid record written on line 2 (after a valid device) and the expected reason.
INVALID: list[tuple[str, dict[str, Any] | bytes, str]] = [
    ("json", b'{"type": "device", "imeis": [', "invalid JSON"),
    ("not-object", b"[1, 2]", "expected a JSON object"),
    ("no-type", {"imeis": [IMEI_B]}, "missing 'type'"),
    ("unknown-type", {"type": "phone"}, "unknown record type 'phone'"),
    ("imeis-missing", {"type": "device"}, "device.imeis: expected a list of 1-4 IMEIs"),
    ("imeis-empty", {"type": "device", "imeis": []}, "device.imeis: expected a list of 1-4 IMEIs"),
    ("imeis-five", {"type": "device", "imeis": [imei15(35693803564390 + i) for i in range(5)]}, "1-4 IMEIs"),
    ("imei-short", {"type": "device", "imeis": [IMEI_B, "1234"]}, "device.imeis[1]: malformed IMEI '1234'"),
    ("imei-luhn", {"type": "device", "imeis": ["356938035643818"]}, "device.imeis[0]: malformed IMEI"),
    ("imei-test", {"type": "device", "imeis": ["00000000000000"]}, "device.imeis[0]: malformed IMEI"),
    ("imei-int", {"type": "device", "imeis": [35693803564381]}, "device.imeis[0]: malformed IMEI"),
    ("imei-persian", {"type": "device", "imeis": ["۳۵۶۹۳۸۰۳۵۶۴۳۸۱۷"]}, "device.imeis[0]: malformed IMEI"),
    ("imei-repeat", {"type": "device", "imeis": [IMEI_B, "35693803564381"]}, "imeis[1]: IMEI 35693803564381 repeats"),
    ("imei-dup", {"type": "device", "imeis": [IMEI_B, IMEI_A]}, "device.imeis[1]: IMEI 35693803564380 already belongs"),
    ("origin", {**DEVICE, "imeis": [IMEI_B], "origin": "smuggled"}, "device.origin: expected one of import"),
    ("owner", {**DEVICE, "imeis": [IMEI_B], "owner": "12"}, "device.owner: malformed MSISDN '12'"),
    ("owner-int", {**DEVICE, "imeis": [IMEI_B], "owner": 989121234567}, "device.owner: expected an MSISDN string"),
    ("since-naive", {**DEVICE, "imeis": [IMEI_B], "owner_since": "2024-03-01T00:00:00"}, "no UTC offset"),
    ("since-text", {**DEVICE, "imeis": [IMEI_B], "owner_since": "yesterday"}, "device.owner_since: bad time"),
    ("since-zero", {**DEVICE, "imeis": [IMEI_B], "owner_since": 0}, "device.owner_since: bad time: outside"),
    ("since-bool", {**DEVICE, "imeis": [IMEI_B], "owner_since": True}, "device.owner_since: bad time"),
    ("cloned", {**DEVICE, "imeis": [IMEI_B], "cloned": "yes"}, "device.cloned: expected true/false"),
    ("model", {**DEVICE, "imeis": [IMEI_B], "model": 7}, "device.model: expected a string"),
    ("sims-type", {**DEVICE, "imeis": [IMEI_B], "operator_sims": ["0912"]}, "device.operator_sims: expected an object"),
    ("sims-slot", {**DEVICE, "imeis": [IMEI_B], "operator_sims": {"2": "09121234567"}}, "slot '2' outside 1..1"),
    ("sims-zero", {**DEVICE, "imeis": [IMEI_B], "operator_sims": {"0": "09121234567"}}, "slot '0' outside 1..1"),
    ("sims-msisdn", {**DEVICE, "imeis": [IMEI_B], "operator_sims": {"1": "x"}}, "device.operator_sims[1]: malformed"),
    ("prereg-type", {**DEVICE, "imeis": [IMEI_B], "pre_registry_users": "0912"}, "expected a list of MSISDNs"),
    ("prereg-bad", {**DEVICE, "imeis": [IMEI_B], "pre_registry_users": ["09121234567", "1"]}, "users[1]: malformed"),
    ("block-empty", {**DEVICE, "imeis": [IMEI_B], "block": " "}, "device.block: expected a non-empty reason"),
    ("block-bool", {**DEVICE, "imeis": [IMEI_B], "block": True}, "device.block: expected a non-empty reason"),
    ("code", {**DEVICE, "imeis": [IMEI_B], "activation_code": "012345"}, "device.activation_code: expected 6 digits"),
    ("code-long", {**DEVICE, "imeis": [IMEI_B], "activation_code": "1234567"}, "device.activation_code: expected"),
    ("sub-msisdn", {"type": "subscriber"}, "subscriber.msisdn: expected an MSISDN string, got None"),
    ("sub-imsi", {"type": "subscriber", "msisdn": "09121234560", "imsi": "12345"}, "subscriber.imsi: expected 6-15"),
    ("sub-imsi-int", {"type": "subscriber", "msisdn": "09121234560", "imsi": 432111}, "subscriber.imsi: expected"),
    ("sub-nid-long", {"type": "subscriber", "msisdn": "09121234560", "national_id": "1" * 19}, "national_id: expected"),
    ("sub-nid-int", {"type": "subscriber", "msisdn": "09121234560", "national_id": 12}, "national_id: expected 1-18"),
    ("sub-since", {"type": "subscriber", "msisdn": "09121234560", "since": "2019-13-01T00:00:00Z"}, "since: bad time"),
    ("sub-expired", {"type": "subscriber", "msisdn": "09121234560", "expired": 1}, "subscriber.expired: expected"),
    ("bl-imei", {"type": "blacklist", "imei": "123", "reason": "stolen"}, "blacklist.imei: malformed IMEI '123'"),
    ("bl-reason", {"type": "blacklist", "imei": IMEI_B}, "blacklist.reason: expected a non-empty reason"),
    ("trav-none", {"type": "traveler_entry", "entered": 1_700_000_000}, "traveler_entry: needs msisdn or national_id"),
    ("trav-time", {"type": "traveler_entry", "msisdn": "09121234567"}, "traveler_entry.entered: bad time"),
    ("trav-nid", {"type": "traveler_entry", "national_id": "12a", "entered": 1}, "traveler_entry.national_id"),
    ("tac", {"type": "tac", "tac": "3569380", "brand": "X"}, "tac.tac: expected 8 digits"),
    ("tac-brand", {"type": "tac", "tac": "35693803", "brand": 1}, "tac: brand and model must be strings"),
]


@pytest.mark.parametrize(("record", "reason"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_record_is_located(tmp_path: Path, record: dict[str, Any] | bytes, reason: str) -> None:
    errors = errors_of(tmp_path, DEVICE, record, {"type": "device", "imeis": ["49015420323751"]})
    assert len(errors) == 1, errors
    assert errors[0].startswith("2: "), errors
    assert reason in errors[0]


def test_example_message_names_file_line_and_field(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "registry.jsonl", DEVICE, {"type": "device", "imeis": [IMEI_B, "1234"]})
    builder = RegistryBuilder(None)
    builder.read(path)
    assert builder.errors == [f"{path}:2: device.imeis[1]: malformed IMEI '1234'"]


def test_duplicates_name_both_lines(tmp_path: Path) -> None:
    sub = {"type": "subscriber", "msisdn": "09121234567", "imsi": "432111234567890"}
    errors = errors_of(
        tmp_path,
        DEVICE,  # 1
        {"type": "device", "imeis": [IMEI_B, IMEI_A]},  # 2: IMEI of line 1
        sub,  # 3
        {**sub, "imsi": "432111234567891"},  # 4: same MSISDN (written differently below)
        {"type": "subscriber", "msisdn": "+989121234568", "imsi": "432111234567890"},  # 5: same IMSI
        {"type": "blacklist", "imei": IMEI_A, "reason": "stolen"},  # 6
        {"type": "blacklist", "imei": "35693803564380", "reason": "lost"},  # 7: same IMEI, other form
        {"type": "tac", "tac": "35693803"},  # 8
        {"type": "tac", "tac": "35693803"},  # 9
    )
    where = f"{tmp_path / 'registry.jsonl'}"
    assert errors == [
        f"2: device.imeis[1]: IMEI 35693803564380 already belongs to the device at {where}:1",
        f"4: subscriber.msisdn: duplicate 989121234567 (first at {where}:3)",
        f"5: subscriber.imsi: duplicate 432111234567890 (first at {where}:3)",
        f"7: blacklist: IMEI 35693803564380 already listed at {where}:6",
        f"9: tac: TAC 35693803 already listed at {where}:8",
    ]


def test_rejected_device_does_not_claim_its_imeis(tmp_path: Path) -> None:
    # Line 1 is invalid (bad origin); its IMEI stays free for line 2.
    errors = errors_of(tmp_path, {**DEVICE, "origin": "x"}, DEVICE)
    assert len(errors) == 1 and errors[0].startswith("1: device.origin")


def test_blank_lines_bom_and_unknown_fields(tmp_path: Path) -> None:
    path = tmp_path / "registry.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"type":"device","imeis":["' + IMEI_A.encode() + b'"],"colour":"red"}\n\n  \n'
                     b'{"type":"tac","tac":"35693803","brand":"Samsung","model":"SM-J700F","extra":[1]}')  # fmt: skip
    builder = RegistryBuilder(None)
    builder.read(path)
    data = builder.finish()
    assert builder.errors == [] and builder.n_lines == 4 and builder.n_records == 2
    assert list(data.columns["imeis"]) == [35693803564380]


def test_over_long_line_is_an_error_and_reading_goes_on(tmp_path: Path) -> None:
    long_line = b'{"type":"device","model":"' + b"x" * (MAX_LINE_BYTES + 10) + b'"}'
    errors = errors_of(tmp_path, long_line, DEVICE)
    assert errors == [f"1: line longer than {MAX_LINE_BYTES} bytes"]


def test_errors_are_capped_but_counted(tmp_path: Path) -> None:
    builder = RegistryBuilder(None)
    builder.read(jsonl(tmp_path / "r.jsonl", *([b"nope"] * (MAX_REPORTED_ERRORS + 5))))
    assert builder.n_errors == MAX_REPORTED_ERRORS + 5
    assert len(builder.errors) == MAX_REPORTED_ERRORS


def test_line_numbers_are_per_file(tmp_path: Path) -> None:
    a = jsonl(tmp_path / "a.jsonl", DEVICE, b"{}")
    b = jsonl(tmp_path / "b.jsonl", b"[]", {"type": "device", "imeis": [IMEI_A]})
    with pytest.raises(RegistryError) as info:
        build_snapshot([a, b], tmp_path / "s.eirsnap", skip_invalid=False)
    assert info.value.errors == [
        f"{a}:2: missing 'type'",
        f"{b}:1: expected a JSON object",
        f"{b}:2: device.imeis[0]: IMEI 35693803564380 already belongs to the device at {a}:1",
    ]
    assert info.value.n_errors == 3


def test_skip_invalid_keeps_the_valid_records(tmp_path: Path) -> None:
    path = jsonl(
        tmp_path / "r.jsonl",
        DEVICE,
        {"type": "device", "imeis": ["123"]},
        {"type": "subscriber", "msisdn": "09121234567"},
        {"type": "subscriber", "msisdn": "9121234567"},
        {"type": "device", "imeis": [IMEI_B]},
    )
    report = build_snapshot([path], tmp_path / "s.eirsnap", skip_invalid=True)
    assert report.n_errors == 2 and len(report.errors) == 2
    assert report.meta.counts["devices"] == 2 and report.meta.counts["subscribers"] == 1
    assert report.meta.skipped == 2 and report.records == 3 and report.lines == 5


def test_missing_file_is_a_registry_error(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="cannot read"):
        build_snapshot([tmp_path / "absent.jsonl"], tmp_path / "s.eirsnap", skip_invalid=True)
    with pytest.raises(RegistryError, match="no registry files"):
        build_snapshot([], tmp_path / "s.eirsnap", skip_invalid=True)


def test_activation_code_without_key_fails_the_build_without_echoing_it(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="EIR_CODE_KEY") as info:
        errors_of(tmp_path, {**DEVICE, "activation_code": "482913"}, code_key=None)
    assert "482913" not in str(info.value)
    errors = errors_of(tmp_path, {**DEVICE, "activation_code": "48291"})
    assert errors and "48291" not in errors[0]


def test_activation_code_hash_is_keyed_on_the_slot1_core() -> None:
    import hashlib
    import hmac

    expected = hmac.new(b"key", b"35693803564380:482913", hashlib.sha256).digest()
    assert activation_code_hash(b"key", 35693803564380, "482913") == expected
    assert activation_code_hash(b"other", 35693803564380, "482913") != expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-03-01T00:00:00Z", 1_709_251_200),
        ("2024-03-01T03:30:00+03:30", 1_709_251_200),
        ("2024-03-01T00:00:00.999999Z", 1_709_251_200),
        (1_709_251_200, 1_709_251_200),
        (1_709_251_200.75, 1_709_251_200),
        (1, 1),
    ],
)
def test_parse_time_accepted(value: object, expected: int) -> None:
    assert parse_time(value) == expected


@pytest.mark.parametrize(
    "value", ["2024-03-01T00:00:00", "2024-03-01", "", "soon", 0, -5, 10**12, float("nan"), float("inf"), True, None]
)
def test_parse_time_rejected(value: object) -> None:
    with pytest.raises(ValueError):
        parse_time(value)


@given(time_forms())
def test_parse_time_reads_every_generated_form(pair: tuple[int, object]) -> None:
    t, form = pair
    assert parse_time(form) == t


@given(st.datetimes(min_value=dt.datetime(1971, 1, 1), max_value=dt.datetime(9000, 1, 1), timezones=st.just(dt.UTC)))
def test_parse_time_floors_fractions(when: dt.datetime) -> None:
    assert parse_time(when.isoformat()) == (when - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(seconds=1)


# The builder's fast paths must agree with identifiers.py on every input.
POLICY = ImeiPolicy(deny_invalid_check_digit=True, deny_test_imeis=True)
imei_like = st.one_of(
    st.integers(0, 10**15 - 1).map(lambda n: f"{n:015d}"),
    st.integers(0, 10**14 - 1).map(lambda n: imei15(n)),
    st.text("0123456789", min_size=13, max_size=17),
    st.text(min_size=0, max_size=17),
)


@settings(deadline=None)
@given(imei_like)
def test_imei_fast_path_matches_parse_imei(text: str) -> None:
    builder = RegistryBuilder(None)
    try:
        core = builder._imei(text, "x")
    except _Invalid:
        core = MALFORMED
    assert core == parse_imei(text, POLICY)


msisdn_like = st.one_of(
    st.text("0123456789", min_size=0, max_size=17),
    st.text("+0123456789 ", min_size=0, max_size=17),
    st.integers(10**6, 10**16).map(str),
)


@given(msisdn_like)
def test_msisdn_fast_path_matches_parse_msisdn(text: str) -> None:
    try:
        expected: int | None = parse_msisdn(text, NumberingPlan())[0]
    except IdentifierError:
        expected = None
    try:
        got: int | None = _msisdn(text, "x")
    except _Invalid:
        got = None
    assert got == expected
