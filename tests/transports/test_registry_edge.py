"""The control plane's edge: request fields -> typed ints, every request error (pure, no HTTP)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eir.identifiers import MALFORMED, ImeiPolicy, NumberingPlan, imei15
from eir.transports.registry_edge import (
    BY_NAME,
    EDGE_ERRORS,
    MAX_IMEIS,
    OPERATIONS,
    EdgeError,
    Kind,
    Parsers,
    parse_request,
)

P = Parsers(ImeiPolicy(), NumberingPlan())
IMEI = "35693803564380"
IMEI15 = imei15(int(IMEI))
BAD15 = IMEI + str((int(IMEI15[-1]) + 1) % 10)  # wrong check digit
M1, M1_E164 = "09121234567", 989121234567
M2, M2_E164 = "+989127654321", 989127654321


def parse(name: str, body: object = None, path: dict[str, str] | None = None,
          query: dict[str, str] | None = None) -> dict[str, Any]:
    return parse_request(BY_NAME[name], body, path or {}, query or {}, P)


def refused(name: str, body: object = None, path: dict[str, str] | None = None,
            query: dict[str, str] | None = None) -> EdgeError:
    with pytest.raises(EdgeError) as ei:
        parse(name, body, path, query)
    assert ei.value.code in EDGE_ERRORS
    return ei.value


def test_table_is_consistent() -> None:
    assert len({op.name for op in OPERATIONS}) == len(OPERATIONS)
    assert len({(op.method, op.path) for op in OPERATIONS}) == len(OPERATIONS)
    assert all(op.path.startswith("/v1/registry/") for op in OPERATIONS)
    for op in OPERATIONS:
        assert op.has_body == (op.method in ("POST", "DELETE"))
        for f in op.fields:
            assert f.where in ("body", "path", "query")
            assert f.where != "path" or "{" + f.name + "}" in op.path
            assert f.required or f.default is not None


def test_every_operation_parses_to_typed_ints() -> None:
    assert parse("activate", {"imei": IMEI15, "msisdn": M1, "code": "482913"}) == {
        "imei": int(IMEI), "msisdn": M1_E164, "code": "482913"}
    assert parse("transfer", {"imei": "imei-" + IMEI15, "owner": M1, "buyer": M2}) == {
        "imei": int(IMEI), "owner": M1_E164, "buyer": M2_E164}
    sim = {"imei": IMEI + "01", "owner": M1, "slot": 2, "msisdn": M2}  # IMEISV: the core is kept
    for name in ("operator-sim add", "operator-sim remove"):
        assert parse(name, sim) == {"imei": int(IMEI), "owner": M1_E164, "slot": 2, "msisdn": M2_E164}
    assert parse("claim", {"imei": IMEI, "msisdn": M1}) == {"imei": int(IMEI), "msisdn": M1_E164}
    assert parse("recover", {"imei": IMEI, "old_msisdn": M1, "new_msisdn": M2}) == {
        "imei": int(IMEI), "old_msisdn": M1_E164, "new_msisdn": M2_E164}
    assert parse("imei-correction", {"requester": M1, "registered_imeis": [IMEI15],
                                     "observed_imeis": [IMEI15, "garbage"]}) == {
        "requester": M1_E164, "registered_imeis": [int(IMEI)], "observed_imeis": [int(IMEI), MALFORMED],
        "apply": False}
    assert parse("imei-correction", {"requester": M1, "registered_imeis": [IMEI], "observed_imeis": [IMEI],
                                     "apply": True})["apply"] is True
    assert parse("repair", {"owner": M1, "old_imei": IMEI, "new_imei": "35693803564381"}) == {
        "owner": M1_E164, "old_imei": int(IMEI), "new_imei": 35693803564381}
    assert parse("block", {"imei": IMEI, "reason": " stolen "}) == {"imei": int(IMEI), "reason": "stolen"}
    assert parse("block", {"imei": IMEI, "reason": "دزدیده شده"})["reason"] == "دزدیده شده"
    assert parse("unblock", {"imei": IMEI}) == {"imei": int(IMEI)}
    assert parse("clone-flag", {"imei": IMEI, "cloned": False}) == {"imei": int(IMEI), "cloned": False}
    assert parse("authenticity", path={"imei": IMEI15}) == {"imei": int(IMEI)}
    assert parse("imei-status", path={"imei": IMEI}, query={"requester": M1}) == {
        "imei": int(IMEI), "requester": M1_E164}


def test_malformed_imeis_that_are_answers_pass_as_malformed() -> None:
    for raw in (BAD15, "1234", "x" * 500, "", "00000000000000", "۳۵۶۹۳۸۰۳۵۶۴۳۸۰"):
        assert parse("authenticity", path={"imei": raw}) == {"imei": MALFORMED}
    got = parse("imei-correction", {"requester": M1, "registered_imeis": [IMEI], "observed_imeis": [BAD15]})
    assert got["observed_imeis"] == [MALFORMED]


@pytest.mark.parametrize(("name", "body", "code", "field"), [
    ("activate", [], "invalid_json", None),
    ("activate", "x", "invalid_json", None),
    ("activate", {"imei": IMEI, "msisdn": M1, "code": "482913", "pin": 1}, "unknown_field", "pin"),
    ("activate", {"imei": IMEI, "msisdn": M1}, "missing_field", "code"),
    ("activate", {"msisdn": M1, "code": "482913"}, "missing_field", "imei"),
    ("activate", {"imei": None, "msisdn": M1, "code": "482913"}, "missing_field", "imei"),
    ("activate", {"imei": IMEI, "msisdn": M1, "code": 482913}, "invalid_type", "code"),
    ("activate", {"imei": int(IMEI), "msisdn": M1, "code": "482913"}, "invalid_type", "imei"),
    ("activate", {"imei": BAD15, "msisdn": M1, "code": "482913"}, "invalid_imei", "imei"),
    ("activate", {"imei": "1" * 14, "msisdn": M1, "code": "482913"}, "invalid_imei", "imei"),  # test IMEI
    ("activate", {"imei": "9" * 65, "msisdn": M1, "code": "482913"}, "invalid_imei", "imei"),
    ("activate", {"imei": IMEI, "msisdn": "0912", "code": "482913"}, "invalid_msisdn", "msisdn"),
    ("activate", {"imei": IMEI, "msisdn": "+98 912 abc", "code": "482913"}, "invalid_msisdn", "msisdn"),
    ("activate", {"imei": IMEI, "msisdn": 989121234567, "code": "482913"}, "invalid_type", "msisdn"),
    ("transfer", {"imei": IMEI, "owner": M1, "buyer": "1" * 65}, "invalid_msisdn", "buyer"),
    ("operator-sim add", {"imei": IMEI, "owner": M1, "slot": 0, "msisdn": M2}, "invalid_slot", "slot"),
    ("operator-sim add", {"imei": IMEI, "owner": M1, "slot": 5, "msisdn": M2}, "invalid_slot", "slot"),
    ("operator-sim add", {"imei": IMEI, "owner": M1, "slot": "2", "msisdn": M2}, "invalid_slot", "slot"),
    ("operator-sim add", {"imei": IMEI, "owner": M1, "slot": True, "msisdn": M2}, "invalid_slot", "slot"),
    ("operator-sim remove", {"imei": IMEI, "owner": M1, "slot": 1.5, "msisdn": M2}, "invalid_slot", "slot"),
    ("imei-correction", {"requester": M1, "registered_imeis": IMEI, "observed_imeis": [IMEI]},
     "invalid_type", "registered_imeis"),
    ("imei-correction", {"requester": M1, "registered_imeis": [], "observed_imeis": [IMEI]},
     "invalid_list", "registered_imeis"),
    ("imei-correction", {"requester": M1, "registered_imeis": [IMEI], "observed_imeis": [IMEI] * 5},
     "invalid_list", "observed_imeis"),
    ("imei-correction", {"requester": M1, "registered_imeis": [IMEI, BAD15], "observed_imeis": [IMEI]},
     "invalid_imei", "registered_imeis[1]"),
    ("imei-correction", {"requester": M1, "registered_imeis": [IMEI], "observed_imeis": [IMEI, 7]},
     "invalid_type", "observed_imeis[1]"),
    ("imei-correction", {"requester": M1, "registered_imeis": [IMEI], "observed_imeis": [IMEI], "apply": "yes"},
     "invalid_type", "apply"),
    ("repair", {"owner": M1, "old_imei": IMEI, "new_imei": "abc"}, "invalid_imei", "new_imei"),
    ("block", {"imei": IMEI, "reason": ""}, "invalid_reason", "reason"),
    ("block", {"imei": IMEI, "reason": "   "}, "invalid_reason", "reason"),
    ("block", {"imei": IMEI, "reason": "x" * 201}, "invalid_reason", "reason"),
    ("block", {"imei": IMEI, "reason": "stolen\n"}, "invalid_reason", "reason"),
    ("block", {"imei": IMEI, "reason": 3}, "invalid_type", "reason"),
    ("clone-flag", {"imei": IMEI, "cloned": 1}, "invalid_type", "cloned"),
    ("clone-flag", {"imei": IMEI}, "missing_field", "cloned"),
])  # fmt: skip
def test_body_errors(name: str, body: object, code: str, field: str | None) -> None:
    e = refused(name, body)
    assert (e.code, e.field, e.status) == (code, field, 400), e.message
    assert e.message


def test_query_and_path_errors() -> None:
    e = refused("imei-status", path={"imei": IMEI})
    assert (e.code, e.field) == ("missing_field", "requester")
    e = refused("imei-status", path={"imei": BAD15}, query={"requester": M1})
    assert (e.code, e.field) == ("invalid_imei", "imei")
    e = refused("imei-status", path={"imei": IMEI}, query={"requester": "abc"})
    assert (e.code, e.field) == ("invalid_msisdn", "requester")
    e = refused("imei-status", path={"imei": IMEI}, query={"requester": M1, "limit": "3"})
    assert (e.code, e.field) == ("unknown_field", "limit")
    e = refused("authenticity", path={"imei": IMEI}, query={"requester": M1})
    assert e.code == "unknown_field"


def test_messages_never_echo_values() -> None:
    """A refused value (maybe a code typed in the wrong field) is not repeated back or logged."""
    secret = "48291377"
    for body in ({"imei": secret, "msisdn": M1, "code": "1"}, {"imei": IMEI, "msisdn": secret + "x", "code": "1"}):
        e = refused("activate", body)
        assert secret not in e.message and secret not in (e.field or "")
    # An unknown key is named (a typo must be findable), cut to 40 characters.
    e = refused("activate", {"imei": IMEI, "msisdn": M1, "code": "1", "k" * 1000: 1})
    assert e.field == "k" * 40 and len(e.message) < 200


def test_kinds_have_json_types() -> None:
    assert Kind.SLOT.json_type == "integer" and Kind.IMEIS.json_type == "array"
    assert Kind.FLAG.json_type == "boolean" and Kind.MSISDN.json_type == "string"


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
                    lambda c: st.lists(c, max_size=5) | st.dictionaries(st.text(max_size=10), c, max_size=5),
                    max_leaves=20),
       st.sampled_from(OPERATIONS))
def test_any_json_is_parsed_or_refused_specifically(doc: object, op: Any) -> None:
    """Whatever JSON arrives, the edge answers typed arguments or an EdgeError, never another exception."""
    try:
        args = parse_request(op, doc, {"imei": str(doc)[:20]}, {}, P)
    except EdgeError as e:
        assert e.code in EDGE_ERRORS and e.status == 400
        return
    for f in op.fields:
        v = args[f.name]
        if f.kind in (Kind.IMEI, Kind.MSISDN):
            assert isinstance(v, int) and v > 0
        elif f.kind in (Kind.IMEIS, Kind.OBSERVED_IMEIS):
            assert isinstance(v, list) and 1 <= len(v) <= MAX_IMEIS
