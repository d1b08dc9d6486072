"""The sans-IO MessagePack-RPC codec: framing, validation, bounds, encoding (no sockets)."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eir.model import CONST, Decision, Reason
from eir.transports.rpc_codec import (
    INVALID_REQUEST,
    TOO_LARGE,
    Notification,
    Request,
    RpcDecoder,
    RpcEncoder,
    Violation,
    encode_request,
)

LIMIT = 4_096


def test_one_request() -> None:
    items = RpcDecoder(LIMIT).feed(encode_request(7, "check", ["35693803564380", "09121234567"]))
    assert items == [Request(7, "check", ["35693803564380", "09121234567"])]


def test_split_at_every_byte_and_many_per_chunk() -> None:
    data = b"".join(encode_request(i, "ping", []) for i in range(50))
    dec = RpcDecoder(LIMIT)
    got = []
    for i in range(len(data)):
        got.extend(dec.feed(data[i : i + 1]))
    assert [r.msgid for r in got] == list(range(50))
    assert RpcDecoder(LIMIT).feed(data) == got


def test_chunk_larger_than_limit_made_of_small_messages() -> None:
    # The bound is per message: a big read holding many small messages is fine.
    data = b"".join(encode_request(i, "check", ["35693803564380", "09121234567"]) for i in range(2_000))
    assert len(data) > 10 * LIMIT
    items = RpcDecoder(LIMIT).feed(data)
    assert len(items) == 2_000 and all(type(i) is Request for i in items)


def test_message_over_the_limit_is_too_large() -> None:
    dec = RpcDecoder(LIMIT)
    big = encode_request(1, "check_batch", [[["35693803564380", "09121234567"]] * 500])
    items = dec.feed(big)
    assert items == [Violation(TOO_LARGE, f"message larger than {LIMIT} bytes")]
    assert dec.broken and dec.feed(encode_request(2, "ping", [])) == []


def test_too_large_when_fed_byte_by_byte() -> None:
    dec = RpcDecoder(LIMIT)
    big = encode_request(1, "check_batch", [["x" * 100] * 100])
    out = []
    for i in range(len(big)):
        out.extend(dec.feed(big[i : i + 1]))
    assert [v.code for v in out] == [TOO_LARGE]
    assert dec.buffered <= LIMIT


def test_notification_and_bytes_method() -> None:
    data = msgpack.packb([2, "ping", []]) + msgpack.packb([0, 3, b"ping", []], use_bin_type=True)
    assert RpcDecoder(LIMIT).feed(data) == [Notification("ping", []), Request(3, "ping", [])]


@pytest.mark.parametrize("obj", [
    5, "hello", {"a": 1}, [], [0, 1, "ping"], [1, 1, None, None], [0, -1, "ping", []], [0, 2**32, "ping", []],
    [0, True, "ping", []], [0, 1.5, "ping", []], [0, 1, 5, []], [0, 1, "x" * 65, []], [2, 5, []], [True, 1, "p", []],
])  # fmt: skip
def test_not_a_request_is_a_violation(obj: object) -> None:
    dec = RpcDecoder(LIMIT)
    items = dec.feed(msgpack.packb(obj) + encode_request(9, "ping", []))
    assert len(items) == 1 and type(items[0]) is Violation and items[0].code == INVALID_REQUEST
    assert dec.broken


def test_violation_keeps_msgid_when_known() -> None:
    (item,) = RpcDecoder(LIMIT).feed(msgpack.packb([0, 12, 5, []]))
    assert item == Violation(INVALID_REQUEST, "method must be a string", 12)


@pytest.mark.parametrize("garbage", [b"\xc1", b"\xa2\xff\xfe", b"\x81\x90\x01", b"GET / HTTP/1.1\r\n\r\n"])
def test_garbage_bytes(garbage: bytes) -> None:
    dec = RpcDecoder(LIMIT)
    items = dec.feed(encode_request(1, "ping", []) + garbage)
    assert items[0] == Request(1, "ping", [])
    assert type(items[-1]) is Violation and items[-1].code == INVALID_REQUEST


def test_requests_before_garbage_in_the_same_chunk_survive() -> None:
    items = RpcDecoder(LIMIT).feed(encode_request(1, "ping", []) + encode_request(2, "ping", []) + b"\xc1")
    assert [type(i) for i in items] == [Request, Request, Violation]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.binary(min_size=0, max_size=300), max_size=8))
def test_random_bytes_never_raise(chunks: list[bytes]) -> None:
    dec = RpcDecoder(1_024)
    items = []
    for c in chunks:
        items.extend(dec.feed(c))
    violations = [i for i in items if type(i) is Violation]
    assert len(violations) <= 1
    if violations:
        assert items[-1] is violations[0] and dec.broken
    assert dec.buffered <= 1_024


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1), st.lists(st.one_of(st.none(), st.integers(-(2**63), 2**64 - 1), st.text(max_size=20),
                                                   st.binary(max_size=20), st.floats(allow_nan=False)), max_size=6))
def test_round_trip_of_valid_requests(msgid: int, params: list[object]) -> None:
    (item,) = RpcDecoder(LIMIT).feed(encode_request(msgid, "check", params))
    assert item == Request(msgid, "check", params)


def _decode(data: bytes) -> object:
    return msgpack.unpackb(data, raw=False)


@pytest.mark.parametrize("reason", list(Reason))
def test_result_maps(reason: Reason) -> None:
    enc = RpcEncoder()
    d = CONST[reason]
    assert _decode(enc.ok(5, enc.result(d))) == [1, 5, None, {
        "verdict": d.verdict.name, "status": d.verdict.status, "reason": reason.value, "deadline": None}]
    with_deadline = Decision(reason, 1_795_000_000)
    assert _decode(enc.result(with_deadline)) == {
        "verdict": d.verdict.name, "status": d.verdict.status, "reason": reason.value, "deadline": 1_795_000_000}


def test_list_pong_error_and_large_msgid() -> None:
    enc = RpcEncoder()
    parts = [enc.result(CONST[Reason.OWNER]), enc.result(Decision(Reason.CLONE_GRACE, 1_800_000_000))]
    msg = _decode(enc.ok_list(2**32 - 1, parts))
    assert msg[1] == 2**32 - 1 and [r["reason"] for r in msg[3]] == ["OWNER", "CLONE_GRACE"]
    assert _decode(enc.ok_list(1, [])) == [1, 1, None, []]
    assert _decode(enc.pong(70_000)) == [1, 70_000, None, "pong"]
    assert _decode(enc.error(None, "too_large", "x" * 10_000))[2]["message"] == "x" * 512
    assert _decode(enc.error(4, "invalid_params", "slot")) == [
        1, 4, {"code": "invalid_params", "message": "slot"}, None]
